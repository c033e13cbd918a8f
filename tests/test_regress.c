/*
 * One named test per item of docs/DESIGN.md's "What the originals got wrong"
 * that applies to TCP. Each name starts with the library the bug comes from
 * (the Python simplesockets and tinyproto), and each test fails if ssock
 * ever has that bug.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

static bool msg_is(const ssock_event *ev, const char *want)
{
	return ev->type == SSOCK_EVENT_MESSAGE && ev->len == strlen(want) &&
	       (ev->len == 0 || memcmp(ev->data, want, ev->len) == 0);
}

/* Takes the next message from srv's inbox and compares it. */
static bool next_msg_is(ssock_server *srv, const char *want)
{
	ssock_event ev;
	if (np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T) != 0)
		return false;
	bool ok = msg_is(&ev, want);
	ssock_event_release(&ev);
	return ok;
}

/* ------------------------------------------------------- simplesockets */

TEST(regress_simplesockets_merged_sends)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	/* ssock to ssock: two sends back to back are two messages. */
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK_OK(ssock_client_send(cli, "one", 3));
	CHECK_OK(ssock_client_send(cli, "two", 3));
	CHECK(next_msg_is(srv, "one"));
	CHECK(next_msg_is(srv, "two"));
	ssock_event ev;
	CHECK_INT(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, 100), ==, SSOCK_ETIMEDOUT);

	/* Both frames in one TCP segment from a raw peer: still two. */
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	uint8_t wire[] = {0, 0, 0, 3, 'o', 'n', 'e', 0, 0, 0, 3, 't', 'w', 'o'};
	CHECK_INT(np_write(fd, wire, sizeof wire), ==, 0);
	CHECK(next_msg_is(srv, "one"));
	CHECK(next_msg_is(srv, "two"));

	/* And the other way: the server's two sends reach the client as two. */
	CHECK_OK(ssock_server_send(srv, id, "one", 3));
	CHECK_OK(ssock_server_send(srv, id, "two", 3));
	uint8_t got[sizeof wire];
	CHECK_INT(np_read_exact(fd, got, sizeof got, T), ==, 0);
	CHECK_MEM(got, wire, sizeof wire);
	close(fd);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_2048_byte_message_not_held_back)
{
	/* simplesockets read 2048 bytes at a time and waited for more when a
	 * read came back full. With ssock reading 2048 at a time too, messages
	 * around that size must come out at once, with nothing sent after. */
	ssock_server_opts o = {.read_size = 2048};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv));
	size_t sizes[] = {2044, 2048, 2047, 2049, 4096, 4092, 6144};
	char buf[8192];
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		np_pattern(buf, sizes[i], i);
		CHECK_INT(np_send_u32(fd, buf, sizes[i]), ==, 0);
		/* Nothing else is sent until this one has arrived. */
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK_INT(ev.len, ==, sizes[i]);
		CHECK(np_pattern_ok(ev.data, ev.len, i));
		ssock_event_release(&ev);
	}
	close(fd);
	CHECK_OK(ssock_server_free(srv));

	/* The same with lines of exactly 2048 bytes with their newline. */
	ssock_server_opts lo = {.read_size = 2048, .framing = SSOCK_FRAMING_LINE};
	srv = np_server(&lo, &port);
	CHECK(srv);
	fd = np_connect(port, false);
	CHECK(fd >= 0);
	memset(buf, 'x', 2047);
	buf[2047] = '\n';
	CHECK_INT(np_write(fd, buf, 2048), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, 2047);
	ssock_event_release(&ev);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_closed_peer_noticed)
{
	np_collect col;
	np_collect_init(&col);
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = np_connect(port, false);
		CHECK(fds[i] >= 0);
	}
	CHECK(np_collect_wait(&col, &col.connects, 3, T));
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 3);

	/* Peers go away, one cleanly, one mid-message, one with a reset. */
	close(fds[0]);
	CHECK_INT(np_write(fds[1], "\0\0\0\10abc", 7), ==, 0);
	close(fds[1]);
	np_reset_close(fds[2]);
	CHECK(np_collect_wait(&col, &col.disconnects, 3, T));
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 0);

	/* And then nothing spins: over half a second the process uses far
	 * less CPU than the time that passed. */
	int64_t cpu0 = np_cpu_ms(), t0 = test_now_ms();
	CHECK(!np_collect_wait(&col, &col.disconnects, 4, 500));
	int64_t wall = test_now_ms() - t0, cpu = np_cpu_ms() - cpu0;
	CHECK_INT(cpu, <, wall / 2);
	CHECK_INT(col.disconnects, ==, 3);

	/* The client side notices a server that goes away, too. */
	np_collect ccol;
	np_collect_init(&ccol);
	ssock_client_opts co = {0};
	np_collect_client_opts(&ccol, &co);
	ssock_client *cli = np_client(&co, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK(np_collect_wait(&col, &col.connects, 4, T));
	CHECK_OK(ssock_server_free(srv));
	CHECK(np_collect_wait(&ccol, &ccol.disconnects, 1, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	cpu0 = np_cpu_ms();
	t0 = test_now_ms();
	CHECK(!np_collect_wait(&ccol, &ccol.disconnects, 2, 500));
	wall = test_now_ms() - t0;
	cpu = np_cpu_ms() - cpu0;
	CHECK_INT(cpu, <, wall / 2);
	CHECK_OK(ssock_client_free(cli));
	np_collect_free(&ccol);
	np_collect_free(&col);
}

TEST(regress_simplesockets_max_connections_enforced)
{
	ssock_server_opts o = {.max_conns = 2};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int a = np_connect(port, false), b = np_connect(port, false);
	CHECK(a >= 0 && b >= 0);
	CHECK(np_take_connect(srv) && np_take_connect(srv));
	/* The third is accepted and closed at once, and it is reported. */
	int c = np_connect(port, false);
	CHECK(c >= 0);
	CHECK_INT(np_wait_eof(c, T), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_ELIMIT);
	CHECK(strcmp(ev.op, "accept") == 0);
	ssock_event_release(&ev);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 2);
	close(c);
	/* Room again once one leaves. */
	close(a);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	ssock_event_release(&ev);
	int64_t deadline = test_now_ms() + T;
	while (ssock_server_conns(srv, NULL, 0) > 1 && test_now_ms() < deadline)
		CHECK_INT(ssock_server_next_event(srv, &ev, 10), ==, SSOCK_ETIMEDOUT);
	int d = np_connect(port, false);
	CHECK(d >= 0);
	CHECK(np_take_connect(srv));
	CHECK_INT(np_send_u32(d, "in", 2), ==, 0);
	CHECK(next_msg_is(srv, "in"));
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 2);
	close(b);
	close(d);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_inbox_loses_no_messages)
{
	/* simplesockets copied its inbox and then cleared it, losing what
	 * arrived in between. Here events are taken while a client sends as
	 * fast as it can: every message arrives, once, in order. */
	ssock_server_opts o = {.inbox_max = 16};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	ssock_client_opts co = {.send_queue_max = 1 << 20};
	ssock_client *cli = np_client(&co, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	enum { N = 20000 };
	int next = 0, got = 0;
	while (got < N) {
		/* Send a batch, then take whatever is there. */
		for (int i = 0; i < 64 && next < N; i++) {
			uint32_t v = htonl((uint32_t)next);
			int rc = ssock_client_send(cli, &v, sizeof v);
			if (rc == SSOCK_ESENDQFULL)
				break;
			CHECK_OK(rc);
			next++;
		}
		ssock_event ev;
		int rc;
		while ((rc = ssock_server_next_event(srv, &ev, next == N ? T : 0)) == 0) {
			if (ev.type == SSOCK_EVENT_MESSAGE) {
				uint32_t v;
				CHECK_INT(ev.len, ==, 4);
				memcpy(&v, ev.data, 4);
				CHECK_INT(ntohl(v), ==, got);
				got++;
			}
			ssock_event_release(&ev);
			if (got == N)
				break;
		}
		CHECK(rc == 0 || rc == SSOCK_ETIMEDOUT);
		CHECK(rc == 0 || next < N);
	}
	CHECK_INT(got, ==, N);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_inbox_and_error_list_bounded)
{
	/* Nobody reads the inbox while a peer floods: reading stops (TCP
	 * backpressure), nothing is dropped, memory stays put. */
	ssock_server_opts o = {.inbox_max = 8, .max_conns = 1, .error_log_max = 5};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv));
	long rss0 = np_rss_kb();
	fcntl(fd, F_SETFL, O_NONBLOCK);
	enum { MSG = 1024, MAXN = 200000 }; /* 200 MiB if nothing pushed back */
	char frame[4 + MSG];
	int sent = 0;
	size_t partial = 0; /* bytes of frame `sent` already written */
	while (sent < MAXN) {
		uint32_t be = htonl(MSG);
		memcpy(frame, &be, 4);
		np_pattern(frame + 4, MSG, (uint64_t)sent);
		ssize_t n = send(fd, frame + partial, sizeof frame - partial, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			/* Pushed back: done once it stays so for a while. */
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, 300) == 0)
				break;
			continue;
		}
		CHECK(n > 0);
		partial += (size_t)n;
		if (partial == sizeof frame) {
			partial = 0;
			sent++;
		}
	}
	CHECK_INT(sent, <, MAXN);
	long rss1 = np_rss_kb();
	CHECK_INT(rss1 - rss0, <, 32 * 1024); /* kB: a small part of what was sent */

	/* Errors meanwhile: 30 connections over the limit. The error log keeps
	 * its last 5; the inbox keeps at most inbox_max error events. */
	for (int i = 0; i < 30; i++) {
		int x = np_connect(port, false);
		CHECK(x >= 0);
		CHECK_INT(np_wait_eof(x, T), ==, 0);
		close(x);
	}
	ssock_error_info e[8];
	CHECK_INT(ssock_server_errors(srv, e, 8, 0), ==, 5);

	/* Now drain: every message written, in order, then the rest. */
	int got = 0, errors = 0;
	fcntl(fd, F_SETFL, 0);
	while (got < sent) {
		ssock_event ev;
		CHECK_OK(ssock_server_next_event(srv, &ev, T));
		if (ev.type == SSOCK_EVENT_ERROR) {
			CHECK_INT(ev.code, ==, SSOCK_ELIMIT);
			errors++;
		} else if (ev.type == SSOCK_EVENT_MESSAGE) {
			CHECK_INT(ev.len, ==, MSG);
			CHECK(np_pattern_ok(ev.data, ev.len, (uint64_t)got));
			got++;
		}
		ssock_event_release(&ev);
		if (got == sent && partial) {
			/* finish the frame that was cut short */
			CHECK_INT(np_write(fd, frame + partial, sizeof frame - partial), ==, 0);
			partial = 0;
			sent++;
		}
	}
	CHECK_INT(errors, >, 0);
	CHECK_INT(errors, <=, 8);
	CHECK_INT(got, ==, sent);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_ipv6)
{
	int port;
	ssock_server_opts o = {.listen = "[::1]:0"};
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	ssock_addr a;
	CHECK_OK(ssock_server_addr(srv, 0, &a));
	CHECK_INT(a.u.sa.sa_family, ==, AF_INET6);
	ssock_client *cli = np_client(NULL, port, true);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T));
	char text[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_format(&ev.peer, text, sizeof text), >, 0);
	CHECK(strncmp(text, "[::1]:", 6) == 0);
	uint64_t id = ev.conn;
	ssock_event_release(&ev);
	CHECK_OK(ssock_client_send(cli, "v6", 2));
	CHECK(next_msg_is(srv, "v6"));
	CHECK_OK(ssock_server_send(srv, id, "back", 4));
	void *data;
	size_t len;
	CHECK_OK(ssock_client_recv(cli, &data, &len, T));
	CHECK(len == 4 && memcmp(data, "back", 4) == 0);
	ssock_free(data);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));

	/* ":0" is every address: one server for IPv4 and IPv6 clients. */
	ssock_server_opts any = {.listen = ":0"};
	srv = np_server(&any, &port);
	CHECK(srv);
	int fd4 = np_connect(port, false), fd6 = np_connect(port, true);
	CHECK(fd4 >= 0 && fd6 >= 0);
	CHECK_INT(np_send_u32(fd4, "4", 1), ==, 0);
	CHECK(next_msg_is(srv, "4"));
	CHECK_INT(np_send_u32(fd6, "6", 1), ==, 0);
	CHECK(next_msg_is(srv, "6"));
	close(fd4);
	close(fd6);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_simplesockets_wait_does_not_busy_wait)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	/* Idle connections do not make the loop spin either. */
	int fds[20];
	for (int i = 0; i < 20; i++) {
		fds[i] = np_connect(port, false);
		CHECK(fds[i] >= 0);
		CHECK(np_take_connect(srv));
	}
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK(np_take_connect(srv));
	ssock_event ev;
	int64_t cpu0 = np_cpu_ms(), t0 = test_now_ms();
	CHECK_INT(ssock_server_next_event(srv, &ev, 400), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(np_client_wait(cli, SSOCK_EVENT_MESSAGE, &ev, 400), ==, SSOCK_ETIMEDOUT);
	int64_t wall = test_now_ms() - t0, cpu = np_cpu_ms() - cpu0;
	CHECK_INT(wall, >=, 780);
	CHECK_INT(wall, <, 5000);
	CHECK_INT(cpu, <, wall / 2);
	/* ...and a message still wakes the waiter at once. */
	CHECK_OK(ssock_client_send(cli, "wake", 4));
	CHECK(next_msg_is(srv, "wake"));
	for (int i = 0; i < 20; i++)
		close(fds[i]);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

/* ------------------------------------------------------------ tinyproto */

TEST(regress_tinyproto_closed_connection_fd_not_leaked)
{
	int fds0 = np_count_fds();
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int with_server = np_count_fds();
	for (int i = 0; i < 200; i++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		CHECK_INT(np_send_u32(fd, "x", 1), ==, 0);
		if (i % 2) { /* half of them leave with a reset */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			CHECK(next_msg_is(srv, "x"));
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		close(fd);
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
		ssock_event_release(&ev);
	}
	/* Server-side closes (disconnect by id) release their sockets too. */
	for (int i = 0; i < 50; i++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		uint64_t id = np_take_connect(srv);
		CHECK_OK(ssock_server_disconnect(srv, id));
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		close(fd);
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
		ssock_event_release(&ev);
	}
	CHECK_INT(np_wait_fds_at_most(with_server, T), ==, with_server);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 0);
	/* Clients that come and go leave nothing behind either. */
	for (int i = 0; i < 20; i++) {
		ssock_client *cli = np_client(NULL, port, false);
		CHECK(cli);
		CHECK_OK(ssock_client_connect(cli, T));
		CHECK_OK(ssock_client_free(cli));
	}
	CHECK_OK(ssock_server_free(srv));
	CHECK_INT(np_count_fds(), ==, fds0);
}

TEST(regress_tinyproto_connection_limit_keeps_server_alive)
{
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {.max_conns = 4, .error_log_max = 100};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int keep[4];
	for (int i = 0; i < 4; i++) {
		keep[i] = np_connect(port, false);
		CHECK(keep[i] >= 0);
	}
	CHECK(np_collect_wait(&col, &col.connects, 4, T));
	/* A flood over the limit. */
	int extra[40];
	for (int i = 0; i < 40; i++) {
		extra[i] = np_connect(port, false);
		CHECK(extra[i] >= 0);
	}
	for (int i = 0; i < 40; i++) {
		CHECK_INT(np_wait_eof(extra[i], T), ==, 0);
		close(extra[i]);
	}
	CHECK(np_collect_wait(&col, &col.errors, 40, T));
	CHECK_INT(col.last_error, ==, SSOCK_ELIMIT);
	CHECK_INT(col.connects, ==, 4);
	/* The four still get answers. */
	for (int i = 0; i < 4; i++) {
		CHECK_INT(np_send_u32(keep[i], "alive", 5), ==, 0);
		void *data;
		size_t len;
		CHECK_INT(np_recv_u32(keep[i], &data, &len, T), ==, 0);
		CHECK(len == 5 && memcmp(data, "alive", 5) == 0);
		free(data);
	}
	/* And newcomers are served once there is room. */
	for (int i = 0; i < 4; i++)
		close(keep[i]);
	CHECK(np_collect_wait(&col, &col.disconnects, 4, T));
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "new", 3), ==, 0);
	void *data;
	size_t len;
	CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0);
	CHECK(len == 3 && memcmp(data, "new", 3) == 0);
	free(data);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(regress_tinyproto_truncated_header_then_eof_not_delivered)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	/* Half a header; a header and part of its payload; a payload bigger
	 * than a read, cut short. None may come out as a message. */
	size_t big = 1 << 20;
	char *payload = calloc(1, big);
	struct {
		const void *bytes;
		size_t len;
	} cases[] = {
		{"\0\0", 2},
		{"\0\0\0\10abc", 7},
		{NULL, 4 + 300000},
	};
	uint32_t be = htonl((uint32_t)big);
	memcpy(payload, &be, 4);
	cases[2].bytes = payload;
	for (int i = 0; i < 3; i++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		uint64_t id = np_take_connect(srv);
		CHECK(id);
		CHECK_INT(np_write(fd, cases[i].bytes, cases[i].len), ==, 0);
		close(fd);
		ssock_event ev;
		CHECK_OK(ssock_server_next_event(srv, &ev, T));
		if (ev.type == SSOCK_EVENT_ERROR) { /* reported, then closed */
			CHECK_INT(ev.code, ==, SSOCK_ETRUNCATED);
			ssock_event_release(&ev);
			CHECK_OK(ssock_server_next_event(srv, &ev, T));
		}
		CHECK_INT(ev.type, ==, SSOCK_EVENT_DISCONNECT);
		CHECK_INT(ev.conn, ==, id);
		CHECK_INT(ev.code, ==, SSOCK_ETRUNCATED);
		ssock_event_release(&ev);
	}
	free(payload);
	ssock_event ev;
	CHECK_INT(ssock_server_next_event(srv, &ev, 0), ==, SSOCK_ETIMEDOUT);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_tinyproto_4gib_header_no_allocation)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	long rss0 = np_rss_kb();
	for (int i = 0; i < 8; i++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		uint64_t id = np_take_connect(srv);
		CHECK_INT(np_write(fd, "\xff\xff\xff\xff", 4), ==, 0);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		close(fd);
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
		CHECK_INT(ev.conn, ==, id);
		CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
		ssock_event_release(&ev);
	}
	ssock_error_info e;
	CHECK_INT(ssock_server_errors(srv, &e, 1, 0), ==, 8);
	CHECK_INT(e.code, ==, SSOCK_EMSGSIZE);
	CHECK_INT(np_rss_kb() - rss0, <, 8 * 1024);
	/* The server is fine. */
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "ok", 2), ==, 0);
	CHECK(next_msg_is(srv, "ok"));
	close(fd);
	CHECK_OK(ssock_server_free(srv));

	/* Even when 4 GiB - 1 is allowed, memory follows the bytes that came,
	 * not the size announced. */
	ssock_server_opts o = {.max_message = UINT32_MAX};
	srv = np_server(&o, &port);
	CHECK(srv);
	rss0 = np_rss_kb();
	fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv));
	size_t part = 1 << 20;
	char *buf = calloc(1, 4 + part);
	memcpy(buf, "\xff\xff\xff\xff", 4);
	CHECK_INT(np_write(fd, buf, 4 + part), ==, 0);
	free(buf);
	close(fd);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_ETRUNCATED);
	ssock_event_release(&ev);
	CHECK_INT(np_rss_kb() - rss0, <, 16 * 1024);
	CHECK_OK(ssock_server_free(srv));
}

