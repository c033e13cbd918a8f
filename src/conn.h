/*
 * Connections. A connection's code is split by concern, each part the one
 * owner of its own state and buffers:
 *
 *   conn.c        its life: opening, the handshake, events, graceful close
 *                 and drain, timeouts, the ssock_conn_* API;
 *   conn_read.c   the read path: reading through the transport, frames
 *                 that span reads (c->partial, its buffers), decoding with
 *                 the codec, delivering to callbacks or the inbox, and
 *                 backpressure (a full inbox, a peer whose replies pile up);
 *   conn_write.c  the send path: the send queue (chunks, owned by the queue
 *                 they are in), the loop's shared output buffer, writing
 *                 through the transport, sends posted by other threads.
 *
 * Buffers and their owners: the loop's read buffer is the loop's, lent to
 * one read at a time and never freed during a pass; c->partial's stash and
 * payload buffers are the read path's; a delivered payload is the read
 * path's until a callback's send takes it into a chunk (loop->lending); a
 * chunk belongs to the queue it is in, and those of a closed connection are
 * freed with it after the pass, so nothing a callback holds goes away
 * under it.
 */
#ifndef SSOCK_CONN_H
#define SSOCK_CONN_H

#include "codec.h"
#include "internal.h"
#include "transport.h"

#include <stdlib.h>
#include <string.h>

#define SSOCK__BUDGET_SHARE (64u << 10) /* see ssock__read_limit() */

struct ssock__chunk {
	ssock__chunk *next;
	/* Usually NULL. Else a payload the chunk refers to instead of holding
	 * it, written after data[0..hlen) (the message's header): a buffer
	 * taken over by the echo fast path (release NULL: freed with the
	 * chunk), or the program's (ssock_server_send_ref(): release(payload,
	 * release_arg) when the chunk goes). */
	uint8_t *payload;
	ssock_release_fn release;
	void *release_arg;
	size_t off, len, cap; /* bytes[off..len) is still to be written */
	size_t hlen;
	uint8_t data[];
};

enum ssock__conn_state {
	SSOCK__HANDSHAKE, /* the transport's handshake: not yet connected,
	                     no event yet */
	SSOCK__OPEN,      /* reading and writing */
	SSOCK__HALF,      /* peer sent EOF: still writable until its disconnect
	                     event has been delivered */
	SSOCK__CLOSING,   /* flushing what is queued, then shutdown + drain */
	SSOCK__DRAINING,  /* write side shut: reading until EOF to avoid RST */
	SSOCK__CLOSED,
};

/* The read side's frame that spans reads (conn_read.c's), allocated when
 * one begins and freed when no part of one is held. */
typedef struct ssock__partial {
	uint8_t *stash; /* bytes of frames not yet decoded or delivered */
	size_t stash_len, stash_cap;
	size_t scanned; /* the codec's resume hint over the stash */
	uint8_t *big;   /* a payload too big for the shared read buffer */
	size_t big_len, big_have, big_cap;
	bool big_ready; /* complete but not yet delivered (inbox full) */
	int64_t since;  /* when the current partial frame began */
} ssock__partial;

/* What only some connections carry (conn.c's): a timer for timeouts, and a
 * codec's or a transport's own state. Allocated on first need, freed when
 * nothing in it is in use, so an idle plain connection carries none. */
typedef struct ssock__conn_extra {
	ssock_conn *conn;
	ssock__timer timer;    /* the earliest of the deadlines below */
	int64_t last_io;       /* idle timeout */
	int64_t deadline;      /* the handshake's, or a graceful close's */
	int close_reason;      /* what a graceful close reports at its end */
	void *codec_state;     /* the codec's (tinyproto's turns) */
	void *transport_state; /* the transport's (a TLS session) */
} ssock__conn_extra;

/* A connection. Kept small: an idle server holds one per peer. Loop-only
 * flags share a bitfield; the flags other threads read under loop->mu are
 * separate bytes, so they never share a memory location with what the
 * loop changes without the lock. */
