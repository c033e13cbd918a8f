/*
 * Several threads on one server, client or loop at once (these also run
 * under ThreadSanitizer): 8 threads sending to one connection, several
 * threads taking from one inbox, a server closed while clients still send,
 * and a loop driven from a thread of the program's own.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T          TEST_TIMEOUT_MS
#define NTHREADS   8
#define PER_THREAD 300
#define MAX_BODY   4000

/* A message of thread t, number seq: [t][seq, 4 bytes][pattern]. */
static size_t make_msg(uint8_t *buf, int t, uint32_t seq)
{
	uint64_t s = (uint64_t)t * 1000003u + seq + 1;
	size_t body = (size_t)(np_rand(&s) % MAX_BODY);
	buf[0] = (uint8_t)t;
	uint32_t be = htonl(seq);
	memcpy(buf + 1, &be, 4);
	np_pattern(buf + 5, body, (uint64_t)t << 32 | seq);
	return 5 + body;
}

/* Checks one received message against what thread t's next one must be.
 * next[t] counts the messages of each thread seen so far. */
static bool check_msg(const uint8_t *data, size_t len, uint32_t *next)
{
	if (len < 5 || data[0] >= NTHREADS)
		return false;
	int t = data[0];
	uint32_t seq;
	memcpy(&seq, data + 1, 4);
	seq = ntohl(seq);
	if (seq != next[t])
		return false; /* lost, repeated or out of order */
	uint8_t want[5 + MAX_BODY];
	size_t wlen = make_msg(want, t, seq);
	if (wlen != len || memcmp(want, data, len) != 0)
		return false; /* not whole, or mixed with another */
	next[t]++;
	return true;
}

struct sender {
	int t;
	ssock_server *srv;
	ssock_client *cli;
	uint64_t id;
	int failures;
	pthread_barrier_t *start;
};

static void *send_thread(void *arg)
{
	struct sender *s = arg;
	uint8_t buf[5 + MAX_BODY];
	pthread_barrier_wait(s->start);
	for (uint32_t seq = 0; seq < PER_THREAD; seq++) {
		size_t len = make_msg(buf, s->t, seq);
		int rc = s->srv ? ssock_server_send_timeout(s->srv, s->id, buf, len, T)
				: ssock_client_send_timeout(s->cli, buf, len, T);
		if (rc != 0)
			s->failures++;
	}
	return NULL;
}

static int run_senders(ssock_server *srv, ssock_client *cli, uint64_t id, pthread_t *th,
		       struct sender *s, pthread_barrier_t *start)
{
	pthread_barrier_init(start, NULL, NTHREADS);
	for (int t = 0; t < NTHREADS; t++) {
		s[t] = (struct sender){.t = t, .srv = srv, .cli = cli, .id = id, .start = start};
		if (pthread_create(&th[t], NULL, send_thread, &s[t]) != 0)
			return -1;
	}
	return 0;
}

static int join_senders(pthread_t *th, struct sender *s, pthread_barrier_t *start)
{
	int failures = 0;
	for (int t = 0; t < NTHREADS; t++) {
		pthread_join(th[t], NULL);
		failures += s[t].failures;
	}
	pthread_barrier_destroy(start);
	return failures;
}

TEST(server_send_from_8_threads_to_one_connection)
{
	int port;
	ssock_server_opts o = {.send_queue_max = 256 << 10};
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_client_opts co = {.connect = text};
	ssock_client *cli;
	CHECK_OK(ssock_client_new(&cli, &co));
	CHECK_OK(ssock_client_connect(cli, T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, T));
	uint64_t id = ev.conn;
	ssock_event_release(&ev);

	pthread_t th[NTHREADS];
	struct sender s[NTHREADS];
	pthread_barrier_t start;
	CHECK_OK(run_senders(srv, NULL, id, th, s, &start));
	uint32_t next[NTHREADS] = {0};
	int bad = 0;
	for (int i = 0; i < NTHREADS * PER_THREAD; i++) {
		void *data;
		size_t len;
		int rc = ssock_client_recv(cli, &data, &len, T);
		if (rc != 0) {
			bad = -1;
			break;
		}
		if (!check_msg(data, len, next))
			bad++;
		ssock_free(data);
	}
	CHECK_INT(join_senders(th, s, &start), ==, 0);
	CHECK_INT(bad, ==, 0);
	for (int t = 0; t < NTHREADS; t++)
		CHECK_INT(next[t], ==, PER_THREAD);
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

TEST(client_send_from_8_threads)
{
	int port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_client_opts co = {.connect = text, .send_queue_max = 256 << 10};
	ssock_client *cli;
	CHECK_OK(ssock_client_new(&cli, &co));
	CHECK_OK(ssock_client_connect(cli, T));

	pthread_t th[NTHREADS];
	struct sender s[NTHREADS];
	pthread_barrier_t start;
	CHECK_OK(run_senders(NULL, cli, 0, th, s, &start));
	uint32_t next[NTHREADS] = {0};
	int bad = 0;
	for (int i = 0; i < NTHREADS * PER_THREAD; i++) {
		ssock_event ev;
		if (np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T) != 0) {
			bad = -1;
			break;
		}
		if (!check_msg(ev.data, ev.len, next))
			bad++;
		ssock_event_release(&ev);
	}
	CHECK_INT(join_senders(th, s, &start), ==, 0);
	CHECK_INT(bad, ==, 0);
	for (int t = 0; t < NTHREADS; t++)
		CHECK_INT(next[t], ==, PER_THREAD);
	CHECK_OK(ssock_client_flush(cli, T));
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}

