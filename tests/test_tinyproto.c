/*
 * The tinyproto framing on the wire, in both roles, against a peer written
 * here that speaks the format byte by byte (handshake 0xFF; 4-byte size;
 * answer 0xFF or 0x00; payload), the way the Python tinyproto 3.0 does.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <sys/socket.h>
#include <unistd.h>

#define T 5000

static const uint8_t HELLO = 0xFF, OK = 0xFF, NO = 0x00;

static void be32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

/* Peer side: exchanges the handshake. Returns 0 or -1. */
static int peer_hello(int fd)
{
	uint8_t b = 0;
	if (np_read_exact(fd, &b, 1, T) != 0 || b != HELLO)
		return -1;
	return np_write(fd, &HELLO, 1);
}

/* Peer side: sends one message the tinyproto way. Returns the status byte
 * the other side answered, or -1. */
static int peer_send(int fd, const void *data, uint32_t len)
{
	uint8_t h[4], status;
	be32(h, len);
	if (np_write(fd, h, 4) != 0 || np_read_exact(fd, &status, 1, T) != 0)
		return -1;
	if (status == OK && len > 0 && np_write(fd, data, len) != 0)
		return -1;
	return status;
}

/* Peer side: receives one message, answering 0xFF. Returns 0 and a malloc'd
 * payload, or -1. */
static int peer_recv(int fd, char **data, uint32_t *len)
{
	uint8_t h[4];
	if (np_read_exact(fd, h, 4, T) != 0)
		return -1;
	*len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (np_write(fd, &OK, 1) != 0)
		return -1;
	*data = malloc(*len + 1);
	if (np_read_exact(fd, *data, *len, T) != 0) {
		free(*data);
		return -1;
	}
	(*data)[*len] = '\0';
	return 0;
}

/* Takes events until the disconnect; fails the test if a message comes
 * first (a protocol error must never be delivered as one). Returns the
 * disconnect reason, or 1 when the wait failed. */
static int end_without_message(ssock_server *srv)
{
	ssock_event ev;
	for (;;) {
		if (ssock_server_next_event(srv, &ev, T) != 0)
			return 1;
		ssock_event_type type = ev.type;
		int code = ev.code;
		ssock_event_release(&ev);
		if (type == SSOCK_EVENT_MESSAGE)
			return 1;
		if (type == SSOCK_EVENT_DISCONNECT)
			return code;
	}
}

static ssock_server *tp_server(int *port, uint32_t max)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .max_message = max};
	return np_server(&o, port);
}

TEST(server_normal_exchange)
{
	int port;
	ssock_server *srv = tp_server(&port, 0);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(peer_hello(fd), ==, 0);
	CHECK_INT(peer_send(fd, "hello", 5), ==, OK);
	CHECK_INT(peer_send(fd, "", 0), ==, OK); /* zero-length is a message too */
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, 5);
	CHECK_MEM(ev.data, "hello", 5);
	uint64_t id = ev.conn;
	ssock_event_release(&ev);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, 0);
	ssock_event_release(&ev);

	CHECK_OK(ssock_server_send(srv, id, "world", 5));
	char *got;
	uint32_t len;
	CHECK_INT(peer_recv(fd, &got, &len), ==, 0);
	CHECK_INT(len, ==, 5);
	CHECK(strcmp(got, "world") == 0);
	free(got);
	close(fd);
	ssock_server_free(srv);
}

TEST(server_refuses_oversized_and_goes_on)
{
	int port;
	ssock_server *srv = tp_server(&port, 10);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(peer_hello(fd), ==, 0);
	CHECK_INT(peer_send(fd, "0123456789X", 11), ==, NO);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
	ssock_event_release(&ev);
	/* refused, not closed: the next message goes through */
	CHECK_INT(peer_send(fd, "fits", 4), ==, OK);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, 4);
	CHECK_MEM(ev.data, "fits", 4);
	ssock_event_release(&ev);
	close(fd);
	ssock_server_free(srv);
}

/* The peer sends `partial` then EOF: the connection ends with
 * SSOCK_ETRUNCATED and no message is delivered. */
static void truncated_case(const uint8_t *partial, size_t n, bool wait_ok)
{
	int port;
	ssock_server *srv = tp_server(&port, 0);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(peer_hello(fd), ==, 0);
	CHECK_INT(np_write(fd, partial, wait_ok ? 4 : n), ==, 0);
	if (wait_ok) {
		uint8_t status;
		CHECK_INT(np_read_exact(fd, &status, 1, T), ==, 0);
		CHECK_INT(status, ==, OK);
		CHECK_INT(np_write(fd, partial + 4, n - 4), ==, 0);
	}
	shutdown(fd, SHUT_WR);
	CHECK_INT(end_without_message(srv), ==, SSOCK_ETRUNCATED);
	close(fd);
	ssock_server_free(srv);
}

TEST(truncated_header_then_eof_not_delivered)
{
	const uint8_t h[] = {0, 0};
	truncated_case(h, sizeof h, false);
}

TEST(truncated_payload_then_eof_not_delivered)
{
	const uint8_t m[] = {0, 0, 0, 10, 'a', 'b', 'c'};
	truncated_case(m, sizeof m, true);
}

static void greet_on_connect(ssock_conn *c, void *user)
{
	(void)user;
	ssock_conn_send(c, "early", 5); /* before the peer's handshake arrived */
}

