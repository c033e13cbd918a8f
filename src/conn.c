/*
 * A connection's life on the loop: reading and decoding frames, delivering
 * events, the send queue, and closing (at once, or gracefully: flush,
 * shutdown, drain). Framing lives in frame.c, socket I/O behind the
 * transport in tcp.c; this file holds what is common to both.
 *
 * The read path keeps idle connections bufferless: every connection reads
 * into the loop's shared buffer, whole frames are handed to callbacks in
 * place, and only the tail of a partial frame is copied into the
 * connection's own stash. A u32 payload too big for the shared buffer is read
 * straight into a buffer of its own, grown as its bytes arrive (never sized by
 * what the peer announces alone) and handed over without a copy.
 */
#include "frame.h"
#include "internal.h"
#include "tinyproto.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define READS_PER_WAKEUP 16     /* fairness: then the next connection */
#define WRITES_PER_WAKEUP 8
#define CHUNK_SIZE (16u << 10)  /* standard send chunk */
#define MAX_FREE_CHUNKS 256     /* spare chunks a loop keeps (4 MiB) */
#define IDLE_FREE_CHUNKS 32     /* and keeps once that many are not in use */
#define MAX_IOV 64
#define OBUF_MIN (16u << 10)    /* the shared output buffer's first size */
#define OBUF_MAX (256u << 10)   /* and its largest: bigger output uses chunks */
#define SEG_MAX CHUNK_SIZE      /* one connection's bytes in it: what the kernel
                                   does not take of them fits a spare chunk */
#define BUDGET_SHARE (64u << 10) /* see read_limit() */
#define BIG_MIN_GROWTH (64u << 10)
#define BIG_EXACT_MAX (64u << 20)

static void conn_on_io(ssock__io *io, uint32_t revents);
static void conn_timer(ssock__timer *t);
static void conn_write(ssock_conn *c);
static void process(ssock_conn *c, uint8_t *buf, size_t len);
static void tp_kick(ssock_conn *c);
static void sq_raw(ssock_conn *c, uint8_t byte);
static struct ssock__flush *out_seg(ssock_conn *c);

static ssock_loop *loop_of(const ssock_conn *c)
{
	return c->ep->loop;
}

static const ssock__transport *tp_of(const ssock_conn *c)
{
	return c->ep->tp;
}

static size_t header_size(ssock_framing f)
{
	switch (f) {
	case SSOCK_FRAMING_U32:
	case SSOCK_FRAMING_TINYPROTO: /* its size header is u32's */
		return SSOCK__U32_HEADER;
	case SSOCK_FRAMING_LINE:
		return 1; /* the '\n' after the payload */
	default:
		return 0;
	}
}

/* ------------------------------------------------------------- events */

static void report(ssock_conn *c, int code, const char *op)
{
	ssock__ep_error(c->ep, code, op, c->id, &c->peer);
}

static void emit_connect(ssock_conn *c)
{
	ssock__ep *ep = c->ep;
	if (ep->cfg.on_connect) {
		ep->cfg.on_connect(c, ep->cfg.user);
	} else if (ep->inbox_mode) {
		ssock_event ev = {.type = SSOCK_EVENT_CONNECT, .conn = c->id, .peer = c->peer};
		ssock__inbox_push(&ep->inbox, &ev, false);
	}
}

ssock_conn *ssock__conn_by_id(ssock__ep *ep, uint64_t id)
{
	ssock_conn *c = ssock__table_get(&ep->loop->conns, id);
	if (!c || c->ep != ep || atomic_load_explicit(&c->gone, memory_order_relaxed))
		return NULL;
	return c;
}

void ssock__conn_gone(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	pthread_mutex_lock(&l->mu);
	atomic_store_explicit(&c->gone, true, memory_order_relaxed);
	pthread_mutex_unlock(&l->mu);
}

/* Returns true when the program must acknowledge the event (by taking it
 * from the inbox) before the connection may finish closing. */
static bool emit_disconnect(ssock_conn *c, int reason, size_t unsent, bool want_ack)
{
	ssock__ep *ep = c->ep;
	c->disc_emitted = true;
	/* The owner learns first, so a program that sees the event and then
	 * asks (a client's state) gets an answer that agrees with it. */
	if (ep->on_conn_closed)
		ep->on_conn_closed(ep, c, reason);
	if (ep->cfg.on_disconnect) {
		/* Seen now: the id is gone, and a half-closed connection stops
		 * taking sends (what was queued still goes out). */
		ssock__conn_gone(c);
		if (c->state == SSOCK__HALF)
			ssock__conn_close(c, 0);
		ep->cfg.on_disconnect(c, reason, ep->cfg.user);
		return false;
	}
	if (!ep->inbox_mode)
		return false;
	ssock_event ev = {.type = SSOCK_EVENT_DISCONNECT, .conn = c->id, .peer = c->peer,
			  .code = reason, .unsent = unsent};
	return ssock__inbox_push(&ep->inbox, &ev, want_ack) && want_ack;
}

/* Hands one message to the program. `owned` is a malloc'd buffer holding
 * exactly the message (given away on success), or NULL to copy from msg.
 * Returns false when the inbox is full: nothing was taken. */
static bool deliver(ssock_conn *c, const uint8_t *msg, size_t len, uint8_t *owned)
{
	ssock__ep *ep = c->ep;
	if (ep->cfg.on_message) {
		/* A callback that sends this very buffer (an echo) hands it over
		 * instead of a copy: see ssock__conn_send(). */
		ssock_loop *l = loop_of(c);
		uint8_t *outer = l->lending;
		l->lending = owned;
		ep->cfg.on_message(c, msg, len, ep->cfg.user);
		if (l->lending)
			free(owned);
		l->lending = outer;
		return true;
	}
	ssock_event ev = {.type = SSOCK_EVENT_MESSAGE, .conn = c->id, .peer = c->peer, .len = len};
	if (owned) {
		ev.data = owned;
	} else if (len > 0) {
		ev.data = malloc(len);
		if (!ev.data) {
			report(c, SSOCK_ENOMEM, "read");
			ssock__conn_fail(c, SSOCK_ENOMEM);
			return true;
		}
		memcpy(ev.data, msg, len);
	}
	if (ssock__inbox_push(&ep->inbox, &ev, false))
		return true;
	if (!owned)
		free(ev.data);
	return false;
}

/* --------------------------------------------------------- open / close */

/* The connection's occasional part (see ssock__conn_x), allocated on first
 * need. Returns NULL when memory ran out; the caller reports and fails. */
static ssock__conn_x *x_new(ssock_conn *c)
{
	ssock__conn_x *x = malloc(sizeof *x); /* glibc's calloc skips its tcache */
	if (!x)
		return NULL;
	*x = (ssock__conn_x){.conn = c};
	ssock__timer_init(&x->timer, conn_timer);
	x->last_io = loop_of(c)->now;
	c->x = x;
	return x;
}

/* As x_new(), failing the connection with SSOCK_ENOMEM when memory ran out. */
static ssock__conn_x *x_get(ssock_conn *c, const char *op)
{
	if (c->x)
		return c->x;
	ssock__conn_x *x = x_new(c);
	if (!x) {
		report(c, SSOCK_ENOMEM, op);
		ssock__conn_fail(c, SSOCK_ENOMEM);
	}
	return x;
}

