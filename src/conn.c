/*
 * A connection's life on the loop: opening, the handshakes (the
 * transport's, then the codec's), the connect and disconnect events,
 * closing (at once, or gracefully: flush, shutdown, drain), timeouts, and
 * the ssock_conn_* API. Reading is conn_read.c's, sending conn_write.c's.
 */
#include "conn.h"

#include <unistd.h>

/* ------------------------------------------------------------- events */

void ssock__conn_report(ssock_conn *c, int code, const char *op)
{
	ssock__ep_error(&c->ep->base, code, op, c->id, &c->peer);
}

static void emit_connect(ssock_conn *c)
{
	ssock__stream_ep *ep = c->ep;
	if (ep->cfg.on_connect) {
		ep->cfg.on_connect(c, ep->base.user);
	} else if (ep->base.inbox_mode) {
		ssock_event ev = {.type = SSOCK_EVENT_CONNECT, .conn = c->id, .peer = c->peer};
		ssock__inbox_push(&ep->base.inbox, &ev, false);
	}
}

/* The program has seen c's disconnect: its id names nothing from now on. */
static void mark_gone(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	pthread_mutex_lock(&l->mu);
	atomic_store_explicit(&c->gone, true, memory_order_relaxed);
	pthread_mutex_unlock(&l->mu);
}

/* Returns true when the program must acknowledge the event (by taking it
 * from the inbox) before the connection may finish closing. */
static bool emit_disconnect(ssock_conn *c, int reason, size_t unsent, bool want_ack)
{
	ssock__stream_ep *ep = c->ep;
	c->disc_emitted = true;
	/* The owner learns first, so a program that sees the event and then
	 * asks (a client's state) gets an answer that agrees with it. */
	if (ep->on_conn_closed)
		ep->on_conn_closed(ep, c, reason);
	if (ep->cfg.on_disconnect) {
		/* Seen now: the id is gone, and a half-closed connection stops
		 * taking sends (what was queued still goes out). */
		mark_gone(c);
		if (c->state == SSOCK__HALF)
			ssock__conn_close(c, 0);
		ep->cfg.on_disconnect(c, reason, ep->base.user);
		return false;
	}
	if (!ep->base.inbox_mode)
		return false;
	ssock_event ev = {.type = SSOCK_EVENT_DISCONNECT,
			  .conn = c->id,
			  .peer = c->peer,
			  .code = reason,
			  .unsent = unsent};
	return ssock__inbox_push(&ep->base.inbox, &ev, want_ack) && want_ack;
}

/* ------------------------------------------------------- the extra part */

static void conn_timer(ssock__timer *t);

/* Whether c needs its extra part for as long as it is open. */
static bool extra_always(const ssock_conn *c)
{
	return c->ep->cfg.idle_timeout_ms > 0 || c->ep->codec->open || c->ep->transport->open;
}

ssock__conn_extra *ssock__conn_extra_get(ssock_conn *c, const char *op)
{
	if (c->extra)
		return c->extra;
	ssock__conn_extra *x = malloc(sizeof *x); /* glibc's calloc skips its tcache */
	if (!x) {
		ssock__conn_report(c, SSOCK_ENOMEM, op);
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return NULL;
	}
	*x = (ssock__conn_extra){.conn = c, .last_io = ssock__loop_of(c)->now};
	ssock__timer_init(&x->timer, conn_timer);
	c->extra = x;
	return x;
}

void ssock__conn_trim(ssock_conn *c)
{
	ssock__conn_extra *x = c->extra;
	if (!x || c->state != SSOCK__OPEN || x->timer.heap_idx != SIZE_MAX || extra_always(c))
		return;
	free(x);
	c->extra = NULL;
}

/* ------------------------------------------------------------- timers */

void ssock__conn_arm_timer(ssock_conn *c)
{
	const ssock__cfg *cfg = &c->ep->cfg;
	ssock_loop *l = ssock__loop_of(c);
	ssock__conn_extra *x = c->extra;
	int64_t due = INT64_MAX, since;
	if (x && (c->state == SSOCK__HANDSHAKE || c->codec_hello || c->state >= SSOCK__CLOSING))
		due = x->deadline;
	if (x && cfg->idle_timeout_ms > 0 && x->last_io + cfg->idle_timeout_ms < due)
		due = x->last_io + cfg->idle_timeout_ms;
	if ((since = ssock__read_clock(c)) && since + cfg->read_timeout_ms < due)
		due = since + cfg->read_timeout_ms;
	if (due == INT64_MAX) {
		if (x)
			ssock__timer_stop(l, &x->timer);
		return;
	}
	if (!x && !(x = ssock__conn_extra_get(c, "timer")))
		return;
	if ((x->timer.heap_idx == SIZE_MAX || x->timer.due != due) &&
	    ssock__timer_start(l, &x->timer, due) != 0) {
		ssock__conn_report(c, SSOCK_ENOMEM, "timer");
		ssock__conn_fail(c, SSOCK_ENOMEM);
	}
}