struct ssock_conn {
	ssock__io io; /* first: the io pointer is the conn */
	uint64_t id;
	ssock__stream_ep *ep;
	ssock_addr peer;
	void *user;
	ssock_conn *prev, *next; /* ep's list, changed under loop->mu */

	/* Send side. */
	atomic_size_t queued;              /* bytes in out, posted and the codec's */
	ssock__chunk *out_head, *out_tail; /* the send queue: loop only */
	ssock__chunk *posted;              /* sent from other threads, newest
	                                     first: under loop->mu */
	ssock_conn *posted_next;           /* in loop->posted, under loop->mu */
	union {                            /* in at most one of these lists at a time */
		ssock_conn *paused_next;   /* ep->paused_head: inbox full */
		ssock_conn *pending_next;  /* loop->pending: transport holds bytes */
		ssock_conn *zombie_next;   /* loop->zombies: closed */
	};

	ssock__partial *partial;  /* NULL when no frame spans reads */
	ssock__conn_extra *extra; /* NULL when nothing in it is needed */
	uint32_t flush_idx;       /* 1 + its index in loop->flush; 0: none */
	uint8_t state;            /* enum ssock__conn_state */
	bool disc_emitted : 1;
	bool in_handshake : 1; /* the transport's handshake is running */
	bool codec_hello : 1;  /* the codec's handshake is not done yet */
	bool paused : 1, wpaused : 1, want_write : 1, peer_eof : 1;
	bool decoding : 1; /* decoding input (callbacks may run) */
	bool read_wants_write : 1, write_wants_read : 1, in_pending : 1;
	bool held : 1;    /* the program paused its reading (pause_reading) */
	bool connected;   /* set under loop->mu: the handshake is done
	                              (its connect event comes right after) */
	bool closing;     /* under loop->mu: sends are refused */
	bool in_posted;   /* under loop->mu */
	atomic_bool gone; /* set under loop->mu: the program has seen
	                              its disconnect, so its id names nothing */
};

static inline ssock_loop *ssock__loop_of(const ssock_conn *c)
{
	return c->ep->base.loop;
}

/* Whether c's protocol codec still holds messages waiting for the peer. */
static inline bool ssock__codec_busy(const ssock_conn *c)
{
	return c->ep->codec->busy && c->ep->codec->busy(c);
}

/* Notes activity for the idle timeout. */
static inline void ssock__conn_touch(ssock_conn *c)
{
	if (c->extra)
		c->extra->last_io = ssock__loop_of(c)->now;
}

/* --------------------------------------------------------------- conn.c */

/* Allocates a connection for a connected socket fd and registers it, then
 * starts its handshakes (or, with none, emits its connect event). Returns
 * it (maybe closed already, by a callback: valid to the end of the pass),
 * or NULL when it failed before it was connected (fd closed, error
 * reported). Loop only. */
ssock_conn *ssock__conn_open(ssock__stream_ep *ep, int fd, const ssock_addr *peer);
/* The transport's handshake is done: the connection counts as connected
 * (the owner's hook, then the connect event). Loop only. */
void ssock__conn_established(ssock_conn *c);
/* The codec's handshake is done (its deadline no longer runs). */
void ssock__conn_codec_ready(ssock_conn *c);
/* Ends a connection now: socket closed, queue discarded, disconnect event
 * (if its connect came). Loop only. */
void ssock__conn_fail(ssock_conn *c, int reason);
/* Frees a closed connection, at the end of the pass that closed it. */
void ssock__conn_free(ssock_conn *c);
/* Starts a graceful close (flush, shutdown, drain). Loop only. */
int ssock__conn_close(ssock_conn *c, int reason);
/* The peer's end of stream arrived at a frame boundary (conn_read.c). */
void ssock__conn_eof(ssock_conn *c);
/* The write side is done: shut it, then drain (conn_write.c). */
void ssock__conn_write_done(ssock_conn *c);
/* Reports an error of this connection (log, on_error or inbox). */
void ssock__conn_report(ssock_conn *c, int code, const char *op);
/* c's extra part, allocated if need be; NULL (c failed, error reported)
 * when memory ran out. */