/* Whether c needs its occasional part for as long as it is open. */
static bool x_always(const ssock_conn *c)
{
	return c->ep->cfg.idle_timeout_ms > 0 || c->ep->cfg.framing == SSOCK_FRAMING_TINYPROTO;
}

/* Frees c's occasional part once nothing in it is in use. Called only where
 * nothing up the stack holds c->x. */
static void x_trim(ssock_conn *c)
{
	ssock__conn_x *x = c->x;
	if (!x || c->state != SSOCK__OPEN || x->stash || x->big || x->timer.heap_idx != SIZE_MAX ||
	    x_always(c))
		return;
	free(x);
	c->x = NULL;
}

/* Notes activity for the idle timeout. */
static void touch(ssock_conn *c)
{
	if (c->x)
		c->x->last_io = loop_of(c)->now;
}

ssock_conn *ssock__conn_open(ssock__ep *ep, int fd, const ssock_addr *peer)
{
	ssock_loop *l = ep->loop;
	/* malloc, not calloc: glibc's calloc never takes a block from its
	 * per-thread cache, where the last closed connection's block waits. */
	ssock_conn *c = malloc(sizeof *c);
	if (c) {
		memset(c, 0, sizeof *c);
		c->io.fd = fd;
		c->io.on_io = conn_on_io;
		c->id = ssock__next_id();
		c->ep = ep;
		c->peer = *peer;
		if (x_always(c) && !x_new(c)) {
			free(c);
			c = NULL;
		}
	}
	if (!c) {
		close(fd);
		ssock__ep_error(ep, SSOCK_ENOMEM, "accept", 0, peer);
		return NULL;
	}
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
	if (rc != 0) {
		ssock__ep_error(ep, rc, "accept", 0, peer);
		close(fd);
		free(c->x);
		free(c);
		return NULL;
	}
	rc = ssock__io_set(l, &c->io, EPOLLIN);
	if (rc != 0) {
		/* Not yet announced: undo quietly but for the error itself. */
		ssock__ep_error(ep, rc, "accept", c->id, peer);
		c->disc_emitted = true;
		ssock__conn_fail(c, rc);
		return NULL;
	}
	if (ep->cfg.idle_timeout_ms > 0)
		ssock__timer_start(l, &c->x->timer, l->now + ep->cfg.idle_timeout_ms);
	if (ep->cfg.framing == SSOCK_FRAMING_TINYPROTO)
		sq_raw(c, SSOCK__TP_HELLO); /* messages wait in tq for the peer's */
	if (ep->on_conn_open)
		ep->on_conn_open(ep, c);
	emit_connect(c);
	return c;
}

static void list_remove(ssock_conn **head, ssock_conn *c, size_t next_off)
{
	for (ssock_conn **p = head; *p; p = (ssock_conn **)((char *)*p + next_off)) {
		if (*p == c) {
			*p = *(ssock_conn **)((char *)c + next_off);
			return;
		}
	}
}

static void free_chunks(ssock_loop *l, ssock__chunk *ch)
{
	for (ssock__chunk *next; ch; ch = next) {
		next = ch->next;
		ssock__chunk_free(l, ch);
	}
}

/* The bytes a list of chunks still holds. */
static size_t chunks_left(const ssock__chunk *ch)
{
	size_t n = 0;
	for (; ch; ch = ch->next)
		n += ch->len - ch->off;
	return n;
}

/* Unlinks c from everything other threads can reach it by, and takes its
 * bytes out of its endpoint's queued total. Returns the bytes that will
 * never be sent. The chunks stay with c until conn_free(), after this
 * pass: a callback up the stack may be looking at a payload in one (the
 * echo fast path queues the very buffer it delivered). */
static size_t unlink_conn(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	ssock__ep *ep = c->ep;
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
	if (c->in_xq_list)
		list_remove(&l->xq_head, c, offsetof(ssock_conn, xq_next));
	c->in_xq_list = false;
	ssock__chunk *xq = c->xq_head;
	c->xq_head = c->xq_tail = NULL;
	if (atomic_load(&l->room_waiters) > 0)
		pthread_cond_broadcast(&l->cv); /* their id is gone now */
	pthread_mutex_unlock(&l->mu);
	if (xq) {
		if (c->sq_tail)
			c->sq_tail->next = xq;
		else
			c->sq_head = xq;
		for (c->sq_tail = xq; c->sq_tail->next;)
			c->sq_tail = c->sq_tail->next;
	}
	size_t unsent = chunks_left(c->sq_head);
	struct ssock__flush *seg = out_seg(c);
	if (seg) {
		unsent += seg->len;
		seg->len = 0;
	}
	ssock__conn_x *x = c->x;
	if (x) {
		/* The message whose size went out never got its answer. */
		if (x->tx_cur) {
			x->tx_cur->next = x->tq_head;
			x->tq_head = x->tx_cur;
			x->tx_cur = NULL;
		}
		unsent += chunks_left(x->tq_head);
	}
	atomic_fetch_sub_explicit(&c->ep->queued, atomic_exchange(&c->queued, 0),
				  memory_order_relaxed);
	return unsent;
}

void ssock__conn_fail(ssock_conn *c, int reason)
{
	if (c->state == SSOCK__CLOSED)
		return;
	ssock_loop *l = loop_of(c);
	c->state = SSOCK__CLOSED;
	ssock__io_remove(l, &c->io);
	tp_of(c)->close(c);
	if (c->x)
		ssock__timer_stop(l, &c->x->timer);
	if (c->paused)
		list_remove(&c->ep->paused_head, c, offsetof(ssock_conn, paused_next));
	c->paused = false;
	size_t unsent = unlink_conn(c);
	if (!c->disc_emitted)
		emit_disconnect(c, reason, unsent, false);
	/* Freed after this pass: a caller up the stack may still hold c. */
	c->zombie_next = l->zombies;
	l->zombies = c;
}

static void conn_free(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	free_chunks(l, c->sq_head);
	if (c->x) {
		ssock__loop_released(l, c->x->stash_cap + c->x->big_cap);
		free_chunks(l, c->x->tq_head);
		free(c->x->stash);
		free(c->x->big);
		free(c->x);
	}
	free(c);
}

/* Whether the read timeout's clock runs: a frame has begun, and reading is
 * not paused by a full inbox (the wait is then this side's, not the peer's). */
static bool read_clock_runs(const ssock_conn *c)
{
	return c->ep->cfg.read_timeout_ms > 0 && c->x->partial_since && !c->paused;
}

/* Arms c's timer for the earliest of its deadlines, or stops it. */
static void arm_timer(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	const ssock__cfg *cfg = &c->ep->cfg;
	ssock__conn_x *x = c->x;
	int64_t due = INT64_MAX;
	if (c->state >= SSOCK__CLOSING)
		due = x->linger_due;
	if (cfg->idle_timeout_ms > 0 && x->last_io + cfg->idle_timeout_ms < due)
		due = x->last_io + cfg->idle_timeout_ms;
	if (read_clock_runs(c) && x->partial_since + cfg->read_timeout_ms < due)
		due = x->partial_since + cfg->read_timeout_ms;
	if (due == INT64_MAX)
		ssock__timer_stop(l, &x->timer);
	else if (x->timer.heap_idx == SIZE_MAX || x->timer.due != due)
		ssock__timer_start(l, &x->timer, due);
}

