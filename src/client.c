/*
 * The TCP client: connecting (every resolved address in turn, each attempt
 * bounded by connect_timeout_ms), reconnecting with exponential backoff and
 * jitter, the offline send queue, and the blocking conveniences (connect
 * with a wait, recv with a timeout, flush).
 *
 * Loop-side state is touched on the loop only; `state`, `cur_id`, the
 * offline queue and `last_error` are shared with callers under loop->mu and
 * signalled on loop->cv.
 */
#include "addr.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_ADDRS 8

struct ssock_client {
	ssock__ep ep;
	char *target;
	int connect_timeout_ms;
	bool auto_reconnect, queue_offline;
	int backoff_min, backoff_max, max_tries;

	/* Loop only. */
	ssock__io cio;          /* the socket being connected; fd -1: none */
	ssock_addr addrs[MAX_ADDRS];
	int naddrs, next_addr;
	int last_attempt_rc;
	ssock__timer timer;     /* connect timeout, or backoff */
	bool in_backoff;
	bool attempt_waits;     /* an automatic reconnect waits for inbox room */
	int fails;              /* failed attempts in a row */
	uint64_t rng;
	bool closed;

	/* Under loop->mu. */
	ssock_client_state state;
	uint64_t cur_id;
	uint64_t connects;      /* connections made so far */
	bool want;              /* the program wants to be connected */
	int last_error;
	ssock__chunk *off_head, *off_tail;
	size_t off_bytes;
};

static void start_attempt(ssock_client *cli);
static void try_next(ssock_client *cli);

static ssock_loop *loop_of(ssock_client *cli)
{
	return cli->ep.loop;
}

static void set_state(ssock_client *cli, ssock_client_state st, int err)
{
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	cli->state = st;
	if (err)
		cli->last_error = err;
	if (st != SSOCK_STATE_CONNECTING)
		cli->want = st == SSOCK_STATE_CONNECTED && cli->want;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* ---------------------------------------------------------- connecting */

static uint64_t next_random(ssock_client *cli)
{
	/* xorshift64: jitter needs spread, not secrecy */
	uint64_t x = cli->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	cli->rng = x;
	return x;
}

/* Exponential backoff capped at backoff_max, with "equal jitter": half the
 * delay fixed, half random, so clients that lost one server together do not
 * all come back in the same millisecond. */
static int backoff_delay(ssock_client *cli)
{
	int64_t d = cli->backoff_min;
	for (int i = 1; i < cli->fails && d < cli->backoff_max; i++)
		d *= 2;
	if (d > cli->backoff_max)
		d = cli->backoff_max;
	int64_t half = d / 2;
	return (int)(half + (int64_t)(next_random(cli) % (uint64_t)(half + 1)));
}

static void close_attempt(ssock_client *cli)
{
	if (cli->cio.fd < 0)
		return;
	ssock__io_remove(loop_of(cli), &cli->cio);
	close(cli->cio.fd);
	cli->cio.fd = -1;
}

static void attempt_failed(ssock_client *cli, int rc)
{
	ssock__ep_error(&cli->ep, rc, "connect", 0, cli->next_addr > 0 ? &cli->addrs[cli->next_addr - 1] : NULL);
	cli->fails++;
	bool again = cli->auto_reconnect && !cli->closed &&
		     (cli->max_tries == 0 || cli->fails < cli->max_tries);
	pthread_mutex_lock(&loop_of(cli)->mu);
	again = again && cli->want;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	if (!again) {
		set_state(cli, SSOCK_STATE_DISCONNECTED, rc);
		return;
	}
	pthread_mutex_lock(&loop_of(cli)->mu);
	cli->last_error = rc;
	pthread_cond_broadcast(&loop_of(cli)->cv);
	pthread_mutex_unlock(&loop_of(cli)->mu);
	cli->in_backoff = true;
	ssock__timer_start(loop_of(cli), &cli->timer, loop_of(cli)->now + backoff_delay(cli));
}

static void connected(ssock_client *cli, int fd)
{
	const ssock_addr *peer = &cli->addrs[cli->next_addr - 1];
	int rc = ssock__socket_opts(fd, cli->ep.cfg.keepalive_s);
	if (rc != 0) {
		close(fd);
		attempt_failed(cli, rc);
		return;
	}
	cli->fails = 0;
	/* on_conn_open (below) publishes the connection before its event. */
	if (!ssock__conn_open(&cli->ep, fd, peer))
		attempt_failed(cli, SSOCK_ENOMEM);
}

static void on_connect_io(ssock__io *io, uint32_t revents)
{
	ssock_client *cli = (ssock_client *)((char *)io - offsetof(ssock_client, cio));
	/* The event may be stale: a command earlier in this pass (close,
	 * disconnect, reconnect) dropped the attempt, or replaced it with a new
	 * one on this same io. Ask the socket, not the event. */
	if (io->fd < 0 || cli->closed)
		return;
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		ssock_addr peer;
		peer.len = sizeof peer.u;
		if (!(revents & EPOLLOUT) || getpeername(io->fd, &peer.u.sa, &peer.len) != 0)
			return; /* still in progress */
	}
	ssock__timer_stop(loop_of(cli), &cli->timer);
	int fd = io->fd;
	ssock__io_remove(loop_of(cli), io);
	io->fd = -1;
	if (err != 0) {
		close(fd);
		cli->last_attempt_rc = -err;
		try_next(cli);
		return;
	}
	connected(cli, fd);
}

