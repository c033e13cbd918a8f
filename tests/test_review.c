/*
 * Findings of the review of the redesigned inside (branch review): each
 * test is named after what must hold and failed on the code it was written
 * against. Hangs are caught with a deadline (a watchdog thread, or a timed
 * join), never by waiting forever.
 */
#include "conn.h"
#include "internal.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"
#include "transport_test.h"

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

/* -------- 1. tinyproto: a full send queue must not stop reading the answer */

/* The raw peer's half of tinyproto receiving: reads a size, answers 0xFF,
 * reads the payload. Returns the payload length, or -1. */
static long tp_peer_receive(int fd, void *buf, size_t cap)
{
	uint8_t hdr[4];
	if (np_read_exact(fd, hdr, 4, 3000) != 0)
		return -1;
	size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (n > cap || np_write(fd, "\xFF", 1) != 0)
		return -1;
	if (n && np_read_exact(fd, buf, n, 3000) != 0)
		return -1;
	return (long)n;
}

TEST(tinyproto_queue_above_read_limit_still_reads_accepts)
{
	/* Messages wait in the codec for the peer's 0xFF; the bytes they hold
	 * count in `queued`. Once that is above the read limit the server
	 * stops reading, and so never reads the 0xFF that would let the queue
	 * drain: the connection stalls forever. */
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .send_queue_max = 64 << 10};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint8_t b;
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(b, ==, 0xFF);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	enum { N = 5, LEN = 10 << 10 };
	static char msg[LEN], got[LEN];
	for (int i = 0; i < N; i++) {
		memset(msg, 'a' + i, LEN);
		CHECK_OK(ssock_server_send(srv, id, msg, LEN)); /* 50 KiB > 32 KiB */
	}
	for (int i = 0; i < N; i++) {
		long n = tp_peer_receive(fd, got, sizeof got);
		if (n != LEN)
			TEST__FAIL("message %d of %d never came (%ld): the 0xFF was never read",
				   i + 1, N, n);
		CHECK(got[0] == 'a' + i && got[LEN - 1] == 'a' + i);
	}
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* ------ 2. callbacks of two loops calling each other's servers: deadlock */

/* Two servers on loops of their own; each one's message callback relays
 * the message to the other server with ssock_server_broadcast(), a call the
 * header allows in a callback (it neither waits for room nor frees). It is
 * a synchronous command: the loop thread waits for the other loop, which
 * waits for this one. */
struct relay {
	ssock_server *other;
	atomic_int *inside; /* callbacks running now, both servers */
	atomic_int calls;
};

static void relay_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	struct relay *r = user;
	/* Both loops in a callback at once: wait (bounded) for the other one,
	 * the moment real traffic reaches by chance. */
	atomic_fetch_add(r->inside, 1);
	int64_t until = test_now_ms() + 500;
	while (atomic_load(r->inside) < 2 && test_now_ms() < until) {
	}
	ssock_server_broadcast(r->other, data, len);
	atomic_fetch_sub(r->inside, 1);
	atomic_fetch_add(&r->calls, 1);
}

static atomic_int relay_inside;
static struct relay relay_a = {.inside = &relay_inside}, relay_b = {.inside = &relay_inside};
static ssock_server *relay_sa, *relay_sb;

static void *relay_free_all(void *arg)
{
	(void)arg;
	ssock_server_free(relay_sa);
	ssock_server_free(relay_sb);
	return NULL;
}

TEST(callbacks_of_two_loops_calling_each_other_do_not_deadlock)
{
	ssock_server_opts oa = {.on_message = relay_cb, .user = &relay_a};
	ssock_server_opts ob = {.on_message = relay_cb, .user = &relay_b};
	int pa, pb;
	relay_sa = np_server(&oa, &pa);
	relay_sb = np_server(&ob, &pb);
	CHECK(relay_sa && relay_sb);
	relay_a.other = relay_sb;
	relay_b.other = relay_sa;
	int fa = np_connect(pa, false), fb = np_connect(pb, false);
	CHECK(fa >= 0 && fb >= 0);
	CHECK_INT(np_send_u32(fa, "to-b", 4), ==, 0);
	CHECK_INT(np_send_u32(fb, "to-a", 4), ==, 0);
	/* Each peer gets the other's message. */
	void *data;
	size_t len;
	int ra = np_recv_u32(fa, &data, &len, T);
	if (ra == 0)
		free(data);
	int rb = np_recv_u32(fb, &data, &len, T);
	if (rb == 0)
		free(data);
	if (ra != 0 || rb != 0) {
		/* Both loop threads are stuck: freeing would hang too. Leak them
		 * on a thread of their own so the test reports and ends. */
		pthread_t th;
		pthread_create(&th, NULL, relay_free_all, NULL);
		pthread_detach(th);
		TEST__FAIL(
			"the relayed messages never came (%d, %d): both loops wait for each other",
			ra, rb);
	}
	close(fa);
	close(fb);
	CHECK_OK(ssock_server_free(relay_sa));
	CHECK_OK(ssock_server_free(relay_sb));
}

