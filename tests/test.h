/*
 * A minimal test harness. Each TEST(name) in a file becomes its own CTest
 * test "<file>.<name>" (CMake reads the TEST( lines), run as `prog name`;
 * `prog` alone runs every test in the file. A failed CHECK prints where and
 * why and fails the test; tests never sleep to wait: they wait on events with
 * a deadline (see test_wait_until()).
 */
#ifndef SSOCK_TEST_H
#define SSOCK_TEST_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*test_fn)(void);

struct test_case {
	const char *name;
	test_fn fn;
	struct test_case *next;
};

extern struct test_case *test__list;
extern int test__failed;

#define TEST(name)                                                       \
	static void test_##name(void);                                   \
	__attribute__((constructor)) static void test__reg_##name(void)  \
	{                                                                \
		static struct test_case tc = {#name, test_##name, NULL}; \
		struct test_case **p = &test__list;                      \
		while (*p)                                               \
			p = &(*p)->next;                                 \
		*p = &tc;                                                \
	}                                                                \
	static void test_##name(void)

#define TEST__FAIL(...)                                         \
	do {                                                    \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__);                   \
		fputc('\n', stderr);                            \
		test__failed = 1;                               \
		return;                                         \
	} while (0)

/* Each CHECK returns from the test function on failure. */
#define CHECK(cond)                                            \
	do {                                                   \
		if (!(cond))                                   \
			TEST__FAIL("CHECK(%s) failed", #cond); \
	} while (0)

#define CHECK_INT(a, op, b)                                                                      \
	do {                                                                                     \
		long long test__a = (long long)(a), test__b = (long long)(b);                    \
		if (!(test__a op test__b))                                                       \
			TEST__FAIL("CHECK(%s %s %s) failed: %lld vs %lld", #a, #op, #b, test__a, \
				   test__b);                                                     \
	} while (0)

/* Checks that a ssock call returned 0, printing the error otherwise. */
#define CHECK_OK(expr)                                                     \
	do {                                                               \
		int test__rc = (expr);                                     \
		if (test__rc != 0)                                         \
			TEST__FAIL("%s returned %d (%s)", #expr, test__rc, \
				   ssock_strerror(test__rc));              \
	} while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* Milliseconds on the monotonic clock. */
static inline int64_t test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline every wait in the tests uses unless it needs another. */
#define TEST_TIMEOUT_MS 10000

/*
 * Waiting, the two ways the tests do it (test_main.c):
 *
 * A signal that a callback (or another thread) raises and the test waits
 * for, with a deadline: test_signal_wait() returns the value raised with
 * the count-th raise, or TEST_SIGNAL_TIMEOUT.
 *
 * test_wait_until(): for a state that offers nothing to wait on (/proc, a
 * counter, a peer's view) it looks again after each short pause, until
 * cond(arg) holds or the deadline passes. Returns the last answer.
 */
typedef struct test_signal {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int count;
	int value;
} test_signal;

#define TEST_SIGNAL_TIMEOUT (-0x7fffffff - 1)

void test_signal_init(test_signal *s);
void test_signal_raise(test_signal *s, int value);
int test_signal_wait(test_signal *s, int count, int timeout_ms);
bool test_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);

#endif