ssock__conn_extra *ssock__conn_extra_get(ssock_conn *c, const char *op);
/* Frees c's extra part if nothing in it is in use. Only where nothing up the
 * stack holds c->extra. */
void ssock__conn_trim(ssock_conn *c);
/* Arms c's timer for the earliest of its deadlines, or stops it. */
void ssock__conn_arm_timer(ssock_conn *c);
/* Tells the loop what c waits for, from its state. */
void ssock__conn_interest(ssock_conn *c);
/* The connection of ep that id names for the program: NULL when there is
 * none, it is another endpoint's, it is not connected yet, or its
 * disconnect has been seen. Loop thread, or loop->mu held. */
ssock_conn *ssock__conn_by_id(ssock__stream_ep *ep, uint64_t id);
/* Handles the acknowledgement of a half-closed connection's disconnect. */
void ssock__conn_ack(ssock_loop *loop, uint64_t id);
/* Closes every connection of ep at once (server/client close). Loop only. */
void ssock__ep_close_all(ssock__stream_ep *ep, int reason);

/* ---------------------------------------------------------- conn_read.c */

/* Reads what the socket (or the transport) has, decodes and delivers it. */
void ssock__conn_read(ssock_conn *c);
/* Whether part of a frame has been read. */
bool ssock__conn_mid_frame(const ssock_conn *c);
/* How many queued bytes stop a server from reading from c: half its send
 * queue, or (while the server's total is over half its budget) 64 KiB, so
 * the peers that take their replies slowest stop getting more made for
 * them first, and the budget's hard limit is kept for the rare case.
 *
 * A client never stops reading: its queue is filled by its own program,
 * and if it stopped reading because the server is slow to take that, while
 * the server stopped reading because the client does not take the
 * replies, neither would ever move again. One side that always reads
 * breaks the cycle. Nor does a protocol codec's connection (tinyproto):
 * its messages wait for the peer's answer, which only reading brings; its
 * queue stays bounded by send_queue_max and the budget's hard limit. */
static inline size_t ssock__read_limit(const ssock_conn *c)
{
	const ssock__stream_ep *ep = c->ep;
	size_t high = ep->cfg.send_queue_max / 2;
	if (ep->is_client || ep->codec->send)
		return SIZE_MAX;
	if (atomic_load_explicit(&ep->queued, memory_order_relaxed) > ep->send_budget / 2 &&
	    high > SSOCK__BUDGET_SHARE)
		high = SSOCK__BUDGET_SHARE;
	return high;
}
/* Takes c off the paused lists (a full inbox, the program's pause). */
void ssock__conn_unpause(ssock_conn *c);
/* The program pauses (hold) or resumes reading connection id of ep.
 * Returns 0, SSOCK_ENOCONN or SSOCK_ENOMEM. Loop only. */
int ssock__conn_hold(ssock__stream_ep *ep, uint64_t id, bool hold);
/* Resumes reading on connections paused by a full inbox. Loop only. */
void ssock__ep_resume_paused(ssock__stream_ep *ep);
/* When c's transport holds bytes the socket will not announce again, puts
 * c on the loop's list to read them in a later pass. Wherever reading stops
 * with bytes maybe held (fairness) or starts again (after a pause, after
 * the handshake), this is how they are not forgotten. */
void ssock__keep_pending(ssock_conn *c);
/* Takes c off the loop's lists of connections whose transport holds
 * bytes (it is closing, or paused). */
void ssock__pending_remove(ssock_conn *c);
/* Frees the read side's buffers of a closed connection. */
void ssock__partial_free(ssock_conn *c);
/* The read timeout's start, while a frame is half in: 0 when none. */
int64_t ssock__read_clock(const ssock_conn *c);

