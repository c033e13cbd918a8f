/*
 * The read path: reading through the transport, frames that span reads,
 * decoding with the codec, delivering messages to callbacks or the inbox,
 * and reading backpressure.
 *
 * Idle connections hold no read buffer: every connection reads into the
 * loop's shared buffer, whole frames are handed over in place, and only the
 * tail of a partial frame is copied into the connection's own stash (in
 * c->partial, this file's). A payload too big for the shared buffer is read
 * straight into a buffer of its own, grown as its bytes arrive (never sized
 * by what the peer announces alone) and handed over without a copy.
 */
#include "conn.h"

#define READS_PER_WAKEUP 16 /* fairness: then the next connection */
#define BIG_MIN_GROWTH   (64u << 10)
#define BIG_EXACT_MAX    (64u << 20)

/* Whether input is decoded: while open, and while closing as long as a
 * protocol codec still waits for the peer's answers to our last messages
 * (tinyproto's 0xFF; nothing is delivered then). */
static bool readable_state(const ssock_conn *c)
{
	return c->state <= SSOCK__OPEN || (c->state == SSOCK__CLOSING && ssock__codec_busy(c));
}

bool ssock__conn_mid_frame(const ssock_conn *c)
{
	return c->partial && (c->partial->stash_len > 0 || c->partial->big);
}

int64_t ssock__read_clock(const ssock_conn *c)
{
	if (c->ep->cfg.read_timeout_ms <= 0 || !c->partial || c->paused)
		return 0; /* a wait for room in the inbox is this side's, not the peer's */
	return c->partial->since;
}

/* ------------------------------------------------------------ delivery */

/* deliver() to the inbox: an event that owns the payload (`owned`, or a
 * copy). Out of line, so the callback path keeps few registers. */
__attribute__((noinline)) static bool deliver_to_inbox(ssock_conn *c, const uint8_t *msg,
						       size_t len, uint8_t *owned)
{
	ssock_event ev = {.type = SSOCK_EVENT_MESSAGE, .conn = c->id, .peer = c->peer, .len = len};
	if (owned) {
		ev.data = owned;
	} else if (len > 0) {
		ev.data = malloc(len);
		if (!ev.data) {
			ssock__conn_report(c, SSOCK_ENOMEM, "read");
			ssock__conn_fail(c, SSOCK_ENOMEM);
			return true;
		}
		memcpy(ev.data, msg, len);
	}
	if (ssock__inbox_push(&c->ep->base.inbox, &ev, false))
		return true;
	if (!owned)
		free(ev.data);
	return false;
}

/* Hands one message to the program. `owned` is a malloc'd buffer holding
 * exactly the message (given away on success), or NULL to copy from msg.
 * Returns false when the inbox is full: nothing was taken. */
static bool deliver(ssock_conn *c, const uint8_t *msg, size_t len, uint8_t *owned)
{
	ssock__stream_ep *ep = c->ep;
	if (!ep->cfg.on_message)
		return deliver_to_inbox(c, msg, len, owned);
	/* A callback that sends this very buffer (an echo) hands it over
	 * instead of a copy: see ssock__conn_send(). */
	ssock_loop *l = ssock__loop_of(c);
	uint8_t *outer = l->lending;
	l->lending = owned;
	ep->cfg.on_message(c, msg, len, ep->base.user);
	if (l->lending) /* not taken: a large payload (see deliver_big()) */
		ssock__big_free(l->lending, l->lent_len);
	l->lending = outer;
	return true;
}

/* Whether the program holds reading back: a full inbox, or its own pause
 * of this connection (ssock_server_pause_reading()), which the same path
 * keeps: frames read stay stashed, the connection waits on the paused list.
 * Never for a closing connection, which delivers nothing (it reads only a
 * codec's answers). */
static bool inbox_blocked(ssock_conn *c)
{
	return c->state <= SSOCK__OPEN &&
	       (c->held || (c->ep->base.inbox_mode && ssock__inbox_blocked(&c->ep->base.inbox)));
}

static void pause_reading(ssock_conn *c)
{
	/* A connection failed on the way here (out of memory while stashing)
	 * is on the list of those freed after the pass: the link is shared. */
	if (c->paused || c->state == SSOCK__CLOSED)
		return;
	ssock__pending_remove(c); /* the pending list shares the link */
	c->paused = true;
	c->paused_next = c->ep->paused_head;
	c->ep->paused_head = c;
	ssock__conn_interest(c);
}

/* ---------------------------------------------------- frames that span */

