/*
 * Regression tests for the holes an outside review found (issue 9): each
 * test is named after what must hold, and each failed on the code before
 * its fix. Spinning is measured by counting the loop's passes (an internal
 * counter) over a quiet window, not by timing: a loop at rest makes none.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "internal.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* ----------------------------------------------------------- helpers */

static uint64_t passes(ssock_loop *l)
{
	return atomic_load(&l->passes);
}

/* How many passes loop l makes while fd stays quiet for wait_ms: a loop at
 * rest makes none (a wakeup or two at most); a spinning one, thousands. */
static uint64_t passes_while_quiet(ssock_loop *l, int fd, int wait_ms, bool *quiet)
{
	uint64_t p0 = passes(l);
	*quiet = np_quiet(fd, wait_ms);
	return passes(l) - p0;
}

/* ------------------------------------------- 1. empty messages cost nothing */

static void echo_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
}

TEST(zero_length_tinyproto_echo_leaves_the_loop_at_rest)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	ssock_server_opts o = {
		.loop = l, .framing = SSOCK_FRAMING_TINYPROTO, .on_message = echo_cb};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint8_t b, hdr[4];
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0); /* its handshake */
	CHECK_INT(b, ==, 0xFF);
	const uint8_t hello_and_empty[] = {0xFF, 0, 0, 0, 0};
	CHECK_INT(np_write(fd, hello_and_empty, sizeof hello_and_empty), ==, 0);
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0); /* our size accepted */
	CHECK_INT(b, ==, 0xFF);
	CHECK_INT(np_read_exact(fd, hdr, 4, T), ==, 0); /* the echo's size: 0 */
	CHECK(memcmp(hdr, "\0\0\0\0", 4) == 0);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0); /* accepted: no payload follows */
	bool quiet;
	uint64_t n = passes_while_quiet(l, fd, 300, &quiet);
	CHECK(quiet);
	CHECK_INT(n, <=, 3);
	/* The connection still works. */
	const uint8_t one[] = {0, 0, 0, 1};
	CHECK_INT(np_write(fd, one, 4), ==, 0);
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(b, ==, 0xFF);
	CHECK_INT(np_write(fd, "x", 1), ==, 0);
	CHECK_INT(np_read_exact(fd, hdr, 4, T), ==, 0);
	CHECK(memcmp(hdr, one, 4) == 0);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0);
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(b, ==, 'x');
	close(fd);
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(l));
}

TEST(zero_length_raw_send_is_a_no_op)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	ssock_server_opts o = {.loop = l, .framing = SSOCK_FRAMING_RAW};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	CHECK_OK(ssock_server_send(srv, id, "", 0)); /* from this thread */
	CHECK_OK(ssock_server_send(srv, id, NULL, 0));
	bool quiet;
	uint64_t n = passes_while_quiet(l, fd, 300, &quiet);
	CHECK(quiet);
	CHECK_INT(n, <=, 3);
	CHECK_OK(ssock_server_send(srv, id, "abc", 3));
	char got[3];
	CHECK_INT(np_read_exact(fd, got, 3, T), ==, 0);
	CHECK_MEM(got, "abc", 3);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(l));
}

/* ------------------------- 2. a callback's payload outlives a reconnect */

struct reconnect_cb {
	test_signal done;
	size_t len;
};

static void send_then_reconnect(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct reconnect_cb *r = user;
	ssock_client *cli = ssock_conn_client(c);
	if (r->len) /* after the reconnect: ignore */
		return;
	r->len = len;
	int sent = ssock_client_send(cli, data, len); /* the echo fast path */
	int again = ssock_client_reconnect(cli);
	/* `data` is still the callback's: read all of it. */
	bool intact = np_pattern_ok(data, len, 7);
	test_signal_raise(&r->done, sent == 0 && again == 0 && intact);
}

