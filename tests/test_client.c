/*
 * TCP client integration tests over loopback: connecting (refused, timed
 * out), state and its events, blocking recv with a timeout, flush, and
 * reconnecting to a server that restarts on the same port.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* An echo server in callback mode. */
static ssock_server *echo_server(np_collect *col, int *port)
{
	np_collect_init(col);
	col->echo = true;
	ssock_server_opts o = {0};
	np_collect_server_opts(col, &o);
	return np_server(&o, port);
}

TEST(connect_refused)
{
	int port;
	int lfd = np_listen(1, &port);
	CHECK(lfd >= 0);
	close(lfd); /* nothing listens on port now */
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_INT(ssock_client_connect(cli, T), ==, SSOCK_ECONNREFUSED);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_INT(ssock_client_id(cli), ==, 0);
	CHECK_INT(ssock_client_send(cli, "x", 1), ==, SSOCK_ENOTCONN);
	/* Reported in the background too: an error event and a log entry. */
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_ECONNREFUSED);
	CHECK(ev.op && strcmp(ev.op, "connect") == 0);
	CHECK_INT(ssock_addr_port(&ev.peer), ==, port);
	ssock_event_release(&ev);
	ssock_error_info e;
	CHECK_INT(ssock_client_errors(cli, &e, 1, 1), ==, 1);
	CHECK_INT(e.code, ==, SSOCK_ECONNREFUSED);
	CHECK(strcmp(e.op, "connect") == 0);
	CHECK_OK(ssock_client_free(cli));
}

TEST(connect_timeout)
{
	/* A listener whose accept queue is full drops further SYNs, so a
	 * connect to it can only time out. */
	int port;
	int lfd = np_listen(0, &port);
	CHECK(lfd >= 0);
	int fillers[4], nf = 0;
	ssock_client_opts o = {.connect_timeout_ms = 300};
	ssock_client *cli = NULL;
	int rc = 0;
	/* Fill the queue (its size varies by kernel), then try. */
	for (nf = 0; nf < 4; nf++) {
		fillers[nf] = np_connect(port, false);
		cli = np_client(&o, port, false);
		CHECK(cli);
		int64_t t0 = test_now_ms();
		rc = ssock_client_connect(cli, T);
		int64_t took = test_now_ms() - t0;
		if (rc == SSOCK_ETIMEDOUT) {
			CHECK_INT(took, >=, 280);
			CHECK_INT(took, <, 5000);
			break;
		}
		CHECK_OK(rc); /* the queue still had room: fill more */
		CHECK_OK(ssock_client_free(cli));
		cli = NULL;
	}
	CHECK_INT(rc, ==, SSOCK_ETIMEDOUT);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_OK(ssock_client_free(cli));
	for (int i = 0; i <= nf && i < 4; i++)
		if (fillers[i] >= 0)
			close(fillers[i]);
	close(lfd);
}