static void conn_timer(ssock__timer *t)
{
	ssock__conn_x *x = (ssock__conn_x *)((char *)t - offsetof(ssock__conn_x, timer));
	ssock_conn *c = x->conn;
	const ssock__cfg *cfg = &c->ep->cfg;
	int64_t now = loop_of(c)->now;
	if (c->state >= SSOCK__CLOSING && now >= x->linger_due) {
		/* The peer would not take our last bytes (or its FIN) in time. */
		ssock__conn_fail(c, c->close_reason);
	} else if (cfg->idle_timeout_ms > 0 && now - x->last_io >= cfg->idle_timeout_ms) {
		report(c, SSOCK_EIDLE, "idle");
		ssock__conn_fail(c, SSOCK_EIDLE);
	} else if (read_clock_runs(c) && now - x->partial_since >= cfg->read_timeout_ms) {
		report(c, SSOCK_ESTALLED, "read");
		ssock__conn_fail(c, SSOCK_ESTALLED);
	} else {
		arm_timer(c);
		x_trim(c);
	}
}

/* Sets the epoll mask from the connection's state: read while open and not
 * held back (full inbox, or a send queue over half full: a peer that sends
 * but does not read gets TCP backpressure, not unbounded memory), or while
 * draining; write while bytes wait for room. */
static void update_events(ssock_conn *c)
{
	bool reading = (c->state == SSOCK__OPEN && !c->paused && !c->wpaused) ||
		       c->state == SSOCK__DRAINING;
	uint32_t ev = (reading ? EPOLLIN : 0) | (c->want_write ? EPOLLOUT : 0);
	int rc = ssock__io_set(loop_of(c), &c->io, ev);
	if (rc != 0) {
		report(c, rc, "epoll");
		ssock__conn_fail(c, rc);
	}
}

/* The write side is done: shut it, then read until the peer's EOF so that
 * closing with unread bytes cannot turn into a reset that destroys our last
 * bytes in flight. */
static void finish_write_side(ssock_conn *c)
{
	if (c->peer_eof) {
		ssock__conn_fail(c, c->close_reason);
		return;
	}
	tp_of(c)->shutdown_wr(c);
	c->state = SSOCK__DRAINING;
	update_events(c);
}