TEST(payload_outlives_reconnect_in_message_callback)
{
	int lport;
	int lfd = np_listen(16, &lport);
	CHECK(lfd >= 0);
	struct reconnect_cb r = {.len = 0};
	test_signal_init(&r.done);
	ssock_client_opts co = {.on_message = send_then_reconnect, .user = &r};
	ssock_client *cli = np_client(&co, lport, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	int peer = accept(lfd, NULL, NULL);
	CHECK(peer >= 0);
	size_t len = 100 << 10; /* over the shared read buffer: a payload of its own */
	char *msg = malloc(len);
	CHECK(msg);
	np_pattern(msg, len, 7);
	CHECK_INT(np_send_u32(peer, msg, len), ==, 0);
	CHECK_INT(test_signal_wait(&r.done, 1, T), ==, 1);
	CHECK_INT(r.len, ==, len);
	free(msg);
	close(peer);
	close(lfd);
	CHECK_OK(ssock_client_free(cli));
}

/* ------------- 3. a server created in a callback keeps the read buffer */

struct grow_cb {
	ssock_loop *loop;
	ssock_server *second;
	np_collect seen;
};

static void grow_on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct grow_cb *g = user;
	if (!g->second) {
		ssock_server_opts o = {.listen = "127.0.0.1:0",
				       .loop = g->loop,
				       .read_size = 1 << 20,
				       .on_message = echo_cb};
		ssock_server_new(&g->second, &o);
	}
	pthread_mutex_lock(&g->seen.mu);
	int i = g->seen.messages++;
	if (i < NP_MAX_MSGS) {
		g->seen.msg[i] = malloc(len + 1);
		memcpy(g->seen.msg[i], data, len);
		g->seen.msg_len[i] = len;
	}
	pthread_cond_broadcast(&g->seen.cv);
	pthread_mutex_unlock(&g->seen.mu);
	(void)c;
}

TEST(read_buffer_survives_server_created_in_callback)
{
	struct grow_cb g = {.loop = np_started_loop()};
	CHECK(g.loop);
	np_collect_init(&g.seen);
	ssock_server_opts o = {.loop = g.loop, .on_message = grow_on_message, .user = &g};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	const uint8_t wire[] = {0, 0, 0, 3, 'o', 'n', 'e', 0, 0, 0, 3, 't', 'w', 'o'};
	CHECK_INT(np_write(fd, wire, sizeof wire), ==, 0); /* one read, two messages */
	CHECK(np_collect_wait(&g.seen, &g.seen.messages, 2, T));
	CHECK(g.second);
	CHECK_INT(g.seen.msg_len[0], ==, 3);
	CHECK_MEM(g.seen.msg[0], "one", 3);
	CHECK_INT(g.seen.msg_len[1], ==, 3);
	CHECK_MEM(g.seen.msg[1], "two", 3);
	close(fd);
	CHECK_OK(ssock_server_free(g.second));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(g.loop));
	np_collect_free(&g.seen);
}

TEST(read_buffer_survives_growth_in_a_big_payload_callback)
{
	/* The same with a payload too big for the shared buffer first: the
	 * message after it comes in the same read, behind the payload. */
	struct grow_cb g = {.loop = np_started_loop()};
	CHECK(g.loop);
	np_collect_init(&g.seen);
	ssock_server_opts o = {.loop = g.loop, .on_message = grow_on_message, .user = &g};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	size_t big = 100 << 10;
	uint8_t *wire = malloc(4 + big + 7);
	CHECK(wire);
	wire[0] = 0, wire[1] = 1, wire[2] = 0x90, wire[3] = 0; /* 102400 */
	np_pattern(wire + 4, big, 3);
	memcpy(wire + 4 + big, "\0\0\0\3two", 7);
	CHECK_INT(np_write(fd, wire, 4 + big + 7), ==, 0);
	CHECK(np_collect_wait(&g.seen, &g.seen.messages, 2, T));
	CHECK(g.second);
	CHECK_INT(g.seen.msg_len[0], ==, big);
	CHECK(np_pattern_ok(g.seen.msg[0], big, 3));
	CHECK_INT(g.seen.msg_len[1], ==, 3);
	CHECK_MEM(g.seen.msg[1], "two", 3);
	free(wire);
	close(fd);
	CHECK_OK(ssock_server_free(g.second));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(g.loop));
	np_collect_free(&g.seen);
}