/* ----- 3. a callback's call that runs another loop inline forgets its own */

/* Loop B has no thread and nobody drives it, so a synchronous call on it
 * runs inline (ssock__call): enter(B) ... leave(B) sets the thread's
 * current loop to NULL, not back to A. The rest of A's callback is then
 * "not on the loop": its ssock_conn_send() fails with SSOCK_EINVAL. */
struct nested {
	ssock_server *other;
	test_signal done;
};

static void nested_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct nested *n = user;
	int before = ssock_conn_send(c, data, len);
	int paused = ssock_server_pause(n->other);
	int after = ssock_conn_send(c, data, len);
	test_signal_raise(&n->done, before == 0 && paused == 0 && after == 0 ? 1 : after);
}

TEST(inline_call_on_another_loop_keeps_the_callbacks_loop)
{
	ssock_loop *lb;
	CHECK_OK(ssock_loop_new(&lb)); /* never started, never driven */
	ssock_server_opts ob = {.loop = lb};
	ssock_server *sb = np_server(&ob, NULL);
	CHECK(sb);
	struct nested n = {.other = sb};
	test_signal_init(&n.done);
	ssock_server_opts oa = {.on_message = nested_cb, .user = &n};
	int port;
	ssock_server *sa = np_server(&oa, &port);
	CHECK(sa);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "hi", 2), ==, 0);
	int ok = test_signal_wait(&n.done, 1, T);
	if (ok != 1)
		TEST__FAIL("after a call that ran loop B inline, ssock_conn_send() on loop A "
			   "returned %d (%s)",
			   ok, ssock_strerror(ok));
	close(fd);
	CHECK_OK(ssock_server_free(sa));
	CHECK_OK(ssock_server_free(sb));
	CHECK_OK(ssock_loop_free(lb));
}

/* ------------- 4. two threads stopping one loop: both wait for its end */

/* ssock_loop_stop() reads has_thread, unlocks, and joins: a second caller
 * joins the same thread too, which is undefined: here it waits forever on
 * the descriptor of a thread the first join already reaped (or, had glibc
 * refused it, it would return while the loop thread still ran). */
static atomic_int slow_inside;

static void slow_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c, (void)data, (void)len, (void)user;
	atomic_store(&slow_inside, 1);
	struct timespec ts = {0, 400 * 1000000L}; /* a callback busy for a while */
	nanosleep(&ts, NULL);
	atomic_store(&slow_inside, 0);
}

struct stopper {
	ssock_loop *l;
	pthread_barrier_t *go;
	int rc;
	int inside_after; /* the callback still ran when stop returned */
};

static void *stop_loop(void *arg)
{
	struct stopper *s = arg;
	pthread_barrier_wait(s->go);
	s->rc = ssock_loop_stop(s->l);
	s->inside_after = atomic_load(&slow_inside);
	return NULL;
}

static bool inside_cb(void *arg)
{
	(void)arg;
	return atomic_load(&slow_inside) == 1;
}

TEST(concurrent_loop_stops_both_wait_for_the_thread)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	ssock_server_opts o = {.loop = l, .on_message = slow_cb};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "x", 1), ==, 0);
	CHECK(test_wait_until(inside_cb, NULL, T));
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 2);
	struct stopper s[2] = {{.l = l, .go = &go}, {.l = l, .go = &go}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&th[i], NULL, stop_loop, &s[i]), ==, 0);
	bool ended[2];
	for (int i = 0; i < 2; i++)
		ended[i] = np_joined_within(th[i], T);
	if (!ended[0] || !ended[1])
		TEST__FAIL("a ssock_loop_stop() racing another never returned"); /* leaks */
	pthread_barrier_destroy(&go);
	CHECK_OK(s[0].rc);
	CHECK_OK(s[1].rc);
	if (s[0].inside_after || s[1].inside_after)
		TEST__FAIL("ssock_loop_stop() returned while the loop thread still ran a callback");
	close(fd);
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(l));
}

/* ---- 6. a client that connects again from on_disconnect, while freed */

/* ssock_client_free() closes the connection on the loop (close_cmd); its
 * on_disconnect runs there, and a program that reconnects by hand calls
 * ssock_client_connect(cli, 0) in it. connect_cmd does not look at
 * cli->closed: a new attempt starts (a socket, a timer in the loop's heap,
 * then a connection) on a client about to be freed. */