int ssock__conn_close(ssock_conn *c, int reason)
{
	if (c->state >= SSOCK__CLOSING)
		return SSOCK_ECLOSED;
	if (c->peer_eof && atomic_load(&c->queued) == 0) {
		/* Nothing to flush, and the peer's EOF is in: done at once. */
		ssock__conn_fail(c, reason);
		return 0;
	}
	ssock_loop *l = loop_of(c);
	ssock__conn_x *x = x_get(c, "close"); /* for the linger timer */
	if (!x)
		return 0; /* closed at once instead */
	pthread_mutex_lock(&l->mu);
	c->closing = true;
	pthread_mutex_unlock(&l->mu);
	c->close_reason = reason;
	c->state = SSOCK__CLOSING;
	x->partial_since = 0;
	x->linger_due = l->now + SSOCK__LINGER_MS;
	arm_timer(c);
	update_events(c);
	if (c->state == SSOCK__CLOSING && atomic_load(&c->queued) == 0)
		finish_write_side(c);
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

/* Whether part of a frame has been read. */
static bool mid_frame(const ssock_conn *c)
{
	return c->x && (c->x->stash_len > 0 || c->x->big);
}

/* The peer sent EOF. At a frame boundary that is a clean close; the
 * connection stays writable until the program has seen the disconnect, so
 * replies to its last messages still go out. */
static void on_eof(ssock_conn *c)
{
	c->peer_eof = true;
	if (c->state == SSOCK__DRAINING) {
		ssock__conn_fail(c, c->close_reason);
		return;
	}
	if (mid_frame(c)) {
		report(c, SSOCK_ETRUNCATED, "read");
		ssock__conn_fail(c, SSOCK_ETRUNCATED);
		return;
	}
	c->state = SSOCK__HALF;
	update_events(c);
	if (c->state != SSOCK__HALF)
		return;
	if (!emit_disconnect(c, 0, 0, true))
		half_close_done(c);
}

/* ------------------------------------------------------------ read path */

static void pause_reading(ssock_conn *c)
{
	if (c->paused)
		return;
	c->paused = true;
	c->paused_next = c->ep->paused_head;
	c->ep->paused_head = c;
	update_events(c);
}

static bool inbox_blocked(ssock_conn *c)
{
	return c->ep->inbox_mode && ssock__inbox_blocked(&c->ep->inbox);
}

/* Keeps buf[0..len) (the start of a partial frame, or frames not yet
 * delivered) in the connection's stash. buf may point into the stash. */
static bool stash(ssock_conn *c, const uint8_t *buf, size_t len)
{
	ssock__conn_x *x = x_get(c, "read");
	if (!x)
		return false;
	if (x->stash && buf >= x->stash && buf < x->stash + x->stash_cap) {
		memmove(x->stash, buf, len);
		x->stash_len = len;
		return true;
	}
	if (len > x->stash_cap) {
		uint8_t *s = realloc(x->stash, len);
		if (!s) {
			report(c, SSOCK_ENOMEM, "read");
			ssock__conn_fail(c, SSOCK_ENOMEM);
			return false;
		}
		x->stash = s;
		x->stash_cap = len;
	}
	memcpy(x->stash, buf, len);
	x->stash_len = len;
	return true;
}

static void drop_stash(ssock__conn_x *x)
{
	free(x->stash);
	x->stash = NULL;
	x->stash_len = x->stash_cap = 0;
	x->scanned = 0;
}

/* A u32 payload larger than the shared buffer: collect it in its own. */
static bool start_big(ssock_conn *c, const uint8_t *frame, size_t have, size_t total)
{
	size_t payload = total - SSOCK__U32_HEADER;
	size_t got = have - SSOCK__U32_HEADER;
	ssock__conn_x *x = x_get(c, "read");
	if (!x)
		return false;
	/* Up to BIG_EXACT_MAX the whole payload is allocated at once: a large
	 * malloc is mapped lazily, so memory still follows the bytes that
	 * arrive, and growing by copies is avoided. Beyond it, the buffer
	 * grows with what arrives, so no announced size alone commits much. */
	size_t cap = got * 2 > BIG_MIN_GROWTH ? got * 2 : BIG_MIN_GROWTH;
	if (payload <= BIG_EXACT_MAX || cap > payload)
		cap = payload;
	x->big = malloc(cap);
	if (!x->big) {
		report(c, SSOCK_ENOMEM, "read");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return false;
	}
	memcpy(x->big, frame + SSOCK__U32_HEADER, got);
	x->big_len = payload;
	x->big_have = got;
	x->big_cap = cap;
	return true;
}

/* Hands over a completed big payload; false when the inbox is full. */
static bool deliver_big(ssock_conn *c)
{
	ssock__conn_x *x = c->x;
	uint8_t *big = x->big;
	if (!deliver(c, big, x->big_len, big)) {
		x->big_ready = true;
		return false;
	}
	x->big = NULL;
	x->big_ready = false;
	x->big_len = x->big_have = x->big_cap = 0;
	x->proto.rx_accepted = false;
	return true;
}

static void tp_accepted(ssock_conn *c);
static void tp_refused(ssock_conn *c);

/* tinyproto: what the bytes at buf are (handshake, status byte, size to
 * answer, or an accepted frame); acts on control bytes itself. */
static ssize_t tp_decode(ssock_conn *c, const uint8_t *buf, size_t len, const uint8_t **msg,
			 size_t *mlen, size_t *need, bool *is_msg)
{
	ssock__tp *st = &c->x->proto;
	ssock__tp_act act;
	ssize_t n = ssock__tp_step(st, buf, len, c->ep->cfg.max_message, &act);
	if (n < 0)
		return n;
	switch (act) {
	case SSOCK__TP_NEED:
		*need = st->hello_in && !st->tx_waiting ? SSOCK__U32_HEADER : 1;
		return 0;
	case SSOCK__TP_GOT_HELLO:
		st->hello_in = true;
		return n;
	case SSOCK__TP_ACCEPTED:
		tp_accepted(c);
		return n;
	case SSOCK__TP_REFUSED:
		tp_refused(c);
		return n;
	case SSOCK__TP_ANSWER_NO:
		/* Refused, not fatal: the peer sends no payload after 0x00. */
		sq_raw(c, SSOCK__TP_REFUSE);
		report(c, SSOCK_EMSGSIZE, "frame");
		return n;
	case SSOCK__TP_ANSWER_OK:
		sq_raw(c, SSOCK__TP_ACCEPT);
		st->rx_accepted = true;
		break;
	case SSOCK__TP_FRAME:
		break;
	}
	/* The size was checked against max_message before it was accepted. */
	n = ssock__u32_decode(buf, len, UINT32_MAX, msg, mlen, need);
	if (n > 0) {
		st->rx_accepted = false;
		*is_msg = true;
	}
	return n;
}

/* Decodes one frame at buf; returns bytes consumed (*is_msg tells whether
 * they were a message or protocol bytes), 0 for "need more" (with *need set
 * when the frame's size is known), or a negative code. *scanned is line
 * framing's count of bytes at buf already known to hold no '\n'. */
static ssize_t decode(ssock_conn *c, const uint8_t *buf, size_t len, size_t *scanned,
		      const uint8_t **msg, size_t *mlen, size_t *need, bool *is_msg)
{
	const ssock__cfg *cfg = &c->ep->cfg;
	*need = 0;
	*is_msg = true;
	switch (cfg->framing) {
	case SSOCK_FRAMING_U32:
		return ssock__u32_decode(buf, len, cfg->max_message, msg, mlen, need);
	case SSOCK_FRAMING_LINE:
		return ssock__line_decode(buf, len, cfg->max_message, scanned, msg, mlen);
	case SSOCK_FRAMING_TINYPROTO:
		*is_msg = false;
		return tp_decode(c, buf, len, msg, mlen, need, is_msg);
	default:
		*msg = buf;
		*mlen = len;
		return (ssize_t)len;
	}
}

/* After a pass over input: keeps what was left (a partial frame, or frames
 * an inbox could not take) and runs the read timeout's clock, which bounds
 * how long one message may take once its first byte is in. */
static bool keep_rest(ssock_conn *c, const uint8_t *rest, size_t len, size_t scanned, bool fresh)
{
	int64_t now = loop_of(c)->now;
	if (len > 0) {
		if (!stash(c, rest, len))
			return false;
		ssock__conn_x *x = c->x;
		x->scanned = scanned;
		/* The clock restarts with each new partial frame, not with each
		 * read: a steady stream whose reads always end mid-frame is not a
		 * stalled peer. An armed timer due earlier sees the new start
		 * when it fires and re-arms. */
		if (!x->partial_since) {
			x->partial_since = now;
			arm_timer(c);
		} else if (fresh) {
			x->partial_since = now;
		}
		return true;
	}
	ssock__conn_x *x = c->x;
	if (!x)
		return true;
	if (x->stash)
		drop_stash(x); /* an idle connection holds no read buffer */
	if (x->big && !x->partial_since) {
		x->partial_since = now;
		arm_timer(c);
	} else if (!x->big && x->partial_since) {
		x->partial_since = 0;
		arm_timer(c);
	}
	return true;
}

/* Decodes and delivers every whole frame in buf[0..len) and keeps the rest.
 * Stops early when the connection closes or the inbox fills. */
static void process_frames(ssock_conn *c, uint8_t *buf, size_t len)
{
	size_t off = 0, scanned = c->x ? c->x->scanned : 0;
	bool held = false; /* stopped by a full inbox */
	while (off < len && c->state == SSOCK__OPEN) {
		const uint8_t *msg;
		size_t mlen, need;
		bool is_msg;
		if (inbox_blocked(c)) {
			held = true;
			break;
		}
		ssize_t n = decode(c, buf + off, len - off, &scanned, &msg, &mlen, &need, &is_msg);
		if (n < 0) {
			report(c, (int)n, "frame");
			ssock__conn_fail(c, (int)n);
			return;
		}
		if (n == 0) {
			if (need > loop_of(c)->rbuf_size) {
				if (!start_big(c, buf + off, len - off, need))
					return;
				off = len;
			}
			break;
		}
		scanned = 0;
		if (is_msg && !deliver(c, msg, mlen, NULL)) {
			held = true;
			break;
		}
		off += (size_t)n;
	}
	if (c->state != SSOCK__OPEN || !keep_rest(c, buf + off, len - off, scanned, off > 0))
		return;
	/* Stopped by the inbox: pause even if a taker has made room since,
	 * because its resume command (posted when it found the loop waiting)
	 * only looks at paused connections, and the stashed frames may be the
	 * last bytes this peer ever sends. */
	if (held || (off < len && inbox_blocked(c)))
		pause_reading(c);
}

/* process_frames(), then (tinyproto) start a queued message if the input
 * left nothing half-received: never while bytes of the peer's next message
 * may be waiting in buf, which would make both sides talk at once. */
static void process(ssock_conn *c, uint8_t *buf, size_t len)
{
	c->in_process = true;
	process_frames(c, buf, len);
	c->in_process = false;
	tp_kick(c);
}

/* One read into the big payload buffer (and the shared buffer after it). */
static ssize_t read_big(ssock_conn *c, size_t *want)
{
	ssock_loop *l = loop_of(c);
	ssock__conn_x *x = c->x;
	if (x->big_have == x->big_cap) {
		size_t cap = x->big_cap * 2;
		if (cap > x->big_len)
			cap = x->big_len;
		uint8_t *b = realloc(x->big, cap);
		if (!b)
			return SSOCK_ENOMEM;
		x->big = b;
		x->big_cap = cap;
	}
	struct iovec iov[2] = {
		{x->big + x->big_have, x->big_cap - x->big_have},
		{l->rbuf, l->rbuf_size},
	};
	/* Read past the payload only once it is all in view, so frames after
	 * it land in the shared buffer. */
	int niov = x->big_cap == x->big_len ? 2 : 1;
	*want = iov[0].iov_len + (niov == 2 ? iov[1].iov_len : 0);
	ssize_t n = tp_of(c)->readv(c, iov, niov);
	if (n <= 0)
		return n;
	size_t into_big = (size_t)n < iov[0].iov_len ? (size_t)n : iov[0].iov_len;
	x->big_have += into_big;
	size_t rest = (size_t)n - into_big;
	/* What came after the payload is in the buffer that was read into, not
	 * in l->rbuf, which the payload's callback may have replaced. */
	uint8_t *after = iov[1].iov_base;
	if (x->big_have == x->big_len) {
		if (!deliver_big(c)) {
			if (rest)
				stash(c, after, rest);
			pause_reading(c);
			return n;
		}
		x->partial_since = 0;
	}
	if (rest && c->state == SSOCK__OPEN)
		process(c, after, rest);
	else
		tp_kick(c);
	return n;
}

/* One read into the shared buffer, after the stashed partial frame. */
static ssize_t read_shared(ssock_conn *c, size_t *want)
{
	ssock_loop *l = loop_of(c);
	size_t have = c->x ? c->x->stash_len : 0;
	if (have > 0)
		memcpy(l->rbuf, c->x->stash, have);
	size_t room = l->rbuf_size - have;
	if (room > c->ep->cfg.read_size)
		room = c->ep->cfg.read_size;
	struct iovec iov = {l->rbuf + have, room};
	*want = room;
	ssize_t n = tp_of(c)->readv(c, &iov, 1);
	if (n <= 0)
		return n;
	if (have > 0)
		c->x->stash_len = 0;
	process(c, l->rbuf, have + (size_t)n);
	return n;
}

/* One read appended to a stash too long to copy around (a long line). */
static ssize_t read_stash(ssock_conn *c, size_t *want)
{
	ssock__conn_x *x = c->x;
	size_t room = c->ep->cfg.read_size;
	if (x->stash_cap - x->stash_len < room) {
		size_t cap = x->stash_cap * 2;
		if (cap < x->stash_len + room)
			cap = x->stash_len + room;
		uint8_t *s = realloc(x->stash, cap);
		if (!s)
			return SSOCK_ENOMEM;
		x->stash = s;
		x->stash_cap = cap;
	}
	struct iovec iov = {x->stash + x->stash_len, room};
	*want = room;
	ssize_t n = tp_of(c)->readv(c, &iov, 1);
	if (n <= 0)
		return n;
	size_t len = x->stash_len + (size_t)n;
	x->stash_len = 0;
	process(c, x->stash, len);
	return n;
}

static void drain_discard(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		struct iovec iov = {l->rbuf, l->rbuf_size};
		ssize_t n = tp_of(c)->readv(c, &iov, 1);
		if (n == 0) {
			on_eof(c);
			return;
		}
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			ssock__conn_fail(c, c->close_reason);
			return;
		}
	}
}