static ssock__partial *partial_get(ssock_conn *c)
{
	if (c->partial)
		return c->partial;
	ssock__partial *p = malloc(sizeof *p);
	if (!p) {
		ssock__conn_report(c, SSOCK_ENOMEM, "read");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return NULL;
	}
	*p = (ssock__partial){0};
	c->partial = p;
	return p;
}

void ssock__partial_free(ssock_conn *c)
{
	ssock__partial *p = c->partial;
	if (!p)
		return;
	ssock__loop_released(ssock__loop_of(c), p->stash_cap + p->big_cap);
	free(p->stash);
	ssock__big_free(p->big, p->big_cap);
	free(p);
	c->partial = NULL;
}

/* Keeps buf[0..len) (the start of a partial frame, or frames not yet
 * delivered) in the stash. buf may point into the stash. */
static bool stash(ssock_conn *c, const uint8_t *buf, size_t len)
{
	ssock__partial *p = partial_get(c);
	if (!p)
		return false;
	if (p->stash && buf >= p->stash && buf < p->stash + p->stash_cap) {
		memmove(p->stash, buf, len);
		p->stash_len = len;
		return true;
	}
	if (len > p->stash_cap) {
		uint8_t *s = realloc(p->stash, len);
		if (!s) {
			ssock__conn_report(c, SSOCK_ENOMEM, "read");
			ssock__conn_fail(c, SSOCK_ENOMEM);
			return false;
		}
		p->stash = s;
		p->stash_cap = len;
	}
	memcpy(p->stash, buf, len);
	p->stash_len = len;
	return true;
}

/* A payload larger than the shared buffer: collect it in its own. */
static bool start_big(ssock_conn *c, const uint8_t *frame, size_t have, const ssock__frame *f)
{
	size_t payload = f->need - f->header;
	size_t got = have - f->header;
	ssock__partial *p = partial_get(c);
	if (!p)
		return false;
	/* Up to BIG_EXACT_MAX the whole payload is allocated at once: a large
	 * malloc is mapped lazily, so memory still follows the bytes that
	 * arrive, and growing by copies is avoided. Beyond it, the buffer
	 * grows with what arrives, so no announced size alone commits much. */
	size_t cap = got * 2 > BIG_MIN_GROWTH ? got * 2 : BIG_MIN_GROWTH;
	if (payload <= BIG_EXACT_MAX || cap > payload)
		cap = payload;
	/* Whole, it may be a block kept from an earlier one (memory.c). */
	p->big = cap == payload ? ssock__big_alloc(cap) : malloc(cap);
	ssock__loop_released(ssock__loop_of(c), 0); /* keeps them, while busy */
	if (!p->big) {
		ssock__conn_report(c, SSOCK_ENOMEM, "read");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return false;
	}
	memcpy(p->big, frame + f->header, got);
	p->big_len = payload;
	p->big_have = got;
	p->big_cap = cap;
	return true;
}

/* Hands over a completed big payload; false when the inbox is full. */
static bool deliver_big(ssock_conn *c)
{
	ssock__partial *p = c->partial;
	uint8_t *big = p->big;
	if (c->state > SSOCK__OPEN) {
		ssock__big_free(big, p->big_cap); /* closing: nothing is delivered any more */
	} else {
		/* Its callback may send any part of it: see ssock__shown_to_callbacks(). */
		ssock_loop *l = ssock__loop_of(c);
		const uint8_t *outer = l->lent;
		size_t outer_len = l->lent_len;
		l->lent = big;
		l->lent_len = p->big_len;
		bool taken = deliver(c, big, p->big_len, big);
		l->lent = outer;
		l->lent_len = outer_len;
		if (!taken) {
			p->big_ready = true;
			return false;
		}
	}
	p->big = NULL;
	p->big_ready = false;
	p->big_len = p->big_have = p->big_cap = 0;
	if (c->ep->codec->frame_done)
		c->ep->codec->frame_done(c);
	return true;
}

/* After a pass over input: keeps what was left (a partial frame, or frames
 * an inbox could not take) and runs the read timeout's clock, which bounds
 * how long one message may take once its first byte is in. */
