/*
 * ssock_server_pause_reading() / _resume_reading() (and the client's): one connection's input
 * waits (its peer meets backpressure) while the others go on, and nothing
 * read is lost or reordered across a pause, also one made in the middle of a
 * buffer of frames by a callback.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* Message i of a peer: "<tag>:<i>". */
static int msg_of(char *buf, size_t size, char tag, int i)
{
	return snprintf(buf, size, "%c:%d", tag, i);
}

static bool is_msg(const ssock_event *ev, char tag, int i)
{
	char want[32];
	int n = msg_of(want, sizeof want, tag, i);
	return ev->len == (size_t)n && memcmp(ev->data, want, (size_t)n) == 0;
}

/* Sends n messages tagged tag in one write. */
static bool send_burst(int fd, char tag, int n)
{
	size_t cap = (size_t)n * 24, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return false;
	for (int i = 0; i < n; i++) {
		char m[20];
		int k = msg_of(m, sizeof m, tag, i);
		uint32_t be = htonl((uint32_t)k);
		memcpy(buf + len, &be, 4);
		memcpy(buf + len + 4, m, (size_t)k);
		len += 4 + (size_t)k;
	}
	int rc = np_write(fd, buf, len);
	free(buf);
	return rc == 0;
}

TEST(a_paused_connection_waits_while_the_others_go_on)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int fa = np_connect(port, false);
	uint64_t a = fa >= 0 ? np_take_connect(srv) : 0;
	int fb = np_connect(port, false);
	uint64_t b = fb >= 0 ? np_take_connect(srv) : 0;
	CHECK(a && b);
	CHECK_OK(ssock_server_pause_reading(srv, a));
	CHECK_OK(ssock_server_pause_reading(srv, a)); /* twice is fine */
	CHECK(send_burst(fa, 'a', 100));
	CHECK(send_burst(fb, 'b', 1));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.conn == b && is_msg(&ev, 'b', 0));
	ssock_event_release(&ev);
	/* Nothing of a's while it is paused. */
	CHECK_INT(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, 200), ==, SSOCK_ETIMEDOUT);
	CHECK_OK(ssock_server_resume_reading(srv, a));
	for (int i = 0; i < 100; i++) {
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		bool ok = ev.conn == a && is_msg(&ev, 'a', i);
		ssock_event_release(&ev);
		if (!ok)
			TEST__FAIL("message %d of a's came wrong or out of order", i);
	}
	close(fa);
	close(fb);
	CHECK_OK(ssock_server_free(srv));
}

