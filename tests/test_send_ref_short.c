/*
 * Sends by reference written a few bytes at a time: sendmsg() is replaced
 * (the test transport calls it; run as transport.test_send_ref_short.*) by
 * one that takes 1..7 bytes per call and reads every byte it takes through
 * memcpy (so ASan sees a read of a released payload). Every offset of a
 * chunk is hit, among them off == hlen (the header written, the payload
 * not started).
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

static atomic_int short_on;
static atomic_uint short_seq;

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (!atomic_load(&short_on))
		return syscall(SYS_sendmsg, fd, msg, flags);
	static const size_t steps[] = {1, 3, 4, 2, 5, 4, 7, 1, 4, 6};
	size_t limit = steps[atomic_fetch_add(&short_seq, 1) % (sizeof steps / sizeof steps[0])];
	struct iovec part[8];
	size_t k = 0, total = 0;
	uint8_t scratch[8];
	for (size_t i = 0; i < msg->msg_iovlen && k < 8 && total < limit; i++) {
		part[k] = msg->msg_iov[i];
		if (part[k].iov_len > limit - total)
			part[k].iov_len = limit - total;
		memcpy(scratch + total, part[k].iov_base, part[k].iov_len); /* ASan: a read */
		total += part[k].iov_len;
		k++;
	}
	struct msghdr m = {.msg_iov = part, .msg_iovlen = k};
	return syscall(SYS_sendmsg, fd, &m, flags);
}

typedef struct ref_count {
	atomic_int released;
} ref_count;

static void on_release(const void *data, void *arg)
{
	(void)data;
	ref_count *r = arg;
	/* Poison what was given back: a later read by ssock sends garbage. */
	atomic_fetch_add(&r->released, 1);
}

static void poison_release(const void *data, void *arg)
{
	ref_count *r = arg;
	memset((void *)data, 0xEE, 4096);
	atomic_fetch_add(&r->released, 1);
}

TEST(ref_chunks_written_a_few_bytes_at_a_time)
{
	ssock_server_opts o = {.send_queue_max = 64u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	enum { N = 12 };
	uint8_t *bufs[N];
	size_t lens[N];
	ref_count r[N];
	atomic_store(&short_on, 1);
	for (int i = 0; i < N; i++) {
		lens[i] = 4096 + (size_t)i * 3;
		bufs[i] = malloc(lens[i]);
		CHECK(bufs[i]);
		np_pattern(bufs[i], lens[i], (uint64_t)i + 40);
		atomic_init(&r[i].released, 0);
		if (i % 4 == 3)
			CHECK_OK(ssock_server_send(srv, id, bufs[i], 5)); /* small, copied */
		CHECK_OK(ssock_server_send_ref(srv, id, bufs[i], lens[i], 0,
					       i % 2 ? poison_release : on_release, &r[i]));
	}
	for (int i = 0; i < N; i++) {
		void *got;
		size_t n;
		if (i % 4 == 3) {
			CHECK_OK(np_recv_u32(fd, &got, &n, T));
			CHECK_INT(n, ==, 5);
			free(got);
		}
		CHECK_OK(np_recv_u32(fd, &got, &n, T));
		CHECK_INT(n, ==, lens[i]);
		CHECK(np_pattern_ok(got, n, (uint64_t)i + 40));
		free(got);
	}
	atomic_store(&short_on, 0);
	close(fd);
	ssock_server_free(srv);
	for (int i = 0; i < N; i++) {
		CHECK_INT(atomic_load(&r[i].released), ==, 1);
		free(bufs[i]);
	}
}

/* The echo fast path (the lent buffer queued as a ref chunk with release
 * NULL) written a few bytes at a time. */
static void echo_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
}

TEST(echo_fast_path_written_a_few_bytes_at_a_time)
{
	ssock_server_opts o = {.on_message = echo_cb};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	atomic_store(&short_on, 1);
	for (int i = 0; i < 6; i++) {
		size_t len = 70000 + (size_t)i; /* read into a buffer of its own: lent */
		uint8_t *b = malloc(len);
		CHECK(b);
		np_pattern(b, len, (uint64_t)i + 80);
		CHECK_OK(np_send_u32(fd, b, len));
		void *got;
		size_t n;
		CHECK_OK(np_recv_u32(fd, &got, &n, T));
		CHECK_INT(n, ==, len);
		CHECK(np_pattern_ok(got, n, (uint64_t)i + 80));
		free(got);
		free(b);
	}
	atomic_store(&short_on, 0);
	close(fd);
	ssock_server_free(srv);
}