TEST(inbox_echo_and_recv_timeout)
{
	np_collect col;
	int port;
	ssock_server *srv = echo_server(&col, &port);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	uint64_t id = ssock_client_id(cli);
	CHECK(id != 0);
	ssock_event ev;
	CHECK_OK(ssock_client_next_event(cli, &ev, T));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_CONNECT);
	CHECK_INT(ev.conn, ==, id);
	CHECK_INT(ssock_addr_port(&ev.peer), ==, port);
	ssock_event_release(&ev);

	CHECK_OK(ssock_client_send(cli, "ping", 4));
	CHECK_OK(ssock_client_send(cli, "", 0));
	void *data;
	size_t len;
	CHECK_OK(ssock_client_recv(cli, &data, &len, T));
	CHECK(len == 4 && memcmp(data, "ping", 4) == 0);
	ssock_free(data);
	CHECK_OK(ssock_client_recv(cli, &data, &len, T));
	CHECK(len == 0 && data == NULL);

	/* Nothing more comes: recv waits about the time asked, without
	 * spinning. */
	int64_t cpu0 = np_cpu_ms(), t0 = test_now_ms();
	CHECK_INT(ssock_client_recv(cli, &data, &len, 300), ==, SSOCK_ETIMEDOUT);
	int64_t waited = test_now_ms() - t0, cpu = np_cpu_ms() - cpu0;
	CHECK_INT(waited, >=, 280);
	CHECK_INT(waited, <, 5000);
	CHECK_INT(cpu, <, waited / 2);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(recv_skips_connect_and_reports_disconnect)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T));
	uint64_t sid = ev.conn;
	ssock_event_release(&ev);
	CHECK_OK(ssock_server_send(srv, sid, "first", 5));
	void *data;
	size_t len;
	/* The connect event is still in the client's inbox: recv skips it. */
	CHECK_OK(ssock_client_recv(cli, &data, &len, T));
	CHECK(len == 5 && memcmp(data, "first", 5) == 0);
	ssock_free(data);
	CHECK_OK(ssock_server_disconnect(srv, sid));
	CHECK_INT(ssock_client_recv(cli, &data, &len, T), ==, SSOCK_ENOTCONN);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_INT(ssock_client_id(cli), ==, 0);
	CHECK_INT(ssock_client_send(cli, "x", 1), ==, SSOCK_ENOTCONN);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(callback_mode_state_events)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	np_collect col;
	np_collect_init(&col);
	ssock_client_opts o = {0};
	np_collect_client_opts(&col, &o);
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	ssock_event ev;
	CHECK_INT(ssock_client_next_event(cli, &ev, 0), ==, SSOCK_ENOINBOX);
	void *data;
	size_t len;
	CHECK_INT(ssock_client_recv(cli, &data, &len, 0), ==, SSOCK_ENOINBOX);

	/* Connecting without waiting: the result comes as a callback. */
	CHECK_OK(ssock_client_connect(cli, 0));
	CHECK(np_collect_wait(&col, &col.connects, 1, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	CHECK_INT(col.last_conn, ==, ssock_client_id(cli));
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T));
	uint64_t sid = ev.conn;
	ssock_event_release(&ev);
	CHECK_OK(ssock_server_send(srv, sid, "hi", 2));
	CHECK(np_collect_wait(&col, &col.messages, 1, T));
	CHECK(col.msg_len[0] == 2 && memcmp(col.msg[0], "hi", 2) == 0);

	/* The server drops it: on_disconnect with a clean close. */
	CHECK_OK(ssock_server_disconnect(srv, sid));
	CHECK(np_collect_wait(&col, &col.disconnects, 1, T));
	CHECK_INT(col.last_reason, ==, 0);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(disconnect_and_connect_again)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_INT(ssock_client_disconnect(cli), ==, SSOCK_ENOTCONN);
	CHECK_OK(ssock_client_connect(cli, T));
	uint64_t id1 = ssock_client_id(cli);
	CHECK_OK(ssock_client_connect(cli, T)); /* already connected: at once */
	CHECK_INT(ssock_client_id(cli), ==, id1);
	CHECK_OK(ssock_client_send(cli, "bye", 3));
	CHECK_OK(ssock_client_disconnect(cli));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_INT(ssock_client_disconnect(cli), ==, SSOCK_ENOTCONN);
	/* Graceful: what was queued is delivered before the close. */
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 3 && memcmp(ev.data, "bye", 3) == 0);
	ssock_event_release(&ev);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, 0);
	ssock_event_release(&ev);
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.conn, ==, id1);
	CHECK_INT(ev.code, ==, SSOCK_ELOCAL);
	ssock_event_release(&ev);

	CHECK_OK(ssock_client_connect(cli, T));
	uint64_t id2 = ssock_client_id(cli);
	CHECK(id2 != 0 && id2 != id1);
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_CONNECT, &ev, T));
	CHECK_INT(ev.conn, ==, id2);
	ssock_event_release(&ev);

	/* reconnect() drops the connection and makes a new one. */
	CHECK_OK(ssock_client_reconnect(cli));
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_CONNECT, &ev, T));
	uint64_t id3 = ev.conn;
	ssock_event_release(&ev);
	CHECK(id3 != id2 && id3 != 0);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	CHECK_INT(ssock_client_id(cli), ==, id3);
	CHECK_OK(ssock_client_send(cli, "three", 5));
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 5 && memcmp(ev.data, "three", 5) == 0);
	ssock_event_release(&ev);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(flush_waits_until_written)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	size_t big = 4 << 20;
	char *buf = malloc(big);
	np_pattern(buf, big, 11);
	CHECK_OK(ssock_client_send(cli, buf, big));
	CHECK_OK(ssock_client_send(cli, "tail", 4));
	CHECK_OK(ssock_client_flush(cli, T));
	free(buf);
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, big);
	CHECK(np_pattern_ok(ev.data, ev.len, 11));
	ssock_event_release(&ev);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 4 && memcmp(ev.data, "tail", 4) == 0);
	ssock_event_release(&ev);
	CHECK_OK(ssock_client_flush(cli, 0)); /* nothing queued */
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(flush_and_send_time_out_when_peer_never_reads)
{
	/* A listener that never accepts: the kernel completes the connect,
	 * nobody ever reads. */
	int port;
	int lfd = np_listen(8, &port);
	CHECK(lfd >= 0);
	ssock_client_opts o = {.send_queue_max = 64 << 10};
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	char chunk[8 << 10] = {0};
	int rc = 0;
	/* Full means a second without room (see test_server.c's
	 * fill_send_queue() on the kernel opening a window late). */
	for (int i = 0; i < 100000 && rc == 0; i++)
		rc = ssock_client_send_timeout(cli, chunk, sizeof chunk, 1000);
	CHECK_INT(rc, ==, SSOCK_ETIMEDOUT);
	CHECK_INT(ssock_client_send(cli, chunk, sizeof chunk), ==, SSOCK_ESENDQFULL);
	char *huge = calloc(1, 64 << 10);
	CHECK_INT(ssock_client_send(cli, huge, 64 << 10), ==, SSOCK_EMSGSIZE);
	free(huge);
	int64_t t0 = test_now_ms();
	CHECK_INT(ssock_client_flush(cli, 300), ==, SSOCK_ETIMEDOUT);
	int64_t waited = test_now_ms() - t0;
	CHECK_INT(waited, >=, 280);
	CHECK_INT(waited, <, 5000);
	CHECK_OK(ssock_client_free(cli));
	close(lfd);
}