static bool keep_rest(ssock_conn *c, const uint8_t *rest, size_t len, size_t scanned, bool fresh)
{
	int64_t now = ssock__loop_of(c)->now;
	if (len > 0) {
		if (!stash(c, rest, len))
			return false;
		ssock__partial *p = c->partial;
		p->scanned = scanned;
		/* The clock restarts with each new partial frame, not with each
		 * read: a steady stream whose reads always end mid-frame is not a
		 * stalled peer. An armed timer due earlier sees the new start
		 * when it fires and re-arms. */
		if (!p->since) {
			p->since = now;
			ssock__conn_arm_timer(c);
		} else if (fresh) {
			p->since = now;
		}
		return c->state != SSOCK__CLOSED;
	}
	ssock__partial *p = c->partial;
	if (!p)
		return true;
	if (!p->big) {
		/* No part of a frame is held: an idle connection holds no buffer. */
		bool timed = p->since != 0;
		ssock__partial_free(c);
		if (timed)
			ssock__conn_arm_timer(c);
	} else if (!p->since) {
		p->since = now;
		ssock__conn_arm_timer(c);
	}
	return c->state != SSOCK__CLOSED;
}

/* Decodes and delivers every whole frame in buf[0..len) and keeps the rest.
 * Stops early when the connection closes or the inbox fills. */
static void process_frames(ssock_conn *c, uint8_t *buf, size_t len)
{
	const ssock__codec *codec = c->ep->codec;
	size_t off = 0;
	ssock__frame f;
	f.scanned = c->partial ? c->partial->scanned : 0;
	bool held = false; /* stopped by a full inbox */
	while (off < len && readable_state(c)) {
		if (inbox_blocked(c)) {
			held = true;
			break;
		}
		f.need = 0;
		ssize_t n = codec->decode(c, buf + off, len - off, &f);
		if (n < 0) {
			if (c->state != SSOCK__CLOSED) {
				ssock__conn_report(c, (int)n, "frame");
				ssock__conn_fail(c, (int)n);
			}
			return;
		}
		if (n == 0) {
			if (f.need > ssock__loop_of(c)->rbuf_size) {
				if (!start_big(c, buf + off, len - off, &f))
					return;
				off = len;
			}
			break;
		}
		f.scanned = 0;
		if (f.is_msg && c->state <= SSOCK__OPEN && !deliver(c, f.msg, f.len, NULL)) {
			held = true;
			break;
		}
		off += (size_t)n;
	}
	if (!readable_state(c) || !keep_rest(c, buf + off, len - off, f.scanned, off > 0))
		return;
	/* Stopped by the inbox: pause even if a taker has made room since,
	 * because its resume command (posted when it found the loop waiting)
	 * only looks at paused connections, and the stashed frames may be the
	 * last bytes this peer ever sends. */
	if (held || (off < len && inbox_blocked(c)))
		pause_reading(c);
}

/* process_frames(), then tell a protocol codec the pass is over (it may
 * start a message now that nothing is half decoded). */
static void process(ssock_conn *c, uint8_t *buf, size_t len)
{
	c->decoding = true;
	process_frames(c, buf, len);
	c->decoding = false;
	if (c->ep->codec->input_done)
		c->ep->codec->input_done(c);
}

/* process() of the frames in c's stash, len bytes: callbacks are shown
 * messages in it (see ssock_loop.showing). */
static void process_stash(ssock_conn *c, size_t len)
{
	ssock_loop *l = ssock__loop_of(c);
	ssock__partial *p = c->partial;
	const uint8_t *outer = l->showing;
	size_t outer_len = l->showing_len;
	p->stash_len = 0;
	l->showing = p->stash;
	l->showing_len = len;
	process(c, p->stash, len);
	l->showing = outer;
	l->showing_len = outer_len;
}

/* ---------------------------------------------------------------- reads */

/* One read into the big payload buffer (and the shared buffer after it). */
static ssize_t read_big(ssock_conn *c, size_t *want)
{
	ssock_loop *l = ssock__loop_of(c);
	ssock__partial *p = c->partial;
	if (p->big_have == p->big_cap) {
		size_t cap = p->big_cap * 2;
		if (cap > p->big_len)
			cap = p->big_len;
		uint8_t *b = realloc(p->big, cap);
		if (!b)
			return SSOCK_ENOMEM;
		p->big = b;
		p->big_cap = cap;
	}
	struct iovec iov[2] = {
		{p->big + p->big_have, p->big_cap - p->big_have},
		{l->rbuf, l->rbuf_size},
	};
	/* Read past the payload only once it is all in view, so frames after
	 * it land in the shared buffer. */
	int niov = p->big_cap == p->big_len ? 2 : 1;
	*want = iov[0].iov_len + (niov == 2 ? iov[1].iov_len : 0);
	ssize_t n = c->ep->transport->read(c, iov, niov);
	if (n <= 0)
		return n;
	size_t into_big = (size_t)n < iov[0].iov_len ? (size_t)n : iov[0].iov_len;
	p->big_have += into_big;
	size_t rest = (size_t)n - into_big;
	/* What came after the payload is in the buffer that was read into, not
	 * in l->rbuf, which the payload's callback may have replaced. */
	uint8_t *after = iov[1].iov_base;
	if (p->big_have < p->big_len)
		return n;
	if (!deliver_big(c)) {
		if (!rest || stash(c, after, rest))
			pause_reading(c);
		return n;
	}
	p->since = 0; /* a frame after it starts its own clock */
	if (!readable_state(c))
		return n;
	if (rest)
		process(c, after, rest);
	else if (keep_rest(c, NULL, 0, 0, false) && c->ep->codec->input_done)
		c->ep->codec->input_done(c);
	return n;
}

