/*
 * Sends from threads other than the loop's: a message is framed into a chunk
 * of its own on the sender's thread (small ones share one), pushed on its
 * connection's posted list under loop->mu, and queued by the loop at the
 * start of its next pass (ssock__take_posted()). Also waiting for room in a
 * full queue, and the room waiters' pairing with the writer.
 *
 * Owners: a posted chunk is the connection's posted list's, then its send
 * queue's (or a codec's turn queue's); the sender's until pushed.
 */
#include "conn.h"

#include <string.h>

/* A small message's chunk from another thread, header included: room for
 * the next small ones (see ssock__frame_chunk()). */
#define SMALL_CHUNK_CAP (512 - sizeof(ssock__chunk))

/* The bytes data takes on the wire: > 0, 0 for an empty raw message (it
 * puts nothing on the wire) or an error. */
static ssize_t wire_total(const ssock__stream_ep *ep, const void *data, size_t len)
{
	ssize_t total = ssock__wire_size(ep->codec, data, len);
	if (total > 0 && (size_t)total > ep->cfg.send_queue_max)
		return SSOCK_EMSGSIZE;
	return total;
}

int ssock__frame_chunk(const ssock__stream_ep *ep, const void *data, size_t len,
		       ssock_release_fn release, void *arg, ssock__chunk **out)
{
	*out = NULL;
	ssize_t total = wire_total(ep, data, len);
	if (total <= 0)
		return (int)total;
	/* By reference, unless it is a callback's data: of this thread's
	 * loops, whichever loop the message is for. */
	if (release && ssock__ref_worth(ep->codec, len) && !ssock__shown_to_callbacks(data, len)) {
		*out = ssock__ref_chunk(ep->codec, data, len, release, arg);
		return *out ? 0 : SSOCK_ENOMEM;
	}
	/* A small message gets room for more after it: the next ones posted
	 * to the same queue are copied in (ssock__chunk_merge()), so a queue
	 * of small messages costs about its bytes, not a chunk each. Not for
	 * a protocol codec, whose messages each wait as a unit. */
	size_t cap = (size_t)total;
	if (!ep->codec->send && cap < SMALL_CHUNK_CAP)
		cap = SMALL_CHUNK_CAP;
	ssock__chunk *ch = malloc(sizeof *ch + cap);
	if (!ch)
		return SSOCK_ENOMEM;
	*ch = (ssock__chunk){.len = (size_t)total, .cap = cap};
	ep->codec->encode(ch->data, data, len);
	*out = ch;
	return 0;
}

ssock__chunk *ssock__ref_chunk(const ssock__codec *codec, const void *payload, size_t len,
			       ssock_release_fn release, void *arg)
{
	uint8_t header[SSOCK__HEADER_MAX];
	size_t hlen = codec->header(header, len);
	ssock__chunk *ch = malloc(sizeof *ch + hlen);
	if (!ch)
		return NULL;
	*ch = (ssock__chunk){
		.payload = (uint8_t *)payload,
		.release = release,
		.release_arg = arg,
		.len = hlen + len,
		.cap = len,
		.hlen = hlen,
	};
	memcpy(ch->data, header, hlen);
	return ch;
}

bool ssock__chunk_fits(const ssock__stream_ep *ep, const ssock__chunk *into, const ssock__chunk *ch)
{
	return into && !into->payload && !ch->payload && !ep->codec->send &&
	       into->cap - into->len >= ch->len - ch->off;
}

bool ssock__chunk_merge(const ssock__stream_ep *ep, ssock__chunk *into, ssock__chunk *ch,
			bool borrowed)
{
	if (!ssock__chunk_fits(ep, into, ch))
		return false;
	memcpy(into->data + into->len, ch->data + ch->off, ch->len - ch->off);
	into->len += ch->len - ch->off;
	if (!borrowed)
		free(ch);
	return true;
}

/* ------------------------------------------------- sends from other threads */

