/* The main() shared by every test program: runs one named test or all,
 * over plain TCP, or over the tests' own transport when
 * SSOCK_TEST_TRANSPORT=test (see transport_test.c). */
#include "test.h"
#include "transport_test.h"

struct test_case *test__list;
int test__failed;

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
