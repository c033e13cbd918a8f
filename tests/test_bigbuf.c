/*
 * Large payload buffers, recycled (src/bigbuf.c): what ssock_free() gives
 * back is reused by the next large read instead of fresh pages, within the
 * cache's bounds, and a tidy-up gives everything back.
 */
#include "internal.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

TEST(freed_large_buffer_is_reused)
{
	ssock__big_trim();
	void *a = malloc(1u << 20);
	CHECK(a);
	ssock__big_free(a);
	void *b = ssock__big_alloc(1u << 20);
	CHECK(b == a);
	/* A request it would waste more than half of does not take it. */
	ssock__big_free(b);
	void *c = ssock__big_alloc(256u << 10);
	CHECK(c != b);
	free(c);
	ssock__big_trim();
}

TEST(small_buffers_are_not_kept)
{
	ssock__big_trim();
	void *a = malloc(4096);
	CHECK(a);
	ssock__big_free(a); /* freed: malloc's own bins reuse small blocks */
	void *b = ssock__big_alloc(128u << 10);
	CHECK(b);
	void *c = ssock__big_alloc(128u << 10);
	CHECK(c && c != b);
	free(b);
	free(c);
}

/* At most 16 blocks and 16 MiB are kept: the rest goes back to malloc;
 * a tidy-up gives back all. */
TEST(the_cache_is_bounded)
{
	ssock__big_trim();
	enum { N = 40 };
	size_t bytes;
	for (int i = 0; i < N; i++) {
		void *b = malloc(1u << 20);
		CHECK(b);
		ssock__big_free(b);
		CHECK_INT(ssock__big_kept(&bytes), <=, 16);
		CHECK_INT(bytes, <=, 16u << 20);
	}
	CHECK_INT(ssock__big_kept(&bytes), >=, 8); /* blocks are a little over 1 MiB */
	ssock__big_trim();
	CHECK_INT(ssock__big_kept(&bytes), ==, 0);
	CHECK_INT(bytes, ==, 0);
}

/* An inbox server: the payload of a large message, given back with
 * ssock_event_release(), holds the next large message. */
TEST(inbox_payload_given_back_holds_the_next_one)
{
	ssock__big_trim();
	ssock_server_opts o = {0};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv));
	size_t len = 1u << 20;
	uint8_t *msg = malloc(len);
	CHECK(msg);
	np_pattern(msg, len, 1);
	CHECK_OK(np_send_u32(fd, msg, len));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(np_pattern_ok(ev.data, ev.len, 1));
	ssock_event_release(&ev);
	size_t bytes;
	CHECK_INT(ssock__big_kept(&bytes), ==, 1); /* kept, not freed */
	np_pattern(msg, len, 2);
	CHECK_OK(np_send_u32(fd, msg, len));
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(np_pattern_ok(ev.data, ev.len, 2));
	CHECK_INT(ssock__big_kept(&bytes), ==, 0); /* the read took it */
	ssock_free(ev.data);
	CHECK_INT(ssock__big_kept(&bytes), ==, 1);
	close(fd);
	free(msg);
	CHECK_OK(ssock_server_free(srv));
}

static bool nothing_kept(void *arg)
{
	(void)arg;
	size_t bytes;
	return ssock__big_kept(&bytes) == 0;
}

/* What the program gave back is kept only while the loop is busy: a
 * second after the last large read, the tidy-up gives it all back, with
 * nothing else happening. */
TEST(kept_buffers_go_back_once_the_loop_is_quiet)
{
	ssock__big_trim();
	ssock_server_opts o = {0};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv));
	size_t len = 1u << 20;
	uint8_t *msg = malloc(len);
	CHECK(msg);
	np_pattern(msg, len, 3);
	CHECK_OK(np_send_u32(fd, msg, len));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	ssock_event_release(&ev);
	size_t bytes;
	CHECK_INT(ssock__big_kept(&bytes), ==, 1);
	CHECK(test_wait_until(nothing_kept, NULL, T));
	close(fd);
	free(msg);
	CHECK_OK(ssock_server_free(srv));
}