struct redial {
	ssock_client *cli;
	atomic_int connects;
};

static void redial_on_disconnect(ssock_conn *c, int reason, void *user)
{
	(void)c, (void)reason;
	struct redial *r = user;
	ssock_client_connect(r->cli, 0);
}

static void redial_on_connect(ssock_conn *c, void *user)
{
	(void)c;
	struct redial *r = user;
	atomic_fetch_add(&r->connects, 1);
}

static void ignore_msg(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c, (void)data, (void)len, (void)user;
}

TEST(client_freed_from_on_disconnect_reconnect_does_not_connect_again)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	int lport;
	int lfd = np_listen(16, &lport);
	CHECK(lfd >= 0);
	struct redial r = {0};
	ssock_client_opts co = {.loop = l,
				.on_connect = redial_on_connect,
				.on_message = ignore_msg,
				.on_disconnect = redial_on_disconnect,
				.connect_timeout_ms = 300,
				.user = &r};
	r.cli = np_client(&co, lport, false);
	CHECK(r.cli);
	CHECK_OK(ssock_client_connect(r.cli, T));
	int peer = accept(lfd, NULL, NULL);
	CHECK(peer >= 0);
	CHECK_OK(ssock_client_free(r.cli));
	/* Nothing may reach the listener after the client is gone. */
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	int again = poll(&p, 1, 500);
	int peer2 = again == 1 ? accept(lfd, NULL, NULL) : -1;
	if (peer2 >= 0)
		close(peer2);
	close(peer);
	close(lfd);
	/* Give the loop a moment with whatever the freed client left in it
	 * (its timer, its socket): under ASan this is where it is used. */
	struct timespec ts = {0, 400 * 1000000L};
	nanosleep(&ts, NULL);
	CHECK_OK(ssock_loop_free(l));
	if (again == 1)
		TEST__FAIL("a freed client connected again (its on_disconnect called connect)");
}

/* ----- 7. two servers created in one callback: the buffer read is freed */

/* ssock__loop_rbuf() on the loop keeps one retired buffer: the second
 * growth in the same pass frees the first retired one, which is the buffer
 * the running read decodes from (and the callback's `data` points into). */
struct grow2 {
	ssock_loop *loop;
	ssock_server *made[2];
	np_collect seen;
	bool data_ok;
};

static void grow2_on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	struct grow2 *g = user;
	if (!g->made[0]) {
		char before[64];
		memcpy(before, data, len < 64 ? len : 64);
		for (int i = 0; i < 2; i++) {
			ssock_server_opts o = {.listen = "127.0.0.1:0",
					       .loop = g->loop,
					       .read_size = (size_t)(1 + i) << 20,
					       .on_message = ignore_msg};
			ssock_server_new(&g->made[i], &o);
		}
		g->data_ok = memcmp(before, data, len < 64 ? len : 64) == 0;
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
}

TEST(read_buffer_survives_two_servers_created_in_one_callback)
{
	struct grow2 g = {.loop = np_started_loop()};
	CHECK(g.loop);
	np_collect_init(&g.seen);
	ssock_server_opts o = {.loop = g.loop, .on_message = grow2_on_message, .user = &g};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	/* One read, two messages, each longer than malloc's free-list header. */
	uint8_t wire[2 * (4 + 40)];
	for (int m = 0; m < 2; m++) {
		uint8_t *w = wire + m * 44;
		w[0] = w[1] = w[2] = 0, w[3] = 40;
		memset(w + 4, m ? 'B' : 'A', 40);
	}
	CHECK_INT(np_write(fd, wire, sizeof wire), ==, 0);
	CHECK(np_collect_wait(&g.seen, &g.seen.messages, 2, T));
	CHECK(g.made[0] && g.made[1]);
	CHECK(g.data_ok);
	CHECK_INT(g.seen.msg_len[1], ==, 40);
	for (int k = 0; k < 40; k++)
		CHECK(g.seen.msg[1][k] == 'B');
	close(fd);
	CHECK_OK(ssock_server_free(g.made[0]));
	CHECK_OK(ssock_server_free(g.made[1]));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(g.loop));
	np_collect_free(&g.seen);
}

/* -------- 8. tinyproto: a reply then a close ("bye") still sends the reply */

/* A graceful close stops reading (CLOSING), but a tinyproto message only
 * goes out after the peer's 0xFF is read: the reply's size is sent, its
 * answer is never read, and the linger (5 s) ends the connection with the
 * reply lost. */
static void bye_cb_echo(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
}

static void bye_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
	ssock_conn_close(c);
}

