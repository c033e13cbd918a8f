/*
 * The TCP client: connecting (the name resolved off the loop, then every
 * address in turn, each attempt bounded by connect_timeout_ms, the
 * connection's handshake included), reconnecting with exponential backoff
 * and jitter, and its life. Sending and receiving are client_io.c's.
 *
 * Loop-side state is touched on the loop only; `state`, `cur_id`, the
 * offline queue and `last_error` are shared with callers under loop->mu and
 * signalled on loop->cv.
 */
#include "client.h"
#include "addr.h"

#include <unistd.h>

static void start_attempt(ssock_client *cli);
static void try_next(ssock_client *cli);

static ssock_loop *loop_of(ssock_client *cli)
{
	return ssock__client_loop(cli);
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

/* Arms the client's one timer; without it nothing would ever move again,
 * so running out of memory for it fails the client at once. */
static bool arm(ssock_client *cli, int in_ms)
{
	if (ssock__timer_start(loop_of(cli), &cli->timer, loop_of(cli)->now + in_ms) == 0)
		return true;
	ssock__ep_error(&cli->ep.base, SSOCK_ENOMEM, "connect", 0, NULL);
	cli->in_backoff = false;
	set_state(cli, SSOCK_STATE_DISCONNECTED, SSOCK_ENOMEM);
	return false;
}

/* Drops what an attempt holds: a lookup, a socket connecting, a connection
 * in its handshake. */
static void close_attempt(ssock_client *cli)
{
	ssock__resolve_cancel(cli->resolving);
	cli->resolving = NULL;
	if (cli->cio.fd >= 0) {
		ssock__io_remove(loop_of(cli), &cli->cio);
		close(cli->cio.fd);
		cli->cio.fd = -1;
	}
	uint64_t id = cli->hs_id;
	cli->hs_id = 0;
	ssock_conn *c = id ? ssock__table_get(&loop_of(cli)->conns, id) : NULL;
	if (c)
		ssock__conn_fail(c, SSOCK_ELOCAL);
}

static void attempt_failed(ssock_client *cli, int rc, const char *op)
{
	cli->fails++;
	bool again = cli->auto_reconnect && !cli->closed &&
		     (cli->max_tries == 0 || cli->fails < cli->max_tries);
	pthread_mutex_lock(&loop_of(cli)->mu);
	again = again && cli->want;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	/* The state first: a program that hears of the error and then asks
	 * gets an answer that agrees with it. */
	if (!again) {
		set_state(cli, SSOCK_STATE_DISCONNECTED, rc);
	} else {
		pthread_mutex_lock(&loop_of(cli)->mu);
		cli->last_error = rc;
		pthread_cond_broadcast(&loop_of(cli)->cv);
		pthread_mutex_unlock(&loop_of(cli)->mu);
	}
	if (!cli->last_reported)
		ssock__ep_error(&cli->ep.base, rc, op, 0,
				cli->next_addr > 0 ? &cli->addrs[cli->next_addr - 1] : NULL);
	if (again) {
		cli->in_backoff = true;
		arm(cli, backoff_delay(cli));
	}
}

/* Moves on to the next address after a failure with rc. */
static void next_after(ssock_client *cli, int rc, bool reported)
{
	cli->last_attempt_rc = rc;
	cli->last_reported = reported;
	try_next(cli);
}

static void connected(ssock_client *cli, int fd)
{
	const ssock_addr *peer = &cli->addrs[cli->next_addr - 1];
	int rc = cli->ep.transport->setup(fd, peer->u.sa.sa_family, cli->ep.cfg.keepalive_s);
	if (rc != 0) {
		close(fd);
		next_after(cli, rc, false);
		return;
	}
	/* The connection's own handshake (if any) comes next; on_conn_open
	 * below hears when it is done, on_conn_aborted when it failed. */
	cli->hs_aborted = false;
	ssock_conn *c = ssock__conn_open(&cli->ep, fd, peer);
	if (c && c->state == SSOCK__HANDSHAKE)
		cli->hs_id = c->id;
	else if (!c) /* it failed at once, and reported why */
		next_after(cli, cli->hs_aborted ? cli->hs_reason : SSOCK_ENOMEM, true);
}

static void on_connect_io(ssock__io *io, unsigned ready)
{
	(void)ready;
	ssock_client *cli = (ssock_client *)((char *)io - offsetof(ssock_client, cio));
	/* The event may be stale: a command earlier in this pass (close,
	 * disconnect, reconnect) dropped the attempt, or replaced it with a new
	 * one on this same io. Ask the socket, not the event. */
	if (io->fd < 0 || cli->closed)
		return;
	int rc = cli->ep.transport->connect_result(io->fd);
	if (rc == SSOCK__WANT_WRITE)
		return; /* still in progress */
	ssock__timer_stop(loop_of(cli), &cli->timer);
	int fd = io->fd;
	ssock__io_remove(loop_of(cli), io);
	io->fd = -1;
	if (rc != 0) {
		close(fd);
		next_after(cli, rc, false);
		return;
	}
	connected(cli, fd);
}

/* Starts a connect to the next resolved address, or gives up the attempt. */
static void try_next(ssock_client *cli)
{
	while (cli->next_addr < cli->naddrs) {
		const ssock_addr *a = &cli->addrs[cli->next_addr++];
		int fd;
		int rc = cli->ep.transport->connect(a, &fd);
		if (rc == 0) {
			connected(cli, fd);
			return;
		}
		if (rc == SSOCK__WANT_WRITE) {
			cli->cio.fd = fd;
			cli->cio.interest = 0;
			rc = ssock__io_set(loop_of(cli), &cli->cio, SSOCK__OUT);
			if (rc == 0) {
				cli->in_backoff = false;
				arm(cli, cli->connect_timeout_ms);
				return;
			}
			cli->cio.fd = -1;
			close(fd);
		}
		cli->last_attempt_rc = rc;
		cli->last_reported = false;
	}
	attempt_failed(cli, cli->last_attempt_rc ? cli->last_attempt_rc : SSOCK_ECONNREFUSED,
		       "connect");
}

/* The name's addresses are in (on the loop): connect to them in turn. */
static void resolved(void *arg, int rc, const ssock_addr *addrs, int n)
{
	ssock_client *cli = arg;
	cli->resolving = NULL;
	ssock__timer_stop(loop_of(cli), &cli->timer);
	if (rc < 0) {
		attempt_failed(cli, rc, "resolve");
		return;
	}
	memcpy(cli->addrs, addrs, (size_t)n * sizeof *addrs);
	cli->naddrs = n;
	try_next(cli);
}

static void start_attempt(ssock_client *cli)
{
	ssock__timer_stop(loop_of(cli), &cli->timer);
	cli->in_backoff = false;
	cli->attempt_waits = false;
	close_attempt(cli);
	set_state(cli, SSOCK_STATE_CONNECTING, 0);
	cli->naddrs = cli->next_addr = 0;
	cli->last_attempt_rc = 0;
	cli->last_reported = false;
	/* Resolved again on every attempt: the name may point elsewhere now.
	 * A literal needs no resolver; a name is looked up off the loop,
	 * within the attempt's time. */
	if (ssock__addr_numeric(cli->target)) {
		int n = ssock_addr_resolve(cli->target, 0, cli->addrs, SSOCK__RESOLVE_MAX);
		resolved(cli, n, cli->addrs, n > 0 ? n : 0);
		return;
	}
	int rc = ssock__resolve_start(loop_of(cli), cli->target, 0, resolved, cli, &cli->resolving);
	if (rc != 0)
		attempt_failed(cli, rc, "resolve");
	else
		arm(cli, cli->connect_timeout_ms);
}

static void on_timer(ssock__timer *t)
{
	ssock_client *cli = (ssock_client *)((char *)t - offsetof(ssock_client, timer));
	if (cli->in_backoff) {
		/* An automatic reconnect adds a connect and a disconnect event:
		 * with the inbox full of them, it waits for on_room(). */
		if (cli->ep.base.inbox_mode && ssock__inbox_control_blocked(&cli->ep.base.inbox)) {
			cli->in_backoff = false;
			cli->attempt_waits = true;
			return;
		}
		start_attempt(cli);
		return;
	}
	if (cli->resolving) { /* the name server did not answer in time */
		ssock__resolve_cancel(cli->resolving);
		cli->resolving = NULL;
		attempt_failed(cli, SSOCK_ETIMEDOUT, "resolve");
		return;
	}
	/* This address timed out: on to the next. */
	if (cli->cio.fd >= 0) {
		ssock__io_remove(loop_of(cli), &cli->cio);
		close(cli->cio.fd);
		cli->cio.fd = -1;
	}
	next_after(cli, SSOCK_ETIMEDOUT, false);
}

/* ------------------------------------------------- connection hooks */

/* The inbox has room again: read from a paused connection, make the
 * reconnect that waited for room. */
static void on_room(ssock__ep *ep)
{
	ssock_client *cli = (ssock_client *)((char *)ep - offsetof(ssock_client, ep.base));
	ssock__ep_resume_paused(&cli->ep);
	if (cli->attempt_waits && !cli->closed)
		start_attempt(cli);
}

/* The handshake is done: connected. */
static void on_conn_open(ssock__stream_ep *ep, ssock_conn *c)
{
	ssock_client *cli = (ssock_client *)ep;
	ssock_loop *l = loop_of(cli);
	cli->hs_id = 0;
	cli->fails = 0;
	pthread_mutex_lock(&l->mu);
	cli->cur_id = c->id;
	cli->last_id = c->id;
	cli->connects++;
	cli->state = SSOCK_STATE_CONNECTED;
	cli->last_error = 0;
	ssock__chunk *off = cli->off_head;
	size_t bytes = cli->off_bytes;
	cli->off_head = cli->off_tail = NULL;
	cli->off_bytes = 0;
	/* Counted before another thread can send on it: together they stay
	 * within send_queue_max. */
	ssock__queued_add(c, bytes);
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	/* What was sent while offline goes first, in order. */
	while (off) {
		ssock__chunk *next = off->next;
		off->next = NULL;
		if (ep->codec->send)
			ep->codec->send(c, off);
		else
			ssock__out_chunk(c, off);
		off = next;
	}
}

/* A connection ended (loop->mu held): what it never wrote is what a flush
 * asks about. */
static void on_conn_gone(ssock__stream_ep *ep, ssock_conn *c, size_t unsent)
{
	ssock_client *cli = (ssock_client *)ep;
	cli->gone_id = c->id;
	cli->gone_unsent = unsent;
}

/* Its handshake failed (the connection reported why): the next address. */
static void on_conn_aborted(ssock__stream_ep *ep, ssock_conn *c, int reason)
{
	ssock_client *cli = (ssock_client *)ep;
	cli->hs_aborted = true;
	cli->hs_reason = reason;
	if (c->id != cli->hs_id)
		return; /* in ssock__conn_open() still: connected() goes on */
	cli->hs_id = 0;
	if (!cli->closed)
		next_after(cli, reason, true);
}

static void on_conn_closed(ssock__stream_ep *ep, ssock_conn *c, int reason)
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
		arm(cli, backoff_delay(cli));
	} else {
		set_state(cli, SSOCK_STATE_DISCONNECTED, reason);
	}
}