/* Starts a connect to the next resolved address, or gives up the attempt. */
static void try_next(ssock_client *cli)
{
	while (cli->next_addr < cli->naddrs) {
		const ssock_addr *a = &cli->addrs[cli->next_addr++];
		int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			cli->last_attempt_rc = ssock__errno();
			continue;
		}
		int rc = connect(fd, &a->u.sa, a->len) == 0 ? 0 : ssock__errno();
		if (rc == 0) {
			connected(cli, fd);
			return;
		}
		if (rc == -EINPROGRESS) {
			cli->cio.fd = fd;
			cli->cio.events = 0;
			rc = ssock__io_set(loop_of(cli), &cli->cio, EPOLLOUT);
			if (rc == 0) {
				cli->in_backoff = false;
				ssock__timer_start(loop_of(cli), &cli->timer,
						   loop_of(cli)->now + cli->connect_timeout_ms);
				return;
			}
			cli->cio.fd = -1;
		}
		close(fd);
		cli->last_attempt_rc = rc;
	}
	attempt_failed(cli, cli->last_attempt_rc ? cli->last_attempt_rc : SSOCK_ECONNREFUSED);
}

static void start_attempt(ssock_client *cli)
{
	ssock__timer_stop(loop_of(cli), &cli->timer);
	cli->in_backoff = false;
	cli->attempt_waits = false;
	close_attempt(cli);
	set_state(cli, SSOCK_STATE_CONNECTING, 0);
	/* Resolved again on every attempt: the name may point elsewhere now.
	 * (A name that is not numeric is looked up here, on the loop.) */
	int n = ssock_addr_resolve(cli->target, 0, cli->addrs, MAX_ADDRS);
	cli->naddrs = n > 0 ? n : 0;
	cli->next_addr = 0;
	cli->last_attempt_rc = n < 0 ? n : 0;
	try_next(cli);
}

static void on_timer(ssock__timer *t)
{
	ssock_client *cli = (ssock_client *)((char *)t - offsetof(ssock_client, timer));
	if (cli->in_backoff) {
		/* An automatic reconnect adds a connect and a disconnect event:
		 * with the inbox full of them, it waits for on_room(). */
		if (cli->ep.inbox_mode && ssock__inbox_control_blocked(&cli->ep.inbox)) {
			cli->in_backoff = false;
			cli->attempt_waits = true;
			return;
		}
		start_attempt(cli);
		return;
	}
	close_attempt(cli); /* this address timed out: on to the next */
	cli->last_attempt_rc = SSOCK_ETIMEDOUT;
	try_next(cli);
}

/* ------------------------------------------------- connection hooks */

/* The inbox has room again: read from a paused connection, make the
 * reconnect that waited for room. */
static void on_room(ssock__ep *ep)
{
	ssock_client *cli = (ssock_client *)((char *)ep - offsetof(ssock_client, ep));
	ssock__ep_resume_paused(ep);
	if (cli->attempt_waits && !cli->closed)
		start_attempt(cli);
}

static void on_conn_open(ssock__ep *ep, ssock_conn *c)
{
	ssock_client *cli = (ssock_client *)ep;
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	cli->cur_id = c->id;
	cli->connects++;
	cli->state = SSOCK_STATE_CONNECTED;
	cli->last_error = 0;
	ssock__chunk *off = cli->off_head;
	size_t bytes = cli->off_bytes;
	cli->off_head = cli->off_tail = NULL;
	cli->off_bytes = 0;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	/* What was sent while offline goes first, in order. */
	ssock__queued_add(c, bytes);
	while (off) {
		ssock__chunk *next = off->next;
		off->next = NULL;
		ssock__conn_enqueue(c, off);
		off = next;
	}
}