/* The raw peer's half of tinyproto sending: size, wait for 0xFF, payload. */
static int tp_peer_send(int fd, const void *data, uint32_t len)
{
	uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};
	uint8_t st;
	if (np_write(fd, hdr, 4) != 0 || np_read_exact(fd, &st, 1, 3000) != 0 || st != 0xFF)
		return -1;
	return np_write(fd, data, len);
}

TEST(tinyproto_reply_then_close_sends_the_reply)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .on_message = bye_cb};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint8_t b;
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0);
	CHECK_INT(tp_peer_send(fd, "bye", 3), ==, 0);
	int64_t t0 = test_now_ms();
	char got[16];
	long n = tp_peer_receive(fd, got, sizeof got);
	if (n != 3)
		TEST__FAIL("the reply before the close never came whole (%ld)", n);
	CHECK_MEM(got, "bye", 3);
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	int64_t took = test_now_ms() - t0;
	if (took > 2000)
		TEST__FAIL("the close took %lld ms (the linger ran out)", (long long)took);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* ------------ 9. a flush whose connection dies with data unsent says so */

/* ssock_client_flush() looks the connection up by id; once it is gone it
 * answers from the offline queue alone (`off_bytes > 0 ? ENOTCONN : 0`),
 * so bytes that died in the connection's own queue count as flushed. */
struct flusher {
	ssock_client *cli;
	int rc;
	test_signal waiting;
};

static void *flush_forever(void *arg)
{
	struct flusher *f = arg;
	test_signal_raise(&f->waiting, 1);
	f->rc = ssock_client_flush(f->cli, 5000);
	return NULL;
}

TEST(flush_reports_data_lost_with_the_connection)
{
	int lport;
	int lfd = np_listen(16, &lport);
	CHECK(lfd >= 0);
	ssock_client_opts co = {0};
	ssock_client *cli = np_client(&co, lport, false);
	CHECK(cli);
	CHECK_OK(ssock_client_connect(cli, T));
	int peer = accept(lfd, NULL, NULL);
	CHECK(peer >= 0);
	/* The peer never reads: 8 MiB stay queued. */
	static char chunk[64 << 10];
	for (int i = 0; i < 128; i++)
		CHECK_OK(ssock_client_send(cli, chunk, sizeof chunk));
	struct flusher f = {.cli = cli};
	test_signal_init(&f.waiting);
	pthread_t th;
	CHECK_INT(pthread_create(&th, NULL, flush_forever, &f), ==, 0);
	CHECK_INT(test_signal_wait(&f.waiting, 1, T), ==, 1);
	CHECK_INT(ssock_client_flush(cli, 0), ==, SSOCK_ETIMEDOUT); /* still queued */
	np_reset_close(peer);                                       /* everything queued is lost */
	CHECK(np_joined_within(th, T));
	if (f.rc != SSOCK_ENOTCONN)
		TEST__FAIL("flush returned %d (%s) though the connection died with ~8 MiB unsent",
			   f.rc, ssock_errname(f.rc));
	close(lfd);
	CHECK_OK(ssock_client_free(cli));
}

/* ------ 10. a silent name server does not starve lookups of other names */

static void silent_names_then_localhost(bool distinct)
{
	const char *e = getenv("SSOCK_TEST_SILENT_DNS");
	if (!e || strcmp(e, "1") != 0)
		TEST__FAIL("run by tests/dns_silent.sh (SSOCK_TEST_SILENT_DNS=1)");
	int dns[2];
	CHECK(np_silent_dns(dns));
	int port;
	ssock_server_opts so = {.on_message = ignore_msg};
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	/* Sixteen attempts at a name that never answers, each given up after
	 * 300 ms. */
	enum { N = 16 };
	ssock_client *silent[N];
	for (int i = 0; i < N; i++) {
		char name[64];
		snprintf(name, sizeof name, "silent%d.ssock.test:9", distinct ? i : 0);
		ssock_client_opts co = {.connect = name, .connect_timeout_ms = 300};
		CHECK_OK(ssock_client_new(&silent[i], &co));
		CHECK_OK(ssock_client_connect(silent[i], 0));
	}
	for (int i = 0; i < N; i++) {
		ssock_event ev;
		CHECK_OK(np_client_wait(silent[i], SSOCK_EVENT_ERROR, &ev, T));
		ssock_event_release(&ev);
	}
	/* Those attempts are over. A name from /etc/hosts resolves at once. */
	char text[64];
	snprintf(text, sizeof text, "localhost:%d", port);
	ssock_addr a;
	CHECK_INT(ssock_addr_resolve(text, 0, &a, 1), ==, 1);
	ssock_client *cli = NULL;
	ssock_client_opts co = {.connect = text, .connect_timeout_ms = 2000};
	CHECK_OK(ssock_client_new(&cli, &co));
	int rc = ssock_client_connect(cli, 5000);
	for (int i = 0; i < N; i++)
		CHECK_OK(ssock_client_free(silent[i]));
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
	close(dns[0]);
	close(dns[1]);
	if (rc != 0)
		TEST__FAIL("connecting to localhost failed with %s: its lookup queued behind 16 "
			   "abandoned ones",
			   ssock_errname(rc));
}