/* One read into the shared buffer, after the stashed partial frame. */
static ssize_t read_shared(ssock_conn *c, size_t *want)
{
	ssock_loop *l = ssock__loop_of(c);
	uint8_t *buf = l->rbuf;
	size_t have = c->partial ? c->partial->stash_len : 0;
	if (have > 0)
		memcpy(buf, c->partial->stash, have);
	size_t room = l->rbuf_size - have;
	if (room > c->ep->cfg.read_size)
		room = c->ep->cfg.read_size;
	struct iovec iov = {buf + have, room};
	*want = room;
	ssize_t n = c->ep->transport->read(c, &iov, 1);
	if (n <= 0)
		return n;
	if (have > 0)
		c->partial->stash_len = 0;
	process(c, buf, have + (size_t)n);
	return n;
}

/* One read appended to a stash too long to copy around (a long line). */
static ssize_t read_stash(ssock_conn *c, size_t *want)
{
	ssock__partial *p = c->partial;
	size_t room = c->ep->cfg.read_size;
	if (p->stash_cap - p->stash_len < room) {
		size_t cap = p->stash_cap * 2;
		if (cap < p->stash_len + room)
			cap = p->stash_len + room;
		uint8_t *s = realloc(p->stash, cap);
		if (!s)
			return SSOCK_ENOMEM;
		p->stash = s;
		p->stash_cap = cap;
	}
	struct iovec iov = {p->stash + p->stash_len, room};
	*want = room;
	ssize_t n = c->ep->transport->read(c, &iov, 1);
	if (n <= 0)
		return n;
	process_stash(c, p->stash_len + (size_t)n);
	return n;
}

/* Closing: reads and drops what the peer still sends, until its EOF. */
static void drain_discard(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		struct iovec iov = {l->rbuf, l->rbuf_size};
		ssize_t n = c->ep->transport->read(c, &iov, 1);
		if (n == 0) {
			ssock__conn_eof(c);
			return;
		}
		if (n == SSOCK__WANT_READ)
			return;
		if (n == SSOCK__WANT_WRITE) {
			c->read_wants_write = true;
			ssock__conn_interest(c);
			return;
		}
		if (n < 0) {
			ssock__conn_fail(c, c->extra ? c->extra->close_reason : (int)n);
			return;
		}
	}
}

void ssock__keep_pending(ssock_conn *c)
{
	const ssock__transport *t = c->ep->transport;
	if (c->in_pending || c->paused || !t->pending || !t->pending(c))
		return;
	ssock_loop *l = ssock__loop_of(c);
	c->in_pending = true;
	c->pending_next = l->pending;
	l->pending = c;
}

static void read_frames(ssock_conn *c)
{
	size_t high = ssock__read_limit(c);
	const ssock__transport *t = c->ep->transport;
	for (int i = 0; i < READS_PER_WAKEUP && readable_state(c) && !c->paused; i++) {
		if (inbox_blocked(c)) {
			pause_reading(c);
			return;
		}
		if (atomic_load_explicit(&c->queued, memory_order_relaxed) > high) {
			c->wpaused = true;
			ssock__conn_interest(c);
			return;
		}
		size_t want = 0;
		ssize_t n;
		ssock__partial *p = c->partial;
		if (p && p->big)
			n = read_big(c, &want);
		else if (p && p->stash_len > ssock__loop_of(c)->rbuf_size / 2)
			n = read_stash(c, &want);
		else
			n = read_shared(c, &want);
		if (n == 0) {
			if (c->state == SSOCK__CLOSING) /* gone before our last messages */
				ssock__conn_fail(c, c->extra ? c->extra->close_reason : 0);
			else if (readable_state(c))
				ssock__conn_eof(c);
			return;
		}
		if (n == SSOCK__WANT_READ)
			return;
		if (n == SSOCK__WANT_WRITE) {
			c->read_wants_write = true;
			ssock__conn_interest(c);
			return;
		}
		if (n < 0) {
			if (c->state != SSOCK__CLOSED) {
				if (n != -ECONNRESET)
					ssock__conn_report(c, (int)n, "read");
				ssock__conn_fail(c, (int)n);
			}
			return;
		}
		ssock__conn_touch(c);
		/* Drained: readiness says when there is more, unless the
		 * transport holds some. */
		if ((size_t)n < want && !(t->pending && t->pending(c)))
			return;
	}
	if (readable_state(c))
		ssock__keep_pending(c); /* cut short for fairness */
}

