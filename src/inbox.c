/*
 * The inbox: events for a program that polls. It is bounded without
 * dropping anything the program must see:
 *
 *   - messages by count and bytes: when no message fits, the loop stops
 *     reading (TCP backpressure; for UDP the kernel drops what overflows);
 *   - connect and disconnect events by count: when max_msgs of them wait,
 *     a server stops accepting and a client's automatic reconnects wait; a
 *     disconnect always goes in (its connection's connect did), which adds
 *     at most one per connection open at that moment;
 *   - errors: dropped from the inbox (the error log keeps them) when
 *     max_msgs errors wait.
 *
 * Whatever the loop held back, it is told once to go on (ep->on_room, by a
 * command) when a taker has brought every count to half its bound.
 */
#include "conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int ssock__inbox_init(ssock__inbox *ib, size_t max_msgs, size_t max_bytes)
{
	memset(ib, 0, sizeof *ib);
	ib->efd = -1;
	ib->max_msgs = max_msgs;
	ib->max_bytes = max_bytes;
	pthread_mutex_init(&ib->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ib->cv, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void ssock__inbox_destroy(ssock__inbox *ib)
{
	/* A thread still waiting in ssock__inbox_next() was woken by
	 * ssock__inbox_close(); let it leave before the memory goes. */
	pthread_mutex_lock(&ib->mu);
	ib->closed = true;
	pthread_cond_broadcast(&ib->cv);
	while (ib->waiters > 0)
		pthread_cond_wait(&ib->cv, &ib->mu);
	pthread_mutex_unlock(&ib->mu);
	for (size_t i = 0; i < ib->count; i++)
		ssock_event_release(&ib->ring[(ib->head + i) % ib->cap].ev);
	free(ib->ring);
	if (ib->efd >= 0)
		close(ib->efd);
	pthread_mutex_destroy(&ib->mu);
	pthread_cond_destroy(&ib->cv);
}

/* With ib->mu held: makes the event fd readable (an event came, or the
 * inbox closed) or not (the last event was taken). An eventfd counts
 * writes; one write per transition keeps it at 0 or 1. */
static void efd_signal(ssock__inbox *ib, bool readable)
{
	if (ib->efd < 0)
		return;
	uint64_t v = 1;
	ssize_t n;
	do
		n = readable ? write(ib->efd, &v, sizeof v) : read(ib->efd, &v, sizeof v);
	while (n < 0 && errno == EINTR);
}

static bool room_for_message(const ssock__inbox *ib, size_t len)
{
	if (ib->msgs == 0)
		return true; /* one message always fits, whatever its size */
	return ib->msgs < ib->max_msgs && ib->bytes + len <= ib->max_bytes;
}

static size_t errors_held(const ssock__inbox *ib)
{
	return ib->count - ib->msgs - ib->links;
}

static bool is_link(ssock_event_type t)
{
	return t == SSOCK_EVENT_CONNECT || t == SSOCK_EVENT_DISCONNECT;
}

/* Whether the loop, having held something back, may go on: every count is
 * at half its bound at most, so a steady stream does not wake the loop for
 * every event taken. */
static bool room_to_resume(const ssock__inbox *ib)
{
	return ib->msgs <= ib->max_msgs / 2 && ib->bytes <= ib->max_bytes / 2 &&
	       ib->links <= ib->max_msgs / 2;
}

static bool ring_grow(ssock__inbox *ib)
{
	size_t cap = ib->cap ? ib->cap * 2 : 64;
	ssock__inbox_item *ring = malloc(cap * sizeof *ring);
	if (!ring)
		return false;
	for (size_t i = 0; i < ib->count; i++)
		ring[i] = ib->ring[(ib->head + i) % ib->cap];
	free(ib->ring);
	ib->ring = ring;
	ib->cap = cap;
	ib->head = 0;
	return true;
}

bool ssock__inbox_push(ssock__inbox *ib, const ssock_event *ev, bool ack)
{
	bool is_msg = ev->type == SSOCK_EVENT_MESSAGE;
	pthread_mutex_lock(&ib->mu);
	if (is_msg && !room_for_message(ib, ev->len)) {
		ib->loop_waiting = true;
		atomic_store(&ib->full, true);
		pthread_mutex_unlock(&ib->mu);
		return false;
	}
	if (ev->type == SSOCK_EVENT_ERROR && errors_held(ib) >= ib->max_msgs) {
		/* An error flood nobody reads: the error log keeps the latest. */
		pthread_mutex_unlock(&ib->mu);
		return false;
	}
	if (ib->count == ib->cap && !ring_grow(ib)) {
		pthread_mutex_unlock(&ib->mu);
		return false;
	}
	ssock__inbox_item *it = &ib->ring[(ib->head + ib->count) % ib->cap];
	it->ev = *ev;
	it->ack = ack;
	if (ib->count++ == 0)
		efd_signal(ib, true);
	if (is_msg) {
		ib->msgs++;
		ib->bytes += ev->len;
		if (!room_for_message(ib, 1))
			atomic_store(&ib->full, true);
	}
	ib->links += is_link(ev->type);
	pthread_cond_signal(&ib->cv);
	pthread_mutex_unlock(&ib->mu);
	return true;
}

void ssock__inbox_close(ssock__inbox *ib)
{
	pthread_mutex_lock(&ib->mu);
	if (!ib->closed && ib->count == 0)
		efd_signal(ib, true); /* a poller wakes and hears SSOCK_ESHUTDOWN */
	ib->closed = true;
	pthread_cond_broadcast(&ib->cv);
	pthread_mutex_unlock(&ib->mu);
}

static void resume_cmd(ssock__cmd *cmd)
{
	ssock__ep *ep = cmd->arg;
	ep->on_room(ep);
}

static void ack_cmd(ssock__cmd *cmd)
{
	ssock__ep *ep = cmd->arg;
	ssock__conn_ack(ep->loop, cmd->id);
}

/* Tells the loop what taking an event changed: room again (resume reading)
 * or a half-closed connection whose disconnect has now been seen. */
static void notify_loop(ssock__ep *ep, bool resume, uint64_t ack_id)
{
	if (resume)
		ssock__post_fn(ep->loop, resume_cmd, ep, 0);
	if (ack_id)
		ssock__post_fn(ep->loop, ack_cmd, ep, ack_id);
}

/* A ring four times larger than it needs shrinks by half, so memory that a
 * burst of events took goes back once they are taken. */
static void ring_shrink(ssock__inbox *ib)
{
	if (ib->cap <= 64 || ib->count > ib->cap / 4)
		return;
	size_t cap = ib->cap / 2;
	ssock__inbox_item *ring = malloc(cap * sizeof *ring);
	if (!ring)
		return; /* keep the larger one */
	for (size_t i = 0; i < ib->count; i++)
		ring[i] = ib->ring[(ib->head + i) % ib->cap];
	free(ib->ring);
	ib->ring = ring;
	ib->cap = cap;
	ib->head = 0;
}

/* The program has taken the disconnect of connection id: from now on the id
 * names nothing (the connection may still be finishing its close). */
static void mark_gone(ssock__ep *ep, uint64_t id)
{
	ssock_loop *l = ep->loop;
	pthread_mutex_lock(&l->mu);
	ssock_conn *c = ssock__table_get(&l->conns, id);
	if (c && &c->ep->base == ep)
		atomic_store_explicit(&c->gone, true, memory_order_relaxed);
	pthread_mutex_unlock(&l->mu);
}

int ssock__inbox_next(ssock__ep *ep, ssock_event *ev, int timeout_ms)
{
	ssock__inbox *ib = &ep->inbox;
	if (!ev)
		return SSOCK_EINVAL;
	memset(ev, 0, sizeof *ev);
	if (!ep->inbox_mode)
		return SSOCK_ENOINBOX;
	if (timeout_ms != 0 && !ssock__may_wait(ep->loop))
		return SSOCK_ELOOPTHREAD;
	struct timespec deadline;
	if (timeout_ms > 0)
		ssock__abstime(&deadline, timeout_ms);
	pthread_mutex_lock(&ib->mu);
	ib->waiters++;
	while (ib->count == 0 && !ib->closed && timeout_ms != 0 &&
	       ssock__cond_wait(&ib->cv, &ib->mu, timeout_ms, &deadline) == 0) {
	}
	if (--ib->waiters == 0 && ib->closed)
		pthread_cond_broadcast(&ib->cv); /* ssock__inbox_destroy() waits */
	if (ib->count == 0 || ib->closed) {
		int rc = ib->closed ? SSOCK_ESHUTDOWN : SSOCK_ETIMEDOUT;
		pthread_mutex_unlock(&ib->mu);
		return rc;
	}
	ssock__inbox_item it = ib->ring[ib->head];
	ib->head = (ib->head + 1) % ib->cap;
	if (--ib->count == 0)
		efd_signal(ib, false);
	if (it.ev.type == SSOCK_EVENT_MESSAGE) {
		ib->msgs--;
		ib->bytes -= it.ev.len;
	}
	ib->links -= is_link(it.ev.type);
	ring_shrink(ib);
	bool resume = false;
	if (ib->loop_waiting && room_to_resume(ib)) {
		ib->loop_waiting = false;
		atomic_store(&ib->full, false);
		resume = true;
	} else if (!ib->loop_waiting && room_for_message(ib, 1)) {
		atomic_store(&ib->full, false);
	}
	/* Before unlocking, so no close can run between taking the event and
	 * this (it waits for ib->mu): once the inbox is closed no command can be
	 * posted, so a closing handle's last loop command follows all of ours,
	 * and the loop is still there to mark the connection in. */
	notify_loop(ep, resume, it.ack ? it.ev.conn : 0);
	if (it.ev.type == SSOCK_EVENT_DISCONNECT)
		mark_gone(ep, it.ev.conn);
	pthread_mutex_unlock(&ib->mu);
	*ev = it.ev;
	return 0;
}

bool ssock__inbox_holds(ssock__inbox *ib, uint64_t conn)
{
	pthread_mutex_lock(&ib->mu);
	bool found = false;
	for (size_t i = 0; i < ib->count && !found; i++)
		found = ib->ring[(ib->head + i) % ib->cap].ev.conn == conn;
	pthread_mutex_unlock(&ib->mu);
	return found;
}

void ssock__inbox_counts(ssock__inbox *ib, size_t *events, size_t *bytes)
{
	pthread_mutex_lock(&ib->mu);
	*events = ib->count;
	*bytes = ib->bytes;
	pthread_mutex_unlock(&ib->mu);
}

int ssock__inbox_fd(ssock__ep *ep)
{
	ssock__inbox *ib = &ep->inbox;
	if (!ep->inbox_mode)
		return SSOCK_ENOINBOX;
	pthread_mutex_lock(&ib->mu);
	int rc = ib->efd;
	if (rc < 0) {
		rc = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (rc < 0) {
			rc = ssock__errno();
		} else {
			ib->efd = rc;
			if (ib->count > 0 || ib->closed)
				efd_signal(ib, true);
		}
	}
	pthread_mutex_unlock(&ib->mu);
	return rc;
}

int ssock__inbox_recv(ssock__ep *ep, ssock_event *ev, int timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? ssock__now_ms() + timeout_ms : 0;
	for (;;) {
		int left = timeout_ms;
		if (timeout_ms > 0) {
			int64_t d = deadline - ssock__now_ms();
			left = d > 0 ? (int)d : 0;
		}
		int rc = ssock__inbox_next(ep, ev, left);
		if (rc != 0 || ev->type != SSOCK_EVENT_CONNECT)
			return rc;
		ssock_event_release(ev);
	}
}

bool ssock__inbox_control_blocked(ssock__inbox *ib)
{
	pthread_mutex_lock(&ib->mu);
	bool blocked = ib->links >= ib->max_msgs;
	if (blocked)
		ib->loop_waiting = true;
	pthread_mutex_unlock(&ib->mu);
	return blocked;
}

bool ssock__inbox_blocked(ssock__inbox *ib)
{
	if (!atomic_load_explicit(&ib->full, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&ib->mu);
	bool blocked = !room_for_message(ib, 1);
	if (blocked)
		ib->loop_waiting = true;
	else
		atomic_store(&ib->full, false);
	pthread_mutex_unlock(&ib->mu);
	return blocked;
}