static void on_conn_closed(ssock__ep *ep, ssock_conn *c, int reason)
{
	ssock_client *cli = (ssock_client *)ep;
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	bool mine = cli->cur_id == c->id;
	if (mine)
		cli->cur_id = 0;
	bool again = mine && cli->want && cli->auto_reconnect && !cli->closed;
	pthread_mutex_unlock(&l->mu);
	if (!mine)
		return;
	if (again) {
		set_state(cli, SSOCK_STATE_CONNECTING, reason);
		cli->fails = 1;
		cli->in_backoff = true;
		ssock__timer_start(l, &cli->timer, l->now + backoff_delay(cli));
	} else {
		set_state(cli, SSOCK_STATE_DISCONNECTED, reason);
	}
}

/* ----------------------------------------------------------- commands */

static void connect_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	pthread_mutex_lock(&loop_of(cli)->mu);
	bool idle = cli->state == SSOCK_STATE_DISCONNECTED;
	cli->want = true;
	if (idle)
		cli->last_error = 0;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	if (idle) {
		cli->fails = 0;
		start_attempt(cli);
	}
}

static void reconnect_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	pthread_mutex_lock(&loop_of(cli)->mu);
	cli->want = true;
	uint64_t id = cli->cur_id;
	cli->cur_id = 0;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	ssock_conn *c = id ? ssock__table_get(&loop_of(cli)->conns, id) : NULL;
	if (c)
		ssock__conn_fail(c, SSOCK_ELOCAL);
	cli->fails = 0;
	start_attempt(cli);
}

static void disconnect_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	bool was = cli->state != SSOCK_STATE_DISCONNECTED;
	cli->want = false;
	uint64_t id = cli->cur_id;
	cli->cur_id = 0;
	pthread_mutex_unlock(&l->mu);
	ssock__timer_stop(l, &cli->timer);
	cli->attempt_waits = false;
	close_attempt(cli);
	ssock_conn *c = id ? ssock__table_get(&l->conns, id) : NULL;
	if (c)
		ssock_conn_close(c);
	set_state(cli, SSOCK_STATE_DISCONNECTED, 0);
	cmd->result = was ? 0 : SSOCK_ENOTCONN;
}

static void close_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	ssock_loop *l = loop_of(cli);
	cli->closed = true;
	pthread_mutex_lock(&l->mu);
	cli->want = false;
	pthread_mutex_unlock(&l->mu);
	ssock__timer_stop(l, &cli->timer);
	close_attempt(cli);
	cli->ep.paused_head = NULL;
	ssock__ep_close_all(&cli->ep, SSOCK_ESHUTDOWN);
}

/* ---------------------------------------------------------- lifecycle */

static int check_opts(const ssock_client_opts *o)
{
	if (!o || !o->connect || o->connect_timeout_ms < 0 || o->reconnect_min_ms < 0 ||
	    o->reconnect_max_ms < 0 || o->reconnect_max_tries < 0 || o->error_log_max < 0)
		return SSOCK_EINVAL;
	/* Catch a malformed address now rather than on the first attempt. */
	char host[SSOCK__HOST_MAX];
	uint16_t port;
	return ssock__addr_split(o->connect, host, &port);
}

static void free_client(ssock_client *cli)
{
	while (cli->off_head) {
		ssock__chunk *ch = cli->off_head;
		cli->off_head = ch->next;
		free(ch);
	}
	ssock__ep_destroy(&cli->ep);
	free(cli->target);
	free(cli);
}