void ssock__conn_read(ssock_conn *c)
{
	if (c->state == SSOCK__DRAINING) {
		drain_discard(c);
	} else {
		read_frames(c);
		/* Closing, a codec stops needing input once its last message has
		 * its answer. */
		if (c->state == SSOCK__CLOSING)
			ssock__conn_interest(c);
	}
	ssock__conn_trim(c);
}

void ssock__serve_pending(ssock_loop *l)
{
	/* Served one at a time off l->serving, so a callback that closes or
	 * pauses one still waiting takes it off that list (see
	 * ssock__pending_remove()); those that become pending again wait for
	 * the next pass. */
	l->serving = l->pending;
	l->pending = NULL;
	while (l->serving) {
		ssock_conn *c = l->serving;
		l->serving = c->pending_next;
		c->in_pending = false;
		if (readable_state(c) && !c->paused)
			ssock__conn_read(c);
	}
}

void ssock__pending_remove(ssock_conn *c)
{
	if (!c->in_pending)
		return;
	ssock_loop *l = ssock__loop_of(c);
	for (ssock_conn **list = &l->pending; list;
	     list = list == &l->pending ? &l->serving : NULL) {
		for (ssock_conn **p = list; *p; p = &(*p)->pending_next) {
			if (*p == c) {
				*p = c->pending_next;
				c->in_pending = false;
				return;
			}
		}
	}
}

/* Reading again on c, taken off the paused list: a finished big payload,
 * the stashed frames (which may pause it again), then the socket. */
static void resume_one(ssock_conn *c)
{
	if (!readable_state(c))
		return;
	ssock__partial *p = c->partial;
	if (p && p->since) {
		p->since = ssock__loop_of(c)->now; /* the wait was ours */
		ssock__conn_arm_timer(c);
	}
	if (p && p->big_ready && !deliver_big(c)) {
		pause_reading(c);
		return;
	}
	if (c->partial && c->partial->stash_len > 0) {
		process_stash(c, c->partial->stash_len);
	} else if (c->ep->codec->input_done) {
		c->ep->codec->input_done(c);
	}
	if (readable_state(c) && !c->paused) {
		ssock__conn_interest(c);
		ssock__keep_pending(c);
	}
	ssock__conn_trim(c);
}

/* The program's resume of one connection, run as a command of its own: in
 * a callback it would deliver (and run callbacks) inside another's. */
static void resume_cmd(ssock__cmd *cmd)
{
	ssock_conn *c = ssock__conn_by_id(cmd->arg, cmd->id);
	if (!c || c->held || !c->paused || inbox_blocked(c))
		return; /* gone, paused again, or the inbox's drain resumes it */
	ssock__conn_unpause(c);
	resume_one(c);
}

int ssock__conn_hold(ssock__stream_ep *ep, uint64_t id, bool hold)
{
	ssock_conn *c = ssock__conn_by_id(ep, id);
	if (!c)
		return SSOCK_ENOCONN;
	if (c->held == hold)
		return 0;
	/* Pausing takes effect at the next frame or read (inbox_blocked()).
	 * A connection that paused (it is on the paused list) resumes in a
	 * command of its own, when the loop next runs its commands; one that
	 * never got to pause reads on. */
	if (!hold && c->paused && !ssock__post_fn(ssock__loop_of(c), resume_cmd, ep, id))
		return SSOCK_ENOMEM;
	c->held = hold;
	return 0;
}

void ssock__ep_resume_paused(ssock__stream_ep *ep)
{
	/* One at a time off ep->resuming, as ssock__serve_pending() does. */
	ep->resuming = ep->paused_head;
	ep->paused_head = NULL;
	while (ep->resuming) {
		ssock_conn *c = ep->resuming;
		ep->resuming = c->paused_next;
		c->paused = false;
		resume_one(c);
	}
}
