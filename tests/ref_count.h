/*
 * Counting the releases of buffers sent by reference (test_send_ref*.c):
 * on_release() is the ssock_release_fn, arg a ref_count.
 */
#ifndef SSOCK_TEST_REF_COUNT_H
#define SSOCK_TEST_REF_COUNT_H

#include "net_helpers.h"
#include "test.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Counts the releases of one buffer, and checks each is of that buffer. */
typedef struct ref_count {
	const void *data;
	atomic_int released;
	atomic_int wrong; /* calls with another pointer */
	test_signal sig;
} ref_count;

static inline void ref_init(ref_count *r, const void *data)
{
	r->data = data;
	atomic_init(&r->released, 0);
	atomic_init(&r->wrong, 0);
	test_signal_init(&r->sig);
}

static inline void on_release(const void *data, void *arg)
{
	ref_count *r = arg;
	if (data != r->data)
		atomic_fetch_add(&r->wrong, 1);
	test_signal_raise(&r->sig, atomic_fetch_add(&r->released, 1) + 1);
}

/* Waits until r was released n times in all. */
static inline bool released_within(ref_count *r, int n, int ms)
{
	return test_signal_wait(&r->sig, n, ms) != TEST_SIGNAL_TIMEOUT;
}

/* len bytes of np_pattern(seed), malloc'd. */
static inline uint8_t *pattern(size_t len, uint64_t seed)
{
	uint8_t *b = malloc(len);
	if (b)
		np_pattern(b, len, seed);
	return b;
}

#endif
