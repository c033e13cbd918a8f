/*
 * From a review (by a helper) of the small-send path (5d7a7a7) and the
 * lent-payload check (7a834b3). A message callback's data, given to a send
 * by reference that did not go through ssock__conn_send_ref() (a client's
 * offline queue on the same loop, or a handle of another loop), was queued
 * by reference into memory that is ssock's for the call only: the peer got
 * the next message's bytes, or freed memory. Now every by-reference framing
 * asks ssock__shown_to_callbacks() about all loops the thread runs. Also
 * the review's stress tests of the small-send path (order, bytes, every
 * release, no message left without a wakeup), kept as regression tests.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T   TEST_TIMEOUT_MS
#define LEN 5000 /* >= 4 KiB: worth a reference; well inside the read buffer */

static atomic_int msgs, released, released_at_return = -1, fwd_rc = 1;

static void rel(const void *data, void *arg)
{
	(void)data;
	(void)arg;
	atomic_fetch_add(&released, 1);
}

static bool one_msg(void *arg)
{
	(void)arg;
	return atomic_load(&msgs) >= 1;
}

static bool two_msgs(void *arg)
{
	(void)arg;
	return atomic_load(&msgs) == 2;
}

/* Sends msg 1 (pattern 1), waits for it, then msg 2 (pattern 2) into the
 * same read buffer. */
static bool feed_two(int fd)
{
	uint8_t a[LEN], b[LEN];
	np_pattern(a, LEN, 1);
	np_pattern(b, LEN, 2);
	if (np_send_u32(fd, a, LEN) != 0 || !test_wait_until(one_msg, NULL, T))
		return false;
	if (np_send_u32(fd, b, LEN) != 0)
		return false;
	return test_wait_until(two_msgs, NULL, T);
}

/* 1. Same loop: a server's callback forwards its message by reference to a
 * client on the same loop that is offline (queue_while_offline). */
static ssock_client *g_cli;

static void fwd_to_client(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)user;
	if (atomic_fetch_add(&msgs, 1) == 0) {
		atomic_store(&fwd_rc, ssock_client_send_ref(g_cli, data, len, 0, rel, NULL));
		atomic_store(&released_at_return, atomic_load(&released));
	}
}

/* A sink server (inbox mode); g_cli, a client to it on a loop of its own,
 * not connected (queue_while_offline); and on the same loop a front server
 * whose message callback forwards, with a peer connected to it (fd). */
typedef struct fwd_rig {
	ssock_loop *loop;
	ssock_server *sink, *front;
	int fd;
} fwd_rig;

static bool fwd_open(fwd_rig *r, ssock_message_cb on_message)
{
	*r = (fwd_rig){.fd = -1};
	g_cli = NULL;
	if (ssock_loop_new(&r->loop) != 0 || ssock_loop_start(r->loop) != 0)
		return false;
	ssock_server_opts so = {0};
	int sink_port, port;
	r->sink = np_server(&so, &sink_port);
	if (!r->sink)
		return false;
	ssock_client_opts co = {.queue_while_offline = 1, .loop = r->loop};
	g_cli = np_client(&co, sink_port, false);
	ssock_server_opts fo = {.loop = r->loop, .on_message = on_message};
	r->front = g_cli ? np_server(&fo, &port) : NULL;
	r->fd = r->front ? np_connect(port, false) : -1;
	return r->fd >= 0;
}

/* Connects g_cli, and takes the first message it forwarded to the sink. */
static bool fwd_take(fwd_rig *r, ssock_event *ev)
{
	return ssock_client_connect(g_cli, T) == 0 &&
	       np_server_wait(r->sink, SSOCK_EVENT_MESSAGE, ev, T) == 0;
}

/* Frees all of it; whether every free succeeded. */
static bool fwd_close(fwd_rig *r)
{
	if (r->fd >= 0)
		close(r->fd);
	bool ok = !g_cli || ssock_client_free(g_cli) == 0;
	ok = (!r->front || ssock_server_free(r->front) == 0) && ok;
	ok = (!r->sink || ssock_server_free(r->sink) == 0) && ok;
	return (!r->loop || ssock_loop_free(r->loop) == 0) && ok;
}

