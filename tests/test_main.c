/* The main() shared by every test program: runs one named test or all. */
#include "test.h"

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
