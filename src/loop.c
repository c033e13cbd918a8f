/*
 * The event loop: a poller (poller.h), an eventfd for cross-thread wakeups, a
 * timer heap, a queue of commands posted from other threads. See internal.h
 * for who may touch what.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

__thread ssock_loop *ssock__current_loop;

bool ssock__on_any_loop(void)
{
	return ssock__current_loop != NULL;
}

bool ssock__may_wait(ssock_loop *l)
{
	/* A callback (of any loop) never blocks: the loop it holds up may be
	 * the one that would end the wait. */
	if (ssock__on_any_loop())
		return false;
	pthread_mutex_lock(&l->mu);
	bool self = !l->has_thread && l->driven && pthread_equal(l->driver, pthread_self());
	pthread_mutex_unlock(&l->mu);
	return !self;
}

/* ---------------------------------------------------------------- timers */

static bool timer_before(const ssock__timer *a, const ssock__timer *b)
{
	return a->due < b->due;
}

static void heap_set(ssock_loop *l, size_t i, ssock__timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(ssock_loop *l, size_t i)
{
	ssock__timer *t = l->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, l->heap[parent]))
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_down(ssock_loop *l, size_t i)
{
	ssock__timer *t = l->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= l->heap_len)
			break;
		if (child + 1 < l->heap_len && timer_before(l->heap[child + 1], l->heap[child]))
			child++;
		if (!timer_before(l->heap[child], t))
			break;
		heap_set(l, i, l->heap[child]);
		i = child;
	}
	heap_set(l, i, t);
}

void ssock__timer_init(ssock__timer *t, void (*fn)(ssock__timer *t))
{
	t->due = 0;
	t->heap_idx = SIZE_MAX;
	t->fn = fn;
}

void ssock__timer_stop(ssock_loop *l, ssock__timer *t)
{
	size_t i = t->heap_idx;
	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	ssock__timer *last = l->heap[--l->heap_len];
	if (i == l->heap_len)
		return;
	heap_set(l, i, last);
	heap_up(l, i);
	heap_down(l, last->heap_idx);
}

int ssock__timer_start(ssock_loop *l, ssock__timer *t, int64_t due)
{
	if (t->heap_idx != SIZE_MAX) {
		/* Re-arming an armed timer: move it where it now belongs. */
		t->due = due;
		heap_up(l, t->heap_idx);
		heap_down(l, t->heap_idx);
		return 0;
	}
	if (l->heap_len == l->heap_cap) {
		size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
		ssock__timer **h = realloc(l->heap, cap * sizeof *h);
		if (!h)
			return SSOCK_ENOMEM;
		l->heap = h;
		l->heap_cap = cap;
	}
	t->due = due;
	heap_set(l, l->heap_len++, t);
	heap_up(l, t->heap_idx);
	return 0;
}