TEST(send_before_peer_handshake_waits_for_it)
{
	int port;
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .on_connect = greet_on_connect};
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint8_t b;
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(b, ==, HELLO);
	/* Nothing but the handshake until ours is sent: no size header races it. */
	CHECK(np_quiet(fd, 200));
	CHECK_INT(np_write(fd, &HELLO, 1), ==, 0);
	char *got;
	uint32_t len;
	CHECK_INT(peer_recv(fd, &got, &len), ==, 0);
	CHECK(strcmp(got, "early") == 0);
	free(got);
	close(fd);
	ssock_server_free(srv);
}

TEST(bad_handshake_is_a_protocol_error)
{
	int port;
	ssock_server *srv = tp_server(&port, 0);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_write(fd, "GET / HTTP/1.0\r\n\r\n", 18), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EPROTO);
	ssock_event_release(&ev);
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	close(fd);
	ssock_server_free(srv);
}

TEST(collision_is_reported_and_closed)
{
	int port;
	ssock_server *srv = tp_server(&port, 0);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(peer_hello(fd), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T));
	uint64_t id = ev.conn;
	ssock_event_release(&ev);
	/* ssock starts a message; the peer starts its own at the same time
	 * instead of answering: its size header lands where a status belongs. */
	CHECK_OK(ssock_server_send(srv, id, "mine", 4));
	uint8_t h[4];
	CHECK_INT(np_read_exact(fd, h, 4, T), ==, 0);
	const uint8_t theirs[] = {0, 0, 0, 6, 't', 'h', 'e', 'i', 'r', 's'};
	CHECK_INT(np_write(fd, theirs, 4), ==, 0);
	CHECK_INT(end_without_message(srv), ==, SSOCK_ECOLLISION); /* never a misread */
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	close(fd);
	ssock_server_free(srv);
}

/* ---------------------------------------------------------- client role */

static ssock_client *tp_client(int port)
{
	char addr[64];
	np_addr_text(addr, sizeof addr, port, false);
	ssock_client_opts o = {.connect = addr, .framing = SSOCK_FRAMING_TINYPROTO};
	ssock_client *cli = NULL;
	if (ssock_client_new(&cli, &o) != 0)
		return NULL;
	return cli;
}

TEST(client_role_exchange_and_early_send)
{
	int port;
	int lfd = np_listen(4, &port);
	CHECK(lfd >= 0);
	ssock_client *cli = tp_client(port);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	/* sent right after connecting, before the server's handshake */
	CHECK_OK(ssock_client_send(cli, "ping", 4));
	int fd = accept(lfd, NULL, NULL);
	CHECK(fd >= 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint8_t b;
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(b, ==, HELLO);
	CHECK(np_quiet(fd, 200));
	CHECK_INT(np_write(fd, &HELLO, 1), ==, 0);
	char *got;
	uint32_t len;
	CHECK_INT(peer_recv(fd, &got, &len), ==, 0);
	CHECK(strcmp(got, "ping") == 0);
	free(got);
	CHECK_INT(peer_send(fd, "pong", 4), ==, OK);
	void *msg;
	size_t mlen;
	CHECK_OK(ssock_client_recv(cli, &msg, &mlen, T));
	CHECK_INT(mlen, ==, 4);
	CHECK_MEM(msg, "pong", 4);
	ssock_free(msg);
	close(fd);
	close(lfd);
	ssock_client_free(cli);
}

TEST(client_role_refused_message_reported)
{
	int port;
	int lfd = np_listen(4, &port);
	CHECK(lfd >= 0);
	ssock_client *cli = tp_client(port);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	int fd = accept(lfd, NULL, NULL);
	CHECK(fd >= 0);
	CHECK_INT(peer_hello(fd), ==, 0);
	CHECK_OK(ssock_client_send(cli, "too big for you", 15));
	uint8_t h[4];
	CHECK_INT(np_read_exact(fd, h, 4, T), ==, 0);
	CHECK_INT(h[3], ==, 15);
	CHECK_INT(np_write(fd, &NO, 1), ==, 0);
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EREFUSED);
	ssock_event_release(&ev);
	CHECK(np_quiet(fd, 100)); /* the refused payload is never sent */
	close(fd);
	close(lfd);
	ssock_client_free(cli);
}

/* A server of another protocol that closes before sending its 0xFF: the
 * disconnect says the handshake did not complete (it said a clean close). */
TEST(client_role_peer_gone_before_its_handshake)
{
	int port;
	int lfd = np_listen(4, &port);
	CHECK(lfd >= 0);
	ssock_client *cli = tp_client(port);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	int fd = accept(lfd, NULL, NULL);
	CHECK(fd >= 0);
	uint8_t b;
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0); /* our 0xFF */
	close(fd);
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EHANDSHAKE);
	ssock_event_release(&ev);
	close(lfd);
	ssock_client_free(cli);
}

/* ------------------------------------------------------- ssock to ssock */

static void echo(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
}

TEST(ssock_to_ssock_lockstep_echo_up_to_1mib)
{
	int port;
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .on_message = echo};
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	ssock_client *cli = tp_client(port);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	uint64_t rng = 42;
	size_t sizes[] = {0, 1, 100, 65536, 200000, 1 << 20};
	for (int i = 0; i < 60; i++) {
		size_t len = i < 6 ? sizes[i] : np_rand(&rng) % 300000;
		char *buf = malloc(len + 1);
		np_pattern(buf, len, (uint64_t)i);
		CHECK_OK(ssock_client_send(cli, buf, len));
		free(buf);
		void *msg;
		size_t mlen;
		CHECK_OK(ssock_client_recv(cli, &msg, &mlen, T));
		CHECK_INT(mlen, ==, len);
		CHECK(np_pattern_ok(msg, mlen, (uint64_t)i));
		ssock_free(msg);
	}
	ssock_client_free(cli);
	ssock_server_free(srv);
}
