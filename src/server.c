/*
 * The TCP server: listeners, accepting (with the connection limit and a
 * pause that never spins when fds run out), and the server API. Connections
 * themselves are conn.c's.
 */
#include "addr.h"
#include "conn.h"

#include <netinet/in.h>
#include <unistd.h>

#define ACCEPTS_PER_WAKEUP  64
#define MAX_LISTENERS       64
#define DEFAULT_SEND_BUDGET ((size_t)64 << 20)

typedef struct listener {
	ssock__io io;
	ssock_addr addr;
	ssock_server *srv;
} listener;

struct ssock_server {
	ssock__stream_ep ep;
	int backlog;
	int max_conns;
	pthread_mutex_t lmu; /* guards ls/nls for other threads */
	listener *ls[MAX_LISTENERS];
	int nls;
	bool user_paused;  /* loop only */
	bool fd_paused;    /* loop only: out of fds, retry timer armed */
	bool inbox_paused; /* loop only: the inbox holds inbox_max connect
	                        and disconnect events */
	bool closed;       /* loop only */
	ssock__timer retry;
	/* Counters for ssock_server_stats(), written by the loop. */
	atomic_uint_fast64_t accepted, refused;
	atomic_int accepting;
};

/* ------------------------------------------------------------ listening */

static ssock_loop *loop_of(ssock_server *srv)
{
	return srv->ep.base.loop;
}

/* Binds the first address text resolves to that accepts a bind. */
static int open_listener(ssock_server *srv, const char *text, listener **out)
{
	/* A name would block the loop on the resolver: not from its thread. */
	if (ssock__on_any_loop() && !ssock__addr_numeric(text))
		return SSOCK_ELOOPTHREAD;
	ssock_addr addrs[16];
	int n = ssock_addr_resolve(text, 1, addrs, 16);
	if (n < 0)
		return n;
	listener *L = calloc(1, sizeof *L);
	if (!L)
		return SSOCK_ENOMEM;
	int rc = SSOCK_EBADADDR;
	for (int i = 0; i < n; i++) {
		rc = srv->ep.transport->listen(&addrs[i], srv->backlog, &L->io.fd, &L->addr);
		if (rc == 0)
			break;
	}
	if (rc != 0) {
		free(L);
		return rc;
	}
	L->srv = srv;
	*out = L;
	return 0;
}

static void update_listeners(ssock_server *srv)
{
	bool on = !srv->user_paused && !srv->fd_paused && !srv->inbox_paused && !srv->closed;
	atomic_store_explicit(&srv->accepting, on, memory_order_relaxed);
	for (int i = 0; i < srv->nls; i++) {
		int rc = ssock__io_set(loop_of(srv), &srv->ls[i]->io, on ? SSOCK__IN : 0);
		if (rc != 0)
			ssock__ep_error(&srv->ep.base, rc, "listen", 0, &srv->ls[i]->addr);
	}
}

static void retry_accept(ssock__timer *t)
{
	ssock_server *srv = (ssock_server *)((char *)t - offsetof(ssock_server, retry));
	srv->fd_paused = false;
	update_listeners(srv);
}

/* Out of fds (or kernel memory): stop accepting for a while instead of
 * spinning on a listener that stays readable. */
static void pause_for_fds(ssock_server *srv, int code, const ssock_addr *where)
{
	ssock__ep_error(&srv->ep.base, code, "accept", 0, where);
	srv->fd_paused = true;
	update_listeners(srv);
	/* Without a timer the listeners would stay off: retry at once then. */
	if (ssock__timer_start(loop_of(srv), &srv->retry,
			       loop_of(srv)->now + SSOCK__ACCEPT_RETRY_MS))
		retry_accept(&srv->retry);
}

