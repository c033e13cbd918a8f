/*
 * Error codes: every code has its symbol and message, errno codes are told
 * by name, and any other int (the extremes too: a binding may pass what a
 * program gave it) is "unknown" without undefined behaviour.
 */
#include "ssock.h"
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

TEST(every_code_has_a_name_and_a_message)
{
#define CHECK_CODE(name, value, msg)                    \
	CHECK(strcmp(ssock_errname(name), #name) == 0); \
	CHECK(strcmp(ssock_strerror(name), msg) == 0);
	SSOCK_ERRORS(CHECK_CODE)
#undef CHECK_CODE
	CHECK(strcmp(ssock_errname(0), "OK") == 0);
	CHECK(strcmp(ssock_strerror(0), "success") == 0);
}

TEST(errno_codes_are_named_by_the_c_library)
{
	CHECK(strcmp(ssock_errname(-ENOENT), "ENOENT") == 0);
	CHECK(strcmp(ssock_strerror(-ENOENT), "No such file or directory") == 0);
}

TEST(unknown_codes_even_the_extremes)
{
	const int codes[] = {INT_MIN, INT_MIN + 1, -4096, -30999, 1, 12345, INT_MAX};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		CHECK(strcmp(ssock_errname(codes[i]), "UNKNOWN") == 0);
		CHECK(strcmp(ssock_strerror(codes[i]), "unknown error") == 0);
	}
}
