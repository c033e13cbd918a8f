/*
 * TCP server integration tests over loopback: servers bind port 0 and read
 * the port back; a raw blocking peer (net_helpers.c) plays the other side so
 * the bytes on the wire are checked directly.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* The local address of a raw peer's socket, as ssock would format it. */
static void local_text(int fd, char *buf, size_t size)
{
	ssock_addr a;
	a.len = sizeof a.u;
	getsockname(fd, &a.u.sa, &a.len);
	ssock_addr_format(&a, buf, size);
}

static bool peer_is(const ssock_addr *peer, int fd)
{
	char want[SSOCK_ADDRSTRLEN], got[SSOCK_ADDRSTRLEN];
	local_text(fd, want, sizeof want);
	if (ssock_addr_format(peer, got, sizeof got) < 0)
		return false;
	return strcmp(want, got) == 0;
}

TEST(port0_inbox_mode)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	CHECK_INT(port, >, 0);
	ssock_addr bound;
	CHECK_OK(ssock_server_addr(srv, 0, &bound));
	CHECK_INT(bound.u.sa.sa_family, ==, AF_INET);
	CHECK_INT(ssock_server_addr(srv, 1, &bound), ==, SSOCK_EINVAL);

	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	ssock_event ev;
	CHECK_OK(ssock_server_next_event(srv, &ev, T));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_CONNECT);
	CHECK(ev.conn != 0);
	CHECK(peer_is(&ev.peer, fd));
	uint64_t id = ev.conn;
	ssock_event_release(&ev);

	CHECK_INT(np_send_u32(fd, "hello", 5), ==, 0);
	CHECK_OK(ssock_server_next_event(srv, &ev, T));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_MESSAGE);
	CHECK_INT(ev.conn, ==, id);
	CHECK_INT(ev.len, ==, 5);
	CHECK_MEM(ev.data, "hello", 5);
	ssock_event_release(&ev);
	CHECK(ev.type == SSOCK_EVENT_NONE && ev.data == NULL);

	CHECK_OK(ssock_server_send(srv, id, "world!", 6));
	void *data;
	size_t len;
	CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0);
	CHECK_INT(len, ==, 6);
	CHECK_MEM(data, "world!", 6);
	free(data);

	close(fd);
	CHECK_OK(ssock_server_next_event(srv, &ev, T));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_DISCONNECT);
	CHECK_INT(ev.conn, ==, id);
	CHECK_INT(ev.code, ==, 0);
	ssock_event_release(&ev);
	CHECK_INT(ssock_server_next_event(srv, &ev, 0), ==, SSOCK_ETIMEDOUT);
	CHECK_OK(ssock_server_free(srv));
}

TEST(callback_mode_echo)
{
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	ssock_event ev;
	CHECK_INT(ssock_server_next_event(srv, &ev, 0), ==, SSOCK_ENOINBOX);

	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_collect_wait(&col, &col.connects, 1, T));
	const char *msgs[] = {"a", "", "bcd", "the last one"};
	for (int i = 0; i < 4; i++)
		CHECK_INT(np_send_u32(fd, msgs[i], strlen(msgs[i])), ==, 0);
	for (int i = 0; i < 4; i++) {
		void *data;
		size_t len;
		CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0);
		CHECK_INT(len, ==, strlen(msgs[i]));
		CHECK_MEM(data, msgs[i], len);
		free(data);
	}
	CHECK(np_collect_wait(&col, &col.messages, 4, T));
	CHECK_INT(col.echo_failures, ==, 0);
	close(fd);
	CHECK(np_collect_wait(&col, &col.disconnects, 1, T));
	CHECK_INT(col.last_reason, ==, 0);
	CHECK_OK(ssock_server_free(srv));
	CHECK_INT(col.connects, ==, 1);
	CHECK_INT(col.disconnects, ==, 1);
	np_collect_free(&col);
}