void ssock__take_posted(ssock_loop *l)
{
	/* One connection at a time, its chunks queued with loop->mu released:
	 * queueing may fail the connection (memory ran out), and failing one
	 * takes loop->mu and runs on_error. A connection failed meanwhile
	 * (unlinked: no thread posts to it now) frees what is left; its bytes
	 * left the queued counts when it failed. Only those waiting now: one
	 * posted to again meanwhile waits for the next pass (its post woke the
	 * loop), so a busy sender cannot hold the loop here. */
	size_t budget = SIZE_MAX;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		if (budget == SIZE_MAX) {
			budget = 0;
			for (ssock_conn *p = l->posted; p; p = p->posted_next)
				budget++;
		}
		ssock_conn *c = budget > 0 ? l->posted : NULL;
		budget -= c != NULL;
		if (c) {
			l->posted = c->posted_next;
			c->in_posted = false;
			c->posted_next = NULL;
		}
		atomic_store_explicit(&l->has_posted, l->posted != NULL, memory_order_relaxed);
		ssock__chunk *newest = c ? c->posted : NULL;
		if (c)
			c->posted = NULL;
		pthread_mutex_unlock(&l->mu);
		if (!c)
			return;
		/* Newest first: reverse into call order. */
		ssock__chunk *list = NULL;
		for (ssock__chunk *ch = newest, *nx; ch; ch = nx) {
			nx = ch->next;
			ch->next = list;
			list = ch;
		}
		for (ssock__chunk *ch = list, *nx; ch; ch = nx) {
			nx = ch->next;
			if (c->state == SSOCK__CLOSED)
				ssock__chunk_free(l, ch);
			else if (c->ep->codec->send)
				c->ep->codec->send(c, ch);
			else
				ssock__out_chunk(c, ch);
		}
	}
}