/* ------------------------ 4. a call racing ssock_loop_stop() returns */

struct pauser {
	ssock_server *srv;
	atomic_bool stop;
	int calls;
};

static void *pause_repeatedly(void *arg)
{
	struct pauser *p = arg;
	while (!atomic_load(&p->stop)) {
		ssock_server_pause(p->srv);
		p->calls++;
	}
	return NULL;
}

TEST(sync_call_racing_loop_stop_returns)
{
	for (int round = 0; round < 200; round++) {
		ssock_loop *l = np_started_loop();
		CHECK(l);
		ssock_server_opts o = {.loop = l};
		ssock_server *srv = np_server(&o, NULL);
		CHECK(srv);
		struct pauser p = {.srv = srv};
		pthread_t th;
		CHECK_INT(pthread_create(&th, NULL, pause_repeatedly, &p), ==, 0);
		CHECK_OK(ssock_loop_stop(l));
		atomic_store(&p.stop, true);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		int rc = pthread_timedjoin_np(th, NULL, &ts);
		if (rc != 0)
			TEST__FAIL("round %d: ssock_server_pause() never returned after the stop",
				   round);
		CHECK_OK(ssock_server_free(srv));
		CHECK_OK(ssock_loop_free(l));
	}
}

/* -------------- 5. connect/disconnect events are bounded in the inbox */

/* Connects to port without waiting and resets the connection at once. */
static void connect_and_reset(int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	(void)!connect(s, (struct sockaddr *)&a, sizeof a);
	np_reset_close(s);
}

TEST(inbox_bounds_connect_reset_flood)
{
	const size_t inbox_max = 16;
	const int max_conns = 100;
	ssock_server_opts o = {.inbox_max = inbox_max, .max_conns = max_conns};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	long cycles = np_scale("SSOCK_TEST_SCALE_FLOOD", 20000);
	size_t most = 0;
	for (long i = 0; i < cycles; i++) {
		connect_and_reset(port);
		if (i % 256 == 0) {
			ssock_server_stats st;
			CHECK_OK(ssock_server_stats_get(srv, &st));
			if (st.inbox_events > most)
				most = st.inbox_events;
		}
	}
	/* Connects and disconnects: inbox_max of them, plus one disconnect
	 * per connection open when accepting paused. */
	CHECK_INT(most, <=, 2 * inbox_max + (size_t)max_conns);
	/* Drain: every connect the program sees is followed by exactly one
	 * disconnect of the same id, and no disconnect comes without one. */
	uint64_t open_ids[256];
	int nopen = 0, connects = 0;
	for (;;) {
		ssock_event ev;
		int rc = ssock_server_next_event(srv, &ev, 500);
		if (rc == SSOCK_ETIMEDOUT)
			break;
		CHECK_OK(rc);
		if (ev.type == SSOCK_EVENT_CONNECT) {
			connects++;
			CHECK(nopen < 256);
			open_ids[nopen++] = ev.conn;
		} else if (ev.type == SSOCK_EVENT_DISCONNECT) {
			int k = 0;
			while (k < nopen && open_ids[k] != ev.conn)
				k++;
			CHECK(k < nopen);
			open_ids[k] = open_ids[--nopen];
		}
		ssock_event_release(&ev);
	}
	CHECK_INT(nopen, ==, 0);
	CHECK(connects > 0);
	ssock_server_stats st;
	CHECK_OK(ssock_server_stats_get(srv, &st));
	CHECK_INT(st.inbox_events, ==, 0);
	CHECK_INT(st.accepting, ==, 1);
	CHECK_OK(ssock_server_free(srv));
}

/* ------------------- 6. a server-wide budget for bytes queued to send */

struct budget_echo {
	atomic_int failures;
};

static void budget_echo_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct budget_echo *b = user;
	if (ssock_conn_send(c, data, len) != 0) {
		atomic_fetch_add(&b->failures, 1);
		ssock_conn_close(c);
	}
}