TEST(listen_ipv4_and_ipv6)
{
	int port4;
	ssock_server *srv = np_server(NULL, &port4);
	CHECK(srv);
	int idx = ssock_server_listen(srv, "[::1]:0");
	CHECK_INT(idx, ==, 1);
	ssock_addr a6;
	CHECK_OK(ssock_server_addr(srv, 1, &a6));
	CHECK_INT(a6.u.sa.sa_family, ==, AF_INET6);
	int port6 = ssock_addr_port(&a6);
	CHECK_INT(port6, >, 0);
	char text[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_format(&a6, text, sizeof text), >, 0);
	CHECK(strncmp(text, "[::1]:", 6) == 0);

	int fd4 = np_connect(port4, false), fd6 = np_connect(port6, true);
	CHECK(fd4 >= 0 && fd6 >= 0);
	CHECK_INT(np_send_u32(fd4, "four", 4), ==, 0);
	CHECK_INT(np_send_u32(fd6, "six", 3), ==, 0);
	int seen4 = 0, seen6 = 0;
	for (int i = 0; i < 2; i++) {
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		if (ev.peer.u.sa.sa_family == AF_INET6) {
			seen6++;
			CHECK(ev.len == 3 && memcmp(ev.data, "six", 3) == 0);
			CHECK(peer_is(&ev.peer, fd6));
		} else {
			seen4++;
			CHECK(ev.len == 4 && memcmp(ev.data, "four", 4) == 0);
			CHECK(peer_is(&ev.peer, fd4));
		}
		ssock_event_release(&ev);
	}
	CHECK(seen4 == 1 && seen6 == 1);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 2);
	close(fd4);
	close(fd6);
	CHECK_OK(ssock_server_free(srv));
}

TEST(pause_and_resume_accepting)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	CHECK_OK(ssock_server_pause(srv));
	/* The kernel completes the handshake into the backlog... */
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	/* ...but the server does not take it while paused. */
	ssock_event ev;
	CHECK_INT(ssock_server_next_event(srv, &ev, 300), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 0);
	CHECK_OK(ssock_server_resume(srv));
	CHECK_OK(ssock_server_next_event(srv, &ev, T));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_CONNECT);
	CHECK(peer_is(&ev.peer, fd));
	ssock_event_release(&ev);
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, 1);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* Connects n raw peers and collects their connection ids in order. */
static int connect_peers(ssock_server *srv, int port, int n, int *fds, uint64_t *ids)
{
	for (int i = 0; i < n; i++) {
		fds[i] = np_connect(port, false);
		if (fds[i] < 0)
			return -1;
		ssock_event ev;
		int rc = np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T);
		if (rc != 0)
			return rc;
		if (!peer_is(&ev.peer, fds[i]))
			return -1;
		ids[i] = ev.conn;
		ssock_event_release(&ev);
	}
	return 0;
}

static bool recv_is(int fd, const char *want)
{
	void *data;
	size_t len;
	if (np_recv_u32(fd, &data, &len, T) != 0)
		return false;
	bool ok = len == strlen(want) && memcmp(data, want, len) == 0;
	free(data);
	return ok;
}