static void on_accept(ssock__io *io, unsigned ready)
{
	(void)ready;
	listener *L = (listener *)io;
	ssock_server *srv = L->srv;
	/* The flags are checked on every turn, not only by the poller: a pause or
	 * close handled earlier in the same pass leaves this event stale. */
	for (int i = 0;
	     i < ACCEPTS_PER_WAKEUP && !srv->fd_paused && !srv->user_paused && !srv->closed; i++) {
		/* A connection's events must fit the inbox: checked before each
		 * accept, since the last one's may have filled it. */
		if (srv->ep.base.inbox_mode && ssock__inbox_control_blocked(&srv->ep.base.inbox)) {
			srv->inbox_paused = true;
			update_listeners(srv);
			return;
		}
		ssock_addr peer;
		int fd;
		int rc = srv->ep.transport->accept(io->fd, &fd, &peer);
		if (rc == SSOCK__WANT_READ)
			return;
		if (rc == -EINTR || rc == -ECONNABORTED || rc == -EPROTO || rc == -EPERM)
			continue;
		if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM) {
			pause_for_fds(srv, rc, &L->addr);
			return;
		}
		if (rc != 0) {
			ssock__ep_error(&srv->ep.base, rc, "accept", 0, &L->addr);
			return;
		}
		if (srv->max_conns > 0 && srv->ep.nconns >= srv->max_conns) {
			atomic_fetch_add_explicit(&srv->refused, 1, memory_order_relaxed);
			ssock__ep_error(&srv->ep.base, SSOCK_ELIMIT, "accept", 0, &peer);
			close(fd);
			continue;
		}
		atomic_fetch_add_explicit(&srv->accepted, 1, memory_order_relaxed);
		rc = srv->ep.transport->setup(fd, peer.u.sa.sa_family, srv->ep.cfg.keepalive_s);
		if (rc != 0) {
			ssock__ep_error(&srv->ep.base, rc, "accept", 0, &peer);
			close(fd);
			continue;
		}
		ssock__conn_open(&srv->ep, fd, &peer);
	}
}

/* The inbox has room again: read from paused connections, accept again. */
static void on_room(ssock__ep *ep)
{
	ssock_server *srv = (ssock_server *)((char *)ep - offsetof(ssock_server, ep.base));
	ssock__ep_resume_paused(&srv->ep);
	if (srv->inbox_paused) {
		srv->inbox_paused = false;
		update_listeners(srv);
	}
}

static void attach_cmd(ssock__cmd *cmd)
{
	listener *L = cmd->arg;
	ssock_server *srv = L->srv;
	if (srv->nls == MAX_LISTENERS) {
		cmd->result = SSOCK_EINVAL;
		return;
	}
	L->io.on_io = on_accept;
	pthread_mutex_lock(&srv->lmu);
	srv->ls[srv->nls++] = L;
	pthread_mutex_unlock(&srv->lmu);
	cmd->result = srv->nls - 1;
	update_listeners(srv);
}

/* ------------------------------------------------------------- lifecycle */

static void shutdown_cmd(ssock__cmd *cmd);

static int check_opts(const ssock_server_opts *o)
{
	if (!o || !o->listen || o->backlog < 0 || o->max_conns < 0 || o->error_log_max < 0)
		return SSOCK_EINVAL;
	return 0;
}

static void free_server(ssock_server *srv)
{
	for (int i = 0; i < srv->nls; i++) {
		close(srv->ls[i]->io.fd);
		free(srv->ls[i]);
	}
	ssock__ep_destroy(&srv->ep.base);
	pthread_mutex_destroy(&srv->lmu);
	free(srv);
}

int ssock_server_new(ssock_server **out, const ssock_server_opts *opts)
{
	if (!out)
		return SSOCK_EINVAL;
	*out = NULL;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;
	ssock_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return SSOCK_ENOMEM;
	pthread_mutex_init(&srv->lmu, NULL);
	srv->backlog = opts->backlog ? opts->backlog : SOMAXCONN;
	srv->max_conns = opts->max_conns;
	ssock__timer_init(&srv->retry, retry_accept);
	ssock__cfg cfg = SSOCK__CFG_FROM_OPTS(opts);
	cfg.handshake_timeout_ms = opts->handshake_timeout_ms;
	rc = ssock__stream_ep_init(&srv->ep, opts->loop, &cfg, opts->inbox_max,
				   opts->inbox_max_bytes, opts->error_log_max, opts->on_error,
				   opts->user, false);
	if (rc != 0) {
		pthread_mutex_destroy(&srv->lmu);
		free(srv);
		return rc;
	}
	srv->ep.base.on_room = on_room;
	srv->ep.send_budget = opts->send_budget;
	if (!srv->ep.send_budget) {
		srv->ep.send_budget = DEFAULT_SEND_BUDGET;
		if (srv->ep.send_budget / 2 < srv->ep.cfg.send_queue_max)
			srv->ep.send_budget = srv->ep.cfg.send_queue_max * 2;
	}
	/* Set before the listener is attached: on a shared loop that runs,
	 * the first connection's callbacks may come before this returns. */
	*out = srv;
	rc = ssock_server_listen(srv, opts->listen);
	if (rc >= 0 && srv->ep.base.owns_loop)
		rc = ssock_loop_start(loop_of(srv));
	if (rc < 0) {
		*out = NULL;
		/* A shared loop may have accepted on the listener already. */
		ssock__ep_shutdown(&srv->ep.base, shutdown_cmd, srv);
		free_server(srv);
		return rc;
	}
	return 0;
}