int ssock_client_new(ssock_client **out, const ssock_client_opts *opts)
{
	if (!out)
		return SSOCK_EINVAL;
	*out = NULL;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;
	ssock_client *cli = calloc(1, sizeof *cli);
	if (!cli)
		return SSOCK_ENOMEM;
	cli->target = strdup(opts->connect);
	cli->cio.fd = -1;
	cli->cio.on_io = on_connect_io;
	cli->connect_timeout_ms =
		opts->connect_timeout_ms ? opts->connect_timeout_ms : SSOCK__DEFAULT_CONNECT_TIMEOUT_MS;
	cli->auto_reconnect = opts->auto_reconnect != 0;
	cli->queue_offline = opts->queue_while_offline != 0;
	cli->backoff_min = opts->reconnect_min_ms ? opts->reconnect_min_ms : 100;
	cli->backoff_max = opts->reconnect_max_ms ? opts->reconnect_max_ms : 10000;
	if (cli->backoff_max < cli->backoff_min)
		cli->backoff_max = cli->backoff_min;
	cli->max_tries = opts->reconnect_max_tries;
	cli->rng = (uint64_t)ssock__now_ms() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)cli;
	if (!cli->rng)
		cli->rng = 1;
	ssock__timer_init(&cli->timer, on_timer);
	ssock__cfg cfg = SSOCK__CFG_FROM_OPTS(opts);
	rc = cli->target ? 0 : SSOCK_ENOMEM;
	if (rc == 0)
		rc = ssock__ep_init(&cli->ep, opts->loop, &cfg, opts->inbox_max, opts->inbox_max_bytes,
				    opts->error_log_max, true);
	if (rc != 0) {
		free(cli->target);
		free(cli);
		return rc;
	}
	cli->ep.on_conn_open = on_conn_open;
	cli->ep.on_conn_closed = on_conn_closed;
	cli->ep.on_room = on_room;
	if (cli->ep.owns_loop)
		rc = ssock_loop_start(cli->ep.loop);
	if (rc != 0) {
		free_client(cli);
		return rc;
	}
	/* No event can come before ssock_client_connect(), which needs this. */
	*out = cli;
	return 0;
}

int ssock_client_free(ssock_client *cli)
{
	if (!cli)
		return 0;
	if (ssock__on_loop(cli->ep.loop))
		return SSOCK_ELOOPTHREAD;
	ssock__ep_shutdown(&cli->ep, close_cmd, cli);
	free_client(cli);
	return 0;
}

int ssock_client_close(ssock_client *cli)
{
	return ssock_client_free(cli);
}

ssock_client *ssock_conn_client(const ssock_conn *c)
{
	if (!c || !c->ep->is_client)
		return NULL;
	return (ssock_client *)((char *)c->ep - offsetof(ssock_client, ep));
}

/* ---------------------------------------------------------------- API */

/* Waits until a connection was made after the `since`-th, the attempt was
 * given up, or the deadline. A connection that was made and has already
 * ended again (a server that greets and closes) still counts as made: its
 * events are in the inbox. */
static int wait_connected(ssock_client *cli, int wait_ms, uint64_t since)
{
	ssock_loop *l = loop_of(cli);
	struct timespec deadline;
	if (wait_ms > 0)
		ssock__abstime(&deadline, wait_ms);
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		if (cli->state == SSOCK_STATE_CONNECTED || cli->connects > since) {
			rc = 0;
			break;
		}
		if (cli->state == SSOCK_STATE_DISCONNECTED) {
			rc = cli->last_error ? cli->last_error : SSOCK_ENOTCONN;
			break;
		}
		int w = wait_ms < 0 ? pthread_cond_wait(&l->cv, &l->mu)
				    : pthread_cond_timedwait(&l->cv, &l->mu, &deadline);
		if (w != 0) {
			rc = SSOCK_ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int ssock_client_connect(ssock_client *cli, int wait_ms)
{
	if (!cli)
		return SSOCK_EINVAL;
	if (wait_ms != 0 && !ssock__may_wait(loop_of(cli)))
		return SSOCK_ELOOPTHREAD;
	pthread_mutex_lock(&loop_of(cli)->mu);
	uint64_t since = cli->connects;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	ssock__call(loop_of(cli), connect_cmd, cli, 0);
	return wait_ms == 0 ? 0 : wait_connected(cli, wait_ms, since);
}

int ssock_client_reconnect(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(cli), reconnect_cmd, cli, 0);
}

int ssock_client_disconnect(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(cli), disconnect_cmd, cli, 0);
}

ssock_client_state ssock_client_state_get(ssock_client *cli)
{
	if (!cli)
		return SSOCK_STATE_DISCONNECTED;
	pthread_mutex_lock(&loop_of(cli)->mu);
	ssock_client_state st = cli->state;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	return st;
}

uint64_t ssock_client_id(ssock_client *cli)
{
	if (!cli)
		return 0;
	pthread_mutex_lock(&loop_of(cli)->mu);
	uint64_t id = cli->cur_id;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	return id;
}

/* mu held: queues ch while offline, bounded like a send queue. */
static int queue_offline(ssock_client *cli, ssock__chunk *ch)
{
	if (!cli->queue_offline)
		return SSOCK_ENOTCONN;
	if (ch->len == 0) { /* an empty raw message: nothing to send */
		free(ch);
		return 0;
	}
	if (cli->off_bytes + ch->len > cli->ep.cfg.send_queue_max)
		return SSOCK_ESENDQFULL;
	if (cli->off_tail)
		cli->off_tail->next = ch;
	else
		cli->off_head = ch;
	cli->off_tail = ch;
	cli->off_bytes += ch->len;
	return 0;
}

