/* The main() shared by every test program: runs one named test or all,
 * over plain TCP, or over the tests' own transport when
 * SSOCK_TEST_TRANSPORT=test (see transport_test.c). */
#include "test.h"
#include "transport_test.h"

struct test_case *test__list;
int test__failed;

void test_signal_init(test_signal *s)
{
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->count = 0;
	s->value = 0;
}

void test_signal_raise(test_signal *s, int value)
{
	pthread_mutex_lock(&s->mu);
	s->count++;
	s->value = value;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int test_signal_wait(test_signal *s, int count, int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	while (s->count < count && rc == 0)
		rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	int v = s->count >= count ? s->value : TEST_SIGNAL_TIMEOUT;
	pthread_mutex_unlock(&s->mu);
	return v;
}

bool test_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	bool ok;
	while (!(ok = cond(arg)) && test_now_ms() < deadline) {
		struct timespec pause = {0, 10 * 1000000L};
		nanosleep(&pause, NULL);
	}
	return ok;
}

static int run(struct test_case *tc)
{
	test__failed = 0;
	tc->fn();
	printf("%s %s\n", test__failed ? "FAIL" : "ok  ", tc->name);
	fflush(stdout);
	return test__failed;
}

int main(int argc, char **argv)
{
	int failed = 0, passed = 0, found = 0;
	const char *transport = getenv("SSOCK_TEST_TRANSPORT");
	if (transport && strcmp(transport, "test") == 0)
		ssock__transport_set_default(&test_transport);
	else if (transport && *transport && strcmp(transport, "tcp") != 0) {
		fprintf(stderr, "SSOCK_TEST_TRANSPORT: unknown transport %s\n", transport);
		return 2;
	}
	for (struct test_case *tc = test__list; tc; tc = tc->next) {
		if (argc > 1 && strcmp(argv[1], tc->name) != 0)
			continue;
		found = 1;
		if (run(tc))
			failed++;
		else
			passed++;
	}
	if (!found) {
		fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");
		return 2;
	}
	return failed ? 1 : 0;
}