int ssock_server_listen(ssock_server *srv, const char *addr)
{
	if (!srv || !addr)
		return SSOCK_EINVAL;
	listener *L;
	int rc = open_listener(srv, addr, &L);
	if (rc != 0)
		return rc;
	rc = ssock__call(loop_of(srv), attach_cmd, L, 0);
	if (rc < 0) {
		close(L->io.fd);
		free(L);
	}
	return rc;
}

static void shutdown_cmd(ssock__cmd *cmd)
{
	ssock_server *srv = cmd->arg;
	srv->closed = true;
	update_listeners(srv);
	ssock__timer_stop(loop_of(srv), &srv->retry);
	srv->ep.paused_head = NULL;
	ssock__ep_close_all(&srv->ep, SSOCK_ESHUTDOWN);
}

int ssock_server_free(ssock_server *srv)
{
	if (!srv)
		return 0;
	if (ssock__on_any_loop())
		return SSOCK_ELOOPTHREAD;
	ssock__stream_ep_shutdown(&srv->ep, shutdown_cmd, srv);
	free_server(srv);
	return 0;
}

int ssock_server_close(ssock_server *srv)
{
	return ssock_server_free(srv);
}

ssock_server *ssock_conn_server(const ssock_conn *c)
{
	if (!c || c->ep->is_client)
		return NULL;
	return (ssock_server *)((char *)c->ep - offsetof(ssock_server, ep));
}

/* ------------------------------------------------------------------ API */

int ssock_server_addr(ssock_server *srv, int index, ssock_addr *out)
{
	if (!srv || !out)
		return SSOCK_EINVAL;
	int rc = SSOCK_EINVAL;
	pthread_mutex_lock(&srv->lmu);
	if (index >= 0 && index < srv->nls) {
		*out = srv->ls[index]->addr;
		rc = 0;
	}
	pthread_mutex_unlock(&srv->lmu);
	return rc;
}

int ssock_server_send(ssock_server *srv, uint64_t id, const void *data, size_t len)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__send_id(&srv->ep, id, data, len, 0, NULL, NULL);
}

int ssock_server_send_timeout(ssock_server *srv, uint64_t id, const void *data, size_t len,
			      int timeout_ms)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__send_id(&srv->ep, id, data, len, timeout_ms, NULL, NULL);
}

int ssock_server_send_ref(ssock_server *srv, uint64_t id, const void *data, size_t len,
			  int timeout_ms, ssock_release_fn release, void *arg)
{
	if (!srv || !release)
		return SSOCK_EINVAL;
	return ssock__send_id(&srv->ep, id, data, len, timeout_ms, release, arg);
}

struct bcast {
	ssock_server *srv;
	uint64_t except;
	const void *data;
	size_t len;
};

static void broadcast_cmd(ssock__cmd *cmd)
{
	struct bcast *b = cmd->arg;
	ssock__stream_ep *ep = &b->srv->ep;
	int sent = 0;
	for (ssock_conn *c = ep->conns_head; c; c = c->next) {
		if (c->id == b->except || !c->connected)
			continue;
		int rc = ssock__conn_send(c, b->data, b->len);
		if (rc == 0) {
			sent++;
		} else if (rc == SSOCK_EMSGSIZE || rc == SSOCK_EFRAMING || rc == SSOCK_ENOMEM) {
			cmd->result = rc; /* the same for every connection */
			return;
		} else if (rc != SSOCK_ECLOSED) {
			ssock__ep_error(&ep->base, rc, "broadcast", c->id, &c->peer);
		}
	}
	cmd->result = sent;
}

int ssock_server_broadcast_except(ssock_server *srv, uint64_t except_id, const void *data,
				  size_t len)
{
	if (!srv || (!data && len > 0))
		return SSOCK_EINVAL;
	struct bcast b = {srv, except_id, data, len};
	return ssock__call(loop_of(srv), broadcast_cmd, &b, 0);
}

int ssock_server_broadcast(ssock_server *srv, const void *data, size_t len)
{
	return ssock_server_broadcast_except(srv, 0, data, len);
}

static void disconnect_cmd(ssock__cmd *cmd)
{
	ssock_server *srv = cmd->arg;
	ssock_conn *c = ssock__conn_by_id(&srv->ep, cmd->id);
	if (!c) {
		cmd->result = SSOCK_ENOCONN;
		return;
	}
	cmd->result = ssock_conn_close(c);
}

int ssock_server_disconnect(ssock_server *srv, uint64_t id)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(srv), disconnect_cmd, srv, id);
}

