/*
 * The server closed while clients are mid-send (labels net threaded).
 *
 * Eight ssock clients, each with a thread sending numbered messages of
 * random sizes (up to 64 kB, each carrying its number and a pattern) as fast
 * as its send queue takes them; the server is closed under them. Asserted:
 *   - the server delivered, per client, exactly messages 0..k-1: each whole
 *     (its size and pattern check), in order, none twice, none after a gap;
 *   - every client is told: a disconnect event, and from then on sends fail
 *     with SSOCK_ENOTCONN;
 *   - what the disconnect event reports as never sent (`unsent`) is the tail
 *     of what was queued: it ends exactly at the last accepted message and
 *     reaches back no further than message k (nothing delivered is reported
 *     lost); the messages between are the ones TCP had taken when the
 *     server went away;
 *   - no thread, fd or heap byte is left behind.
 */
#include "fault.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

enum { CLIENTS = 8, MAXN = 200000, MAXLEN = 64 << 10 };

struct rx { /* server side, loop thread only (read after close) */
	uint32_t next[CLIENTS];
	long bad;
};

struct tx {
	ssock_client *cli;
	uint32_t idx;
	uint32_t *sizes;   /* framed size of each accepted message */
	uint32_t n;        /* messages accepted (send returned 0) */
	atomic_uint going; /* n, for the test thread to watch */
	int last_rc;
	atomic_bool *closed;
};

static void srv_message(ssock_conn *conn, const void *data, size_t len, void *user)
{
	struct rx *r = user;
	(void)conn;
	uint32_t h[2];
	if (len < 8) {
		r->bad++;
		return;
	}
	memcpy(h, data, 8);
	uint32_t who = ntohl(h[0]), seq = ntohl(h[1]);
	if (who >= CLIENTS || seq != r->next[who] ||
	    !np_pattern_ok((const uint8_t *)data + 8, len - 8, (uint64_t)who << 32 | seq)) {
		r->bad++;
		return;
	}
	r->next[who]++;
}

static void *sender(void *arg)
{
	struct tx *t = arg;
	uint64_t rng = 99 + t->idx;
	uint8_t *buf = malloc(MAXLEN);
	int after_close = 0;
	while (t->n < MAXN && after_close < 50) {
		size_t len = 8 + (size_t)(np_rand(&rng) % (MAXLEN - 8));
		uint32_t h[2] = {htonl(t->idx), htonl(t->n)};
		memcpy(buf, h, 8);
		np_pattern(buf + 8, len - 8, (uint64_t)t->idx << 32 | t->n);
		int rc = ssock_client_send_timeout(t->cli, buf, len, 200);
		t->last_rc = rc;
		if (rc == 0) {
			t->sizes[t->n++] = (uint32_t)len + 4;
			atomic_store(&t->going, t->n);
		} else if (atomic_load(t->closed))
			after_close++;
	}
	free(buf);
	return NULL;
}

static ssock_server *conns_of;

static bool all_connected(void *arg)
{
	(void)arg;
	return ssock_server_conns(conns_of, NULL, 0) >= CLIENTS;
}

/* Every sender has had a few messages accepted. */
static bool all_going(void *arg)
{
	struct tx *t = arg;
	for (int i = 0; i < CLIENTS; i++)
		if (atomic_load(&t[i].going) < 8)
			return false;
	return true;
}

TEST(close_server_while_clients_mid_send)
{
	fx_warm_arenas(2 * CLIENTS + 3);
	int fds0 = np_count_fds(), threads0 = np_thread_count();
	int64_t heap0 = np_heap_bytes();
	struct rx *r = calloc(1, sizeof *r);
	CHECK(r);
	ssock_server_opts o = {.on_message = srv_message, .user = r};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	char addr[64];
	np_addr_text(addr, sizeof addr, port, false);
	atomic_bool closed = false;
	struct tx t[CLIENTS];
	pthread_t th[CLIENTS];
	for (uint32_t i = 0; i < CLIENTS; i++) {
		ssock_client_opts co = {.connect = addr, .send_queue_max = 1 << 20};
		t[i] = (struct tx){.idx = i, .closed = &closed};
		t[i].sizes = malloc(MAXN * sizeof *t[i].sizes);
		CHECK(t[i].sizes);
		CHECK_OK(ssock_client_new(&t[i].cli, &co));
		CHECK_OK(ssock_client_connect(t[i].cli, T));
	}
	/* A client is connected before the server has taken its connection. */
	conns_of = srv;
	CHECK(test_wait_until(all_connected, NULL, T));
	CHECK_INT(ssock_server_conns(srv, NULL, 0), ==, CLIENTS);
	for (int i = 0; i < CLIENTS; i++)
		CHECK_INT(pthread_create(&th[i], NULL, sender, &t[i]), ==, 0);
	/* Once they are all under way, close the server under them. */
	CHECK(test_wait_until(all_going, t, T));
	int open_before_close = ssock_server_conns(srv, NULL, 0);
	atomic_store(&closed, true);
	CHECK_OK(ssock_server_free(srv));
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(th[i], NULL);

	CHECK_INT(open_before_close, ==, CLIENTS);
	CHECK_INT(r->bad, ==, 0);
	long delivered = 0, accepted = 0, reported = 0, in_flight = 0;
	for (int i = 0; i < CLIENTS; i++) {
		uint32_t k = r->next[i];
		CHECK_INT(k, <=, t[i].n);
		CHECK_INT(t[i].last_rc, ==, SSOCK_ENOTCONN);
		ssock_event ev;
		CHECK_OK(np_client_wait(t[i].cli, SSOCK_EVENT_DISCONNECT, &ev, T));
		size_t unsent = ev.unsent;
		ssock_event_release(&ev);
		/* unsent is the tail of the queue: it covers messages j+1..n-1
		 * wholly and at most part of message j, for some j >= k. */
		size_t tail = 0;
		uint32_t j = t[i].n;
		while (j > 0 && tail + t[i].sizes[j - 1] <= unsent)
			tail += t[i].sizes[--j];
		CHECK(tail == unsent || (j > 0 && unsent - tail < t[i].sizes[j - 1]));
		uint32_t first_unsent = tail == unsent ? j : j - 1;
		CHECK_INT(first_unsent, >=, k); /* nothing delivered reported lost */
		CHECK_INT(ssock_client_send(t[i].cli, "x", 1), ==, SSOCK_ENOTCONN);
		delivered += k;
		accepted += t[i].n;
		reported += t[i].n - first_unsent;
		in_flight += first_unsent - k;
	}
	fprintf(stderr,
		"close mid-send: %d clients, %ld messages accepted by send, %ld delivered whole, "
		"%ld reported unsent in the disconnect event, %ld taken by TCP when the server "
		"closed, 0 half\n",
		CLIENTS, accepted, delivered, reported, in_flight);
	for (int i = 0; i < CLIENTS; i++) {
		CHECK_OK(ssock_client_free(t[i].cli));
		free(t[i].sizes);
	}
	free(r);
	CHECK_INT(np_count_fds(), ==, fds0);
	CHECK_INT(np_thread_count(), ==, threads0);
	int64_t heap = np_heap_bytes();
	if (heap >= 0)
		CHECK_INT(heap - heap0, <=, 64 * 1024);
}