/* Whether the quiet is this side's: c's reading is held back by a full
 * inbox, or a message of c's still waits in the inbox for the program. An
 * idle timeout does not count that time (it restarts from now). */
static bool waits_on_us(ssock_conn *c)
{
	ssock__ep *ep = &c->ep->base;
	if (!c->paused && !(ep->inbox_mode && ssock__inbox_holds(&ep->inbox, c->id)))
		return false;
	ssock__conn_touch(c);
	return true;
}

static void conn_timer(ssock__timer *t)
{
	ssock__conn_extra *x =
		(ssock__conn_extra *)((char *)t - offsetof(ssock__conn_extra, timer));
	ssock_conn *c = x->conn;
	const ssock__cfg *cfg = &c->ep->cfg;
	int64_t now = ssock__loop_of(c)->now, since = ssock__read_clock(c);
	if ((c->state == SSOCK__HANDSHAKE || c->codec_hello) && now >= x->deadline) {
		ssock__conn_report(c, SSOCK_EHANDSHAKE, "handshake");
		ssock__conn_fail(c, SSOCK_EHANDSHAKE);
	} else if (c->state >= SSOCK__CLOSING && now >= x->deadline) {
		/* The peer would not take our last bytes (or its FIN) in time. */
		ssock__conn_fail(c, x->close_reason);
	} else if (cfg->idle_timeout_ms > 0 && now - x->last_io >= cfg->idle_timeout_ms &&
		   !waits_on_us(c)) {
		ssock__conn_report(c, SSOCK_EIDLE, "idle");
		ssock__conn_fail(c, SSOCK_EIDLE);
	} else if (since && now - since >= cfg->read_timeout_ms) {
		ssock__conn_report(c, SSOCK_ESTALLED, "read");
		ssock__conn_fail(c, SSOCK_ESTALLED);
	} else {
		ssock__conn_arm_timer(c);
		ssock__conn_trim(c);
	}
}

/* ------------------------------------------------------------ interest */

void ssock__conn_interest(ssock_conn *c)
{
	unsigned want;
	if (c->in_handshake) {
		want = c->want_write ? SSOCK__OUT : SSOCK__IN;
	} else {
		/* Read while open and not held back (a full inbox, or a send
		 * queue over its limit: a peer that sends but does not read gets
		 * TCP backpressure, not unbounded memory), or while draining;
		 * write while bytes wait for room. A transport may need the other
		 * direction to go on (TLS). */
		bool reading = ((c->state <= SSOCK__OPEN ||
				 (c->state == SSOCK__CLOSING && ssock__codec_busy(c))) &&
				!c->paused && !c->wpaused) ||
			       c->state == SSOCK__DRAINING;
		want = (reading || c->write_wants_read ? SSOCK__IN : 0) |
		       (c->want_write || c->read_wants_write ? SSOCK__OUT : 0);
	}
	int rc = ssock__io_set(ssock__loop_of(c), &c->io, want);
	if (rc != 0) {
		ssock__conn_report(c, rc, "poll");
		ssock__conn_fail(c, rc);
	}
}

/* ------------------------------------------------------------ opening */

static void conn_on_io(ssock__io *io, unsigned ready);
static void start_codec(ssock_conn *c);

/* Arms the handshake's deadline. */
static void handshake_deadline(ssock_conn *c)
{
	ssock__conn_extra *x = ssock__conn_extra_get(c, "handshake");
	if (x && !x->deadline) {
		x->deadline = ssock__loop_of(c)->now + c->ep->cfg.handshake_timeout_ms;
		ssock__conn_arm_timer(c);
	}
}

/* One step of the transport's handshake. */
static void drive_handshake(ssock_conn *c)
{
	int rc = c->ep->transport->handshake(c);
	if (rc == SSOCK__WANT_READ || rc == SSOCK__WANT_WRITE) {
		c->want_write = rc == SSOCK__WANT_WRITE;
		ssock__conn_interest(c);
		return;
	}
	if (rc != 0) {
		ssock__conn_report(c, rc, "handshake");
		ssock__conn_fail(c, rc);
		return;
	}
	c->in_handshake = false;
	c->want_write = false;
	ssock__conn_interest(c);
	if (c->state == SSOCK__HANDSHAKE)
		start_codec(c);
	if (c->state <= SSOCK__OPEN)
		ssock__keep_pending(c); /* the handshake may have read some */
}