TEST(send_broadcast_disconnect_list)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int fds[3];
	uint64_t ids[3];
	CHECK_OK(connect_peers(srv, port, 3, fds, ids));
	CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);

	ssock_conn_info info[4];
	CHECK_INT(ssock_server_conns(srv, info, 4), ==, 3);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(info[i].id, ==, ids[i]); /* oldest first */
		CHECK(peer_is(&info[i].peer, fds[i]));
	}
	CHECK_INT(ssock_server_conns(srv, info, 1), ==, 3);

	/* By id: only that peer gets it. */
	CHECK_OK(ssock_server_send(srv, ids[1], "to-one", 6));
	CHECK(recv_is(fds[1], "to-one"));
	CHECK(np_quiet(fds[0], 100) && np_quiet(fds[2], 0));

	CHECK_INT(ssock_server_broadcast(srv, "all", 3), ==, 3);
	for (int i = 0; i < 3; i++)
		CHECK(recv_is(fds[i], "all"));

	/* Disconnect one: its peer sees EOF, the list shrinks, its id is stale. */
	CHECK_OK(ssock_server_disconnect(srv, ids[0]));
	CHECK_INT(np_wait_eof(fds[0], T), ==, 0);
	close(fds[0]); /* the server waits for our FIN before it is done */
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.conn, ==, ids[0]);
	CHECK_INT(ev.code, ==, SSOCK_ELOCAL);
	ssock_event_release(&ev);
	CHECK_INT(ssock_server_conns(srv, info, 4), ==, 2);
	CHECK_INT(info[0].id, ==, ids[1]);
	CHECK_INT(info[1].id, ==, ids[2]);
	CHECK_INT(ssock_server_send(srv, ids[0], "x", 1), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_disconnect(srv, ids[0]), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_broadcast(srv, "two", 3), ==, 2);
	CHECK(recv_is(fds[1], "two") && recv_is(fds[2], "two"));

	close(fds[1]);
	close(fds[2]);
	CHECK_OK(ssock_server_free(srv));
}

TEST(stale_and_unknown_ids)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	CHECK_INT(ssock_server_send(srv, 0, "x", 1), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_send(srv, 123456789, "x", 1), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_send(srv, UINT64_MAX, "x", 1), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_disconnect(srv, 42), ==, SSOCK_ENOCONN);

	int fd;
	uint64_t id;
	CHECK_OK(connect_peers(srv, port, 1, &fd, &id));
	close(fd);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	ssock_event_release(&ev);
	/* Once the disconnect has been taken, the id is gone for good, even
	 * when a new connection comes. */
	int fd2;
	uint64_t id2;
	CHECK_OK(connect_peers(srv, port, 1, &fd2, &id2));
	CHECK(id2 != id);
	int64_t deadline = test_now_ms() + T;
	int rc;
	while ((rc = ssock_server_send(srv, id, "x", 1)) == SSOCK_ECLOSED &&
	       test_now_ms() < deadline)
		CHECK_INT(ssock_server_next_event(srv, &ev, 10), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(rc, ==, SSOCK_ENOCONN);
	CHECK_OK(ssock_server_send(srv, id2, "y", 1));
	CHECK(recv_is(fd2, "y"));

	/* Another server's ids are not this one's. */
	ssock_server *other = np_server(NULL, NULL);
	CHECK(other);
	CHECK_INT(ssock_server_send(other, id2, "z", 1), ==, SSOCK_ENOCONN);
	CHECK_OK(ssock_server_free(other));
	close(fd2);
	CHECK_OK(ssock_server_free(srv));
}