TEST(regress_tinyproto_ipv6)
{
	/* tinyproto's add_addr could not serve IPv6. An IPv4 server adds an
	 * IPv6 address and serves clients on both. */
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port4;
	ssock_server *srv = np_server(&o, &port4);
	CHECK(srv);
	CHECK_INT(ssock_server_listen(srv, "[::1]:0"), ==, 1);
	int port6 = np_server_port(srv, 1);
	CHECK(port6 > 0);
	ssock_client *c6 = np_client(NULL, port6, true);
	ssock_client *c4 = np_client(NULL, port4, false);
	CHECK(c6 && c4);
	CHECK_OK(ssock_client_connect(c6, T));
	CHECK_OK(ssock_client_connect(c4, T));
	CHECK_OK(ssock_client_send(c6, "over six", 8));
	CHECK_OK(ssock_client_send(c4, "over four", 9));
	void *data;
	size_t len;
	CHECK_OK(ssock_client_recv(c6, &data, &len, T));
	CHECK(len == 8 && memcmp(data, "over six", 8) == 0);
	ssock_free(data);
	CHECK_OK(ssock_client_recv(c4, &data, &len, T));
	CHECK(len == 9 && memcmp(data, "over four", 9) == 0);
	ssock_free(data);
	ssock_conn_info ci[2];
	CHECK_INT(ssock_server_conns(srv, ci, 2), ==, 2);
	CHECK(ci[0].peer.u.sa.sa_family != ci[1].peer.u.sa.sa_family);
	CHECK_OK(ssock_client_free(c6));
	CHECK_OK(ssock_client_free(c4));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(regress_tinyproto_stalled_peer_does_not_block_others)
{
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {.read_timeout_ms = 500};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int stalled = np_connect(port, false);
	CHECK(stalled >= 0);
	CHECK_INT(np_write(stalled, "\0\0\0\20half", 8), ==, 0);
	int64_t stall_start = test_now_ms();
	/* Others are served while it stalls. */
	int others[3];
	for (int i = 0; i < 3; i++) {
		others[i] = np_connect(port, false);
		CHECK(others[i] >= 0);
	}
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 3; i++) {
			CHECK_INT(np_send_u32(others[i], "served", 6), ==, 0);
			void *data;
			size_t len;
			CHECK_INT(np_recv_u32(others[i], &data, &len, T), ==, 0);
			CHECK(len == 6 && memcmp(data, "served", 6) == 0);
			free(data);
		}
	}
	/* The stalled one is closed once read_timeout_ms has passed. */
	CHECK_INT(np_wait_eof(stalled, T), ==, 0);
	CHECK_INT(test_now_ms() - stall_start, >=, 450);
	CHECK(np_collect_wait(&col, &col.disconnects, 1, T));
	CHECK_INT(col.last_reason, ==, SSOCK_ESTALLED);
	CHECK_INT(col.last_error, ==, SSOCK_ESTALLED);
	CHECK_INT(col.messages, ==, 15);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 3);
	/* A peer that is slow between whole messages is not "stalled". */
	CHECK_INT(np_send_u32(others[0], "later", 5), ==, 0);
	void *data;
	size_t len;
	CHECK_INT(np_recv_u32(others[0], &data, &len, T), ==, 0);
	free(data);
	for (int i = 0; i < 3; i++)
		close(others[i]);
	close(stalled);
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(regress_tinyproto_one_thread_serves_many)
{
	int threads0 = np_thread_count();
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	enum { N = 100 };
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = np_connect(port, false);
		CHECK(fds[i] >= 0);
	}
	CHECK(np_collect_wait(&col, &col.connects, N, T));
	for (int i = 0; i < N; i++) {
		char m[16];
		snprintf(m, sizeof m, "c%d", i);
		CHECK_INT(np_send_u32(fds[i], m, strlen(m)), ==, 0);
	}
	for (int i = 0; i < N; i++) {
		char m[16];
		snprintf(m, sizeof m, "c%d", i);
		void *data;
		size_t len;
		CHECK_INT(np_recv_u32(fds[i], &data, &len, T), ==, 0);
		CHECK(len == strlen(m) && memcmp(data, m, len) == 0);
		free(data);
	}
	/* One loop thread for all of them. */
	CHECK_INT(np_thread_count() - threads0, <=, 1);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	CHECK(np_collect_wait(&col, &col.disconnects, N, T));
	CHECK_OK(ssock_server_free(srv));
	CHECK_INT(np_thread_count(), ==, threads0);

	/* Many clients on one shared loop: one thread too. */
	srv = np_server(&o, &port);
	CHECK(srv);
	threads0 = np_thread_count();
	ssock_loop *loop;
	CHECK_OK(ssock_loop_new(&loop));
	CHECK_OK(ssock_loop_start(loop));
	ssock_client *cli[20];
	for (int i = 0; i < 20; i++) {
		ssock_client_opts co = {.loop = loop};
		cli[i] = np_client(&co, port, false);
		CHECK(cli[i]);
		CHECK_OK(ssock_client_connect(cli[i], T));
		CHECK_OK(ssock_client_send(cli[i], "m", 1));
	}
	for (int i = 0; i < 20; i++) {
		void *data;
		size_t len;
		CHECK_OK(ssock_client_recv(cli[i], &data, &len, T));
		CHECK(len == 1);
		ssock_free(data);
	}
	CHECK_INT(np_thread_count() - threads0, <=, 1);
	for (int i = 0; i < 20; i++)
		CHECK_OK(ssock_client_free(cli[i]));
	CHECK_OK(ssock_loop_free(loop));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(regress_tinyproto_send_right_after_connect)
{
	/* tinyproto raced its own handshake when a message was sent at once.
	 * Here: a send right after connect returns, and one made from the
	 * server's on_connect, both arrive as the first message. */
	np_collect col;
	np_collect_init(&col);
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	for (int i = 0; i < 50; i++) {
		ssock_client *cli = np_client(NULL, port, false);
		CHECK(cli);
		CHECK_OK(ssock_client_connect(cli, T));
		CHECK_OK(ssock_client_send(cli, "first", 5));
		CHECK(np_collect_wait(&col, &col.messages, i + 1, T));
		CHECK(col.msg_len[i] == 5 && memcmp(col.msg[i], "first", 5) == 0);
		CHECK_OK(ssock_client_free(cli));
	}
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);

	/* Queued before the connection exists: sent as soon as it does. */
	ssock_server *s2 = np_server(NULL, &port);
	CHECK(s2);
	ssock_client_opts co = {.queue_while_offline = 1};
	ssock_client *cli = np_client(&co, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_send(cli, "early", 5));
	CHECK_OK(ssock_client_connect(cli, 0));
	CHECK_OK(ssock_client_send(cli, "second", 6));
	CHECK(next_msg_is(s2, "early"));
	CHECK(next_msg_is(s2, "second"));
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(s2));
}

TEST(regress_tinyproto_simultaneous_sends_keep_stream_in_sync)
{
	/* Both sides send at once, with messages big enough to interleave in
	 * the kernel: each side gets all of the other's, whole and in order. */
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	enum { N = 200 };
	char *buf = malloc(100000);
	for (int i = 0; i < N; i++) {
		size_t len = 1000 + (size_t)i * 397 % 90000;
		np_pattern(buf, len, (uint64_t)i);
		CHECK_OK(ssock_client_send_timeout(cli, buf, len, T));
		np_pattern(buf, len, (uint64_t)i + 1000);
		CHECK_OK(ssock_server_send_timeout(srv, id, buf, len, T));
	}
	free(buf);
	for (int i = 0; i < N; i++) {
		size_t want = 1000 + (size_t)i * 397 % 90000;
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK_INT(ev.len, ==, want);
		CHECK(np_pattern_ok(ev.data, ev.len, (uint64_t)i));
		ssock_event_release(&ev);
		void *data;
		size_t len;
		CHECK_OK(ssock_client_recv(cli, &data, &len, T));
		CHECK_INT(len, ==, want);
		CHECK(np_pattern_ok(data, len, (uint64_t)i + 1000));
		ssock_free(data);
	}
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}