TEST(a_paused_connections_peer_meets_backpressure)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	uint64_t id = fd >= 0 ? np_take_connect(srv) : 0;
	CHECK(id);
	CHECK_OK(ssock_server_pause_reading(srv, id));
	/* 64 MiB of one message announced: the peer's writes stop (EAGAIN)
	 * long before, and stay stopped, since nobody reads. */
	uint32_t be = htonl(64u << 20);
	CHECK_INT(np_write(fd, &be, 4), ==, 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	static char chunk[1 << 16];
	size_t sent = 0;
	ssize_t n;
	while (sent < (64u << 20) && (n = write(fd, chunk, sizeof chunk)) > 0)
		sent += (size_t)n;
	CHECK(sent < (64u << 20) && (errno == EAGAIN || errno == EWOULDBLOCK));
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	CHECK_INT(poll(&p, 1, 300), ==, 0); /* no room comes: nothing is read */
	ssock_server_stats st;
	CHECK_OK(ssock_server_stats_get(srv, &st));
	CHECK_INT(st.inbox_events, ==, 0);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* In callback mode: the 10th message's callback pauses its connection; the
 * rest of the burst, already read, waits stashed, and comes in order after
 * the resume. */
static ssock_server *cb_srv;
static atomic_int cb_count;
static atomic_int cb_bad;

static void pause_at_ten(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	int i = atomic_fetch_add(&cb_count, 1);
	ssock_event ev = {.data = (void *)data, .len = len};
	if (!is_msg(&ev, 'p', i))
		atomic_fetch_add(&cb_bad, 1);
	if (i == 9 && ssock_server_pause_reading(cb_srv, ssock_conn_id(c)) != 0)
		atomic_fetch_add(&cb_bad, 1);
}

static bool count_at_least(void *arg)
{
	return atomic_load(&cb_count) >= *(int *)arg;
}

TEST(a_pause_from_a_callback_stops_at_the_next_frame)
{
	ssock_server_opts o = {.on_message = pause_at_ten};
	int port;
	cb_srv = np_server(&o, &port);
	CHECK(cb_srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(send_burst(fd, 'p', 1000));
	int ten = 10, all = 1000;
	CHECK(test_wait_until(count_at_least, &ten, T));
	ssock_conn_info info;
	CHECK_INT(ssock_server_conns(cb_srv, &info, 1), ==, 1);
	int eleven = 11;
	CHECK(!test_wait_until(count_at_least, &eleven, 200)); /* stopped at ten */
	CHECK_INT(atomic_load(&cb_count), ==, 10);
	CHECK_OK(ssock_server_resume_reading(cb_srv, info.id));
	CHECK(test_wait_until(count_at_least, &all, T));
	CHECK_INT(atomic_load(&cb_bad), ==, 0);
	close(fd);
	CHECK_OK(ssock_server_free(cb_srv));
}

TEST(pause_refuses_unknown_ids)
{
	ssock_server *srv = np_server(NULL, NULL);
	CHECK(srv);
	CHECK_INT(ssock_server_pause_reading(srv, 12345), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_resume_reading(srv, 0), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_pause_reading(NULL, 1), ==, SSOCK_EINVAL);
	CHECK_OK(ssock_server_free(srv));
}

TEST(a_client_pauses_its_connection_too)
{
	int lport;
	int lfd = np_listen(4, &lport);
	CHECK(lfd >= 0);
	ssock_client *cli = np_client(NULL, lport, false);
	CHECK(cli);
	CHECK_INT(ssock_client_pause_reading(cli), ==, SSOCK_ENOTCONN); /* none yet */
	CHECK_OK(ssock_client_connect(cli, T));
	int peer = accept(lfd, NULL, NULL);
	CHECK(peer >= 0);
	CHECK_OK(ssock_client_pause_reading(cli));
	CHECK(send_burst(peer, 'c', 50));
	ssock_event ev;
	CHECK_INT(np_client_wait(cli, SSOCK_EVENT_MESSAGE, &ev, 200), ==, SSOCK_ETIMEDOUT);
	CHECK_OK(ssock_client_resume_reading(cli));
	for (int i = 0; i < 50; i++) {
		CHECK_OK(np_client_wait(cli, SSOCK_EVENT_MESSAGE, &ev, T));
		bool ok = is_msg(&ev, 'c', i);
		ssock_event_release(&ev);
		CHECK(ok);
	}
	close(peer);
	close(lfd);
	CHECK_OK(ssock_client_free(cli));
	CHECK_INT(ssock_client_pause_reading(NULL), ==, SSOCK_EINVAL);
}

/* A resume made by a callback while the loop resumes another connection
 * (whose stashed frames it is delivering) used to overwrite the list that
 * resume was walking: the connections still on it stayed paused for good. */
static ssock_server *nest_srv;
static atomic_ullong nest_b;
static atomic_int nest_a_msgs, nest_b_msgs, nest_bad;

static void nest_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	char m = len == 1 ? *(const char *)data : '?';
	if (ssock_conn_id(c) == atomic_load(&nest_b)) {
		atomic_fetch_add(&nest_b_msgs, 1);
		return;
	}
	atomic_fetch_add(&nest_a_msgs, 1);
	int rc = 0;
	if (m == 'P') /* pause myself: what follows stays stashed */
		rc = ssock_server_pause_reading(nest_srv, ssock_conn_id(c));
	else if (m == 'R') /* delivered by the resume of a: resume b */
		rc = ssock_server_resume_reading(nest_srv, atomic_load(&nest_b));
	if (rc != 0)
		atomic_fetch_add(&nest_bad, 1);
}

static bool at_least(void *arg)
{
	int *want = arg; /* {which, n}: 0 a's, 1 b's */
	return atomic_load(want[0] ? &nest_b_msgs : &nest_a_msgs) >= want[1];
}

static bool send_chars(int fd, const char *s)
{
	for (; *s; s++)
		if (np_send_u32(fd, s, 1) != 0)
			return false;
	return true;
}

TEST(a_resume_from_a_callback_during_another_resume)
{
	ssock_server_opts o = {.on_message = nest_cb};
	int port;
	nest_srv = np_server(&o, &port);
	CHECK(nest_srv);
	int fb = np_connect(port, false);
	CHECK(fb >= 0 && np_wait_conns(nest_srv, 1, true, T) >= 1);
	ssock_conn_info info[2];
	CHECK_INT(ssock_server_conns(nest_srv, info, 2), ==, 1);
	atomic_store(&nest_b, info[0].id);
	CHECK_OK(ssock_server_pause_reading(nest_srv, info[0].id));
	CHECK(send_chars(fb, "bbb"));
	int b_one[2] = {1, 1};
	CHECK(!test_wait_until(at_least, b_one, 300)); /* held: b reads nothing */
	int fa = np_connect(port, false);
	CHECK(fa >= 0 && np_wait_conns(nest_srv, 2, true, T) >= 2);
	CHECK_INT(ssock_server_conns(nest_srv, info, 2), ==, 2);
	uint64_t a = info[0].id == atomic_load(&nest_b) ? info[1].id : info[0].id;
	/* "xPR" in one write: x, then P pauses a, so R waits in its stash. */
	uint8_t burst[15];
	for (int i = 0; i < 3; i++) {
		uint32_t be = htonl(1);
		memcpy(burst + 5 * i, &be, 4);
		burst[5 * i + 4] = (uint8_t) "xPR"[i];
	}
	CHECK_INT(np_write(fa, burst, sizeof burst), ==, 0);
	int a_two[2] = {0, 2}, a_three[2] = {0, 3}, b_three[2] = {1, 3};
	CHECK(test_wait_until(at_least, a_two, T));
	CHECK(!test_wait_until(at_least, a_three, 300));    /* R waits */
	CHECK_OK(ssock_server_resume_reading(nest_srv, a)); /* R resumes b */
	CHECK(test_wait_until(at_least, a_three, T));
	if (!test_wait_until(at_least, b_three, T))
		TEST__FAIL("b was resumed from a callback but got %d of its 3 messages",
			   atomic_load(&nest_b_msgs));
	CHECK_INT(atomic_load(&nest_bad), ==, 0);
	close(fa);
	close(fb);
	CHECK_OK(ssock_server_free(nest_srv));
}

/* With tinyproto the peer's answer to a message of ours is input too: a
 * paused connection that is closed must read it, send the message and end,
 * not wait out the linger and drop the message. */
TEST(closing_a_paused_tinyproto_connection_sends_what_it_queued)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	uint64_t id = fd >= 0 ? np_take_connect(srv) : 0;
	CHECK(id);
	uint8_t ok = 0xFF, in = 0;
	CHECK_INT(np_write(fd, &ok, 1), ==, 0);
	CHECK(np_read_exact(fd, &in, 1, T) == 0 && in == 0xFF); /* the handshake */
	/* One message in: the server has read the peer's handshake byte (a
	 * pause before that would hold the handshake too). */
	uint32_t be = htonl(2);
	CHECK_INT(np_write(fd, &be, 4), ==, 0);
	CHECK(np_read_exact(fd, &in, 1, T) == 0 && in == 0xFF);
	CHECK_INT(np_write(fd, "hi", 2), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	ssock_event_release(&ev);
	CHECK_OK(ssock_server_pause_reading(srv, id));
	CHECK_OK(ssock_server_send(srv, id, "hello", 5));
	uint8_t size[4];
	CHECK_INT(np_read_exact(fd, size, 4, T), ==, 0);
	CHECK_INT(np_write(fd, &ok, 1), ==, 0); /* accepted: unread while paused */
	CHECK_OK(ssock_server_disconnect(srv, id));
	char got[5];
	CHECK_INT(np_read_exact(fd, got, 5, T), ==, 0);
	CHECK(memcmp(got, "hello", 5) == 0);
	shutdown(fd, SHUT_WR);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.unsent, ==, 0);
	ssock_event_release(&ev);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}