static int next_timeout(ssock_loop *l, int timeout_ms)
{
	if (l->heap_len == 0)
		return timeout_ms;
	int64_t wait = l->heap[0]->due - ssock__now_ms();
	if (wait < 0)
		wait = 0;
	if (timeout_ms >= 0 && wait > timeout_ms)
		return timeout_ms;
	return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

static void run_timers(ssock_loop *l)
{
	/* Timers armed by a callback for "now" wait for the next pass, so a
	 * timer that re-arms itself cannot hold the loop here forever. */
	int64_t now = l->now;
	while (l->heap_len > 0 && l->heap[0]->due <= now) {
		ssock__timer *t = l->heap[0];
		ssock__timer_stop(l, t);
		t->fn(t);
	}
}

/* -------------------------------------------------------------- interest */

int ssock__io_set(ssock_loop *l, ssock__io *io, unsigned interest)
{
	return ssock__poller_set(l->poller, io, interest);
}

void ssock__io_remove(ssock_loop *l, ssock__io *io)
{
	ssock__poller_forget(l->poller, io);
}

/* ------------------------------------------------------------- commands */

void ssock__wake(ssock_loop *l)
{
	if (atomic_exchange(&l->wake_pending, 1))
		return; /* a write is already on its way: one wakeup serves all */
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(l->wake_io.fd, &one, sizeof one);
	while (n < 0 && errno == EINTR);
}

bool ssock__post_fn(ssock_loop *l, void (*fn)(ssock__cmd *cmd), void *arg, uint64_t id)
{
	ssock__cmd *cmd = calloc(1, sizeof *cmd);
	if (!cmd)
		return false;
	cmd->fn = fn;
	cmd->arg = arg;
	cmd->id = id;
	ssock__post(l, cmd);
	return true;
}

void ssock__post(ssock_loop *l, ssock__cmd *cmd)
{
	cmd->next = NULL;
	pthread_mutex_lock(&l->mu);
	if (l->cmd_tail)
		l->cmd_tail->next = cmd;
	else
		l->cmd_head = cmd;
	l->cmd_tail = cmd;
	ssock_loop *waiting_on = l->waiting_on;
	pthread_mutex_unlock(&l->mu);
	ssock__wake(l);
	/* l's thread is in a callback that waits for another loop: it runs
	 * this there (see ssock__call()), and must hear of it. */
	if (waiting_on) {
		pthread_mutex_lock(&waiting_on->mu);
		waiting_on->wake_seq++;
		pthread_cond_broadcast(&waiting_on->cv);
		pthread_mutex_unlock(&waiting_on->mu);
	}
}

/* Runs the posted commands. Loop thread (drive_mu held). */
void ssock__run_commands(ssock_loop *l)
{
	pthread_mutex_lock(&l->mu);
	ssock__cmd *cmd = l->cmd_head;
	l->cmd_head = l->cmd_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	while (cmd) {
		ssock__cmd *next = cmd->next;
		cmd->fn(cmd);
		if (cmd->sync) {
			pthread_mutex_lock(&l->mu);
			cmd->done = true;
			pthread_cond_broadcast(&l->cv);
			pthread_mutex_unlock(&l->mu);
		} else {
			free(cmd);
		}
		cmd = next;
	}
}

static void on_wake(ssock__io *io, unsigned ready)
{
	(void)ready;
	ssock_loop *l = (ssock_loop *)((char *)io - offsetof(ssock_loop, wake_io));
	uint64_t v;
	/* Drain the eventfd first, then clear the flag, then read the queues.
	 * A post that lands after the clear writes the eventfd again; one that
	 * lands before it is in the queues read below. (Clearing before the
	 * read lost wakeups: a write between the two was consumed by the read
	 * while the flag stayed set, so no later post ever wrote again.) */
	while (read(io->fd, &v, sizeof v) < 0 && errno == EINTR) {
	}
	atomic_store(&l->wake_pending, 0);
	ssock__take_posted(l);
	ssock__run_commands(l);
}

void ssock__wait_pass_end(ssock_loop *l, uint64_t pass)
{
	pthread_mutex_lock(&l->mu);
	while (l->pass_done < pass && (l->has_thread || l->driving || l->inline_run))
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
}

/* ------------------------------------------------------------- one pass */

static int run_once(ssock_loop *l, int timeout_ms)
{
	ssock__ready ready[MAX_EVENTS];
	/* The timer heap is loop state: between two ssock_loop_run() calls a
	 * thread with a command may run it inline (see ssock__call()) and arm
	 * timers, so read it under drive_mu too. Such a command was posted,
	 * which wrote the eventfd: the wait returns and the next pass sees its
	 * timers. Bytes held inside a transport have no readiness to wait
	 * for: then the wait only looks. */
	pthread_mutex_lock(&l->drive_mu);
	int wait_ms = l->pending ? 0 : next_timeout(l, timeout_ms);
	pthread_mutex_unlock(&l->drive_mu);
	int n = ssock__poller_wait(l->poller, ready, MAX_EVENTS, wait_ms);
	if (n < 0)
		return n;
	atomic_fetch_add_explicit(&l->passes, 1, memory_order_relaxed);
	pthread_mutex_lock(&l->drive_mu);
	l->activity += (uint64_t)n;
	ssock_loop *before = ssock__loop_enter(l);
	/* Sends posted before this pass go before what its callbacks send: a
	 * thread that sent, then drove the loop, sees its messages in order. */
	if (atomic_load_explicit(&l->has_posted, memory_order_relaxed))
		ssock__take_posted(l);
	for (int i = 0; i < n; i++)
		ready[i].io->on_io(ready[i].io, ready[i].flags);
	ssock__serve_pending(l);
	l->now = ssock__now_ms();
	run_timers(l);
	ssock__flush_all(l);
	ssock__loop_leave(l, before);
	pthread_mutex_unlock(&l->drive_mu);
	return 0;
}

static void *thread_main(void *arg)
{
	ssock_loop *l = arg;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		bool stop = l->stopping;
		pthread_mutex_unlock(&l->mu);
		if (stop)
			break;
		run_once(l, -1);
	}
	return NULL;
}