/* ----------------------------------------------------------- commands */

static void connect_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	if (cli->closed) { /* a callback run by ssock_client_free() */
		cmd->result = SSOCK_ESHUTDOWN;
		return;
	}
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
	if (cli->closed) {
		cmd->result = SSOCK_ESHUTDOWN;
		return;
	}
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
	cli->in_backoff = false;
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
		ssock__chunk_destroy(ch);
	}
	ssock__ep_destroy(&cli->ep.base);
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
	cli->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms
							   : SSOCK__DEFAULT_CONNECT_TIMEOUT_MS;
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
	cfg.handshake_timeout_ms = cli->connect_timeout_ms; /* part of the attempt */
	rc = cli->target ? 0 : SSOCK_ENOMEM;
	if (rc == 0)
		rc = ssock__stream_ep_init(&cli->ep, opts->loop, &cfg, opts->inbox_max,
					   opts->inbox_max_bytes, opts->error_log_max,
					   opts->on_error, opts->user, true);
	if (rc != 0) {
		free(cli->target);
		free(cli);
		return rc;
	}
	cli->ep.on_conn_open = on_conn_open;
	cli->ep.on_conn_closed = on_conn_closed;
	cli->ep.on_conn_aborted = on_conn_aborted;
	cli->ep.on_conn_gone = on_conn_gone;
	cli->ep.base.on_room = on_room;
	if (cli->ep.base.owns_loop)
		rc = ssock_loop_start(loop_of(cli));
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
	if (ssock__on_any_loop())
		return SSOCK_ELOOPTHREAD;
	ssock__stream_ep_shutdown(&cli->ep, close_cmd, cli);
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