/* Sixteen attempts at one silent name share one lookup. */
TEST(silent_name_does_not_starve_other_lookups)
{
	silent_names_then_localhost(false);
}

/* Sixteen silent names: each abandoned lookup gives its slot back. */
TEST(distinct_silent_names_do_not_starve_other_lookups)
{
	silent_names_then_localhost(true);
}

/* ---------- 11. a thread waiting in connect() is released by the free */

/* A thread waits in ssock_client_connect(cli, -1) while auto_reconnect
 * retries a port nobody listens on (the state stays CONNECTING). Freeing
 * the client (close_cmd) stops the retries but never sets the state nor
 * wakes the waiter: it sleeps on loop->cv, and the loop the client owned
 * is destroyed under it (pthread_cond_destroy then waits for it forever). */
struct conn_waiter {
	ssock_client *cli;
	int rc;
	test_signal started;
};

static void *connect_forever(void *arg)
{
	struct conn_waiter *w = arg;
	test_signal_raise(&w->started, 1);
	w->rc = ssock_client_connect(w->cli, -1);
	return NULL;
}

static void *free_client_thread(void *arg)
{
	ssock_client_free(arg);
	return NULL;
}

static bool two_errors(void *arg)
{
	return ssock_client_errors(arg, NULL, 0, 0) >= 2;
}

TEST(free_releases_a_thread_waiting_to_connect)
{
	int lport;
	int lfd = np_listen(1, &lport);
	CHECK(lfd >= 0);
	close(lfd); /* nobody listens there now: every attempt is refused */
	ssock_client_opts co = {
		.auto_reconnect = 1, .reconnect_min_ms = 20, .reconnect_max_ms = 50};
	ssock_client *cli = np_client(&co, lport, false);
	CHECK(cli);
	struct conn_waiter w = {.cli = cli, .rc = 1};
	test_signal_init(&w.started);
	pthread_t wt, ft;
	CHECK_INT(pthread_create(&wt, NULL, connect_forever, &w), ==, 0);
	CHECK_INT(test_signal_wait(&w.started, 1, T), ==, 1);
	/* Two attempts failed since: it is surely waiting. */
	CHECK(test_wait_until(two_errors, cli, T));
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_CONNECTING);
	CHECK_INT(pthread_create(&ft, NULL, free_client_thread, cli), ==, 0);
	bool freed = np_joined_within(ft, T);
	bool woke = np_joined_within(wt, T);
	if (!freed || !woke)
		TEST__FAIL("ssock_client_free() %s, the connect waiter %s",
			   freed ? "returned" : "never returned",
			   woke ? "returned" : "never returned"); /* both leak */
	CHECK(w.rc != 0);
}

/* --- 13. running out of memory while taking posted sends: no self-deadlock */

/* ssock__take_posted() holds loop->mu while it hands each posted chunk to
 * the codec. tinyproto's send starts the next message (kick ->
 * ssock__out_bytes), and when that allocation fails the connection is
 * failed on the spot: ssock__conn_fail -> unlink_conn locks loop->mu again
 * (and on_error, a user callback, runs with it held). The loop thread
 * deadlocks on itself; every call that takes loop->mu hangs after it.
 *
 * Allocation failure is injected by interposing malloc (the library is
 * linked statically into this test); not under the sanitizers, which own
 * malloc. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define REVIEW_MALLOC_HOOK 1
extern void *__libc_malloc(size_t n);
static atomic_size_t fail_size; /* fail the next malloc of this size */

void *malloc(size_t n)
{
	size_t want = atomic_load_explicit(&fail_size, memory_order_relaxed);
	if (want && n == want && atomic_compare_exchange_strong(&fail_size, &want, 0))
		return NULL;
	return __libc_malloc(n);
}
#endif

__attribute__((unused)) static void *stats_thread(void *arg)
{
	ssock_server_stats st;
	ssock_server_stats_get(arg, &st);
	return NULL;
}