TEST(u32_frames_written_byte_by_byte)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	/* Three frames, one of them empty, split at every byte. */
	uint8_t wire[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 2, 'd', 'e'};
	CHECK_INT(np_write_bytewise(fd, wire, sizeof wire), ==, 0);
	const char *want[] = {"abc", "", "de"};
	for (int i = 0; i < 3; i++) {
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK_INT(ev.len, ==, strlen(want[i]));
		if (ev.len)
			CHECK_MEM(ev.data, want[i], ev.len);
		else
			CHECK(ev.data == NULL);
		ssock_event_release(&ev);
	}
	/* Zero-length sends frame as a bare header. */
	ssock_conn_info ci;
	CHECK_INT(ssock_server_conns(srv, &ci, 1), ==, 1);
	CHECK_OK(ssock_server_send(srv, ci.id, NULL, 0));
	uint8_t hdr[4];
	CHECK_INT(np_read_exact(fd, hdr, 4, T), ==, 0);
	CHECK(hdr[0] == 0 && hdr[1] == 0 && hdr[2] == 0 && hdr[3] == 0);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(line_framing_crlf_and_partial)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_LINE};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	const char *wire = "hello\r\nworld\n\r\n";
	CHECK_INT(np_write_bytewise(fd, wire, strlen(wire)), ==, 0);
	const char *want[] = {"hello", "world", ""};
	uint64_t id = 0;
	for (int i = 0; i < 3; i++) {
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK_INT(ev.len, ==, strlen(want[i]));
		CHECK(ev.len == 0 || memcmp(ev.data, want[i], ev.len) == 0);
		id = ev.conn;
		ssock_event_release(&ev);
	}
	/* A partial line is never delivered before its newline. */
	CHECK_INT(np_write(fd, "part", 4), ==, 0);
	ssock_event ev;
	CHECK_INT(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, 300), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(np_write_bytewise(fd, "ial\r\n", 5), ==, 0);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, 7);
	CHECK_MEM(ev.data, "partial", 7);
	ssock_event_release(&ev);

	/* Sending appends '\n'; a '\n' inside a message cannot be framed. */
	CHECK_OK(ssock_server_send(srv, id, "reply", 5));
	char buf[6];
	CHECK_INT(np_read_exact(fd, buf, 6, T), ==, 0);
	CHECK_MEM(buf, "reply\n", 6);
	CHECK_INT(ssock_server_send(srv, id, "a\nb", 3), ==, SSOCK_EFRAMING);
	CHECK_INT(ssock_server_broadcast(srv, "a\nb", 3), ==, SSOCK_EFRAMING);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(line_too_long_closes_connection)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_LINE, .max_message = 16};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_write(fd, "short\n", 6), ==, 0);
	CHECK_INT(np_write(fd, "this line is far longer than sixteen bytes", 42), ==, 0);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 5 && memcmp(ev.data, "short", 5) == 0);
	ssock_event_release(&ev);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
	ssock_event_release(&ev);
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(raw_framing_bytes_as_they_come)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_RAW};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	char sent[3000];
	np_pattern(sent, sizeof sent, 7);
	CHECK_INT(np_write(fd, sent, 1000), ==, 0);
	CHECK_INT(np_write_bytewise(fd, sent + 1000, 10), ==, 0);
	CHECK_INT(np_write(fd, sent + 1010, sizeof sent - 1010), ==, 0);
	char got[3000];
	size_t have = 0;
	uint64_t id = 0;
	while (have < sizeof got) {
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK(ev.len > 0 && have + ev.len <= sizeof got);
		memcpy(got + have, ev.data, ev.len);
		have += ev.len;
		id = ev.conn;
		ssock_event_release(&ev);
	}
	CHECK_MEM(got, sent, sizeof sent);
	/* Sending adds nothing either. */
	CHECK_OK(ssock_server_send(srv, id, "abc", 3));
	CHECK_OK(ssock_server_send(srv, id, "def", 3));
	char buf[6];
	CHECK_INT(np_read_exact(fd, buf, 6, T), ==, 0);
	CHECK_MEM(buf, "abcdef", 6);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(error_log_entries_clear_and_bound)
{
	ssock_server_opts o = {.max_message = 8, .error_log_max = 4};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd;
	uint64_t id;
	CHECK_OK(connect_peers(srv, port, 1, &fd, &id));
	char peer[SSOCK_ADDRSTRLEN];
	local_text(fd, peer, sizeof peer);
	CHECK_INT(np_send_u32(fd, "far too long for eight", 22), ==, 0);

	/* The error comes as an inbox event and as a log entry. */
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
	CHECK_INT(ev.conn, ==, id);
	CHECK(ev.op && strcmp(ev.op, "frame") == 0);
	ssock_event_release(&ev);
	ssock_error_info e[8];
	CHECK_INT(ssock_server_errors(srv, e, 8, 0), ==, 1);
	CHECK_INT(e[0].code, ==, SSOCK_EMSGSIZE);
	CHECK(strcmp(e[0].op, "frame") == 0);
	CHECK_INT(e[0].conn, ==, id);
	char text[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_format(&e[0].peer, text, sizeof text), >, 0);
	CHECK(strcmp(text, peer) == 0);
	CHECK(e[0].time_ms > 1500000000000LL); /* wall clock, ms since 1970 */
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	close(fd);

	/* Reading without clear keeps it; clearing empties the log. */
	CHECK_INT(ssock_server_errors(srv, e, 8, 0), ==, 1);
	CHECK_INT(ssock_server_errors(srv, NULL, 0, 1), ==, 1);
	CHECK_INT(ssock_server_errors(srv, e, 8, 0), ==, 0);

	/* Bounded: six more errors, the log keeps the last four. */
	uint64_t last_ids[6];
	for (int i = 0; i < 6; i++) {
		CHECK_OK(connect_peers(srv, port, 1, &fd, &last_ids[i]));
		CHECK_INT(np_send_u32(fd, "too long again", 14), ==, 0);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		close(fd);
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_ERROR, &ev, T));
		ssock_event_release(&ev);
	}
	CHECK_INT(ssock_server_errors(srv, e, 8, 0), ==, 4);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(e[i].conn, ==, last_ids[2 + i]); /* oldest first */
		CHECK_INT(e[i].code, ==, SSOCK_EMSGSIZE);
	}
	CHECK_OK(ssock_server_free(srv));
}