int ssock_loop_run(ssock_loop *l, int timeout_ms)
{
	if (!l)
		return SSOCK_EINVAL;
	pthread_mutex_lock(&l->mu);
	if (l->has_thread || l->driving) {
		pthread_mutex_unlock(&l->mu);
		return SSOCK_EBUSY;
	}
	l->driving = true;
	l->driven = true;
	l->driver = pthread_self();
	pthread_mutex_unlock(&l->mu);
	int rc = run_once(l, timeout_ms);
	pthread_mutex_lock(&l->mu);
	l->driving = false;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int ssock_loop_start(ssock_loop *l)
{
	if (!l)
		return SSOCK_EINVAL;
	pthread_mutex_lock(&l->mu);
	if (l->has_thread || l->driving) {
		pthread_mutex_unlock(&l->mu);
		return SSOCK_EBUSY;
	}
	l->stopping = false;
	int rc = pthread_create(&l->thread, NULL, thread_main, l);
	if (rc == 0)
		l->has_thread = true;
	pthread_mutex_unlock(&l->mu);
	return -rc;
}

static void stop_cmd(ssock__cmd *cmd)
{
	(void)cmd; /* the wakeup itself is the point: thread_main sees stopping */
}

int ssock_loop_stop(ssock_loop *l)
{
	if (!l)
		return SSOCK_EINVAL;
	if (ssock__on_any_loop())
		return SSOCK_ELOOPTHREAD;
	pthread_mutex_lock(&l->mu);
	if (l->joining) {
		/* Another thread stops it: wait until it has. */
		while (l->has_thread)
			pthread_cond_wait(&l->cv, &l->mu);
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	if (!l->has_thread) {
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	l->stopping = true;
	l->joining = true;
	pthread_mutex_unlock(&l->mu);
	if (!ssock__post_fn(l, stop_cmd, NULL, 0))
		ssock__wake(l);
	pthread_join(l->thread, NULL);
	pthread_mutex_lock(&l->mu);
	l->has_thread = false;
	l->joining = false;
	/* A caller of ssock__call() whose command the thread never got to
	 * waits for it: now nobody runs the loop, it runs it itself. */
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 0;
}

/* ------------------------------------------------------------ lifecycle */

int ssock_loop_new(ssock_loop **out)
{
	if (!out)
		return SSOCK_EINVAL;
	*out = NULL;
	ssock_loop *l = calloc(1, sizeof *l);
	if (!l)
		return SSOCK_ENOMEM;
	l->wake_io.fd = -1;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->drive_mu, NULL);
	ssock__timer_init(&l->tidy, ssock__loop_tidy);
	int rc = ssock__poller_open(&l->poller);
	if (rc == 0) {
		l->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		l->wake_io.on_io = on_wake;
		if (l->wake_io.fd < 0)
			rc = ssock__errno();
	}
	if (rc == 0)
		rc = ssock__io_set(l, &l->wake_io, SSOCK__IN);
	if (rc == 0)
		rc = ssock__loop_rbuf(l, SSOCK__DEFAULT_READ_SIZE);
	if (rc != 0) {
		ssock_loop_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int ssock_loop_free(ssock_loop *l)
{
	if (!l)
		return 0;
	if (ssock__on_any_loop())
		return SSOCK_ELOOPTHREAD;
	pthread_mutex_lock(&l->mu);
	int users = l->users;
	pthread_mutex_unlock(&l->mu);
	if (users > 0)
		return SSOCK_EBUSY;
	ssock_loop_stop(l);
	/* Commands posted after the last pass are dropped unrun. */
	for (ssock__cmd *c = l->cmd_head, *next; c; c = next) {
		next = c->next;
		if (!c->sync)
			free(c);
	}
	ssock__loop_tidy_cancel(l);
	ssock__chunks_trim(l, true);
	if (l->wake_io.fd >= 0)
		close(l->wake_io.fd);
	ssock__poller_close(l->poller);
	ssock__table_free(&l->conns);
	free(l->heap);
	free(l->rbuf);
	ssock__rbuf_retired_free(l);
	free(l->retired);
	free(l->obuf);
	free(l->flush);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->drive_mu);
	pthread_cond_destroy(&l->cv);
	free(l);
	return 0;
}

void ssock__rbuf_retired_free(ssock_loop *l)
{
	while (l->nretired > 0)
		free(l->retired[--l->nretired].buf);
}

int ssock__loop_rbuf(ssock_loop *l, size_t size)
{
	if (l->rbuf_size >= size)
		return 0;
	/* During a pass (a callback creating a server) the read path may be
	 * decoding what it read into the old buffer: it stays until the pass
	 * ends, as does every buffer replaced in the pass (one callback may
	 * grow it twice). */
	bool keep = ssock__on_loop(l) && l->rbuf;
	if (keep && l->nretired == l->retired_cap) {
		size_t cap = l->retired_cap ? l->retired_cap * 2 : 4;
		struct ssock__rbuf_old *r = realloc(l->retired, cap * sizeof *r);
		if (!r)
			return SSOCK_ENOMEM;
		l->retired = r;
		l->retired_cap = cap;
	}
	uint8_t *b = malloc(size);
	if (!b)
		return SSOCK_ENOMEM;
	if (keep)
		l->retired[l->nretired++] = (struct ssock__rbuf_old){l->rbuf, l->rbuf_size};
	else
		free(l->rbuf);
	l->rbuf = b;
	l->rbuf_size = size;
	return 0;
}

/* A server or client takes a loop: the one given (shared) or a new one of
 * its own, started on a background thread. */
int ssock__loop_acquire(ssock_loop **loopp, ssock_loop *given, bool *owned)
{
	ssock_loop *l = given;
	*owned = false;
	if (!l) {
		int rc = ssock_loop_new(&l);
		if (rc != 0)
			return rc;
		*owned = true;
	}
	pthread_mutex_lock(&l->mu);
	l->users++;
	pthread_mutex_unlock(&l->mu);
	*loopp = l;
	return 0;
}

void ssock__loop_release(ssock_loop *l, bool owned)
{
	pthread_mutex_lock(&l->mu);
	l->users--;
	pthread_mutex_unlock(&l->mu);
	if (owned)
		ssock_loop_free(l);
}
