/*
 * Decoders run over input that ends right where an unreadable page begins,
 * so a single byte read past the end kills the test with SIGSEGV. Every
 * prefix of a set of valid and invalid frames is tried, and the results are
 * checked against the whole input so the test also asserts what it gets.
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "frame.h"
#include "ssock.h"
#include "test.h"
#include "tinyproto.h"

static uint8_t *guard_end; /* first byte of the PROT_NONE page */

static int guard_setup(void)
{
	if (guard_end)
		return 0;
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *p = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	if (mprotect(p + page, (size_t)page, PROT_NONE) != 0)
		return -1;
	guard_end = p + page;
	return 0;
}

/* Copies data[0..n) so that its last byte is the last readable one. */
static const uint8_t *place(const void *data, size_t n)
{
	uint8_t *at = guard_end - n;
	if (n > 0)
		memcpy(at, data, n);
	return at;
}

TEST(guard_page_is_really_unreadable)
{
	CHECK_INT(guard_setup(), ==, 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* quiet: under ASan the fault is its report and exit(1) */
		freopen("/dev/null", "w", stderr);
		volatile const uint8_t *p = place("x", 1);
		(void)p[1]; /* one past the end: must fault */
		_exit(0);
	}
	int status = 0;
	CHECK_INT(waitpid(pid, &status, 0), ==, pid);
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
	if (WIFSIGNALED(status))
		CHECK_INT(WTERMSIG(status), ==, SIGSEGV);
}

struct input {
	const char *bytes;
	size_t len;
};

#define IN(s)                    \
	{                        \
		s, sizeof(s) - 1 \
	}

static const struct input u32_inputs[] = {
	IN("\0\0\0\0"),
	IN("\0\0\0\5hello"),
	IN("\0\0\0\3abc\0\0\0\0\0\0\0\1z"),
	IN("\0\0\0\x10short"),     /* truncated payload */
	IN("\xff\xff\xff\xff"),    /* 4 GiB - 1 */
	IN("\x01\0\0\x01payload"), /* 16 MiB + 1 */
	IN("\x80\0\0\0"),
};

TEST(guard_u32_every_prefix)
{
	static const uint32_t maxes[] = {0, 3, 5, 16u << 20, UINT32_MAX};
	CHECK_INT(guard_setup(), ==, 0);
	for (size_t i = 0; i < sizeof u32_inputs / sizeof u32_inputs[0]; i++) {
		for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
			const struct input *in = &u32_inputs[i];
			const uint8_t *msg;
			size_t msg_len, need = 0;
			const uint8_t *full = place(in->bytes, in->len);
			ssize_t whole =
				ssock__u32_decode(full, in->len, maxes[m], &msg, &msg_len, &need);
			for (size_t k = 0; k < in->len; k++) {
				const uint8_t *b = place(in->bytes, k);
				ssize_t rc =
					ssock__u32_decode(b, k, maxes[m], &msg, &msg_len, &need);
				/* a prefix never yields more than the whole input */
				if (k < 4)
					CHECK_INT(rc, ==, 0);
				else if (whole < 0)
					CHECK_INT(rc, ==, whole);
				else if (rc > 0)
					CHECK_INT(rc, ==, whole);
				else
					CHECK(rc == 0 && need > k);
			}
		}
	}
}

static const struct input line_inputs[] = {
	IN("\n"),
	IN("\r\n"),
	IN("hello\r\n"),
	IN("hello\n"),
	IN("a\rb\n"),
	IN("no newline at all"),
	IN("trailing cr\r"),
	IN("\r\r\r\r\r\r"),
	IN("this line is longer than the max\n"),
	IN("ok\nsecond line\n"),
};

/* Runs the line decoder over data[0..n) placed at the guard page with every
 * scanned hint that is true for it, checking each agrees with hint 0. */