/* --------------------------------------------------------- conn_write.c */

/* Queues one message; loop only. */
int ssock__conn_send(ssock_conn *c, const void *data, size_t len);
/* Queues one message by reference (see ssock_server_send_ref()); loop
 * only. */
int ssock__conn_send_ref(ssock_conn *c, const void *data, size_t len, ssock_release_fn release,
			 void *arg);
/* Queues protocol bytes (a handshake, a status answer) after what is
 * queued, outside the send queue's limit. Returns 0 or SSOCK_ENOMEM (then
 * c is failed). */
int ssock__out_bytes(ssock_conn *c, const uint8_t *bytes, size_t n);
/* Appends a framed message whose room is reserved to the send queue. */
void ssock__out_chunk(ssock_conn *c, ssock__chunk *ch);
/* Writes what c has queued, as far as the transport takes it. */
void ssock__conn_write(ssock_conn *c);
/* Frames data into a freshly allocated chunk (for sends from other
 * threads): a copy, or with release given and a message worth it
 * (ssock__ref_worth()), a reference to data (ssock__ref_chunk()). *out is
 * NULL when the message has no bytes on the wire. */
int ssock__frame_chunk(const ssock__stream_ep *ep, const void *data, size_t len,
		       ssock_release_fn release, void *arg, ssock__chunk **out);
/* Whether ch's bytes can go at the end of into (the newest chunk of a queue
 * not yet on the loop: posted or offline): into is a plain chunk with room
 * for them and ep's codec lets messages share a chunk. */
bool ssock__chunk_fits(const ssock__stream_ep *ep, const ssock__chunk *into,
		       const ssock__chunk *ch);
/* Copies ch's bytes to the end of into when they fit, and frees ch unless
 * it is `borrowed` (the caller's, on its stack). Returns whether it did. */
bool ssock__chunk_merge(const ssock__stream_ep *ep, ssock__chunk *into, ssock__chunk *ch,
			bool borrowed);
/* What a push of a borrowed chunk returns when it could not be copied into
 * the newest chunk of its queue (nothing was done): the caller makes it a
 * chunk of its own and pushes that. Not an error code (those are < 0). */
#define SSOCK__UNMERGED 1
/* A chunk of its own for a message whose payload is queued as it is (the
 * codec refs payloads): the header, and a reference to payload[0..len),
 * given back with release(payload, arg) when the chunk goes (release NULL:
 * free(payload)). NULL when memory ran out (nothing was taken). */
ssock__chunk *ssock__ref_chunk(const ssock__codec *codec, const void *payload, size_t len,
			       ssock_release_fn release, void *arg);
/* Frees a chunk that is done with: kept for reuse by the loop, or freed;
 * a payload it refers to is given back. */
void ssock__chunk_free(ssock_loop *loop, ssock__chunk *ch);
/* Frees a chunk (giving back its payload) without a loop: a handle's
 * queue that never reached one. A chunk still the caller's (a send that
 * failed) is free()d instead: its payload stays the caller's. */
void ssock__chunk_destroy(ssock__chunk *ch);
/* Takes c's send side apart at its close: posted sends join the queue,
 * nothing is freed yet (see ssock__sendq_free()). Returns the bytes that
 * will never be sent. */
size_t ssock__sendq_close(ssock_conn *c);
/* Frees the send queue of a closed connection (after its pass). */
void ssock__sendq_free(ssock_conn *c);
/* With loop->mu held: queues ch on connection id of ep from another
 * thread. Returns 0 (ch taken, or copied when borrowed), SSOCK_ENOCONN,
 * SSOCK_ECLOSED, SSOCK_ESENDQFULL, or for a borrowed chunk SSOCK__UNMERGED
 * (see ssock__chunk_merge()). */