/* mu held: one try at queuing ch on the current connection or offline. */
static int queue_once(void *arg, ssock__chunk *ch)
{
	ssock_client *cli = arg;
	int rc = SSOCK_ENOCONN;
	if (cli->cur_id)
		rc = ssock__xq_push_locked(&cli->ep, cli->cur_id, ch);
	if (rc == SSOCK_ENOCONN || rc == SSOCK_ECLOSED)
		rc = queue_offline(cli, ch);
	return rc;
}

static int send_from_loop(ssock_client *cli, const void *data, size_t len)
{
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	uint64_t id = cli->cur_id;
	pthread_mutex_unlock(&l->mu);
	ssock_conn *c = id ? ssock__table_get(&l->conns, id) : NULL;
	if (c && c->state < SSOCK__CLOSING)
		return ssock__conn_send(c, data, len);
	if (!cli->queue_offline)
		return SSOCK_ENOTCONN;
	ssock__chunk *ch;
	int rc = ssock__frame_chunk(cli->ep.cfg.framing, data, len, cli->ep.cfg.send_queue_max, &ch);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&l->mu);
	rc = queue_offline(cli, ch);
	pthread_mutex_unlock(&l->mu);
	if (rc != 0)
		free(ch);
	return rc;
}

int ssock_client_send_timeout(ssock_client *cli, const void *data, size_t len, int timeout_ms)
{
	if (!cli || (!data && len > 0))
		return SSOCK_EINVAL;
	ssock_loop *l = loop_of(cli);
	if (ssock__on_loop(l))
		return send_from_loop(cli, data, len);
	ssock__chunk *ch;
	int rc = ssock__frame_chunk(cli->ep.cfg.framing, data, len, cli->ep.cfg.send_queue_max, &ch);
	if (rc != 0)
		return rc;
	rc = ssock__queue_wait(l, ch, timeout_ms, queue_once, cli);
	if (rc != 0)
		free(ch);
	return rc;
}

int ssock_client_send(ssock_client *cli, const void *data, size_t len)
{
	return ssock_client_send_timeout(cli, data, len, 0);
}

int ssock_client_flush(ssock_client *cli, int timeout_ms)
{
	if (!cli)
		return SSOCK_EINVAL;
	ssock_loop *l = loop_of(cli);
	if (!ssock__may_wait(l))
		return SSOCK_ELOOPTHREAD;
	struct timespec deadline;
	if (timeout_ms > 0)
		ssock__abstime(&deadline, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		ssock_conn *c = cli->cur_id ? ssock__table_get(&l->conns, cli->cur_id) : NULL;
		if (!c) {
			rc = cli->off_bytes > 0 ? SSOCK_ENOTCONN : 0;
			break;
		}
		if (atomic_load(&c->queued) == 0)
			break;
		if (timeout_ms == 0) {
			rc = SSOCK_ETIMEDOUT;
			break;
		}
		rc = ssock__wait_room_locked(l, timeout_ms, &deadline);
		if (rc != 0)
			break;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int ssock_client_next_event(ssock_client *cli, ssock_event *ev, int timeout_ms)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__inbox_next(&cli->ep, ev, timeout_ms);
}

int ssock_client_recv(ssock_client *cli, void **data, size_t *len, int timeout_ms)
{
	if (!cli || !data || !len)
		return SSOCK_EINVAL;
	*data = NULL;
	*len = 0;
	int64_t deadline = timeout_ms > 0 ? ssock__now_ms() + timeout_ms : 0;
	for (;;) {
		int left = timeout_ms;
		if (timeout_ms > 0) {
			int64_t d = deadline - ssock__now_ms();
			left = d > 0 ? (int)d : 0;
		}
		ssock_event ev;
		int rc = ssock__inbox_next(&cli->ep, &ev, left);
		if (rc != 0)
			return rc;
		switch (ev.type) {
		case SSOCK_EVENT_MESSAGE:
			*data = ev.data;
			*len = ev.len;
			return 0;
		case SSOCK_EVENT_DISCONNECT:
			return SSOCK_ENOTCONN;
		case SSOCK_EVENT_ERROR:
			return ev.code;
		default:
			ssock_event_release(&ev);
			break;
		}
	}
}

int ssock_client_event_fd(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__inbox_fd(&cli->ep);
}

int ssock_client_errors(ssock_client *cli, ssock_error_info *out, int max, int clear)
{
	if (!cli || max < 0)
		return SSOCK_EINVAL;
	return ssock__errlog_read(&cli->ep.errlog, out, max, clear);
}
