/*
 * ssock_server_flush(): what was queued to one connection, or to all, is
 * written before the call returns (ssock_server_free() discards queues), a
 * peer that never reads makes it time out, and a connection that ends ends
 * the wait for it.
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
#define MiB (1u << 20)

/* More than loopback's socket buffers hold, so a peer that does not read
 * leaves most of it in the server's queue. */
#define BIG (16 * MiB)

typedef struct reader {
	int fd;
	uint64_t seed;
	pthread_t th;
	bool ok;
} reader;

static void *read_one(void *arg)
{
	reader *r = arg;
	void *data;
	size_t len;
	r->ok = np_recv_u32(r->fd, &data, &len, 3 * T) == 0 && len == BIG &&
		np_pattern_ok(data, len, r->seed);
	if (r->ok || data)
		free(data);
	return NULL;
}

/* A peer of srv that reads nothing yet, and its connection's id. */
static int peer_of(ssock_server *srv, int port, uint64_t *id)
{
	int fd = np_connect(port, false);
	*id = fd >= 0 ? np_take_connect(srv) : 0;
	return *id ? fd : -1;
}

static bool send_big(ssock_server *srv, uint64_t id, uint64_t seed)
{
	char *buf = malloc(BIG);
	if (!buf)
		return false;
	np_pattern(buf, BIG, seed);
	int rc = ssock_server_send(srv, id, buf, BIG);
	free(buf);
	return rc == 0;
}

TEST(flush_then_free_delivers_everything)
{
	ssock_server_opts o = {.send_queue_max = 2 * BIG};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	reader r[2] = {{.seed = 1}, {.seed = 2}};
	uint64_t id[2];
	for (int i = 0; i < 2; i++) {
		CHECK((r[i].fd = peer_of(srv, port, &id[i])) >= 0);
		CHECK(send_big(srv, id[i], r[i].seed));
	}
	/* Nobody reads: it only looks, and finds bytes queued. */
	CHECK_INT(ssock_server_flush(srv, 0, 0), ==, SSOCK_ETIMEDOUT);
	for (int i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&r[i].th, NULL, read_one, &r[i]), ==, 0);
	CHECK_OK(ssock_server_flush(srv, 0, 3 * T));
	CHECK_OK(ssock_server_free(srv)); /* nothing left to discard */
	for (int i = 0; i < 2; i++) {
		pthread_join(r[i].th, NULL);
		if (!r[i].ok)
			TEST__FAIL("peer %d did not get its whole message", i);
		close(r[i].fd);
	}
}

TEST(flush_of_one_connection_waits_for_it_alone)
{
	ssock_server_opts o = {.send_queue_max = 2 * BIG};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	uint64_t stuck, live;
	int fs = peer_of(srv, port, &stuck); /* never reads */
	CHECK(fs >= 0);
	reader r = {.seed = 3};
	CHECK((r.fd = peer_of(srv, port, &live)) >= 0);
	CHECK(send_big(srv, stuck, 4));
	CHECK(send_big(srv, live, r.seed));
	CHECK_INT(pthread_create(&r.th, NULL, read_one, &r), ==, 0);
	CHECK_OK(ssock_server_flush(srv, live, 3 * T));
	pthread_join(r.th, NULL);
	CHECK(r.ok);
	CHECK_INT(ssock_server_flush(srv, stuck, 200), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(ssock_server_flush(srv, 0, 200), ==, SSOCK_ETIMEDOUT);
	close(fs);
	close(r.fd);
	CHECK_OK(ssock_server_free(srv));
}

/* A closing connection (ssock_server_disconnect()) still sends what it
 * holds: the flush waits for that too. */
TEST(flush_waits_for_a_closing_connection)
{
	ssock_server_opts o = {.send_queue_max = 2 * BIG};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	reader r = {.seed = 5};
	uint64_t id;
	CHECK((r.fd = peer_of(srv, port, &id)) >= 0);
	CHECK(send_big(srv, id, r.seed));
	CHECK_OK(ssock_server_disconnect(srv, id));
	CHECK_INT(ssock_server_flush(srv, 0, 0), ==, SSOCK_ETIMEDOUT);
	CHECK_INT(pthread_create(&r.th, NULL, read_one, &r), ==, 0);
	CHECK_OK(ssock_server_flush(srv, 0, 3 * T));
	pthread_join(r.th, NULL);
	CHECK(r.ok);
	close(r.fd);
	CHECK_OK(ssock_server_free(srv));
}

TEST(flush_ends_when_the_connection_ends)
{
	ssock_server_opts o = {.send_queue_max = 2 * BIG};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	uint64_t id;
	int fd = peer_of(srv, port, &id);
	CHECK(fd >= 0);
	CHECK(send_big(srv, id, 6));
	np_reset_close(fd);
	/* Gone before the call (ENOCONN) or during it (0): either way, not
	 * a wait for bytes that can never go. */
	int rc = ssock_server_flush(srv, id, 3 * T);
	CHECK(rc == 0 || rc == SSOCK_ENOCONN);
	CHECK_OK(ssock_server_flush(srv, 0, 3 * T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK(ev.unsent > 0); /* what never went is told */
	ssock_event_release(&ev);
	CHECK_OK(ssock_server_free(srv));
}

static atomic_int flush_in_callback = 1;

static void flush_from_callback(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)data;
	(void)len;
	ssock_server *srv = *(ssock_server **)user;
	atomic_store(&flush_in_callback, ssock_server_flush(srv, 0, 100));
	ssock_conn_send(c, "done", 4);
}

TEST(flush_refuses_unknown_ids_and_callbacks)
{
	ssock_server *srv = NULL;
	ssock_server_opts o = {.on_message = flush_from_callback, .user = &srv};
	int port;
	srv = np_server(&o, &port);
	CHECK(srv);
	CHECK_INT(ssock_server_flush(srv, 12345, T), ==, SSOCK_ENOCONN);
	CHECK_INT(ssock_server_flush(NULL, 0, T), ==, SSOCK_EINVAL);
	CHECK_OK(ssock_server_flush(srv, 0, T)); /* no connection: nothing queued */
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "go", 2), ==, 0);
	void *data;
	size_t len;
	CHECK_INT(np_recv_u32(fd, &data, &len, T), ==, 0);
	free(data);
	CHECK_INT(atomic_load(&flush_in_callback), ==, SSOCK_ELOOPTHREAD);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}