/* ------------------------------------------- several takers, one inbox */

#define INBOX_N 20000

struct taker {
	ssock_server *srv;
	atomic_int *taken;
	uint8_t *seen; /* INBOX_N flags, shared: each index set once */
	int out_of_order, dup;
};

static void *take_thread(void *arg)
{
	struct taker *k = arg;
	uint32_t last = 0;
	bool first = true;
	int64_t deadline = test_now_ms() + 3 * T;
	while (atomic_load(k->taken) < INBOX_N && test_now_ms() < deadline) {
		ssock_event ev;
		/* Short waits: others may take the last message meanwhile. */
		if (ssock_server_next_event(k->srv, &ev, 50) != 0)
			continue;
		if (ev.type == SSOCK_EVENT_MESSAGE && ev.len == 4) {
			uint32_t v;
			memcpy(&v, ev.data, 4);
			v = ntohl(v);
			/* The inbox is FIFO: each taker sees increasing numbers. */
			if (!first && v <= last)
				k->out_of_order++;
			first = false;
			last = v;
			if (v >= INBOX_N || atomic_exchange((_Atomic uint8_t *)&k->seen[v], 1))
				k->dup++;
			atomic_fetch_add(k->taken, 1);
		}
		ssock_event_release(&ev);
	}
	return NULL;
}

TEST(inbox_taken_by_4_threads)
{
	int port;
	ssock_server_opts o = {.inbox_max = 64};
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	atomic_int taken = 0;
	uint8_t *seen = calloc(INBOX_N, 1);
	struct taker k[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		k[i] = (struct taker){.srv = srv, .taken = &taken, .seen = seen};
		CHECK(pthread_create(&th[i], NULL, take_thread, &k[i]) == 0);
	}
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	/* All in a few big writes: the loop has them all at once. */
	uint8_t *wire = malloc(INBOX_N * 8);
	for (uint32_t i = 0; i < INBOX_N; i++) {
		uint32_t len = htonl(4), v = htonl(i);
		memcpy(wire + i * 8, &len, 4);
		memcpy(wire + i * 8 + 4, &v, 4);
	}
	CHECK_INT(np_write(fd, wire, INBOX_N * 8), ==, 0);
	free(wire);
	int dup = 0, ooo = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		dup += k[i].dup;
		ooo += k[i].out_of_order;
	}
	CHECK_INT(atomic_load(&taken), ==, INBOX_N);
	CHECK_INT(dup, ==, 0);
	CHECK_INT(ooo, ==, 0);
	for (int i = 0; i < INBOX_N; i++)
		CHECK(seen[i]);
	free(seen);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* -------------------------------------- close while clients still send */

struct busy {
	ssock_client *cli;
	int port;
	bool raw;
	atomic_int *stop;
	int sent;
	int last_rc;
};

static void *busy_client(void *arg)
{
	struct busy *b = arg;
	char msg[256];
	memset(msg, 'q', sizeof msg);
	while (!atomic_load(b->stop)) {
		int rc = ssock_client_send(b->cli, msg, 1 + (size_t)b->sent % sizeof msg);
		b->last_rc = rc;
		if (rc == 0)
			b->sent++;
		else if (rc != SSOCK_ESENDQFULL)
			break; /* the connection is gone */
		else
			ssock_client_flush(b->cli, 10);
	}
	return NULL;
}

static void *busy_raw(void *arg)
{
	struct busy *b = arg;
	int fd = np_connect(b->port, false);
	if (fd < 0)
		return NULL;
	uint8_t frame[4 + 100] = {0, 0, 0, 100};
	/* Blocking writes: they end when the server is gone (EPIPE/RST). */
	while (!atomic_load(b->stop) && np_write(fd, frame, sizeof frame) == 0)
		b->sent++;
	close(fd);
	return NULL;
}

