/*
 * Small messages sent from threads other than the loop's are framed on the
 * sender's stack and copied straight into the newest chunk posted to their
 * queue (src/conn_post.c, post_small()); only one that starts a chunk gets
 * memory of its own. Here the loop is held still (nobody drives it) while a
 * thread sends, so every send goes that way, and then the peer checks what
 * arrived: every message accepted, in call order, byte for byte, and the
 * send queue's bound counted exactly as for a chunk of its own.
 */
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* Message i: its own length (1..700, past a small chunk's room now and
 * then) and bytes. */
static size_t msg_len(int i)
{
	return (size_t)(i * 37 % 700) + 1;
}

static void msg_fill(uint8_t *buf, int i)
{
	for (size_t k = 0; k < msg_len(i); k++)
		buf[k] = (uint8_t)(i * 7 + (int)k);
}

static bool msg_ok(const uint8_t *buf, size_t len, int i)
{
	if (len != msg_len(i))
		return false;
	for (size_t k = 0; k < len; k++)
		if (buf[k] != (uint8_t)(i * 7 + (int)k))
			return false;
	return true;
}

typedef struct rig {
	np_driver d;
	ssock_server *srv;
	int fd;
	uint64_t id;
} rig;

static bool rig_open(rig *r, size_t send_queue_max)
{
	*r = (rig){.fd = -1};
	if (ssock_loop_new(&r->d.loop) != 0)
		return false;
	ssock_server_opts o = {.loop = r->d.loop, .send_queue_max = send_queue_max};
	int port;
	r->srv = np_server(&o, &port);
	if (!r->srv || !np_drive_start(&r->d))
		return false;
	r->fd = np_connect(port, false);
	r->id = r->fd >= 0 ? np_take_connect(r->srv) : 0;
	np_drive_stop(&r->d); /* from here, sends wait in their posted queue */
	return r->id != 0;
}

static void rig_close(rig *r)
{
	if (r->fd >= 0)
		close(r->fd);
	if (r->srv)
		ssock_server_free(r->srv);
	if (r->d.loop)
		ssock_loop_free(r->d.loop);
}

/* Reads messages first..last-1 from the peer, checking each. */
static bool read_messages(int fd, int first, int last)
{
	for (int i = first; i < last; i++) {
		void *data;
		size_t len;
		if (np_recv_u32(fd, &data, &len, T) != 0)
			return false;
		bool ok = msg_ok(data, len, i);
		free(data);
		if (!ok) {
			fprintf(stderr, "message %d wrong (%zu bytes)\n", i, len);
			return false;
		}
	}
	return true;
}

/* ------------------------------------------------------------------ tests */

/* Small and larger messages from another thread while the loop is still:
 * all arrive in call order, byte for byte. */
TEST(small_posted_messages_arrive_whole_and_in_order)
{
	rig r;
	CHECK(rig_open(&r, 0));
	uint8_t buf[800];
	enum { N = 600 };
	for (int i = 0; i < N; i++) {
		msg_fill(buf, i);
		CHECK_OK(ssock_server_send(r.srv, r.id, buf, msg_len(i)));
	}
	CHECK(np_drive_start(&r.d));
	CHECK(read_messages(r.fd, 0, N));
	np_drive_stop(&r.d);
	CHECK_INT(atomic_load(&r.d.errors), ==, 0);
	rig_close(&r);
}

/* The send queue's bound counts a message copied into a shared chunk as
 * one of its own: the first send past it is refused, nothing of it is
 * queued, and what was accepted arrives. */
TEST(small_posted_messages_respect_send_queue_max)
{
	size_t max = 4096;
	rig r;
	CHECK(rig_open(&r, max));
	uint8_t buf[800];
	size_t queued = 0;
	int accepted = 0;
	for (int i = 0; i < 200; i++) {
		msg_fill(buf, i);
		int rc = ssock_server_send(r.srv, r.id, buf, msg_len(i));
		if (rc == SSOCK_ESENDQFULL) {
			CHECK_INT(queued + msg_len(i) + 4, >, max); /* refused only past it */
			break;
		}
		CHECK_OK(rc);
		queued += msg_len(i) + 4;
		accepted++;
	}
	CHECK_INT(queued, <=, max);
	CHECK_INT(accepted, >, 5);
	CHECK(np_drive_start(&r.d));
	CHECK(read_messages(r.fd, 0, accepted));
	CHECK(np_quiet(r.fd, 100)); /* the refused one was not queued */
	np_drive_stop(&r.d);
	rig_close(&r);
}

/* A small send that finds the queue full waits for room (with a timeout)
 * and then goes out after everything before it. (The loop must run for a
 * wait: a call made while nobody drives it runs inline, and a full queue
 * is then SSOCK_ESENDQFULL at once. So the queue is filled behind a peer
 * that does not read.) */
struct late_send {
	ssock_server *srv;
	uint64_t id;
	int rc;
};

static void *send_late(void *arg)
{
	struct late_send *s = arg;
	uint8_t buf[800];
	msg_fill(buf, 1);
	s->rc = ssock_server_send_timeout(s->srv, s->id, buf, msg_len(1), T);
	return NULL;
}

TEST(small_posted_message_waits_for_room)
{
	ssock_server_opts o = {.send_queue_max = 1u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 4096);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	size_t big = 64u << 10;
	uint8_t *buf = malloc(big);
	CHECK(buf);
	memset(buf, 'b', big);
	int n = 0;
	for (; n < 1000; n++) { /* the kernel's buffers, then the queue */
		int rc = ssock_server_send(srv, id, buf, big);
		if (rc == SSOCK_ESENDQFULL)
			break;
		CHECK_OK(rc);
	}
	CHECK_INT(n, <, 1000);
	struct late_send s = {.srv = srv, .id = id};
	pthread_t th;
	CHECK_INT(pthread_create(&th, NULL, send_late, &s), ==, 0);
	/* The peer reads: room comes, and the small one follows the rest. */
	for (int i = 0; i < n; i++) {
		void *data;
		size_t len;
		CHECK_OK(np_recv_u32(fd, &data, &len, T));
		CHECK_INT(len, ==, big);
		free(data);
	}
	void *data;
	size_t len;
	CHECK_OK(np_recv_u32(fd, &data, &len, T));
	CHECK(msg_ok(data, len, 1));
	free(data);
	pthread_join(th, NULL);
	CHECK_OK(s.rc);
	free(buf);
	close(fd);
	CHECK_OK(ssock_server_free(srv));
}

/* A client's offline queue takes small messages the same way. */
TEST(small_offline_messages_arrive_whole_and_in_order)
{
	ssock_server_opts so = {0};
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	ssock_client_opts co = {.queue_while_offline = 1};
	ssock_client *cli = np_client(&co, port, false);
	CHECK(cli); /* not connected yet */
	uint8_t buf[800];
	enum { N = 300 };
	for (int i = 0; i < N; i++) {
		msg_fill(buf, i);
		CHECK_OK(ssock_client_send(cli, buf, msg_len(i)));
	}
	CHECK_OK(ssock_client_connect(cli, T)); /* the queue goes out now */
	for (int i = 0; i < N; i++) {
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
		CHECK(msg_ok(ev.data, ev.len, i));
		ssock_event_release(&ev);
	}
	CHECK_OK(ssock_client_free(cli));
	CHECK_OK(ssock_server_free(srv));
}