/* The "connection lost" and "connection back" moments of a client in
 * inbox mode; other events are released. */
static int wait_client(ssock_client *cli, ssock_event_type type, uint64_t *conn)
{
	ssock_event ev;
	int rc = np_client_wait(cli, type, &ev, T);
	if (rc == 0 && conn)
		*conn = ev.conn;
	ssock_event_release(&ev);
	return rc;
}

TEST(auto_reconnect_after_server_restart)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client_opts o = {
		.auto_reconnect = 1,
		.queue_while_offline = 1,
		.reconnect_min_ms = 20,
		.reconnect_max_ms = 100,
	};
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	uint64_t id1;
	CHECK_OK(wait_client(cli, SSOCK_EVENT_CONNECT, &id1));
	CHECK_OK(ssock_client_send(cli, "before", 6));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 6 && memcmp(ev.data, "before", 6) == 0);
	ssock_event_release(&ev);

	/* The server goes away. The client notices, reports it, and sends
	 * made while it is down are queued. */
	CHECK_OK(ssock_server_free(srv));
	uint64_t lost;
	CHECK_OK(wait_client(cli, SSOCK_EVENT_DISCONNECT, &lost));
	CHECK_INT(lost, ==, id1);
	CHECK(ssock_client_state_get(cli) != SSOCK_STATE_CONNECTED);
	char msg[32];
	for (int i = 0; i < 10; i++) {
		snprintf(msg, sizeof msg, "offline %d", i);
		CHECK_OK(ssock_client_send(cli, msg, strlen(msg)));
	}

	/* A new server on the same port: the client comes back by itself and
	 * the queued messages arrive, in order. */
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_server_opts so = {.listen = text};
	srv = np_server(&so, NULL);
	CHECK(srv);
	uint64_t id2;
	CHECK_OK(wait_client(cli, SSOCK_EVENT_CONNECT, &id2));
	CHECK(id2 != id1);
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	for (int i = 0; i < 10; i++) {
		snprintf(msg, sizeof msg, "offline %d", i);
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK_INT(ev.len, ==, strlen(msg));
		CHECK_MEM(ev.data, msg, ev.len);
		ssock_event_release(&ev);
	}
	CHECK_OK(ssock_client_send(cli, "after", 5));
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 5 && memcmp(ev.data, "after", 5) == 0);
	ssock_event_release(&ev);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

/* Bytes queued offline while the client is connecting are what a flush
 * waits for: it times out while nobody listens (it said SSOCK_ENOTCONN at
 * once), then returns 0 once a server came and they are written; with the
 * client disconnected, nothing is coming: SSOCK_ENOTCONN. */