/* How many queued bytes stop a server from reading from c: half its send
 * queue, or (while the server's total is over half its budget) 64 KiB, so
 * the peers that take their replies slowest stop getting more made for
 * them first, and the budget's hard limit is kept for the rare case.
 *
 * A client never stops reading: its queue is filled by its own program,
 * and if it stopped reading because the server is slow to take that, while
 * the server stopped reading because the client does not take the
 * replies, neither would ever move again. One side that always reads
 * breaks the cycle. */
static size_t read_limit(const ssock_conn *c)
{
	const ssock__ep *ep = c->ep;
	if (ep->is_client)
		return SIZE_MAX;
	size_t high = ep->cfg.send_queue_max / 2;
	if (atomic_load_explicit(&ep->queued, memory_order_relaxed) > ep->send_budget / 2 &&
	    high > BUDGET_SHARE)
		high = BUDGET_SHARE;
	return high;
}

static void read_frames(ssock_conn *c)
{
	size_t high = read_limit(c);
	for (int i = 0; i < READS_PER_WAKEUP && c->state == SSOCK__OPEN && !c->paused; i++) {
		if (inbox_blocked(c)) {
			pause_reading(c);
			return;
		}
		if (atomic_load_explicit(&c->queued, memory_order_relaxed) > high) {
			c->wpaused = true;
			update_events(c);
			return;
		}
		size_t want = 0;
		ssize_t n;
		ssock__conn_x *x = c->x;
		if (x && x->big)
			n = read_big(c, &want);
		else if (x && x->stash_len > loop_of(c)->rbuf_size / 2)
			n = read_stash(c, &want);
		else
			n = read_shared(c, &want);
		if (n == 0) {
			if (c->state == SSOCK__OPEN)
				on_eof(c);
			return;
		}
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			if (c->state != SSOCK__CLOSED) {
				if (n != -ECONNRESET)
					report(c, (int)n, "read");
				ssock__conn_fail(c, (int)n);
			}
			return;
		}
		touch(c);
		if ((size_t)n < want)
			return; /* drained: level-triggered epoll says when there is more */
	}
}

static void conn_read(ssock_conn *c)
{
	if (c->state == SSOCK__DRAINING)
		drain_discard(c);
	else
		read_frames(c);
	x_trim(c);
}

void ssock__ep_resume_paused(ssock__ep *ep)
{
	ssock_conn *list = ep->paused_head;
	ep->paused_head = NULL;
	while (list) {
		ssock_conn *c = list;
		list = c->paused_next;
		c->paused = false;
		if (c->state != SSOCK__OPEN)
			continue;
		ssock__conn_x *x = c->x;
		if (x && x->partial_since) {
			x->partial_since = loop_of(c)->now; /* the wait was ours */
			arm_timer(c);
		}
		if (x && x->big_ready && !deliver_big(c)) {
			pause_reading(c);
			continue;
		}
		if (x && x->stash_len > 0) {
			size_t len = x->stash_len;
			x->stash_len = 0;
			process(c, x->stash, len);
		}
		if (c->state == SSOCK__OPEN && !c->paused)
			update_events(c);
		tp_kick(c);
		x_trim(c);
	}
}

/* ----------------------------------------------------------- write path */

/* A chunk's bytes: its own, or a payload buffer it took over (ext). */
static uint8_t *chunk_bytes(ssock__chunk *ch)
{
	return ch->ext ? ch->ext : ch->data;
}

static ssock__chunk *chunk_new(ssock_loop *l, size_t need)
{
	ssock__chunk *ch;
	if (need <= CHUNK_SIZE && l && l->free_chunks) {
		ch = l->free_chunks;
		l->free_chunks = ch->next;
		l->nfree_chunks--;
		l->chunk_takes++;
	} else {
		size_t cap = need <= CHUNK_SIZE ? CHUNK_SIZE : need;
		ch = malloc(sizeof *ch + cap);
		if (!ch)
			return NULL;
		ch->cap = cap;
	}
	ch->next = NULL;
	ch->ext = NULL;
	ch->off = ch->len = 0;
	return ch;
}

void ssock__chunk_free(ssock_loop *l, ssock__chunk *ch)
{
	if (ch->ext) {
		ssock__loop_released(l, ch->cap);
		free(ch->ext);
		free(ch);
		return;
	}
	if (ch->cap == CHUNK_SIZE && l->nfree_chunks < MAX_FREE_CHUNKS) {
		ch->next = l->free_chunks;
		l->free_chunks = ch;
		if (++l->nfree_chunks > IDLE_FREE_CHUNKS)
			ssock__loop_released(l, 0);
		return;
	}
	ssock__loop_released(l, ch->cap);
	free(ch);
}

void ssock__chunks_trim(ssock_loop *l)
{
	while (l->nfree_chunks > IDLE_FREE_CHUNKS) {
		ssock__chunk *ch = l->free_chunks;
		l->free_chunks = ch->next;
		l->nfree_chunks--;
		free(ch);
	}
}

/* 1 when a line message ends in '\r': it goes out as "...\r\r\n", so that
 * the receiver, which strips one '\r' before the '\n', gets it back whole. */