static void hold_cmd(ssock__cmd *cmd)
{
	ssock_server *srv = cmd->arg;
	cmd->result = ssock__conn_hold(&srv->ep, cmd->id >> 1, cmd->id & 1);
}

static int hold(ssock_server *srv, uint64_t id, bool on)
{
	if (!srv)
		return SSOCK_EINVAL;
	if (!id || id >> 63)
		return SSOCK_ENOCONN;
	return ssock__call(loop_of(srv), hold_cmd, srv, id << 1 | on);
}

int ssock_server_pause_reading(ssock_server *srv, uint64_t id)
{
	return hold(srv, id, true);
}

int ssock_server_resume_reading(ssock_server *srv, uint64_t id)
{
	return hold(srv, id, false);
}

struct flush_of {
	ssock_server *srv;
	uint64_t id;
	bool looked; /* at id, once: it must name an open connection then */
};

/* SSOCK__WAIT while connection id of srv (0: any of them) still has bytes
 * to send: queued, posted by other threads, or held by its codec. A
 * closing connection counts until it ends. l->mu held. */
static int flushed(void *arg)
{
	struct flush_of *f = arg;
	if (f->id && !f->looked) {
		f->looked = true;
		if (!ssock__conn_by_id(&f->srv->ep, f->id))
			return SSOCK_ENOCONN;
	}
	if (f->id) {
		ssock_conn *c = ssock__table_get(&loop_of(f->srv)->conns, f->id);
		return c && c->ep == &f->srv->ep && atomic_load(&c->queued) > 0 ? SSOCK__WAIT : 0;
	}
	for (ssock_conn *c = f->srv->ep.conns_head; c; c = c->next)
		if (atomic_load(&c->queued) > 0)
			return SSOCK__WAIT;
	return 0;
}

int ssock_server_flush(ssock_server *srv, uint64_t id, int timeout_ms)
{
	if (!srv)
		return SSOCK_EINVAL;
	struct flush_of f = {srv, id, false};
	return ssock__wait_for(&srv->ep, timeout_ms, flushed, &f);
}

int ssock_server_conns(ssock_server *srv, ssock_conn_info *out, int max)
{
	if (!srv || max < 0 || (!out && max > 0))
		return SSOCK_EINVAL;
	ssock_loop *l = loop_of(srv);
	pthread_mutex_lock(&l->mu);
	int total = 0;
	for (ssock_conn *c = srv->ep.conns_head; c; c = c->next) {
		/* Only what the program knows: connected, and not yet seen to
		 * end. */
		if (!ssock__conn_by_id(&srv->ep, c->id))
			continue;
		if (total < max) {
			out[total].id = c->id;
			out[total].peer = c->peer;
			out[total].queued = atomic_load(&c->queued);
		}
		total++;
	}
	pthread_mutex_unlock(&l->mu);
	return total;
}

int ssock_server_stats_get(ssock_server *srv, ssock_server_stats *out)
{
	if (!srv || !out)
		return SSOCK_EINVAL;
	*out = (ssock_server_stats){
		.accepted = atomic_load(&srv->accepted),
		.refused = atomic_load(&srv->refused),
		.accepting = atomic_load(&srv->accepting),
		.queued = atomic_load(&srv->ep.queued),
	};
	pthread_mutex_lock(&loop_of(srv)->mu);
	out->conns = srv->ep.nconns;
	pthread_mutex_unlock(&loop_of(srv)->mu);
	ssock__inbox_counts(&srv->ep.base.inbox, &out->inbox_events, &out->inbox_bytes);
	return 0;
}

static void pause_cmd(ssock__cmd *cmd)
{
	ssock_server *srv = cmd->arg;
	srv->user_paused = cmd->id != 0;
	update_listeners(srv);
}

int ssock_server_pause(ssock_server *srv)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(srv), pause_cmd, srv, 1);
}

int ssock_server_resume(ssock_server *srv)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(srv), pause_cmd, srv, 0);
}

int ssock_server_next_event(ssock_server *srv, ssock_event *ev, int timeout_ms)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__inbox_next(&srv->ep.base, ev, timeout_ms);
}

int ssock_server_event_fd(ssock_server *srv)
{
	if (!srv)
		return SSOCK_EINVAL;
	return ssock__inbox_fd(&srv->ep.base);
}

int ssock_server_errors(ssock_server *srv, ssock_error_info *out, int max, int clear)
{
	if (!srv || max < 0)
		return SSOCK_EINVAL;
	return ssock__errlog_read(&srv->ep.base.errlog, out, max, clear);
}