TEST(callback_data_sent_by_ref_to_offline_client_is_copied)
{
	atomic_store(&msgs, 0);
	atomic_store(&released, 0);
	fwd_rig r;
	CHECK(fwd_open(&r, fwd_to_client));
	CHECK(feed_two(r.fd));
	CHECK_INT(atomic_load(&fwd_rc), ==, 0);
	fprintf(stderr, "released when send_ref returned: %d\n", atomic_load(&released_at_return));
	ssock_event ev;
	CHECK(fwd_take(&r, &ev));
	CHECK_INT(ev.len, ==, LEN);
	bool ok = np_pattern_ok(ev.data, ev.len, 1);
	bool was2 = np_pattern_ok(ev.data, ev.len, 2);
	fprintf(stderr, "forwarded bytes: %s\n",
		ok     ? "message 1"
		: was2 ? "MESSAGE 2's"
		       : "garbage");
	ssock_event_release(&ev);
	CHECK(fwd_close(&r));
	CHECK_INT(atomic_load(&released_at_return), ==, 1); /* "given back at once" */
	CHECK(ok);
}

/* 2. Another loop: a server's callback forwards its message by reference to
 * a connection of a server on another loop (nobody drives it for a while:
 * the message waits in its posted queue). */
static ssock_server *g_back;
static uint64_t g_back_id;

static void fwd_to_other_loop(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)user;
	if (atomic_fetch_add(&msgs, 1) == 0) {
		atomic_store(&fwd_rc,
			     ssock_server_send_ref(g_back, g_back_id, data, len, 0, rel, NULL));
		atomic_store(&released_at_return, atomic_load(&released));
	}
}

TEST(callback_data_sent_by_ref_to_another_loop_is_copied)
{
	atomic_store(&msgs, 0);
	atomic_store(&released, 0);
	np_driver d = {0};
	CHECK_OK(ssock_loop_new(&d.loop));
	ssock_server_opts bo = {.loop = d.loop};
	int back_port;
	g_back = np_server(&bo, &back_port);
	CHECK(g_back);
	CHECK(np_drive_start(&d));
	int back_fd = np_connect(back_port, false);
	CHECK(back_fd >= 0);
	g_back_id = np_take_connect(g_back);
	CHECK(g_back_id);
	np_drive_stop(&d); /* held still */
	ssock_server_opts fo = {.on_message = fwd_to_other_loop};
	int port;
	ssock_server *front = np_server(&fo, &port);
	CHECK(front);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK(feed_two(fd));
	CHECK_INT(atomic_load(&fwd_rc), ==, 0);
	fprintf(stderr, "released when send_ref returned: %d\n", atomic_load(&released_at_return));
	CHECK(np_drive_start(&d));
	void *data;
	size_t len;
	CHECK_OK(np_recv_u32(back_fd, &data, &len, T));
	CHECK_INT(len, ==, LEN);
	bool ok = np_pattern_ok(data, len, 1);
	bool was2 = np_pattern_ok(data, len, 2);
	fprintf(stderr, "forwarded bytes: %s\n",
		ok     ? "message 1"
		: was2 ? "MESSAGE 2's"
		       : "garbage");
	free(data);
	close(fd);
	close(back_fd);
	CHECK_OK(ssock_server_free(front));
	np_drive_stop(&d);
	CHECK_OK(ssock_server_free(g_back));
	CHECK_OK(ssock_loop_free(d.loop));
	CHECK_INT(atomic_load(&released_at_return), ==, 1);
	CHECK(ok);
}

/* 3. Stress (expected to pass; run under TSan): three threads send small,
 * mid-size and by-reference messages to one connection with a small queue
 * (waits for room), the peer checks each thread's order and every byte. */
#define SENDERS 3

/* Messages per sending thread: fewer in a slow run (SSOCK_LOAD_SCALE, a
 * divisor: valgrind). */