/* The transport is up: the codec starts its handshake (if it has one),
 * and the connection counts as connected. */
static void start_codec(ssock_conn *c)
{
	const ssock__codec *codec = c->ep->codec;
	if (codec->open) {
		c->codec_hello = true;
		handshake_deadline(c);
		int rc = c->state == SSOCK__CLOSED ? 0 : codec->open(c);
		if (rc != 0 && c->state != SSOCK__CLOSED) {
			ssock__conn_report(c, rc, "handshake");
			ssock__conn_fail(c, rc);
		}
		if (c->state == SSOCK__CLOSED)
			return;
	}
	ssock__conn_established(c);
}

void ssock__conn_codec_ready(ssock_conn *c)
{
	c->codec_hello = false;
	if (c->extra && c->state < SSOCK__CLOSING)
		c->extra->deadline = 0;
	ssock__conn_arm_timer(c);
}

void ssock__conn_established(ssock_conn *c)
{
	ssock__stream_ep *ep = c->ep;
	ssock_loop *l = ssock__loop_of(c);
	c->state = SSOCK__OPEN;
	if (c->extra && !c->codec_hello)
		c->extra->deadline = 0;
	ssock__conn_touch(c);
	ssock__conn_arm_timer(c);
	if (c->state != SSOCK__OPEN)
		return;
	/* Sends by id work from here on, also for a thread the owner's hook
	 * wakes. */
	pthread_mutex_lock(&l->mu);
	c->connected = true;
	pthread_mutex_unlock(&l->mu);
	if (ep->on_conn_open)
		ep->on_conn_open(ep, c);
	emit_connect(c);
}