TEST(out_of_memory_while_taking_posted_sends_does_not_deadlock)
{
#ifndef REVIEW_MALLOC_HOOK
	fprintf(stderr, "skipped: malloc is the sanitizer's here\n");
#else
	/* A queue large enough that the first message stays below the read
	 * limit (finding 1 is not what this shows). */
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .send_queue_max = 128u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port); /* a loop of its own: no spare chunks yet */
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 4096);
	CHECK(fd >= 0);
	uint8_t b, hdr[4];
	CHECK_INT(np_read_exact(fd, &b, 1, T), ==, 0);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	/* A first message, accepted, whose 32 MiB payload the peer does not
	 * read: far more than the kernel takes, so it stays the tail of the
	 * send queue. */
	static char big[32 << 20];
	CHECK_OK(ssock_server_send(srv, id, big, sizeof big));
	CHECK_INT(np_read_exact(fd, hdr, 4, T), ==, 0);
	CHECK_INT(np_write(fd, "\xFF", 1), ==, 0);
	/* The server took the 0xFF once payload bytes reach the peer (who
	 * reads none of them). */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	CHECK_INT(poll(&p, 1, T), ==, 1);
	/* The next message's size needs a new chunk: that malloc fails. */
	atomic_store(&fail_size, sizeof(ssock__chunk) + (16u << 10));
	CHECK_OK(ssock_server_send(srv, id, "x", 1));
	pthread_t th;
	CHECK_INT(pthread_create(&th, NULL, stats_thread, srv), ==, 0);
	if (!np_joined_within(th, T))
		TEST__FAIL(
			"ssock_server_stats_get() hangs: the loop thread holds loop->mu forever");
	atomic_store(&fail_size, 0);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
#endif
}

/* The same stall with default options, once the server's total is above
 * half its budget (64 MiB): the read limit of every connection drops to
 * 64 KiB, and each tinyproto echo above that waits for a 0xFF that is
 * never read. Three peers, three 12 MiB echoes in flight (36 MiB). */
TEST(tinyproto_echoes_above_half_the_budget_with_defaults)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .on_message = bye_cb_echo};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	enum { NP = 3 };
	int fd[NP];
	size_t len = 12u << 20;
	char *msg = malloc(len), *got = malloc(len);
	CHECK(msg && got);
	np_pattern(msg, len, 5);
	uint8_t b, hdr[4];
	for (int i = 0; i < NP; i++) {
		fd[i] = np_connect(port, false);
		CHECK(fd[i] >= 0);
		CHECK_INT(np_read_exact(fd[i], &b, 1, T), ==, 0);
		CHECK_INT(np_write(fd[i], "\xFF", 1), ==, 0);
		CHECK_INT(tp_peer_send(fd[i], msg, (uint32_t)len), ==, 0);
		CHECK_INT(np_read_exact(fd[i], hdr, 4, T), ==, 0); /* the echo's size */
	}
	for (int i = 0; i < NP; i++) {
		CHECK_INT(np_write(fd[i], "\xFF", 1), ==, 0); /* go on */
		if (np_read_exact(fd[i], got, len, 5000) != 0)
			TEST__FAIL("peer %d: the echo's payload never came", i);
		CHECK(np_pattern_ok(got, len, 5));
	}
	free(msg);
	free(got);
	for (int i = 0; i < NP; i++)
		close(fd[i]);
	CHECK_OK(ssock_server_free(srv));
}

/* ------ 14. a slow reader's queue costs about what send_queue_max says */

/* Every message sent from another thread is framed into a chunk of its own
 * (malloc(40 + 4 + len)), and the chunks stay separate in the send queue:
 * a queue counted as 4 MiB of wire bytes of 1-byte messages holds ~800k
 * chunks, ~13 times that in heap. (tinyproto's turn queue does the same
 * with every message, also from callbacks.) send_queue_max and
 * send_budget, documented as the bounds on memory held for a slow reader,
 * then bound only a fraction of it. */
TEST(small_messages_to_a_slow_reader_stay_near_send_queue_max)
{
	if (!np_heap_measurable()) {
		fprintf(stderr, "skipped: heap not measurable here\n");
		return;
	}
	const size_t sqmax = 4u << 20;
	ssock_server_opts o = {.send_queue_max = sqmax};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 4096); /* never reads */
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	int64_t heap0 = np_heap_bytes();
	long sent = 0;
	while (ssock_server_send(srv, id, "x", 1) == 0)
		sent++;
	ssock_server_stats st;
	CHECK_OK(ssock_server_stats_get(srv, &st));
	int64_t grew = np_heap_bytes() - heap0;
	fprintf(stderr, "%ld messages, %zu bytes queued, heap grew by %lld bytes\n", sent,
		st.queued, (long long)grew);
	CHECK_INT(st.queued, <=, sqmax);
	if (grew > (int64_t)(3 * sqmax))
		TEST__FAIL("a send queue bounded at %zu bytes holds %lld bytes of heap", sqmax,
			   (long long)grew);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* ---- 15. random API use from threads and callbacks (a natural finding 2) */

