/*
 * Memory given back: a loop's tidy-up once it is quiet, and the large
 * payload buffers kept for reuse meanwhile.
 *
 * Large payloads. A message too large for the shared read buffer is read
 * into a malloc'd buffer of its own, handed to the program (an inbox event's
 * data, or lent to a callback) and freed when the program is done with it,
 * often on another thread. glibc hands such blocks back to the system as
 * soon as they merge into the top of an arena, so at a high rate every
 * message costs page faults for a fresh megabyte. Instead, a large buffer
 * ssock frees, or the program gives back with ssock_event_release(), is kept
 * here for the next large read of the same size: up to KEEP_N blocks and
 * KEEP_BYTES in all, per process, and only while some loop is busy (its
 * tidy-up pending: `holders`); a tidy-up gives them all back.
 *
 * Only blocks whose size ssock knows come here (an event's len, a chunk's
 * cap): ssock_free(), which is not told a size, just frees. The slots are
 * lock-free (fork() can't catch a lock held), and a kept block carries its
 * size in its first bytes. A child of fork() has no busy loop, so keeps
 * nothing new. Under AddressSanitizer, MemorySanitizer or valgrind, in
 * libssock or in the program, nothing is kept, so a use after release is
 * still reported.
 */
#include "internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define TIDY_AFTER_MS 1000
#define TIDY_BYTES    (1u << 20)  /* freed before a tidy-up is worth it */
#define TRIM_NUDGE    (64u << 10) /* glibc's FASTBIN_CONSOLIDATION_THRESHOLD */

#define KEEP_N      16
#define KEEP_BYTES  (16u << 20)
#define KEEP_MIN    (64u << 10) /* smaller blocks: malloc's own bins reuse them */
#define BLOCK_ALIGN 2048        /* see fresh() */

#if defined(__SANITIZE_ADDRESS__)
#define KEEP_NEVER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define KEEP_NEVER 1
#endif
#endif
#ifndef KEEP_NEVER
#define KEEP_NEVER 0
#endif

#if !KEEP_NEVER && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

/* A program built with a sanitizer links its runtime, libssock or not. */
extern void __asan_init(void) __attribute__((weak));
extern void __msan_init(void) __attribute__((weak));

static _Atomic(void *) kept[KEEP_N];
static atomic_size_t kept_bytes;
static atomic_int holders; /* loops whose tidy-up is pending */

static bool keeping(void)
{
	return !KEEP_NEVER && !__asan_init && !__msan_init && !UNDER_VALGRIND();
}

/* The child of a fork() has none of its parent's loops running. */
static void forked_child(void)
{
	atomic_store(&holders, 0);
}

static void at_fork_once(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}

/* A loop's tidy-up is no longer pending. Never below 0: a child of fork()
 * started from 0 with its parent's loops' timers still set. */
static void let_go(void)
{
	int h = atomic_load(&holders);
	while (h > 0 && !atomic_compare_exchange_weak(&holders, &h, h - 1)) {
	}
}

bool ssock__big_enabled(void)
{
	return keeping();
}

/* Takes the block out of slot i, if there is one: its size in *size. */
static void *take_slot(int i, size_t *size)
{
	void *p = atomic_load(&kept[i]);
	if (!p || !atomic_compare_exchange_strong(&kept[i], &p, NULL))
		return NULL;
	*size = *(size_t *)p;
	return p;
}

static void forget(void *p, size_t size)
{
	atomic_fetch_sub(&kept_bytes, size);
	free(p);
}

void ssock__big_trim(void)
{
	for (int i = 0; i < KEEP_N; i++) {
		size_t size;
		void *p = take_slot(i, &size);
		if (p)
			forget(p, size);
	}
}

/* A new block for a large payload. glibc maps one of this size on its own,
 * its data 16 bytes into a page; the kernel's copy of socket data into it
 * was measured 20-30% slower there than halfway into a page (bulk echo,
 * 1 MiB messages, the C tool and the Python module alike: bench/RESULTS.md),
 * so it is placed there. Still a malloc-family block: free() takes it. */