/* Adds c to everything other threads reach connections by. */
static int link_conn(ssock_conn *c)
{
	ssock__stream_ep *ep = c->ep;
	ssock_loop *l = ssock__loop_of(c);
	pthread_mutex_lock(&l->mu);
	int rc = ssock__table_put(&l->conns, c->id, c);
	if (rc == 0) {
		c->prev = ep->conns_tail;
		if (ep->conns_tail)
			ep->conns_tail->next = c;
		else
			ep->conns_head = c;
		ep->conns_tail = c;
		ep->nconns++;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

ssock_conn *ssock__conn_open(ssock__stream_ep *ep, int fd, const ssock_addr *peer)
{
	/* malloc, not calloc: glibc's calloc never takes a block from its
	 * per-thread cache, where the last closed connection's block waits. */
	ssock_conn *c = malloc(sizeof *c);
	int rc = c ? 0 : SSOCK_ENOMEM;
	if (c) {
		memset(c, 0, sizeof *c);
		c->io.fd = fd;
		c->io.on_io = conn_on_io;
		c->id = ssock__next_id();
		c->ep = ep;
		c->peer = *peer;
		rc = link_conn(c);
		if (rc != 0)
			free(c);
	}
	if (rc != 0) {
		close(fd);
		ssock__ep_error(&ep->base, rc, "accept", 0, peer);
		return NULL;
	}
	/* From here on it fails like any connection: quietly but for the
	 * error, since no event announced it. */
	const ssock__transport *t = ep->transport;
	if (extra_always(c) && !ssock__conn_extra_get(c, "accept"))
		return NULL;
	rc = t->open ? t->open(c, ep->is_client) : 0;
	if (rc == 0)
		rc = ssock__io_set(ssock__loop_of(c), &c->io, SSOCK__IN);
	if (rc != 0) {
		ssock__conn_report(c, rc, "accept");
		ssock__conn_fail(c, rc);
		return NULL;
	}
	if (t->handshake) {
		c->in_handshake = true;
		handshake_deadline(c);
		if (c->state == SSOCK__HANDSHAKE)
			drive_handshake(c);
	} else {
		start_codec(c);
	}
	/* Closed by its own connect callback is not a failure to open. */
	return c->state == SSOCK__CLOSED && !c->connected ? NULL : c;
}

/* ------------------------------------------------------------ closing */

static void list_remove(ssock_conn **head, ssock_conn *c, size_t next_off)
{
	for (ssock_conn **p = head; *p; p = (ssock_conn **)((char *)*p + next_off)) {
		if (*p == c) {
			*p = *(ssock_conn **)((char *)c + next_off);
			return;
		}
	}
}

void ssock__conn_unpause(ssock_conn *c)
{
	if (c->paused) {
		list_remove(&c->ep->paused_head, c, offsetof(ssock_conn, paused_next));
		list_remove(&c->ep->resuming, c, offsetof(ssock_conn, paused_next));
	}
	c->paused = false;
}

/* Removes c from everything other threads can reach it by. */
static void unlink_conn(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	ssock__stream_ep *ep = c->ep;
	pthread_mutex_lock(&l->mu);
	c->closing = true;
	ssock__table_del(&l->conns, c->id);
	if (c->prev)
		c->prev->next = c->next;
	else
		ep->conns_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		ep->conns_tail = c->prev;
	ep->nconns--;
	if (c->in_posted) {
		list_remove(&l->posted, c, offsetof(ssock_conn, posted_next));
		atomic_store_explicit(&l->has_posted, l->posted != NULL, memory_order_relaxed);
	}
	c->in_posted = false;
	/* Whatever is still counted never reaches the peer: posted sends, the
	 * queue, what a codec holds. Told in the same step as the id goes, so
	 * a thread that finds the id gone also finds this. */
	if (ep->on_conn_gone)
		ep->on_conn_gone(ep, c, atomic_load_explicit(&c->queued, memory_order_relaxed));
	if (atomic_load(&l->room_waiters) > 0)
		pthread_cond_broadcast(&l->cv); /* their id is gone now */
	pthread_mutex_unlock(&l->mu);
}

void ssock__conn_fail(ssock_conn *c, int reason)
{
	if (c->state == SSOCK__CLOSED)
		return;
	ssock_loop *l = ssock__loop_of(c);
	ssock__stream_ep *ep = c->ep;
	c->state = SSOCK__CLOSED;
	ssock__io_remove(l, &c->io);
	ep->transport->close(c);
	if (c->extra)
		ssock__timer_stop(l, &c->extra->timer);
	ssock__conn_unpause(c);
	ssock__pending_remove(c);
	unlink_conn(c);
	size_t unsent = ssock__sendq_close(c);
	if (ep->codec->close)
		unsent += ep->codec->close(c);
	atomic_fetch_sub_explicit(&ep->queued, atomic_exchange(&c->queued, 0),
				  memory_order_relaxed);
	if (c->connected) {
		if (!c->disc_emitted)
			emit_disconnect(c, reason, unsent, false);
	} else if (ep->on_conn_aborted) {
		ep->on_conn_aborted(ep, c, reason);
	}
	/* Freed after this pass: a caller up the stack may still hold c, and a
	 * callback may still look at a payload in its queue. */
	c->zombie_next = l->zombies;
	l->zombies = c;
}

/* Frees a closed connection (the end of the pass that closed it). */
void ssock__conn_free(ssock_conn *c)
{
	ssock__sendq_free(c);
	ssock__partial_free(c);
	if (c->extra) {
		free(c->extra->codec_state);
		free(c->extra);
	}
	free(c);
}

void ssock__conn_write_done(ssock_conn *c)
{
	/* Shut the write side, then read until the peer's EOF, so that closing
	 * with unread bytes cannot turn into a reset that destroys our last
	 * bytes in flight. */
	if (c->peer_eof) {
		ssock__conn_fail(c, c->extra ? c->extra->close_reason : 0);
		return;
	}
	c->ep->transport->shutdown(c);
	c->state = SSOCK__DRAINING;
	ssock__conn_interest(c);
}

int ssock__conn_close(ssock_conn *c, int reason)
{
	if (c->state >= SSOCK__CLOSING)
		return SSOCK_ECLOSED;
	if (c->state == SSOCK__HANDSHAKE || (c->peer_eof && atomic_load(&c->queued) == 0)) {
		/* Nothing to flush (or nobody to flush it to yet), and the
		 * peer's EOF is in or never mattered: done at once. */
		ssock__conn_fail(c, reason);
		return 0;
	}
	ssock_loop *l = ssock__loop_of(c);
	ssock__conn_extra *x = ssock__conn_extra_get(c, "close"); /* the linger timer */
	if (!x)
		return 0; /* closed at once instead */
	pthread_mutex_lock(&l->mu);
	c->closing = true;
	pthread_mutex_unlock(&l->mu);
	c->codec_hello = false; /* from now on the deadline is the linger's */
	x->close_reason = reason;
	x->deadline = l->now + SSOCK__LINGER_MS;
	/* Whatever held its reading back (a full inbox, the program's pause):
	 * a closing connection delivers nothing, and its codec may need the
	 * peer's answers to send what is queued. */
	ssock__conn_unpause(c);
	c->held = false;
	c->state = SSOCK__CLOSING;
	ssock__conn_arm_timer(c);
	ssock__conn_interest(c);
	if (c->state == SSOCK__CLOSING && atomic_load(&c->queued) == 0)
		ssock__conn_write_done(c);
	return 0;
}

/* The disconnect of a half-closed connection has been seen: finish it. */
static void half_close_done(ssock_conn *c)
{
	if (c->state == SSOCK__HALF)
		ssock__conn_close(c, 0);
}

void ssock__conn_ack(ssock_loop *l, uint64_t id)
{
	ssock_conn *c = ssock__table_get(&l->conns, id);
	if (c)
		half_close_done(c);
}

void ssock__conn_eof(ssock_conn *c)
{
	c->peer_eof = true;
	if (c->state == SSOCK__DRAINING) {
		ssock__conn_fail(c, c->extra ? c->extra->close_reason : 0);
		return;
	}
	if (c->state == SSOCK__HANDSHAKE || c->codec_hello) {
		/* Gone before its handshake (tinyproto's 0xFF) was done: most
		 * likely a server of another protocol. */
		ssock__conn_report(c, SSOCK_EHANDSHAKE, "handshake");
		ssock__conn_fail(c, SSOCK_EHANDSHAKE);
		return;
	}
	if (ssock__conn_mid_frame(c)) {
		ssock__conn_report(c, SSOCK_ETRUNCATED, "read");
		ssock__conn_fail(c, SSOCK_ETRUNCATED);
		return;
	}
	/* A clean close. The connection stays writable until the program has
	 * seen the disconnect, so replies to its last messages still go out. */
	c->state = SSOCK__HALF;
	ssock__conn_interest(c);
	if (c->state != SSOCK__HALF)
		return;
	if (!emit_disconnect(c, 0, 0, true))
		half_close_done(c);
}

void ssock__ep_close_all(ssock__stream_ep *ep, int reason)
{
	while (ep->conns_head)
		ssock__conn_fail(ep->conns_head, reason);
}

ssock_conn *ssock__conn_by_id(ssock__stream_ep *ep, uint64_t id)
{
	ssock_conn *c = ssock__table_get(&ep->base.loop->conns, id);
	if (!c || c->ep != ep || !c->connected ||
	    atomic_load_explicit(&c->gone, memory_order_relaxed))
		return NULL;
	return c;
}

/* ----------------------------------------------------------- readiness */

static void conn_on_io(ssock__io *io, unsigned ready)
{
	ssock_conn *c = (ssock_conn *)io;
	/* Closed earlier in this pass: the event was fetched before. */
	if (c->state == SSOCK__CLOSED)
		return;
	if (c->in_handshake) {
		drive_handshake(c);
		return;
	}
	if ((ready & SSOCK__IN) || (c->read_wants_write && (ready & SSOCK__OUT))) {
		c->read_wants_write = false;
		ssock__conn_read(c);
		if (c->state == SSOCK__CLOSED)
			return;
	}
	if ((ready & (SSOCK__OUT | SSOCK__ERR)) || (c->write_wants_read && (ready & SSOCK__IN))) {
		c->write_wants_read = false;
		ssock__conn_write(c); /* also surfaces a socket error reading did not */
	}
}

/* ---------------------------------------------------------- public API */

uint64_t ssock_conn_id(const ssock_conn *c)
{
	return c ? c->id : 0;
}

const ssock_addr *ssock_conn_peer(const ssock_conn *c)
{
	return c ? &c->peer : NULL;
}

int ssock_conn_send(ssock_conn *c, const void *data, size_t len)
{
	if (!c || (!data && len > 0) || !ssock__on_loop(ssock__loop_of(c)))
		return SSOCK_EINVAL;
	return ssock__conn_send(c, data, len);
}

int ssock_conn_close(ssock_conn *c)
{
	if (!c || !ssock__on_loop(ssock__loop_of(c)))
		return SSOCK_EINVAL;
	if (c->state == SSOCK__HALF) {
		ssock__conn_close(c, 0);
		return 0;
	}
	return ssock__conn_close(c, SSOCK_ELOCAL);
}

void ssock_conn_set_user(ssock_conn *c, void *ptr)
{
	if (c)
		c->user = ptr;
}

void *ssock_conn_user(const ssock_conn *c)
{
	return c ? c->user : NULL;
}