static bool server_empty(void *arg)
{
	ssock_server_stats st;
	return ssock_server_stats_get(arg, &st) == 0 && st.conns == 0 && st.queued == 0;
}

static long rss_back_to;

static bool rss_back(void *arg)
{
	(void)arg;
	return np_rss_kb() <= rss_back_to;
}

TEST(send_budget_bounds_memory_of_slow_readers)
{
	const size_t budget = 8u << 20;
	struct budget_echo b = {0};
	ssock_server_opts o = {.send_budget = budget, .on_message = budget_echo_cb, .user = &b};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	long rss0 = np_rss_kb();
	enum { NPEERS = 20 };
	int fds[NPEERS];
	for (int i = 0; i < NPEERS; i++) {
		fds[i] = np_connect_rcvbuf(port, false, 4096); /* they never read */
		CHECK(fds[i] >= 0);
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	/* Each peer sends 64 KiB messages until the server stops taking them
	 * (no room for 300 ms) or 16 MiB went out. */
	size_t msg_len = 64 << 10;
	uint8_t *msg = malloc(msg_len + 4);
	CHECK(msg);
	msg[0] = 0, msg[1] = 1, msg[2] = 0, msg[3] = 0; /* 65536 */
	np_pattern(msg + 4, msg_len, 1);
	size_t sent[NPEERS] = {0}, off[NPEERS] = {0};
	size_t most = 0;
	int64_t deadline = test_now_ms() + 60000;
	for (;;) {
		struct pollfd p[NPEERS];
		int idx[NPEERS], n = 0;
		for (int i = 0; i < NPEERS; i++) {
			if (sent[i] < (16u << 20)) {
				p[n] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
				idx[n++] = i;
			}
		}
		/* Done when no peer could write for 300 ms: the server takes
		 * nothing more from any of them. */
		if (n == 0 || poll(p, (nfds_t)n, 300) <= 0 || test_now_ms() > deadline)
			break;
		for (int k = 0; k < n; k++) {
			int i = idx[k];
			if (!(p[k].revents & POLLOUT))
				continue;
			ssize_t w = send(fds[i], msg + off[i], msg_len + 4 - off[i], MSG_NOSIGNAL);
			if (w > 0) {
				off[i] = (off[i] + (size_t)w) % (msg_len + 4);
				sent[i] += (size_t)w;
			}
		}
		ssock_server_stats st;
		CHECK_OK(ssock_server_stats_get(srv, &st));
		if (st.queued > most)
			most = st.queued;
	}
	ssock_server_stats st;
	CHECK_OK(ssock_server_stats_get(srv, &st));
	if (st.queued > most)
		most = st.queued;
	CHECK_INT(most, <=, budget);
	CHECK(most > 0);
	/* Stopping reading from the heaviest peers kept the hard limit away. */
	CHECK_INT(atomic_load(&b.failures), ==, 0);
	long rss_peak = np_rss_kb();
	for (int i = 0; i < NPEERS; i++)
		close(fds[i]);
	free(msg);
	test_wait_until(server_empty, srv, T);
	CHECK_OK(ssock_server_stats_get(srv, &st));
	CHECK_INT(st.conns, ==, 0);
	CHECK_INT(st.queued, ==, 0);
	/* The memory goes back to the system, not only to malloc, once the
	 * loop has been quiet for a moment (RSS offers nothing to wait on:
	 * look, with a pause between looks). */
	if (np_heap_measurable()) {
		rss_back_to = rss0 + 2 * 1024;
		test_wait_until(rss_back, NULL, T);
		long rss1 = np_rss_kb();
		fprintf(stderr, "rss: %ld KiB before, %ld at the peak, %ld after\n", rss0, rss_peak,
			rss1);
		CHECK_INT(rss1 - rss0, <=, 2 * 1024);
	}
	CHECK_OK(ssock_server_free(srv));
}

/* ----------- 7. callbacks see their handle, set before the first one */

struct first_cb {
	ssock_server *srv; /* written by ssock_server_new() through &srv */
	test_signal done;
};

static void first_connect(ssock_conn *c, void *user)
{
	struct first_cb *f = user;
	/* The variable the program keeps its server in is set already, and
	 * the connection leads to the same server. */
	test_signal_raise(&f->done, f->srv != NULL && ssock_conn_server(c) == f->srv &&
					    ssock_conn_client(c) == NULL);
}

struct connector {
	int port;
	int fd;
};

/* Connects to a port that does not listen yet, again and again until it
 * does (bounded by a deadline), so the connection is in the backlog the
 * moment the server's socket listens. */
static void *connect_when_listening(void *arg)
{
	struct connector *k = arg;
	k->fd = -1;
	int64_t deadline = test_now_ms() + T;
	while (k->fd < 0 && test_now_ms() < deadline) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)k->port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			k->fd = s;
		else
			close(s);
	}
	return NULL;
}

