/*
 * A thread in loops: the loops it has entered (a callback's call on another
 * loop may run that loop inline, so one thread can be inside several),
 * synchronous calls from any thread to a loop, and what the callbacks of
 * those loops were shown. See ssock__call() for how two loops whose
 * callbacks call each other keep serving each other instead of waiting
 * for ever.
 */
#include "internal.h"

/* The loops this thread has entered and not left (it holds their
 * drive_mu), innermost first, linked by entered_from; and the loop a
 * ssock__call() of this thread waits for, if any. */
static __thread ssock_loop *innermost;
static __thread ssock_loop *waiting_for;

/* Starts a pass of loop code on l (the caller holds drive_mu). Returns the
 * loop the thread ran before: a callback of another loop may run l inline
 * (see ssock__call()), and goes on as that loop's afterwards. */
ssock_loop *ssock__loop_enter(ssock_loop *l)
{
	ssock_loop *before = ssock__current_loop;
	ssock__current_loop = l;
	l->entered_from = innermost;
	innermost = l;
	l->now = ssock__now_ms();
	l->pass_begun++;
	return before;
}

void ssock__loop_leave(ssock_loop *l, ssock_loop *before)
{
	pthread_mutex_lock(&l->mu);
	l->pass_done = l->pass_begun;
	l->waiting_on = NULL;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	innermost = l->entered_from;
	l->entered_from = NULL;
	ssock__current_loop = before;
}

/* Whether a[0..alen) and b[0..blen) share a byte (b NULL: no). */
static bool overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
	return b && x < y + blen && y < x + alen;
}

/* Whether data[0..len) is (in) memory loop l may have shown a message
 * callback: the read buffer (also one retired during this pass), a stash
 * being processed, or a large payload being delivered (lent, or taken by
 * a send of it). */
static bool shows(const ssock_loop *l, const void *data, size_t len)
{
	if (overlaps(data, len, l->lent, l->lent_len) ||
	    overlaps(data, len, l->showing, l->showing_len) ||
	    overlaps(data, len, l->rbuf, l->rbuf_size))
		return true;
	for (size_t i = 0; i < l->nretired; i++)
		if (overlaps(data, len, l->retired[i].buf, l->retired[i].size))
			return true;
	return false;
}

bool ssock__shown_to_callbacks(const void *data, size_t len)
{
	for (const ssock_loop *x = innermost; x; x = x->entered_from)
		if (shows(x, data, len))
			return true;
	return false;
}

/* Whether this thread has entered l (and holds its drive_mu). */
static bool entered_here(const ssock_loop *l)
{
	for (const ssock_loop *x = innermost; x; x = x->entered_from)
		if (x == l)
			return true;
	return false;
}

/* Whether commands or posted sends wait for loop m. */
static bool has_work(ssock_loop *m)
{
	pthread_mutex_lock(&m->mu);
	bool work = m->cmd_head || m->posted;
	pthread_mutex_unlock(&m->mu);
	return work;
}

/* Runs what was posted to loop l, on a thread that holds its drive_mu, as
 * l's code. */
static void run_posted(ssock_loop *l)
{
	ssock_loop *saved = ssock__current_loop;
	ssock__current_loop = l;
	ssock__take_posted(l);
	ssock__run_commands(l);
	ssock__current_loop = saved;
}

/* Tells every loop this thread has entered which loop it waits for (NULL:
 * none), so a post to one of them wakes the wait (see ssock__post()). */
static void set_waiting_on(ssock_loop *target)
{
	for (ssock_loop *x = innermost; x; x = x->entered_from) {
		pthread_mutex_lock(&x->mu);
		x->waiting_on = target;
		pthread_mutex_unlock(&x->mu);
	}
}

/* Nobody runs l (no thread, nobody in ssock_loop_run(), nobody inline):
 * runs its queued commands here. l->mu held on entry and on return. */
static void run_inline(ssock_loop *l)
{
	l->inline_run = true; /* others post and wait, as for a running loop */
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_lock(&l->drive_mu);
	ssock_loop *before = ssock__loop_enter(l);
	run_posted(l);
	ssock__flush_all(l);
	ssock__loop_leave(l, before);
	pthread_mutex_unlock(&l->drive_mu);
	pthread_mutex_lock(&l->mu);
	l->inline_run = false;
	pthread_cond_broadcast(&l->cv); /* a waiter may run it now */
}

int ssock__call(ssock_loop *l, void (*fn)(ssock__cmd *cmd), void *arg, uint64_t id)
{
	ssock__cmd cmd = {.fn = fn, .arg = arg, .id = id, .sync = true};
	if (ssock__on_loop(l)) {
		fn(&cmd);
		return cmd.result;
	}
	if (entered_here(l)) {
		/* A callback of l called another loop's handle, which this thread
		 * runs inline, and its callback calls l: l's code, run as l's. */
		ssock_loop *saved = ssock__current_loop;
		ssock__current_loop = l;
		fn(&cmd);
		ssock__current_loop = saved;
		return cmd.result;
	}
	/* A thread that runs loops (a callback's, or one running a loop
	 * inline) goes on serving them while it waits here: l's thread may be
	 * in a callback that waits for one of them just the same. */
	ssock_loop *outer = waiting_for;
	waiting_for = l;
	if (innermost)
		set_waiting_on(l);
	ssock__post(l, &cmd);
	pthread_mutex_lock(&l->mu);
	while (!cmd.done) {
		if (!l->has_thread && !l->driving && !l->inline_run) {
			run_inline(l);
			continue;
		}
		if (innermost) {
			/* The queues are looked at without l->mu held (lock
			 * order); a post to one in between bumps wake_seq. */
			uint64_t seq = l->wake_seq;
			pthread_mutex_unlock(&l->mu);
			bool work = false;
			for (ssock_loop *x = innermost; x; x = x->entered_from) {
				if (has_work(x)) {
					run_posted(x);
					work = true;
				}
			}
			pthread_mutex_lock(&l->mu);
			if (work || seq != l->wake_seq)
				continue;
		}
		pthread_cond_wait(&l->cv, &l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	waiting_for = outer;
	if (innermost)
		set_waiting_on(outer); /* an outer call of this thread waits on */
	return cmd.result;
}