/* Two servers on a shared loop, three clients on loops of their own (one
 * callback-mode client on the shared loop would hide it), four threads and
 * every callback calling the API at random, hostile raw peers churning.
 * Nothing here waits for an interleaving: within seconds a callback of one
 * loop makes a synchronous call (broadcast, reconnect, pause) on another
 * loop whose thread is making one on the first, and both loops stop for
 * good (finding 2). With every handle on one loop it runs clean under
 * ASan and TSan, over both transports and every framing (TT=1, TP=1, LN=1
 * pick them). */
static ssock_loop *sx_loop;
static ssock_server *sx_srv[2];
static ssock_client *sx_cli[3];
static atomic_int sx_stop;
static __thread uint64_t sx_rng = 88172645463325252ull;
static uint64_t sx_r(void)
{
	sx_rng ^= sx_rng << 13;
	sx_rng ^= sx_rng >> 7;
	sx_rng ^= sx_rng << 17;
	return sx_rng;
}
static void sx_cb_msg(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	switch (sx_r() % 12) {
	case 0:
		ssock_conn_close(c);
		break;
	case 1:
		ssock_server_broadcast(sx_srv[0], data, len);
		break;
	case 2: {
		ssock_conn_info inf[8];
		ssock_server_conns(sx_srv[sx_r() % 2], inf, 8);
	} break;
	case 3:
		ssock_server_pause(sx_srv[1]);
		break;
	case 4:
		ssock_server_resume(sx_srv[1]);
		break;
	case 5:
		ssock_client_reconnect(sx_cli[sx_r() % 3]);
		break;
	case 6:
		ssock_client_send(sx_cli[sx_r() % 3], data, len);
		break;
	case 7: {
		ssock_event ev;
		if (ssock_server_next_event(sx_srv[1], &ev, 0) == 0)
			ssock_event_release(&ev);
	} break;
	case 8:
		ssock_server_disconnect(sx_srv[0], ssock_conn_id(c));
		break;
	default:
		ssock_conn_send(c, data, len);
		ssock_conn_send(c, data, len / 2);
		break;
	}
}
static void sx_cb_disc(ssock_conn *c, int reason, void *user)
{
	(void)c, (void)reason, (void)user;
	if (sx_r() % 4 == 0)
		ssock_server_broadcast(sx_srv[0], "bye", 3);
}
static void sx_cb_conn(ssock_conn *c, void *user)
{
	(void)user;
	if (sx_r() % 5 == 0)
		ssock_conn_close(c);
	else
		ssock_conn_send(c, "hello", 5);
}
static void *sx_thread(void *arg)
{
	sx_rng ^= (uintptr_t)arg * 0x9E3779B97F4A7C15ull;
	static char buf[300000];
	while (!atomic_load(&sx_stop)) {
		ssock_conn_info inf[16];
		int n = ssock_server_conns(sx_srv[sx_r() % 2], inf, 16);
		uint64_t id = n > 0 ? inf[sx_r() % (n < 16 ? n : 16)].id : sx_r() % 1000;
		size_t len = sx_r() % 4 == 0 ? sx_r() % sizeof buf : sx_r() % 100;
		switch (sx_r() % 14) {
		case 0:
			ssock_server_send(sx_srv[sx_r() % 2], id, buf, len);
			break;
		case 1:
			ssock_server_send_timeout(sx_srv[sx_r() % 2], id, buf, len, 5);
			break;
		case 2:
			ssock_server_broadcast(sx_srv[sx_r() % 2], buf, len % 1000);
			break;
		case 3:
			ssock_server_disconnect(sx_srv[sx_r() % 2], id);
			break;
		case 4: {
			ssock_event ev;
			if (ssock_server_next_event(sx_srv[1], &ev, (int)(sx_r() % 3)) == 0)
				ssock_event_release(&ev);
		} break;
		case 5: {
			ssock_client *c = sx_cli[sx_r() % 3];
			ssock_client_send(c, buf, len);
		} break;
		case 6:
			ssock_client_connect(sx_cli[sx_r() % 3], (int)(sx_r() % 2) * 5);
			break;
		case 7:
			ssock_client_disconnect(sx_cli[sx_r() % 3]);
			break;
		case 8:
			ssock_client_reconnect(sx_cli[sx_r() % 3]);
			break;
		case 9: {
			void *d;
			size_t l;
			if (ssock_client_recv(sx_cli[2], &d, &l, 1) == 0)
				ssock_free(d);
		} break;
		case 10:
			ssock_client_flush(sx_cli[sx_r() % 3], 2);
			break;
		case 11: {
			ssock_server_stats st;
			ssock_server_stats_get(sx_srv[sx_r() % 2], &st);
		} break;
		case 12:
			if (sx_r() % 50 == 0) {
				ssock_server_pause(sx_srv[0]);
				ssock_server_resume(sx_srv[0]);
			}
			break;
		default: {
			ssock_event ev;
			if (ssock_client_next_event(sx_cli[2], &ev, 0) == 0)
				ssock_event_release(&ev);
		} break;
		}
	}
	return NULL;
}
static void *sx_peers(void *arg)
{
	int port = (int)(intptr_t)arg;
	static char junk[5000];
	while (!atomic_load(&sx_stop)) {
		/* Not np_connect(): a server whose inbox is full of connect
		 * events stops accepting, its backlog fills, and a blocking
		 * connect() then waits for seconds. */
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		struct pollfd pw = {.fd = fd, .events = POLLOUT};
		if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 &&
		    (errno != EINPROGRESS || poll(&pw, 1, 200) != 1)) {
			close(fd);
			continue;
		}
		int k = (int)(sx_r() % 6);
		uint8_t hdr[4] = {0, 0, (uint8_t)(sx_r() % 20), (uint8_t)sx_r()};
		if (k == 0) {
			(void)!send(fd, hdr, 2, MSG_NOSIGNAL);
		} else if (k == 1) {
			for (int i = 0; i < 20; i++)
				np_send_u32(fd, junk, sx_r() % 3000);
		} else if (k == 2) {
			(void)!send(fd, junk, sizeof junk, MSG_NOSIGNAL);
		} else if (k == 3) {
			np_send_u32(fd, junk, 10);
			char b[64];
			(void)!read(fd, b, sizeof b);
		}
		if (sx_r() % 2) {
			struct linger lg = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		close(fd);
	}
	return NULL;
}
TEST(random_api_use_from_threads_and_callbacks)
{
	if (getenv("TT"))
		ssock__transport_set_default(&test_transport);
	ssock_framing fr = getenv("TP")   ? SSOCK_FRAMING_TINYPROTO
			   : getenv("LN") ? SSOCK_FRAMING_LINE
					  : SSOCK_FRAMING_U32;
	sx_loop = np_started_loop();
	CHECK(sx_loop);
	ssock_server_opts o0 = {.loop = sx_loop,
				.on_message = sx_cb_msg,
				.on_disconnect = sx_cb_disc,
				.on_connect = sx_cb_conn,
				.send_queue_max = 1 << 20,
				.framing = fr,
				.idle_timeout_ms = 300,
				.read_timeout_ms = 200};
	ssock_server_opts o1 = {
		.loop = sx_loop, .inbox_max = 8, .send_queue_max = 1 << 20, .framing = fr};
	int p0, p1;
	sx_srv[0] = np_server(&o0, &p0);
	sx_srv[1] = np_server(&o1, &p1);
	CHECK(sx_srv[0] && sx_srv[1]);
	for (int i = 0; i < 3; i++) {
		ssock_client_opts co = {.loop = getenv("SX_ONE_LOOP") ? sx_loop : NULL,
					.auto_reconnect = i != 1,
					.reconnect_min_ms = 5,
					.reconnect_max_ms = 20,
					.queue_while_offline = i == 1,
					.send_queue_max = 1 << 20,
					.framing = fr};
		if (i < 2) {
			co.on_message = sx_cb_msg;
			co.on_disconnect = sx_cb_disc;
			co.on_connect = sx_cb_conn;
		}
		sx_cli[i] = np_client(&co, i == 2 ? p1 : p0, false);
		CHECK(sx_cli[i]);
	}
	/* Every handle is in place before a callback can read sx_cli. */
	for (int i = 0; i < 3; i++)
		ssock_client_connect(sx_cli[i], 0);
	enum { NT = 4 };
	pthread_t th[NT + 2];
	for (int i = 0; i < NT; i++)
		pthread_create(&th[i], NULL, sx_thread, (void *)(intptr_t)(i + 1));
	pthread_create(&th[NT], NULL, sx_peers, (void *)(intptr_t)p0);
	pthread_create(&th[NT + 1], NULL, sx_peers, (void *)(intptr_t)p1);
	long secs = np_scale("SX_SECS", 5);
	struct timespec ts = {secs, 0};
	nanosleep(&ts, NULL);
	atomic_store(&sx_stop, 1);
	for (int i = 0; i < NT + 2; i++)
		if (!np_joined_within(th[i], 30000))
			TEST__FAIL(
				"API thread %d stuck: a loop waits for another that waits for it",
				i); /* leaks */
	for (int i = 0; i < 3; i++)
		CHECK_OK(ssock_client_free(sx_cli[i]));
	CHECK_OK(ssock_server_free(sx_srv[0]));
	CHECK_OK(ssock_server_free(sx_srv[1]));
	CHECK_OK(ssock_loop_free(sx_loop));
}