TEST(handle_is_set_before_the_first_callback)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	for (int round = 0; round < 120; round++) {
		int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = {.sin_family = AF_INET};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t alen = sizeof a;
		CHECK(bind(probe, (struct sockaddr *)&a, sizeof a) == 0);
		CHECK(getsockname(probe, (struct sockaddr *)&a, &alen) == 0);
		struct connector k = {.port = ntohs(a.sin_port)};
		close(probe);
		char text[64];
		np_addr_text(text, sizeof text, k.port, false);
		pthread_t th;
		CHECK_INT(pthread_create(&th, NULL, connect_when_listening, &k), ==, 0);
		/* The running shared loop accepts the waiting peer while
		 * ssock_server_new() is still on its way back. */
		struct first_cb f = {.srv = NULL};
		test_signal_init(&f.done);
		ssock_server_opts o = {.listen = text,
				       .loop = l,
				       .on_connect = first_connect,
				       .on_message = echo_cb,
				       .user = &f};
		int rc = ssock_server_new(&f.srv, &o);
		if (rc != 0) {
			pthread_join(th, NULL);
			if (k.fd >= 0)
				close(k.fd);
			if (rc == SSOCK_EADDRINUSE)
				continue; /* someone took the port meanwhile */
			CHECK_OK(rc);
		}
		pthread_join(th, NULL);
		CHECK(k.fd >= 0);
		int ok = test_signal_wait(&f.done, 1, T);
		if (ok != 1)
			TEST__FAIL("round %d: on_connect saw its server unset or wrong (%d)", round,
				   ok);
		close(k.fd);
		CHECK_OK(ssock_server_free(f.srv));
	}
	CHECK_OK(ssock_loop_free(l));
}

static void client_connect_cb(ssock_conn *c, void *user)
{
	ssock_client **cli = user;
	test_signal *f = (test_signal *)(cli + 1);
	test_signal_raise(f, ssock_conn_client(c) == *cli && ssock_conn_server(c) == NULL);
}

TEST(client_connection_reaches_its_client)
{
	struct {
		ssock_client *cli;
		test_signal f;
	} s = {NULL};
	test_signal_init(&s.f);
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	ssock_client_opts co = {.on_connect = client_connect_cb, .on_message = echo_cb, .user = &s};
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	co.connect = text;
	CHECK_OK(ssock_client_new(&s.cli, &co));
	CHECK_OK(ssock_client_connect(s.cli, 0));
	CHECK_INT(test_signal_wait(&s.f, 1, T), ==, 1);
	CHECK_OK(ssock_client_free(s.cli));
	CHECK_OK(ssock_server_free(srv));
}

/* --------------- 8. once the disconnect is seen, the id is gone */

TEST(id_is_gone_once_inbox_disconnect_is_taken)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	for (int round = 0; round < 50; round++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		uint64_t id = np_take_connect(srv);
		CHECK(id);
		close(fd); /* a clean close: the connection half-closes first */
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
		CHECK_INT(ev.conn, ==, id);
		ssock_event_release(&ev);
		CHECK_INT(ssock_server_send(srv, id, "late", 4), ==, SSOCK_ENOCONN);
		CHECK_INT(ssock_server_disconnect(srv, id), ==, SSOCK_ENOCONN);
		ssock_conn_info info[4];
		int n = ssock_server_conns(srv, info, 4);
		for (int i = 0; i < n && i < 4; i++)
			CHECK(info[i].id != id);
	}
	CHECK_OK(ssock_server_free(srv));
}