TEST(close_with_clients_still_sending)
{
	int fds0 = np_count_fds();
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts o = {0};
	np_collect_server_opts(&col, &o);
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	enum { NCLI = 6, NRAW = 4 };
	atomic_int stop = 0;
	struct busy b[NCLI + NRAW];
	pthread_t th[NCLI + NRAW];
	np_collect *ccol = calloc(NCLI, sizeof *ccol);
	for (int i = 0; i < NCLI + NRAW; i++) {
		b[i] = (struct busy){.port = port, .raw = i >= NCLI, .stop = &stop};
		if (!b[i].raw) {
			/* Callback mode: the echoes are received and counted. */
			np_collect_init(&ccol[i]);
			ssock_client_opts co = {.connect = text};
			np_collect_client_opts(&ccol[i], &co);
			CHECK_OK(ssock_client_new(&b[i].cli, &co));
			CHECK_OK(ssock_client_connect(b[i].cli, T));
		}
		CHECK(pthread_create(&th[i], NULL, b[i].raw ? busy_raw : busy_client, &b[i]) == 0);
	}
	/* Let traffic flow (every client has had an echo back), then close
	 * the server under it. */
	for (int i = 0; i < NCLI; i++) {
		CHECK(np_collect_wait(&ccol[i], &ccol[i].messages, 1, T));
	}
	CHECK(np_collect_wait(&col, &col.messages, 5000, T));
	CHECK_OK(ssock_server_free(srv));
	int msgs_at_close = col.messages;
	/* Every sender notices and stops by itself: no hang. The raw ones may
	 * sit in a blocking write to a socket that was reset: that ends too. */
	for (int i = 0; i < NCLI + NRAW; i++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += T / 1000;
		int rc = pthread_timedjoin_np(th[i], NULL, &ts);
		if (rc != 0) {
			atomic_store(&stop, 1);
			pthread_join(th[i], NULL);
		}
		CHECK_INT(rc, ==, 0);
	}
	CHECK_INT(col.messages, ==, msgs_at_close); /* nothing after close */
	CHECK_INT(col.disconnects, ==, col.connects);
	for (int i = 0; i < NCLI; i++) {
		CHECK_INT(b[i].sent, >, 0);
		CHECK(np_collect_wait(&ccol[i], &ccol[i].disconnects, 1, T));
		CHECK_INT(ssock_client_state_get(b[i].cli), ==, SSOCK_STATE_DISCONNECTED);
		CHECK_OK(ssock_client_free(b[i].cli));
		CHECK_INT(ccol[i].disconnects, ==, 1);
		np_collect_free(&ccol[i]);
	}
	free(ccol);
	CHECK_INT(np_wait_fds_at_most(fds0, T), ==, fds0);
	np_collect_free(&col);
}

/* ------------------------------------ a loop driven by the program */

TEST(loop_driven_from_own_thread)
{
	ssock_loop *loop;
	CHECK_OK(ssock_loop_new(&loop));
	np_collect col;
	np_collect_init(&col);
	col.echo = true;
	ssock_server_opts so = {.loop = loop};
	np_collect_server_opts(&col, &so);
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	char text[64];
	np_addr_text(text, sizeof text, port, false);
	ssock_client *cli[4];
	for (int i = 0; i < 4; i++) {
		ssock_client_opts co = {.connect = text, .loop = loop};
		CHECK_OK(ssock_client_new(&cli[i], &co));
	}
	np_driver d = {.loop = loop};
	CHECK(np_drive_start(&d));
	/* Blocking calls from this thread while another drives the loop. */
	for (int i = 0; i < 4; i++) {
		CHECK_OK(ssock_client_connect(cli[i], T));
		CHECK_OK(ssock_client_send(cli[i], "driven", 6));
	}
	for (int i = 0; i < 4; i++) {
		void *data;
		size_t len;
		CHECK_OK(ssock_client_recv(cli[i], &data, &len, T));
		CHECK(len == 6 && memcmp(data, "driven", 6) == 0);
		ssock_free(data);
	}
	CHECK_INT(ssock_loop_free(loop), ==, SSOCK_EBUSY); /* still in use */
	np_drive_stop(&d);
	CHECK_INT(atomic_load(&d.errors), ==, 0);
	/* Nobody drives it now: closing still works (run inline). */
	for (int i = 0; i < 4; i++)
		CHECK_OK(ssock_client_free(cli[i]));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(loop));
	CHECK_INT(col.messages, ==, 4);
	np_collect_free(&col);
}