static void *fresh(size_t len)
{
	if (len < KEEP_MIN)
		return malloc(len);
	void *p = NULL;
	return posix_memalign(&p, BLOCK_ALIGN, len) == 0 ? p : NULL;
}

void *ssock__big_alloc(size_t len)
{
	if (len >= KEEP_MIN && atomic_load(&kept_bytes) > 0) {
		for (int i = 0; i < KEEP_N; i++) {
			size_t size;
			void *p = take_slot(i, &size);
			if (!p)
				continue;
			/* Only a block of the very size: what comes back is
			 * counted with the length it was used for, so a larger
			 * one would be counted short (and a peer could walk a
			 * big block's count down, size by size). */
			if (size == len) {
				atomic_fetch_sub(&kept_bytes, size);
				return p;
			}
			void *none = NULL;
			if (!atomic_compare_exchange_strong(&kept[i], &none, p))
				forget(p, size);
		}
	}
	return fresh(len);
}

void ssock__big_free(void *p, size_t size)
{
	if (!p)
		return;
	if (size < KEEP_MIN || atomic_load(&holders) <= 0 || !keeping()) {
		free(p);
		return;
	}
	for (int i = 0; i < KEEP_N; i++)
		if (atomic_load(&kept[i]) == p)
			return; /* given back twice: it is kept once */
	if (atomic_fetch_add(&kept_bytes, size) + size > KEEP_BYTES) {
		forget(p, size);
		return;
	}
	*(size_t *)p = size;
	for (int i = 0; i < KEEP_N; i++) {
		void *none = NULL;
		if (atomic_compare_exchange_strong(&kept[i], &none, p)) {
			/* The last busy loop may have tidied up since the check
			 * above; then nobody else would give this one back. */
			if (atomic_load(&holders) <= 0)
				ssock__big_trim();
			return;
		}
	}
	forget(p, size);
}

int ssock__big_kept(size_t *bytes)
{
	int n = 0;
	for (int i = 0; i < KEEP_N; i++)
		n += atomic_load(&kept[i]) != NULL;
	*bytes = atomic_load(&kept_bytes);
	return n;
}

/* --------------------------------------------------------------- tidying */

void ssock__loop_released(ssock_loop *l, size_t bytes)
{
	l->released += bytes;
	if (l->tidy.heap_idx == SIZE_MAX && (bytes == 0 || l->released >= TIDY_BYTES)) {
		l->activity_at_tidy = l->activity;
		static pthread_once_t once = PTHREAD_ONCE_INIT;
		pthread_once(&once, at_fork_once);
		if (ssock__timer_start(l, &l->tidy, l->now + TIDY_AFTER_MS) == 0)
			atomic_fetch_add(&holders, 1);
	}
}

void ssock__loop_tidy(ssock__timer *t)
{
	ssock_loop *l = (ssock_loop *)((char *)t - offsetof(ssock_loop, tidy));
	if (l->activity != l->activity_at_tidy) { /* still busy: look again later */
		l->activity_at_tidy = l->activity;
		if (ssock__timer_start(l, t, l->now + TIDY_AFTER_MS) == 0)
			return;
	}
	let_go();
	ssock__big_trim();
	ssock__chunks_trim(l, false);
	l->released = 0;
#ifdef __GLIBC__
	/* Freed memory stays with malloc, in this thread's arena, until told;
	 * this gives its free pages back to the system. But not the top of a
	 * thread's own arena (not the main one), where it merged what it
	 * freed: glibc trims that only when a free of 64 KiB or more merges,
	 * so one is made here. */
	malloc_trim(0);
	void *volatile nudge = malloc(TRIM_NUDGE); /* volatile: kept by the compiler */
	free(nudge);
#endif
}

void ssock__loop_tidy_cancel(ssock_loop *l)
{
	if (l->tidy.heap_idx != SIZE_MAX) {
		ssock__timer_stop(l, &l->tidy);
		let_go();
	}
	ssock__big_trim();
}