TEST(flush_waits_for_offline_bytes_while_connecting)
{
	int lfd, port;
	CHECK((lfd = np_listen(1, &port)) >= 0);
	close(lfd); /* a port nobody listens on, for now */
	ssock_client_opts o = {
		.auto_reconnect = 1,
		.queue_while_offline = 1,
		.reconnect_min_ms = 20,
		.reconnect_max_ms = 50,
	};
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_send(cli, "queued", 6));
	CHECK_OK(ssock_client_connect(cli, 0));
	CHECK_INT(ssock_client_flush(cli, 300), ==, SSOCK_ETIMEDOUT);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_server_opts so = {.listen = text};
	ssock_server *srv = np_server(&so, NULL);
	CHECK(srv);
	CHECK_OK(ssock_client_flush(cli, T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK(ev.len == 6 && memcmp(ev.data, "queued", 6) == 0);
	ssock_event_release(&ev);
	CHECK_OK(ssock_client_disconnect(cli));
	CHECK_OK(ssock_client_send(cli, "later", 5));
	CHECK_INT(ssock_client_flush(cli, T), ==, SSOCK_ENOTCONN);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(auto_reconnect_in_callback_mode_reports_states)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	np_collect col;
	np_collect_init(&col);
	ssock_client_opts o = {.auto_reconnect = 1, .reconnect_min_ms = 20, .reconnect_max_ms = 50};
	np_collect_client_opts(&col, &o);
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK(np_collect_wait(&col, &col.connects, 1, T));
	CHECK_OK(ssock_server_free(srv));
	CHECK(np_collect_wait(&col, &col.disconnects, 1, T));
	/* It keeps trying (refused meanwhile) and is never stuck as connected. */
	CHECK(np_collect_wait(&col, &col.errors, 2, T));
	CHECK_INT(col.last_error, ==, SSOCK_ECONNREFUSED);
	CHECK_INT(ssock_client_state_get(cli), !=, SSOCK_STATE_CONNECTED);
	CHECK_INT(ssock_client_send(cli, "x", 1), ==, SSOCK_ENOTCONN);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_server_opts so = {.listen = text};
	srv = np_server(&so, NULL);
	CHECK(srv);
	CHECK(np_collect_wait(&col, &col.connects, 2, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&col);
}

TEST(connect_waits_through_auto_reconnect)
{
	/* With auto_reconnect, connect(wait) keeps trying until a server
	 * appears; here one comes right after the first refusal. */
	int port;
	int lfd = np_listen(1, &port);
	CHECK(lfd >= 0);
	close(lfd);
	ssock_client_opts o = {.auto_reconnect = 1, .reconnect_min_ms = 20, .reconnect_max_ms = 50};
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, 0));
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_ERROR, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_ECONNREFUSED);
	ssock_event_release(&ev);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_server_opts so = {.listen = text};
	ssock_server *srv = np_server(&so, NULL);
	CHECK(srv);
	CHECK_OK(ssock_client_connect(cli, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTED);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(keeps_reading_while_its_send_queue_is_full)
{
	/* A client that sends faster than an echo server answers, with small
	 * queues on both sides. If the client stopped reading because its own
	 * queue is full while the server stopped reading because its replies
	 * are not taken, both would wait for ever. */
	np_collect scol;
	int port;
	np_collect_init(&scol);
	scol.echo = true;
	ssock_server_opts so = {.send_queue_max = 64 << 10};
	np_collect_server_opts(&scol, &so);
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	np_collect ccol;
	np_collect_init(&ccol);
	ssock_client_opts o = {.send_queue_max = 64 << 10};
	np_collect_client_opts(&ccol, &o);
	ssock_client *cli = np_client(&o, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	enum { N = 40000 }; /* 40 MB: more than the kernel buffers hold */
	char msg[1000];
	memset(msg, 'e', sizeof msg);
	for (int i = 0; i < N; i++)
		CHECK_OK(ssock_client_send_timeout(cli, msg, sizeof msg, T));
	CHECK(np_collect_wait(&ccol, &ccol.messages, N, T));
	CHECK_INT(scol.echo_failures, ==, 0);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
	np_collect_free(&ccol);
	np_collect_free(&scol);
}