int ssock__posted_push_locked(ssock__stream_ep *ep, uint64_t id, ssock__chunk *ch, bool borrowed);
/* A thread of the program begins or ends waiting on loop->cv for room in a
 * send queue (or for a queue to empty), under loop->mu. Begin counts it
 * before it looks at the queue, so a loop thread making room either sees
 * it waiting (and broadcasts) or left the room for it to see. */
void ssock__room_wait_begin(ssock_loop *loop);
void ssock__room_wait_end(ssock_loop *loop);
/* With loop->mu held, from a thread of the program that may wait: calls
 * check(arg) now, and again whenever a write or the end of a connection of
 * the loop may have changed its answer, while it answers SSOCK__WAIT; for
 * up to timeout_ms (-1: no limit; 0: only now) counted to *deadline.
 * Returns check's answer, SSOCK_ETIMEDOUT, or SSOCK_ESHUTDOWN once ep is
 * being freed (its free wakes the waiting threads and waits for them to
 * leave). */
#define SSOCK__WAIT 2
int ssock__wait_until(ssock__stream_ep *ep, int timeout_ms, const struct timespec *deadline,
		      int (*check)(void *arg), void *arg);
/* The same from a thread of the program, which takes loop->mu itself;
 * SSOCK_ELOOPTHREAD where it may not wait (ssock__may_wait()). */
int ssock__wait_for(ssock__stream_ep *ep, int timeout_ms, int (*check)(void *arg), void *arg);
/* Pushes ch (borrowed or not) onto a queue, with loop->mu held: as
 * ssock__posted_push_locked(). */
typedef int (*ssock__push_fn)(void *arg, ssock__chunk *ch, bool borrowed);
/* Queues ch from a thread other than the loop's: push_locked(arg, ch) under
 * loop->mu, and while it says SSOCK_ESENDQFULL, waits up to timeout_ms (-1:
 * no limit) for room where this thread may wait. Returns 0 (ch taken) or
 * push_locked's error, or SSOCK_ETIMEDOUT (ch still the caller's). */
int ssock__queue_wait(ssock__stream_ep *ep, ssock__chunk *ch, int timeout_ms,
		      ssock__push_fn push_locked, void *arg);
/* From a thread other than the loop's: frames data (ssock__frame_chunk())
 * and queues it with ssock__queue_wait(push_locked, push_arg). A small
 * message is framed on the stack first and copied into the newest chunk of
 * its queue when that has room: no memory of its own. On success a message
 * that was copied is given back with release at once (release NULL: a plain
 * copy); on failure nothing was taken. */
int ssock__post_message(ssock__stream_ep *ep, const void *data, size_t len, int timeout_ms,
			ssock_release_fn release, void *arg, ssock__push_fn push_locked,
			void *push_arg);
/* Send by id (any thread; inline on the loop thread): a copy of data, or
 * with release given, data by reference (see ssock_server_send_ref()). */
int ssock__send_id(ssock__stream_ep *ep, uint64_t id, const void *data, size_t len, int timeout_ms,
		   ssock_release_fn release, void *arg);

/* Counts bytes into or out of c's send queue and its endpoint's total. */
static inline void ssock__queued_add(ssock_conn *c, size_t n)
{
	atomic_fetch_add_explicit(&c->queued, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->ep->queued, n, memory_order_relaxed);
}

static inline void ssock__queued_sub(ssock_conn *c, size_t n)
{
	atomic_fetch_sub_explicit(&c->queued, n, memory_order_relaxed);
	atomic_fetch_sub_explicit(&c->ep->queued, n, memory_order_relaxed);
}

/* Reserves room in c's send queue and in its endpoint's budget; false
 * when either would go over its limit. Any thread (under loop->mu when not
 * the loop's). The budget check is not atomic with the add: senders racing
 * on other connections may pass it together, by a message each at most. */
static inline bool ssock__reserve(ssock_conn *c, size_t n)
{
	ssock__stream_ep *ep = c->ep;
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

#endif