static size_t line_cr(ssock_framing f, const void *data, size_t len)
{
	return f == SSOCK_FRAMING_LINE && len > 0 && ((const uint8_t *)data)[len - 1] == '\r';
}

/* Checks a message against the framing and the queue limit; returns the
 * bytes it takes on the wire, or a negative code. */
static ssize_t framed_size(ssock_framing f, const void *data, size_t len, size_t max_queue)
{
	if (len > UINT32_MAX)
		return SSOCK_EMSGSIZE;
	if (f == SSOCK_FRAMING_LINE && ssock__line_check(data, len) != 0)
		return SSOCK_EFRAMING;
	size_t total = len + header_size(f) + line_cr(f, data, len);
	if (total > max_queue)
		return SSOCK_EMSGSIZE;
	return (ssize_t)total;
}

static void frame_into(ssock_framing f, uint8_t *dst, const void *data, size_t len)
{
	if (header_size(f) == SSOCK__U32_HEADER) {
		ssock__u32_header(dst, (uint32_t)len);
		dst += SSOCK__U32_HEADER;
	}
	if (len)
		memcpy(dst, data, len);
	if (f == SSOCK_FRAMING_LINE) {
		if (line_cr(f, data, len))
			dst[len++] = '\r';
		dst[len] = '\n';
	}
}

int ssock__frame_chunk(ssock_framing f, const void *data, size_t len, size_t max_queue,
		       ssock__chunk **out)
{
	ssize_t total = framed_size(f, data, len, max_queue);
	if (total < 0)
		return (int)total;
	ssock__chunk *ch = malloc(sizeof *ch + (size_t)total);
	if (!ch)
		return SSOCK_ENOMEM;
	ch->next = NULL;
	ch->ext = NULL;
	ch->off = 0;
	ch->len = ch->cap = (size_t)total;
	frame_into(f, ch->data, data, len);
	*out = ch;
	return 0;
}

/* Reserves room in c's send queue and in its endpoint's budget; false
 * when either would go over its limit. Any thread (under loop->mu when not
 * the loop's). The budget check is not atomic with the add: senders racing
 * on other connections may pass it together, by a message each at most. */
static bool reserve(ssock_conn *c, size_t n)
{
	ssock__ep *ep = c->ep;
	if (atomic_load_explicit(&ep->queued, memory_order_relaxed) + n > ep->send_budget)
		return false;
	size_t max = ep->cfg.send_queue_max;
	size_t q = atomic_load_explicit(&c->queued, memory_order_relaxed);
	do {
		if (q + n > max)
			return false;
	} while (!atomic_compare_exchange_weak(&c->queued, &q, q + n));
	atomic_fetch_add_explicit(&ep->queued, n, memory_order_relaxed);
	return true;
}

static void set_want_write(ssock_conn *c, bool on);

/* Adds c to the list of connections written at the end of this pass;
 * returns its entry, or NULL when EPOLLOUT will write it instead (it waits
 * for room already, or the list could not grow). */
static struct ssock__flush *flush_add(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	if (c->want_write)
		return NULL;
	if (l->nflush == l->flush_cap) {
		size_t cap = l->flush_cap ? l->flush_cap * 2 : 64;
		struct ssock__flush *f = cap <= UINT32_MAX ? realloc(l->flush, cap * sizeof *f) : NULL;
		if (!f) {
			set_want_write(c, true);
			return NULL;
		}
		l->flush = f;
		l->flush_cap = cap;
	}
	l->flush[l->nflush] = (struct ssock__flush){.conn = c};
	c->flush_idx = (uint32_t)++l->nflush;
	return &l->flush[l->nflush - 1];
}

/* c's entry in the list of connections written at the end of this pass,
 * added if need be (see flush_add()). */
static struct ssock__flush *mark_flush(ssock_conn *c)
{
	if (c->flush_idx)
		return &loop_of(c)->flush[c->flush_idx - 1];
	return flush_add(c);
}

/* Grows the shared output buffer to hold need bytes, up to OBUF_MAX. */
static bool obuf_grow(ssock_loop *l, size_t need)
{
	if (need > OBUF_MAX)
		return false;
	size_t cap = l->obuf_cap ? l->obuf_cap * 2 : OBUF_MIN;
	while (cap < need)
		cap *= 2;
	uint8_t *b = realloc(l->obuf, cap);
	if (!b)
		return false;
	l->obuf = b;
	l->obuf_cap = cap;
	return true;
}

/* Room for n bytes of c's output in the loop's shared output buffer, or
 * NULL when they go into a chunk instead: c has chunks queued (its bytes in
 * the shared buffer always come first; a connection waiting for EPOLLOUT
 * always has some), another connection has added bytes after c's, c would
 * have more than SEG_MAX bytes there, or the buffer is full. */
__attribute__((noinline)) static uint8_t *out_room_slow(ssock_conn *c, size_t n)
{
	ssock_loop *l = loop_of(c);
	if (c->sq_head)
		return NULL;
	struct ssock__flush *f = c->flush_idx ? &l->flush[c->flush_idx - 1] : NULL;
	size_t have = f ? f->len : 0;
	if ((have > 0 && f->off + have != l->obuf_len) || n > SEG_MAX - have)
		return NULL;
	if (l->obuf_len + n > l->obuf_cap && !obuf_grow(l, l->obuf_len + n))
		return NULL;
	if (!f && !(f = flush_add(c)))
		return NULL;
	if (have == 0)
		f->off = (uint32_t)l->obuf_len;
	f->len = (uint32_t)(have + n);
	uint8_t *p = l->obuf + l->obuf_len;
	l->obuf_len += n;
	return p;
}

/* As out_room_slow(), which it calls for all but the usual case of a
 * message after the first in a pass: c's bytes are last, and there is room. */
static inline uint8_t *out_room(ssock_conn *c, size_t n)
{
	ssock_loop *l = loop_of(c);
	if (c->flush_idx && !c->sq_head) {
		struct ssock__flush *f = &l->flush[c->flush_idx - 1];
		if (f->len > 0 && f->off + f->len == l->obuf_len && n <= SEG_MAX - f->len &&
		    n <= l->obuf_cap - l->obuf_len) {
			uint8_t *p = l->obuf + l->obuf_len;
			f->len += (uint32_t)n;
			l->obuf_len += n;
			return p;
		}
	}
	return out_room_slow(c, n);
}

static void sq_append(ssock_conn *c, ssock__chunk *ch)
{
	if (c->sq_tail)
		c->sq_tail->next = ch;
	else
		c->sq_head = ch;
	c->sq_tail = ch;
}

/* ------------------------------------------------------- tinyproto turns */

/* Appends one protocol byte (handshake or status answer) to the queue. */
static void sq_raw(ssock_conn *c, uint8_t byte)
{
	ssock__chunk *tail = c->sq_tail;
	if (!tail || tail->ext || tail->cap == tail->len) {
		tail = chunk_new(loop_of(c), 1);
		if (!tail) {
			report(c, SSOCK_ENOMEM, "write");
			ssock__conn_fail(c, SSOCK_ENOMEM);
			return;
		}
		sq_append(c, tail);
	}
	tail->data[tail->len++] = byte;
	ssock__queued_add(c, 1);
	mark_flush(c);
}

/* Starts the next queued message (its size header only) when it is this
 * side's turn; the payload waits for the peer's answer. */