static int scaled(int n)
{
	return n / (int)np_scale("SSOCK_LOAD_SCALE", 1);
}
static ssock_server *g_srv;
static uint64_t g_id;
static atomic_int refs_out, send_errors;

static void rel_ref(const void *data, void *arg)
{
	(void)arg;
	free((void *)data);
	atomic_fetch_sub(&refs_out, 1);
}

static size_t stress_len(int t, int i)
{
	if (i % 50 == 49)
		return 8192; /* by reference */
	if (i % 70 == 69)
		return 600; /* framed into a chunk of its own */
	return (size_t)((i * 13 + t * 7) % 300) + 8;
}

static void stress_fill(uint8_t *b, int t, int i, size_t len)
{
	b[0] = (uint8_t)t;
	memcpy(b + 1, &i, sizeof i);
	for (size_t k = 5; k < len; k++)
		b[k] = (uint8_t)(t * 31 + i * 7 + (int)k);
}

static void *stress_sender(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint8_t buf[8192];
	for (int i = 0, per = scaled(3000); i < per; i++) {
		size_t len = stress_len(t, i);
		int rc;
		if (len == 8192) {
			uint8_t *p = malloc(len);
			stress_fill(p, t, i, len);
			atomic_fetch_add(&refs_out, 1);
			rc = ssock_server_send_ref(g_srv, g_id, p, len, -1, rel_ref, NULL);
			if (rc != 0) {
				free(p);
				atomic_fetch_sub(&refs_out, 1);
			}
		} else {
			stress_fill(buf, t, i, len);
			rc = ssock_server_send_timeout(g_srv, g_id, buf, len, -1);
		}
		if (rc != 0)
			atomic_fetch_add(&send_errors, 1);
	}
	return NULL;
}

TEST(stress_small_mid_and_ref_sends_from_threads)
{
	atomic_store(&refs_out, 0);
	atomic_store(&send_errors, 0);
	ssock_server_opts o = {.send_queue_max = 32u << 10};
	int port;
	g_srv = np_server(&o, &port);
	CHECK(g_srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	g_id = np_take_connect(g_srv);
	CHECK(g_id);
	pthread_t th[SENDERS];
	for (int t = 0; t < SENDERS; t++)
		CHECK_INT(pthread_create(&th[t], NULL, stress_sender, (void *)(intptr_t)t), ==, 0);
	int next[SENDERS] = {0};
	uint8_t want[8192];
	int bad = 0;
	for (int n = 0; n < SENDERS * scaled(3000) && !bad; n++) {
		void *data;
		size_t len;
		if (np_recv_u32(fd, &data, &len, T) != 0) {
			fprintf(stderr, "recv failed after %d messages\n", n);
			bad = 1;
			break;
		}
		uint8_t *b = data;
		int t = b[0], i;
		memcpy(&i, b + 1, sizeof i);
		if (t >= SENDERS || i != next[t] || len != stress_len(t, i)) {
			fprintf(stderr, "thread %d: got %d (len %zu), want %d\n", t, i, len,
				next[t]);
			bad = 1;
		} else {
			stress_fill(want, t, i, len);
			if (memcmp(want, b, len) != 0) {
				fprintf(stderr, "thread %d msg %d bytes differ\n", t, i);
				bad = 1;
			}
			next[t]++;
		}
		free(data);
	}
	for (int t = 0; t < SENDERS; t++)
		pthread_join(th[t], NULL);
	CHECK_INT(bad, ==, 0);
	CHECK_INT(atomic_load(&send_errors), ==, 0);
	close(fd);
	CHECK_OK(ssock_server_free(g_srv));
	CHECK_INT(atomic_load(&refs_out), ==, 0);
}

/* 4. As 1., with a large payload (read into a buffer of its own, lent to the
 * callback and freed, or kept for reuse, when it returns): under ASan the
 * client later writes freed memory. */
#define BIG (1u << 20)
static atomic_int big_msgs;

static void fwd_big_to_client(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)user;
	if (atomic_fetch_add(&big_msgs, 1) == 0)
		atomic_store(&fwd_rc, ssock_client_send_ref(g_cli, data, len, 0, rel, NULL));
}