struct gone_cb {
	test_signal done;
};

static void gone_on_disconnect(ssock_conn *c, int reason, void *user)
{
	(void)reason;
	struct gone_cb *g = user;
	ssock_server *srv = ssock_conn_server(c);
	uint64_t id = ssock_conn_id(c);
	bool ok = ssock_server_send(srv, id, "late", 4) == SSOCK_ENOCONN;
	ssock_conn_info info[4];
	int n = ssock_server_conns(srv, info, 4);
	for (int i = 0; i < n && i < 4; i++)
		ok = ok && info[i].id != id;
	ok = ok && ssock_conn_send(c, "late", 4) == SSOCK_ECLOSED;
	test_signal_raise(&g->done, ok);
}

TEST(id_is_gone_inside_on_disconnect)
{
	struct gone_cb g;
	test_signal_init(&g.done);
	ssock_server_opts o = {
		.on_message = echo_cb, .on_disconnect = gone_on_disconnect, .user = &g};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	for (int round = 1; round <= 20; round++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		CHECK_INT(np_send_u32(fd, "hi", 2), ==, 0);
		void *data;
		size_t len;
		CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0); /* connected and echoed */
		free(data);
		close(fd);
		CHECK_INT(test_signal_wait(&g.done, round, T), ==, 1);
	}
	CHECK_OK(ssock_server_free(srv));
}

/* ------- 9. a wait that only the calling thread could end is refused */

struct waiter {
	ssock_server *srv;
	ssock_loop *loop;
	int rc_forever, rc_timed;
};

static void *drive_then_wait(void *arg)
{
	struct waiter *w = arg;
	ssock_loop_run(w->loop, 0); /* this thread drives the loop */
	ssock_event ev;
	w->rc_forever = ssock_server_next_event(w->srv, &ev, -1);
	w->rc_timed = ssock_server_next_event(w->srv, &ev, 50);
	return NULL;
}

TEST(next_event_on_the_driving_thread_is_refused)
{
	ssock_loop *l;
	CHECK_OK(ssock_loop_new(&l));
	ssock_server_opts o = {.loop = l};
	ssock_server *srv = np_server(&o, NULL);
	CHECK(srv);
	struct waiter w = {.srv = srv, .loop = l};
	pthread_t th;
	CHECK_INT(pthread_create(&th, NULL, drive_then_wait, &w), ==, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	if (pthread_timedjoin_np(th, NULL, &ts) != 0)
		TEST__FAIL("ssock_server_next_event(-1) hung on the thread driving the loop");
	CHECK_INT(w.rc_forever, ==, SSOCK_ELOOPTHREAD);
	CHECK_INT(w.rc_timed, ==, SSOCK_ELOOPTHREAD);
	/* Another thread may still wait: the driver can run the loop. */
	ssock_event ev;
	CHECK_INT(ssock_server_next_event(srv, &ev, 10), ==, SSOCK_ETIMEDOUT);
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(l));
}

/* -------------- 17. an option the kernel refuses is refused up front */