/* ------------------------------------------------ connecting, by the API */

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
	cli->ep.waiters++;
	for (;;) {
		if (cli->ep.freeing) {
			rc = SSOCK_ESHUTDOWN;
			break;
		}
		if (cli->state == SSOCK_STATE_CONNECTED || cli->connects > since) {
			rc = 0;
			break;
		}
		if (cli->state == SSOCK_STATE_DISCONNECTED) {
			rc = cli->last_error ? cli->last_error : SSOCK_ENOTCONN;
			break;
		}
		rc = ssock__cond_wait(&l->cv, &l->mu, wait_ms, &deadline);
		if (rc != 0)
			break;
	}
	if (--cli->ep.waiters == 0 && cli->ep.freeing)
		pthread_cond_broadcast(&l->cv);
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
	int rc = ssock__call(loop_of(cli), connect_cmd, cli, 0);
	if (rc != 0 || wait_ms == 0)
		return rc;
	return wait_connected(cli, wait_ms, since);
}

int ssock_client_reconnect(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(cli), reconnect_cmd, cli, 0);
}

static void hold_cmd(ssock__cmd *cmd)
{
	ssock_client *cli = cmd->arg;
	cmd->result =
		cli->cur_id ? ssock__conn_hold(&cli->ep, cli->cur_id, cmd->id) : SSOCK_ENOTCONN;
}

int ssock_client_pause_reading(ssock_client *cli)
{
	return cli ? ssock__call(loop_of(cli), hold_cmd, cli, 1) : SSOCK_EINVAL;
}

int ssock_client_resume_reading(ssock_client *cli)
{
	return cli ? ssock__call(loop_of(cli), hold_cmd, cli, 0) : SSOCK_EINVAL;
}

int ssock_client_disconnect(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__call(loop_of(cli), disconnect_cmd, cli, 0);
}