static int line_all_hints(const struct input *in, size_t k, uint32_t max)
{
	const uint8_t *msg;
	size_t msg_len, scanned = 0;
	const uint8_t *b = place(in->bytes, k);
	ssize_t want = ssock__line_decode(b, k, max, &scanned, &msg, &msg_len);
	const uint8_t *nl = memchr(b, '\n', k);
	size_t limit = nl ? (size_t)(nl - b) : k; /* true hints: 0..limit */
	for (size_t hint = 0; hint <= limit; hint++) {
		scanned = hint;
		if (ssock__line_decode(b, k, max, &scanned, &msg, &msg_len) != want)
			return -1;
		if (want == 0 && scanned != k)
			return -1;
	}
	return 0;
}

TEST(guard_line_every_prefix_and_hint)
{
	static const uint32_t maxes[] = {0, 2, 5, 16u << 20};
	CHECK_INT(guard_setup(), ==, 0);
	for (size_t i = 0; i < sizeof line_inputs / sizeof line_inputs[0]; i++)
		for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++)
			for (size_t k = 0; k <= line_inputs[i].len; k++)
				if (line_all_hints(&line_inputs[i], k, maxes[m]) != 0)
					TEST__FAIL("input %zu max %u prefix %zu", i, maxes[m], k);
}

TEST(guard_line_check_every_prefix)
{
	CHECK_INT(guard_setup(), ==, 0);
	for (size_t i = 0; i < sizeof line_inputs / sizeof line_inputs[0]; i++) {
		const struct input *in = &line_inputs[i];
		for (size_t k = 0; k <= in->len; k++) {
			const uint8_t *b = place(in->bytes, k);
			int want = memchr(in->bytes, '\n', k) ? SSOCK_EFRAMING : 0;
			CHECK_INT(ssock__line_check(b, k), ==, want);
		}
	}
}

TEST(guard_addr_split_every_suffix)
{
	/* split reads a NUL-terminated string: put the NUL on the last
	 * readable byte, and try every tail of each text (good and bad) */
	static const char *const texts[] = {
		"127.0.0.1:80", "[::1]:443", ":9000",  "[fe80::1%eth0]:1",
		"[::1",         "[::1]",     "[::1]:", "host:",
		"host",         "[",         "]:",     "1.2.3.4:99999999",
	};
	CHECK_INT(guard_setup(), ==, 0);
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		size_t n = strlen(texts[i]);
		for (size_t k = 0; k <= n; k++) {
			const char *tail = texts[i] + n - k;
			const char *b = (const char *)place(tail, k + 1);
			char host[SSOCK__HOST_MAX];
			uint16_t port;
			int rc = ssock__addr_split(b, host, &port);
			CHECK(rc == 0 || rc == SSOCK_EBADADDR);
		}
	}
	char host[SSOCK__HOST_MAX];
	uint16_t port = 0;
	const char *b = (const char *)place("[::1]:443", 10);
	CHECK_INT(ssock__addr_split(b, host, &port), ==, 0);
	CHECK_INT(port, ==, 443);
}

static const struct input tp_inputs[] = {
	IN("\xff"),
	IN("\x00"),
	IN("\xff\x00\x00\x00\x05hello"),
	IN("\x00\x00\x00\x07"),
	IN("\xff\xff\xff\xff"),
	IN("\x01\x00\x00\x00"),
	IN("G"),
};

TEST(guard_tinyproto_every_prefix_every_state)
{
	CHECK_INT(guard_setup(), ==, 0);
	for (size_t i = 0; i < sizeof tp_inputs / sizeof tp_inputs[0]; i++) {
		const struct input *in = &tp_inputs[i];
		for (unsigned f = 0; f < 16; f++) {
			ssock__tp st = {.hello_in = f & 1,
					.rx_accepted = f & 2,
					.tx_waiting = f & 4,
					.after_refusal = f & 8};
			for (size_t k = 0; k <= in->len; k++) {
				ssock__tp_act act;
				const uint8_t *b = place(in->bytes, k);
				ssize_t rc = ssock__tp_step(&st, b, k, 16, &act);
				/* never more than it was given; nothing when it needs more */
				CHECK(rc < 0 || (size_t)rc <= k);
				if (rc >= 0 && act == SSOCK__TP_NEED)
					CHECK_INT(rc, ==, 0);
				if (k == 0)
					CHECK(rc == 0 && act == SSOCK__TP_NEED);
			}
		}
	}
}