/* Fills connection id's send queue (its peer never reads) until it stays
 * full: kernel buffers on loopback take several MiB before the queue grows,
 * so each try may wait a little for the loop to move bytes into the kernel.
 * "Stays full" is a second without room: a receiver whose buffer holds many
 * small segments merges them now and then (the kernel's collapsing), which
 * opens its window a little, a while after it seemed shut (the tests'
 * transport writes in small pieces). Returns the code that ended it
 * (SSOCK_ETIMEDOUT when the queue stayed full), or 0 if it never did. */
static int fill_send_queue(ssock_server *srv, uint64_t id, size_t chunk)
{
	char *buf = calloc(1, chunk);
	int rc = 0;
	for (int i = 0; i < 100000 && rc == 0; i++)
		rc = ssock_server_send_timeout(srv, id, buf, chunk, 1000);
	free(buf);
	return rc;
}

TEST(send_queue_bound)
{
	ssock_server_opts o = {.send_queue_max = 64 << 10};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd;
	uint64_t id;
	CHECK_OK(connect_peers(srv, port, 1, &fd, &id));
	char *big = calloc(1, 64 << 10);
	CHECK_INT(ssock_server_send(srv, id, big, 64 << 10), ==, SSOCK_EMSGSIZE);
	free(big);
	CHECK_INT(fill_send_queue(srv, id, 8 << 10), ==, SSOCK_ETIMEDOUT);
	char small[8 << 10] = {0};
	CHECK_INT(ssock_server_send(srv, id, small, sizeof small), ==, SSOCK_ESENDQFULL);
	ssock_conn_info ci;
	CHECK_INT(ssock_server_conns(srv, &ci, 1), ==, 1);
	CHECK_INT(ci.queued, <=, 64 << 10);
	CHECK_INT(ci.queued, >, (64 << 10) - (8 << 10) - 4);

	/* Waits, then gives up, when the peer still does not read. */
	int64_t t0 = test_now_ms();
	CHECK_INT(ssock_server_send_timeout(srv, id, small, sizeof small, 300), ==,
		  SSOCK_ETIMEDOUT);
	int64_t waited = test_now_ms() - t0;
	CHECK_INT(waited, >=, 280);
	CHECK_INT(waited, <, 5000);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

static void *drain_thread(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];
	while (np_read_some(fd, buf, sizeof buf, T) > 0) {
	}
	return NULL;
}

TEST(send_timeout_succeeds_once_peer_reads)
{
	ssock_server_opts o = {.send_queue_max = 64 << 10};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd;
	uint64_t id;
	CHECK_OK(connect_peers(srv, port, 1, &fd, &id));
	CHECK_INT(fill_send_queue(srv, id, 8 << 10), ==, SSOCK_ETIMEDOUT);
	/* The peer starts reading: the waiting send gets its room. */
	pthread_t th;
	CHECK(pthread_create(&th, NULL, drain_thread, &fd) == 0);
	char small[8 << 10] = {0};
	int rc = ssock_server_send_timeout(srv, id, small, sizeof small, T);
	CHECK_OK(ssock_server_free(srv)); /* the drain thread sees EOF */
	pthread_join(th, NULL);
	close(fd);
	CHECK_OK(rc);
}