static bool two_big(void *arg)
{
	(void)arg;
	return atomic_load(&big_msgs) == 2;
}

TEST(callback_large_payload_sent_by_ref_to_offline_client_is_copied)
{
	atomic_store(&big_msgs, 0);
	fwd_rig r;
	CHECK(fwd_open(&r, fwd_big_to_client));
	uint8_t *a = malloc(BIG), *b = malloc(BIG);
	CHECK(a && b);
	np_pattern(a, BIG, 1);
	np_pattern(b, BIG, 2);
	CHECK_OK(np_send_u32(r.fd, a, BIG));
	CHECK_OK(np_send_u32(r.fd, b, BIG)); /* may reuse a's block */
	CHECK(test_wait_until(two_big, NULL, T));
	CHECK_INT(atomic_load(&fwd_rc), ==, 0);
	ssock_event ev;
	CHECK(fwd_take(&r, &ev));
	CHECK_INT(ev.len, ==, BIG);
	bool ok = np_pattern_ok(ev.data, ev.len, 1);
	fprintf(stderr, "forwarded bytes: %s\n",
		ok                                  ? "message 1"
		: np_pattern_ok(ev.data, ev.len, 2) ? "MESSAGE 2's"
						    : "garbage");
	ssock_event_release(&ev);
	CHECK(fwd_close(&r));
	free(a);
	free(b);
	CHECK(ok);
}

/* 5. Stress (expected to pass; run under TSan): threads send small messages
 * through a client that is reconnected and disconnected meanwhile (offline
 * queue, cur_id changing). Messages may be lost with a connection, but each
 * thread's that arrive come in order, whole. */
static ssock_client *g_rc;
static atomic_int rc_stop;

static void *rc_sender(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint8_t buf[400];
	for (int i = 0, n = scaled(4000); i < n; i++) {
		size_t len = (size_t)((i * 13 + t * 7) % 300) + 8;
		stress_fill(buf, t, i, len);
		int rc = ssock_client_send_timeout(g_rc, buf, len, 50);
		if (rc != 0 && rc != SSOCK_ESENDQFULL && rc != SSOCK_ETIMEDOUT &&
		    rc != SSOCK_ENOTCONN)
			atomic_fetch_add(&send_errors, 1);
	}
	return NULL;
}

/* What the server saw: within one connection each thread's messages in
 * order (a reconnect may lose queued ones, and two connections' bytes may
 * be read in either order), none twice, each byte for byte. */
struct rc_seen {
	int next[64][SENDERS]; /* by connection id % 64 */
	uint8_t dup[SENDERS][4000];
	int bad, got;
};

static void rc_check(struct rc_seen *s, const ssock_event *ev)
{
	if (ev->type != SSOCK_EVENT_MESSAGE)
		return;
	const uint8_t *b = ev->data;
	int t = b[0], i;
	memcpy(&i, b + 1, sizeof i);
	uint8_t want[400];
	if (t >= SENDERS || i < 0 || i >= 4000 || ev->len > sizeof want) {
		s->bad = 1;
		return;
	}
	int *next = &s->next[ev->conn % 64][t];
	stress_fill(want, t, i, ev->len);
	if (i < *next || s->dup[t][i] || memcmp(want, b, ev->len) != 0) {
		fprintf(stderr, "thread %d: message %d after %d on conn %llu%s\n", t, i, *next,
			(unsigned long long)ev->conn, s->dup[t][i] ? " (twice)" : "");
		s->bad = 1;
	}
	s->dup[t][i] = 1;
	*next = i + 1;
	s->got++;
}