static void tp_kick(ssock_conn *c)
{
	if (c->ep->cfg.framing != SSOCK_FRAMING_TINYPROTO || c->in_process ||
	    c->state == SSOCK__CLOSED || c->state == SSOCK__DRAINING)
		return;
	ssock__conn_x *x = c->x;
	if (!x->tq_head || x->tx_cur || !ssock__tp_may_send(&x->proto, mid_frame(c)))
		return;
	ssock__chunk *ch = x->tq_head;
	x->tq_head = ch->next;
	if (!x->tq_head)
		x->tq_tail = NULL;
	ch->next = NULL;
	x->tx_cur = ch;
	x->proto.tx_waiting = true;
	x->proto.after_refusal = false;
	/* The header bytes go out as a copy; queued already counts them. */
	ssock__queued_sub(c, SSOCK__U32_HEADER);
	for (int i = 0; i < SSOCK__U32_HEADER && c->state != SSOCK__CLOSED; i++)
		sq_raw(c, ch->data[i]);
	ch->off = SSOCK__U32_HEADER;
}

static void tp_accepted(ssock_conn *c)
{
	ssock__conn_x *x = c->x;
	ssock__chunk *ch = x->tx_cur;
	x->tx_cur = NULL;
	x->proto.tx_waiting = false;
	if (ch->off == ch->len) { /* an empty message: its size said it all */
		ssock__chunk_free(loop_of(c), ch);
		return;
	}
	sq_append(c, ch);
	mark_flush(c);
}

static void tp_refused(ssock_conn *c)
{
	ssock__conn_x *x = c->x;
	ssock__chunk *ch = x->tx_cur;
	x->tx_cur = NULL;
	x->proto.tx_waiting = false;
	x->proto.after_refusal = true;
	ssock__queued_sub(c, ch->len - ch->off);
	free(ch);
	report(c, SSOCK_EREFUSED, "send");
}

/* Queues one framed message: straight to the socket queue, or (tinyproto)
 * to wait for its turn. */
void ssock__conn_enqueue(ssock_conn *c, ssock__chunk *ch)
{
	if (c->ep->cfg.framing != SSOCK_FRAMING_TINYPROTO) {
		sq_append(c, ch);
		mark_flush(c);
		return;
	}
	ssock__conn_x *x = c->x;
	ch->next = NULL;
	if (x->tq_tail)
		x->tq_tail->next = ch;
	else
		x->tq_head = ch;
	x->tq_tail = ch;
	tp_kick(c);
}

/* Echo fast path: the payload buffer being delivered to a callback is sent
 * as is, after its header, instead of being copied. Room is reserved. */
static bool send_lent(ssock_conn *c, size_t len)
{
	ssock__chunk *ext = malloc(sizeof *ext);
	if (!ext)
		return false;
	uint8_t *h = out_room(c, SSOCK__U32_HEADER);
	if (!h) {
		ssock__chunk *tail = c->sq_tail;
		if (!tail || tail->ext || tail->cap - tail->len < SSOCK__U32_HEADER) {
			tail = chunk_new(loop_of(c), SSOCK__U32_HEADER);
			if (!tail) {
				free(ext);
				return false;
			}
			sq_append(c, tail);
		}
		h = tail->data + tail->len;
		tail->len += SSOCK__U32_HEADER;
	}
	ssock__u32_header(h, (uint32_t)len);
	*ext = (ssock__chunk){.ext = loop_of(c)->lending, .len = len, .cap = len};
	loop_of(c)->lending = NULL;
	sq_append(c, ext);
	mark_flush(c);
	return true;
}

int ssock__conn_send(ssock_conn *c, const void *data, size_t len)
{
	if (c->state >= SSOCK__CLOSING)
		return SSOCK_ECLOSED;
	ssock_framing f = c->ep->cfg.framing;
	ssize_t total = framed_size(f, data, len, c->ep->cfg.send_queue_max);
	if (total <= 0)
		return (int)total; /* an empty raw message puts nothing on the wire */
	if (!reserve(c, (size_t)total))
		return SSOCK_ESENDQFULL;
	if (f == SSOCK_FRAMING_U32 && data == loop_of(c)->lending && len > 0 && send_lent(c, len))
		return 0;
	if (f == SSOCK_FRAMING_TINYPROTO) {
		/* One chunk per message: each waits for its own answer. */
		ssock__chunk *ch;
		int rc = ssock__frame_chunk(f, data, len, SIZE_MAX, &ch);
		if (rc != 0) {
			ssock__queued_sub(c, (size_t)total);
			return rc;
		}
		ssock__conn_enqueue(c, ch);
		return 0;
	}
	uint8_t *dst = out_room(c, (size_t)total);
	if (dst) {
		frame_into(f, dst, data, len);
		return 0;
	}
	ssock__chunk *tail = c->sq_tail;
	if (!tail || tail->ext || tail->cap - tail->len < (size_t)total) {
		tail = chunk_new(loop_of(c), (size_t)total);
		if (!tail) {
			ssock__queued_sub(c, (size_t)total);
			return SSOCK_ENOMEM;
		}
		sq_append(c, tail);
	}
	frame_into(f, tail->data + tail->len, data, len);
	tail->len += (size_t)total;
	mark_flush(c);
	return 0;
}

/* c's bytes in the shared output buffer, or NULL. */
static struct ssock__flush *out_seg(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	struct ssock__flush *f = c->flush_idx ? &l->flush[c->flush_idx - 1] : NULL;
	return f && f->len > 0 ? f : NULL;
}

/* Moves what is left of c's bytes in the shared output buffer, which is
 * reused after this pass, into a chunk at the head of its queue. */
static bool out_keep(ssock_conn *c)
{
	struct ssock__flush *f = out_seg(c);
	if (!f)
		return true;
	ssock_loop *l = loop_of(c);
	ssock__chunk *ch = chunk_new(l, f->len);
	if (!ch) {
		report(c, SSOCK_ENOMEM, "write");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return false;
	}
	memcpy(ch->data, l->obuf + f->off, f->len);
	ch->len = f->len;
	f->len = 0;
	ch->next = c->sq_head;
	c->sq_head = ch;
	if (!c->sq_tail)
		c->sq_tail = ch;
	return true;
}

/* Drops written bytes from the head of the queue. */
static void consume(ssock_conn *c, size_t n)
{
	ssock_loop *l = loop_of(c);
	ssock__queued_sub(c, n);
	struct ssock__flush *f = out_seg(c);
	if (f) {
		uint32_t k = n < f->len ? (uint32_t)n : f->len;
		f->off += k;
		f->len -= k;
		n -= k;
	}
	/* Every chunk written to its end leaves the queue, also one that had
	 * nothing in it: a chunk that stayed would keep write interest on and
	 * the loop spinning. */
	while (c->sq_head) {
		ssock__chunk *ch = c->sq_head;
		size_t left = ch->len - ch->off;
		if (n < left) {
			ch->off += n;
			break;
		}
		n -= left;
		c->sq_head = ch->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		ssock__chunk_free(l, ch);
	}
	if (c->wpaused && atomic_load(&c->queued) <= read_limit(c) / 4) {
		c->wpaused = false;
		update_events(c);
	}
	if (atomic_load(&l->room_waiters) > 0) {
		pthread_mutex_lock(&l->mu);
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
	}
}

static void set_want_write(ssock_conn *c, bool on)
{
	if (c->want_write == on)
		return;
	c->want_write = on;
	update_events(c);
}