/* Replies written from callbacks to two connections in turn, in bursts
 * that soon outrun what the kernel takes for a peer that does not read,
 * of every size from 1 byte to 5 kB: each peer gets exactly its own
 * messages, whole and in order, however they were queued (back to back in
 * the loop's shared output buffer, in chunks once another connection's
 * bytes came between, or what a partial write left of either). */
enum { BURSTS = 40, BURST = 200 };
static struct {
	ssock_server *srv;
	uint64_t ids[2];
	int failures, bursts;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} burst = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static size_t burst_len(int seq)
{
	return 1 + ((size_t)seq * 7919u) % 5000;
}

/* Message i of burst k goes to connection (i + k) % 2: in each burst the
 * other connection starts second and keeps the tail of the shared buffer. */
static int burst_target(int k, int i)
{
	return (i + k) % 2;
}

static void burst_on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c, (void)data, (void)len, (void)user;
	static uint8_t buf[5001];
	int k = burst.bursts, failures = 0;
	for (int i = 0; i < BURST; i++) {
		int seq = k * BURST + i;
		np_pattern(buf, burst_len(seq), (uint64_t)seq);
		if (ssock_server_send(burst.srv, burst.ids[burst_target(k, i)], buf,
				      burst_len(seq)))
			failures++;
	}
	pthread_mutex_lock(&burst.mu);
	burst.failures += failures;
	burst.bursts++;
	pthread_cond_broadcast(&burst.cv);
	pthread_mutex_unlock(&burst.mu);
}

TEST(interleaved_replies_stay_whole_and_in_order)
{
	np_collect col;
	np_collect_init(&col);
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	o.on_message = burst_on_message;
	int port;
	burst.srv = np_server(&o, &port);
	CHECK(burst.srv);
	int fds[2];
	for (int i = 0; i < 2; i++) {
		fds[i] = np_connect_rcvbuf(port, false, 4096);
		CHECK(fds[i] >= 0);
	}
	CHECK(np_collect_wait(&col, &col.connects, 2, T));
	ssock_conn_info info[2];
	CHECK_INT(ssock_server_conns(burst.srv, info, 2), ==, 2);
	for (int i = 0; i < 2; i++) /* oldest first: fds[i] */
		burst.ids[i] = info[i].id;
	/* one burst per pass of the loop: each "go" waits for the last burst */
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += T / 1000;
	for (int k = 0; k < BURSTS; k++) {
		CHECK_OK(np_send_u32(fds[0], "go", 2));
		pthread_mutex_lock(&burst.mu);
		int rc = 0;
		while (burst.bursts <= k && rc == 0)
			rc = pthread_cond_timedwait(&burst.cv, &burst.mu, &deadline);
		pthread_mutex_unlock(&burst.mu);
		CHECK_OK(rc);
	}
	for (int p = 0; p < 2; p++) {
		for (int k = 0; k < BURSTS; k++) {
			for (int i = 0; i < BURST; i++) {
				if (burst_target(k, i) != p)
					continue;
				int seq = k * BURST + i;
				void *data;
				size_t len;
				CHECK_OK(np_recv_u32(fds[p], &data, &len, T));
				bool ok = len == burst_len(seq) &&
					  np_pattern_ok(data, len, (uint64_t)seq);
				free(data);
				CHECK(ok);
			}
		}
		CHECK(np_quiet(fds[p], 0));
	}
	CHECK_INT(burst.failures, ==, 0);
	close(fds[0]);
	close(fds[1]);
	CHECK_OK(ssock_server_free(burst.srv));
	np_collect_free(&col);
}