TEST(stress_client_small_sends_across_reconnects)
{
	atomic_store(&send_errors, 0);
	atomic_store(&rc_stop, 0);
	ssock_server_opts so = {0};
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	ssock_client_opts co = {.queue_while_offline = 1, .send_queue_max = 16u << 10};
	g_rc = np_client(&co, port, false);
	CHECK(g_rc);
	CHECK_OK(ssock_client_connect(g_rc, T));
	pthread_t th[SENDERS];
	for (int t = 0; t < SENDERS; t++)
		CHECK_INT(pthread_create(&th[t], NULL, rc_sender, (void *)(intptr_t)t), ==, 0);
	struct rc_seen *seen = calloc(1, sizeof *seen);
	CHECK(seen);
	ssock_event ev;
	for (int k = 0; k < 40; k++) {
		if (k % 3 == 0)
			ssock_client_reconnect(g_rc);
		else if (k % 3 == 1)
			ssock_client_disconnect(g_rc);
		else
			ssock_client_connect(g_rc, 0);
		for (int n = 0; n < 50 && ssock_server_next_event(srv, &ev, 5) == 0; n++) {
			rc_check(seen, &ev);
			ssock_event_release(&ev);
		}
	}
	ssock_client_connect(g_rc, T);
	for (int t = 0; t < SENDERS; t++)
		pthread_join(th[t], NULL);
	ssock_client_flush(g_rc, T);
	while (ssock_server_next_event(srv, &ev, 200) == 0) {
		rc_check(seen, &ev);
		ssock_event_release(&ev);
	}
	fprintf(stderr, "received %d messages\n", seen->got);
	CHECK_INT(seen->bad, ==, 0);
	CHECK_INT(seen->got, >, 0);
	free(seen);
	CHECK_INT(atomic_load(&send_errors), ==, 0);
	CHECK_OK(ssock_client_free(g_rc));
	CHECK_OK(ssock_server_free(srv));
}

/* 6. Stress for lost wakeups (expected to pass): threads each send a small
 * message to one connection and wait for the peer to have it before the
 * next; a message merged into a chunk the loop will not take would stall
 * every thread. */
static atomic_int seen[SENDERS];
static int ww_fd;

static void *ww_reader(void *arg)
{
	(void)arg;
	for (int n = 0; n < SENDERS * 2000; n++) {
		void *data;
		size_t len;
		if (np_recv_u32(ww_fd, &data, &len, T) != 0)
			return NULL;
		atomic_fetch_add(&seen[((uint8_t *)data)[0]], 1);
		free(data);
	}
	return NULL;
}

struct seen_at_least {
	int t, n;
};

static bool seen_enough(void *arg)
{
	struct seen_at_least *w = arg;
	return atomic_load(&seen[w->t]) >= w->n;
}

static void *ww_sender(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint8_t buf[64];
	for (int i = 0, n = scaled(2000); i < n; i++) {
		stress_fill(buf, t, i, 20);
		if (ssock_server_send(g_srv, g_id, buf, 20) != 0) {
			atomic_fetch_add(&send_errors, 1);
			return NULL;
		}
		struct seen_at_least want = {t, i + 1};
		if (!test_wait_until(seen_enough, &want, T)) {
			fprintf(stderr, "thread %d: message %d stuck\n", t, i);
			atomic_fetch_add(&send_errors, 1);
			return NULL;
		}
	}
	return NULL;
}

TEST(stress_small_sends_are_never_left_unwoken)
{
	atomic_store(&send_errors, 0);
	for (int t = 0; t < SENDERS; t++)
		atomic_store(&seen[t], 0);
	ssock_server_opts o = {0};
	int port;
	g_srv = np_server(&o, &port);
	CHECK(g_srv);
	ww_fd = np_connect(port, false);
	CHECK(ww_fd >= 0);
	g_id = np_take_connect(g_srv);
	CHECK(g_id);
	pthread_t rd, th[SENDERS];
	CHECK_INT(pthread_create(&rd, NULL, ww_reader, NULL), ==, 0);
	for (int t = 0; t < SENDERS; t++)
		CHECK_INT(pthread_create(&th[t], NULL, ww_sender, (void *)(intptr_t)t), ==, 0);
	for (int t = 0; t < SENDERS; t++)
		pthread_join(th[t], NULL);
	close(ww_fd);
	pthread_join(rd, NULL);
	CHECK_INT(atomic_load(&send_errors), ==, 0);
	CHECK_OK(ssock_server_free(g_srv));
}