static void conn_write(ssock_conn *c)
{
	ssock_loop *l = loop_of(c);
	for (int round = 0; round < WRITES_PER_WAKEUP; round++) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		size_t want = 0;
		const struct ssock__flush *f = out_seg(c);
		if (f) {
			iov[n].iov_base = l->obuf + f->off;
			iov[n].iov_len = f->len;
			want += iov[n++].iov_len;
		}
		for (ssock__chunk *ch = c->sq_head; ch && n < MAX_IOV; ch = ch->next) {
			iov[n].iov_base = chunk_bytes(ch) + ch->off;
			iov[n].iov_len = ch->len - ch->off;
			want += iov[n++].iov_len;
		}
		if (n == 0)
			break;
		ssize_t w = tp_of(c)->writev(c, iov, n);
		if (w == -EAGAIN)
			break;
		if (w < 0) {
			if (w != -EPIPE && w != -ECONNRESET)
				report(c, (int)w, "write");
			ssock__conn_fail(c, (int)w);
			return;
		}
		touch(c);
		consume(c, (size_t)w);
		if ((size_t)w < want)
			break; /* the socket buffer is full */
	}
	if (!out_keep(c))
		return;
	set_want_write(c, c->sq_head != NULL);
	if (c->state == SSOCK__CLOSING && !c->sq_head && atomic_load(&c->queued) == 0)
		finish_write_side(c);
}

void ssock__flush_all(ssock_loop *l)
{
	/* Writing may run callbacks (a disconnect) that queue more: the list
	 * and the buffer may grow, and are read by index, to the end. */
	for (size_t i = 0; i < l->nflush; i++) {
		ssock_conn *c = l->flush[i].conn;
		if (c->state != SSOCK__CLOSED && !c->want_write)
			conn_write(c);
		c->flush_idx = 0;
	}
	l->nflush = 0;
	l->obuf_len = 0;
	free(l->rbuf_retired);
	l->rbuf_retired = NULL;
	while (l->zombies) {
		ssock_conn *c = l->zombies;
		l->zombies = c->zombie_next;
		conn_free(c);
	}
}

void ssock__take_xq(ssock_loop *l)
{
	pthread_mutex_lock(&l->mu);
	ssock_conn *c = l->xq_head;
	l->xq_head = NULL;
	while (c) {
		ssock_conn *next = c->xq_next;
		c->in_xq_list = false;
		c->xq_next = NULL;
		if (c->xq_head && c->ep->cfg.framing == SSOCK_FRAMING_TINYPROTO) {
			for (ssock__chunk *ch = c->xq_head, *nx; ch; ch = nx) {
				nx = ch->next;
				ssock__conn_enqueue(c, ch);
			}
			c->xq_head = c->xq_tail = NULL;
		} else if (c->xq_head) {
			if (c->sq_tail)
				c->sq_tail->next = c->xq_head;
			else
				c->sq_head = c->xq_head;
			c->sq_tail = c->xq_tail;
			c->xq_head = c->xq_tail = NULL;
			mark_flush(c);
		}
		c = next;
	}
	pthread_mutex_unlock(&l->mu);
}

static void conn_on_io(ssock__io *io, uint32_t revents)
{
	ssock_conn *c = (ssock_conn *)io;
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
	if (c->state == SSOCK__CLOSED)
		return;
	if (revents & EPOLLOUT)
		conn_write(c);
	else if ((revents & EPOLLERR) && c->state != SSOCK__CLOSED)
		conn_write(c); /* surfaces the socket error if reading did not */
}

/* -------------------------------------------------- cross-thread sends */

int ssock__wait_room_locked(ssock_loop *l, int timeout_ms, const struct timespec *deadline)
{
	atomic_fetch_add(&l->room_waiters, 1);
	int rc = 0;
	if (timeout_ms < 0)
		pthread_cond_wait(&l->cv, &l->mu);
	else if (pthread_cond_timedwait(&l->cv, &l->mu, deadline) != 0)
		rc = SSOCK_ETIMEDOUT;
	atomic_fetch_sub(&l->room_waiters, 1);
	return rc;
}

int ssock__xq_push_locked(ssock__ep *ep, uint64_t id, ssock__chunk *ch)
{
	ssock_loop *l = ep->loop;
	ssock_conn *c = ssock__conn_by_id(ep, id);
	if (!c)
		return SSOCK_ENOCONN;
	if (c->closing)
		return SSOCK_ECLOSED;
	if (ch->len == 0) { /* an empty raw message: nothing to send */
		free(ch);
		return 0;
	}
	if (!reserve(c, ch->len))
		return SSOCK_ESENDQFULL;
	if (c->xq_tail)
		c->xq_tail->next = ch;
	else
		c->xq_head = ch;
	c->xq_tail = ch;
	if (!c->in_xq_list) {
		c->in_xq_list = true;
		c->xq_next = l->xq_head;
		l->xq_head = c;
	}
	return 0;
}

int ssock__queue_wait(ssock_loop *l, ssock__chunk *ch, int timeout_ms,
		      int (*push_locked)(void *arg, ssock__chunk *ch), void *arg)
{
	struct timespec deadline;
	if (!ssock__may_wait(l))
		timeout_ms = 0; /* only this thread could make the room */
	if (timeout_ms > 0)
		ssock__abstime(&deadline, timeout_ms);
	pthread_mutex_lock(&l->mu);
	int rc = push_locked(arg, ch);
	while (rc == SSOCK_ESENDQFULL && timeout_ms != 0) {
		rc = ssock__wait_room_locked(l, timeout_ms, &deadline);
		if (rc == 0)
			rc = push_locked(arg, ch);
	}
	pthread_mutex_unlock(&l->mu);
	if (rc == 0)
		ssock__wake(l);
	return rc;
}

struct push_id {
	ssock__ep *ep;
	uint64_t id;
};

static int push_id_locked(void *arg, ssock__chunk *ch)
{
	struct push_id *p = arg;
	return ssock__xq_push_locked(p->ep, p->id, ch);
}

int ssock__send_id(ssock__ep *ep, uint64_t id, const void *data, size_t len, int timeout_ms)
{
	if (!data && len > 0)
		return SSOCK_EINVAL;
	if (ssock__on_loop(ep->loop)) {
		ssock_conn *c = ssock__conn_by_id(ep, id);
		if (!c)
			return SSOCK_ENOCONN;
		return ssock__conn_send(c, data, len);
	}
	ssock__chunk *ch;
	int rc = ssock__frame_chunk(ep->cfg.framing, data, len, ep->cfg.send_queue_max, &ch);
	if (rc != 0)
		return rc;
	rc = ssock__queue_wait(ep->loop, ch, timeout_ms, push_id_locked, &(struct push_id){ep, id});
	if (rc != 0)
		free(ch);
	return rc;
}

void ssock__ep_close_all(ssock__ep *ep, int reason)
{
	while (ep->conns_head)
		ssock__conn_fail(ep->conns_head, reason);
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
	if (!c || (!data && len > 0))
		return SSOCK_EINVAL;
	if (!ssock__on_loop(loop_of(c)))
		return SSOCK_EINVAL;
	if (c->state == SSOCK__CLOSED)
		return SSOCK_ECLOSED;
	return ssock__conn_send(c, data, len);
}

int ssock_conn_close(ssock_conn *c)
{
	if (!c || !ssock__on_loop(loop_of(c)))
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