void ssock__room_wait_begin(ssock_loop *l)
{
	atomic_fetch_add_explicit(&l->room_waiters, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

void ssock__room_wait_end(ssock_loop *l)
{
	atomic_fetch_sub_explicit(&l->room_waiters, 1, memory_order_relaxed);
}

int ssock__posted_push_locked(ssock__stream_ep *ep, uint64_t id, ssock__chunk *ch, bool borrowed)
{
	ssock_loop *l = ep->base.loop;
	ssock_conn *c = ssock__conn_by_id(ep, id);
	if (!c)
		return SSOCK_ENOCONN;
	if (c->closing)
		return SSOCK_ECLOSED;
	if (!ch) /* an empty raw message: nothing to send */
		return 0;
	if (borrowed && !ssock__chunk_fits(ep, c->posted, ch))
		return SSOCK__UNMERGED;
	if (!ssock__reserve(c, ch->len))
		return SSOCK_ESENDQFULL;
	/* Into the newest chunk, which the loop was woken for: no wake. */
	if (ssock__chunk_merge(ep, c->posted, ch, borrowed))
		return 0;
	ch->next = c->posted;
	c->posted = ch;
	if (!c->in_posted) {
		c->in_posted = true;
		c->posted_next = l->posted;
		l->posted = c;
		atomic_store_explicit(&l->has_posted, true, memory_order_relaxed);
	}
	return 0;
}

int ssock__wait_until(ssock__stream_ep *ep, int timeout_ms, const struct timespec *deadline,
		      int (*check)(void *arg), void *arg)
{
	ssock_loop *l = ep->base.loop;
	/* Counted as a waiter of ep, so a free of the handle wakes this thread
	 * and waits for it to leave (ssock__stream_ep_shutdown()); and as a
	 * waiter for room before looking (see consume()). */
	ep->waiters++;
	ssock__room_wait_begin(l);
	int rc;
	for (;;) {
		rc = ep->freeing ? SSOCK_ESHUTDOWN : check(arg);
		if (rc != SSOCK__WAIT)
			break;
		rc = timeout_ms == 0 ? SSOCK_ETIMEDOUT
				     : ssock__cond_wait(&l->cv, &l->mu, timeout_ms, deadline);
		if (rc != 0)
			break;
	}
	ssock__room_wait_end(l);
	if (--ep->waiters == 0 && ep->freeing)
		pthread_cond_broadcast(&l->cv);
	return rc;
}

int ssock__wait_for(ssock__stream_ep *ep, int timeout_ms, int (*check)(void *arg), void *arg)
{
	ssock_loop *l = ep->base.loop;
	if (!ssock__may_wait(l))
		return SSOCK_ELOOPTHREAD;
	struct timespec deadline;
	if (timeout_ms > 0)
		ssock__abstime(&deadline, timeout_ms);
	pthread_mutex_lock(&l->mu);
	int rc = ssock__wait_until(ep, timeout_ms, &deadline, check, arg);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

struct push_try {
	ssock_loop *loop;
	ssock__chunk *ch;
	ssock__push_fn push_locked;
	void *arg;
};

static int pushed(void *arg)
{
	struct push_try *p = arg;
	int rc = p->push_locked(p->arg, p->ch, false);
	if (rc == 0 && p->ch)
		ssock__wake(p->loop); /* while still counted: the loop stays until then */
	return rc == SSOCK_ESENDQFULL ? SSOCK__WAIT : rc;
}

int ssock__queue_wait(ssock__stream_ep *ep, ssock__chunk *ch, int timeout_ms,
		      ssock__push_fn push_locked, void *arg)
{
	ssock_loop *l = ep->base.loop;
	struct timespec deadline;
	if (!ssock__may_wait(l))
		timeout_ms = 0; /* only this thread could make the room */
	if (timeout_ms > 0)
		ssock__abstime(&deadline, timeout_ms);
	pthread_mutex_lock(&l->mu);
	int rc = push_locked(arg, ch, false);
	if (rc == SSOCK_ESENDQFULL && timeout_ms != 0) {
		struct push_try p = {l, ch, push_locked, arg};
		rc = ssock__wait_until(ep, timeout_ms, &deadline, pushed, &p);
		pthread_mutex_unlock(&l->mu);
		return rc;
	}
	pthread_mutex_unlock(&l->mu);
	if (rc == 0 && ch)
		ssock__wake(l);
	return rc;
}

struct push_id {
	ssock__stream_ep *ep;
	uint64_t id;
};

static int push_id_locked(void *arg, ssock__chunk *ch, bool borrowed)
{
	struct push_id *p = arg;
	return ssock__posted_push_locked(p->ep, p->id, ch, borrowed);
}

int ssock__send_id(ssock__stream_ep *ep, uint64_t id, const void *data, size_t len, int timeout_ms,
		   ssock_release_fn release, void *arg)
{
	if (!data && len > 0)
		return SSOCK_EINVAL;
	if (ssock__on_loop(ep->base.loop)) {
		ssock_conn *c = ssock__conn_by_id(ep, id);
		if (!c)
			return SSOCK_ENOCONN;
		return release ? ssock__conn_send_ref(c, data, len, release, arg)
			       : ssock__conn_send(c, data, len);
	}
	return ssock__post_message(ep, data, len, timeout_ms, release, arg, push_id_locked,
				   &(struct push_id){ep, id});
}

/* A small message framed on the sender's stack, copied into the newest
 * chunk of its queue under loop->mu if that has room. Returns 0 (queued),
 * an error, or SSOCK__UNMERGED with *ch a chunk of its own to push (or
 * still SSOCK__UNMERGED with *ch NULL: not a small message). */
static int post_small(ssock__stream_ep *ep, const void *data, size_t len, int timeout_ms,
		      ssock__push_fn push_locked, void *push_arg, ssock__chunk **ch)
{
	*ch = NULL;
	if (ep->codec->send || len >= SMALL_CHUNK_CAP)
		return SSOCK__UNMERGED;
	ssize_t total = wire_total(ep, data, len);
	if (total <= 0 || (size_t)total > SMALL_CHUNK_CAP)
		return total < 0 ? (int)total : SSOCK__UNMERGED;
	union {
		ssock__chunk ch;
		uint8_t bytes[sizeof(ssock__chunk) + SMALL_CHUNK_CAP];
	} tmp;
	tmp.ch = (ssock__chunk){.len = (size_t)total, .cap = SMALL_CHUNK_CAP};
	ep->codec->encode(tmp.ch.data, data, len);
	ssock_loop *l = ep->base.loop;
	pthread_mutex_lock(&l->mu);
	int rc = push_locked(push_arg, &tmp.ch, true);
	pthread_mutex_unlock(&l->mu);
	if (rc != SSOCK__UNMERGED && !(rc == SSOCK_ESENDQFULL && timeout_ms != 0))
		return rc;
	/* A chunk of its own, with room for the next ones, to push (and wait
	 * with, for room). */
	*ch = malloc(sizeof tmp);
	if (!*ch)
		return SSOCK_ENOMEM;
	memcpy(*ch, &tmp, sizeof tmp.ch + (size_t)total);
	return SSOCK__UNMERGED;
}

int ssock__post_message(ssock__stream_ep *ep, const void *data, size_t len, int timeout_ms,
			ssock_release_fn release, void *arg, ssock__push_fn push_locked,
			void *push_arg)
{
	ssock__chunk *ch = NULL;
	int rc = SSOCK__UNMERGED;
	if (!release || !ssock__ref_worth(ep->codec, len))
		rc = post_small(ep, data, len, timeout_ms, push_locked, push_arg, &ch);
	if (rc == 0 && release)
		release(data, arg); /* copied */
	if (rc != SSOCK__UNMERGED)
		return rc;
	if (!ch && (rc = ssock__frame_chunk(ep, data, len, release, arg, &ch)) != 0)
		return rc;
	bool copied = !ch || !ch->payload; /* ch is the loop's once queued */
	rc = ssock__queue_wait(ep, ch, timeout_ms, push_locked, push_arg);
	if (rc != 0)
		free(ch); /* its payload, if it refers to one, is still the caller's */
	else if (release && copied)
		release(data, arg);
	return rc;
}