TEST(keepalive_above_the_kernel_limit_is_refused)
{
	ssock_server *srv = NULL;
	ssock_server_opts o = {.listen = "127.0.0.1:0", .keepalive_s = SSOCK_KEEPALIVE_MAX + 1};
	CHECK_INT(ssock_server_new(&srv, &o), ==, SSOCK_EINVAL);
	CHECK(srv == NULL);
	ssock_client *cli = NULL;
	ssock_client_opts co = {.connect = "127.0.0.1:9", .keepalive_s = 40000};
	CHECK_INT(ssock_client_new(&cli, &co), ==, SSOCK_EINVAL);
	/* The largest one works: a connection is accepted with it set. */
	o.keepalive_s = SSOCK_KEEPALIVE_MAX;
	int port;
	srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(np_take_connect(srv) != 0);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* ---------------------------------- 20. broadcast to all but one */

TEST(broadcast_except_skips_one_connection)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int fds[3];
	uint64_t ids[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = np_connect(port, false);
		CHECK(fds[i] >= 0);
		ids[i] = np_take_connect(srv);
		CHECK(ids[i]);
	}
	CHECK_INT(ssock_server_broadcast_except(srv, ids[0], "room", 4), ==, 2);
	CHECK_INT(ssock_server_broadcast(srv, "all", 3), ==, 3);
	for (int i = 0; i < 3; i++) {
		void *data;
		size_t len;
		if (i > 0) {
			CHECK_INT(np_recv_u32(fds[i], &data, &len, T), ==, 0);
			CHECK(len == 4 && memcmp(data, "room", 4) == 0);
			free(data);
		}
		/* The excluded one's first message is the second broadcast. */
		CHECK_INT(np_recv_u32(fds[i], &data, &len, T), ==, 0);
		CHECK(len == 3 && memcmp(data, "all", 3) == 0);
		free(data);
		close(fds[i]);
	}
	CHECK_OK(ssock_server_free(srv));
}

/* ---------------------- an inbox's event fd, for poll() and asyncio */

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

TEST(event_fd_is_readable_while_events_wait)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	int efd = ssock_server_event_fd(srv);
	CHECK(efd >= 0);
	CHECK_INT(ssock_server_event_fd(srv), ==, efd);
	CHECK(!readable(efd, 0));
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(readable(efd, T));
	CHECK_INT(np_send_u32(fd, "a", 1), ==, 0);
	CHECK_INT(np_send_u32(fd, "b", 1), ==, 0);
	int got = 0;
	while (got < 3) { /* connect, a, b */
		CHECK(readable(efd, T));
		ssock_event ev;
		while (ssock_server_next_event(srv, &ev, 0) == 0) {
			got++;
			ssock_event_release(&ev);
		}
	}
	CHECK(!readable(efd, 0));
	close(fd);
	CHECK(readable(efd, T)); /* the disconnect */
	CHECK_OK(ssock_server_free(srv));

	/* Callback mode has no inbox. */
	ssock_server_opts o = {.on_message = echo_cb};
	srv = np_server(&o, NULL);
	CHECK(srv);
	CHECK_INT(ssock_server_event_fd(srv), ==, SSOCK_ENOINBOX);
	CHECK_OK(ssock_server_free(srv));
}

/* The 0.1 names of the handle-freeing calls still build and free. */
TEST(old_close_names_still_free_handles)
{
	ssock_server *srv = np_server(NULL, NULL);
	CHECK(srv);
	ssock_client *cli = np_client(NULL, np_server_port(srv, 0), false);
	CHECK(cli);
	ssock_udp *u = NULL;
	ssock_udp_opts uo = {.bind = "127.0.0.1:0"};
	CHECK_OK(ssock_udp_new(&u, &uo));
	CHECK_OK(ssock_udp_close(u));
	CHECK_OK(ssock_client_close(cli));
	CHECK_OK(ssock_server_close(srv));
}

/* ------ the idle timeout does not count time the program keeps a peer
 * waiting (its message in the inbox); found by recv-files */

TEST(idle_timeout_waits_while_the_program_holds_the_message)
{
	ssock_server_opts o = {.idle_timeout_ms = 500};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	CHECK_INT(np_send_u32(fd, "question", 8), ==, 0);
	/* The program is busy for one and a half idle timeouts: the peer
	 * waits for its answer, and is not closed meanwhile. (The clock
	 * restarts when it finds the message still waiting, at 500 ms.) */
	CHECK(np_quiet(fd, 750));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	ssock_event_release(&ev);
	CHECK_OK(ssock_server_send(srv, id, "answer", 6));
	void *data;
	size_t len;
	CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0);
	CHECK(len == 6 && memcmp(data, "answer", 6) == 0);
	free(data);
	/* Then really idle: closed. */
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EIDLE);
	ssock_event_release(&ev);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}
