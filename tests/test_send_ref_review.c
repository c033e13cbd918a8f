/*
 * Review of sends by reference: unusual but legal call orders. Each case
 * checks "release exactly once for every accepted send, never for a refused
 * one, and never while ssock may still read the bytes".
 */
#include "internal.h"
#include "net_helpers.h"
#include "ref_count.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* A raw listener the client connects to; the accepted fd (never read). */
static int accept_one(int lfd, int ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept(lfd, NULL, NULL);
}

/* A client of co connected to the raw listener lfd (on port), and in *fd
 * its accepted socket; NULL (nothing left open) if either failed. */
static ssock_client *connected_client(int lfd, int port, ssock_client_opts *co, int *fd)
{
	ssock_client *cli = np_client(co, port, false);
	if (cli && ssock_client_connect(cli, T) == 0 && (*fd = accept_one(lfd, T)) >= 0)
		return cli;
	ssock_client_free(cli);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* A client freed while connected, with a big ref message unwritten (the
 * peer never reads): the free must give it back. */
TEST(client_freed_while_connected_gives_back_unwritten_ref)
{
	int port;
	int lfd = np_listen(16, &port);
	CHECK(lfd >= 0);
	ssock_client_opts co = {.send_queue_max = 64u << 20};
	int fd;
	ssock_client *cli = connected_client(lfd, port, &co, &fd);
	CHECK(cli);
	size_t len = 16u << 20;
	uint8_t *buf = pattern(len, 11);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_client_send_ref(cli, buf, len, 0, on_release, &r));
	CHECK_OK(ssock_client_send_ref(cli, buf, len, 0, on_release, &r));
	/* 32 MiB to a peer that reads nothing: neither can be all written. */
	CHECK_INT(atomic_load(&r.released), ==, 0);
	ssock_client_free(cli);
	CHECK_INT(atomic_load(&r.released), ==, 2);
	CHECK_INT(atomic_load(&r.wrong), ==, 0);
	close(fd);
	close(lfd);
	free(buf);
}

/* Sends from another thread immediately followed by the free: posted chunks
 * the loop may not have taken yet. */
TEST(client_send_then_free_at_once_gives_back_every_ref)
{
	int port;
	int lfd = np_listen(64, &port);
	CHECK(lfd >= 0);
	size_t len = 1u << 20;
	uint8_t *buf = pattern(len, 12);
	for (int round = 0; round < 30; round++) {
		ssock_client_opts co = {.send_queue_max = 64u << 20,
					.queue_while_offline = round & 1};
		int fd;
		ssock_client *cli = connected_client(lfd, port, &co, &fd);
		CHECK(cli);
		ref_count r;
		ref_init(&r, buf);
		int ok = 0;
		for (int i = 0; i < 8; i++)
			ok += ssock_client_send_ref(cli, buf, len, 0, on_release, &r) == 0;
		ssock_client_free(cli);
		CHECK_INT(atomic_load(&r.released), ==, ok);
		CHECK_INT(atomic_load(&r.wrong), ==, 0);
		close(fd);
	}
	close(lfd);
	free(buf);
}

/* The connection the ref message waits on is reset; the client reconnects
 * (queue_while_offline): the old message is given back once, a message sent
 * offline goes out on the new connection and is given back once. */
TEST(client_reconnect_gives_back_each_ref_once)
{
	int port;
	int lfd = np_listen(16, &port);
	CHECK(lfd >= 0);
	ssock_client_opts co = {.send_queue_max = 64u << 20,
				.queue_while_offline = 1,
				.auto_reconnect = 1,
				.reconnect_min_ms = 10,
				.reconnect_max_ms = 20};
	int fd;
	ssock_client *cli = connected_client(lfd, port, &co, &fd);
	CHECK(cli);
	size_t len = 8u << 20;
	uint8_t *a = pattern(len, 13), *b = pattern(64u << 10, 14);
	ref_count ra, rb;
	ref_init(&ra, a);
	ref_init(&rb, b);
	CHECK_OK(ssock_client_send_ref(cli, a, len, 0, on_release, &ra));
	np_reset_close(fd);
	CHECK(released_within(&ra, 1, T));
	/* Offline (or reconnecting): queued, then written on the next one. */
	CHECK_OK(ssock_client_send_ref(cli, b, 64u << 10, 0, on_release, &rb));
	fd = accept_one(lfd, T);
	CHECK(fd >= 0);
	void *got;
	size_t n;
	CHECK_OK(np_recv_u32(fd, &got, &n, T));
	CHECK_INT(n, ==, 64u << 10);
	CHECK(np_pattern_ok(got, n, 14));
	free(got);
	CHECK(released_within(&rb, 1, T));
	ssock_client_free(cli);
	CHECK_INT(atomic_load(&ra.released), ==, 1);
	CHECK_INT(atomic_load(&rb.released), ==, 1);
	close(fd);
	close(lfd);
	free(a);
	free(b);
}

/* ------------------------------------------------------------------ */
/* Many threads send refs to one connection while another disconnects it and
 * the server is freed: releases == accepted sends. */
typedef struct storm {
	ssock_server *srv;
	uint64_t id;
	const uint8_t *buf;
	size_t len;
	ref_count *r;
	atomic_int ok;
	atomic_int refused; /* sends refused: the cut was seen */
	atomic_bool stop;
} storm;

static void *storm_sender(void *arg)
{
	storm *s = arg;
	uint64_t rng = (uint64_t)(uintptr_t)&rng;
	while (!atomic_load(&s->stop)) {
		size_t len = 4096 + np_rand(&rng) % (s->len - 4096);
		int rc = ssock_server_send_ref(s->srv, s->id, s->buf, len, (int)(np_rand(&rng) % 3),
					       on_release, s->r);
		if (rc == 0)
			atomic_fetch_add(&s->ok, 1);
		else if (rc != SSOCK_ESENDQFULL && rc != SSOCK_ETIMEDOUT)
			atomic_fetch_add(&s->refused, 1);
		if (rc == SSOCK_ENOCONN || rc == SSOCK_ESHUTDOWN)
			break;
	}
	return NULL;
}

static bool storm_cut_seen(void *arg)
{
	storm *s = arg;
	return atomic_load(&s->refused) >= 3;
}

TEST(ref_storm_with_disconnect_and_free)
{
	size_t len = 256u << 10;
	uint8_t *buf = pattern(len, 15);
	for (int round = 0; round < 10; round++) {
		ssock_server_opts o = {.send_queue_max = 2u << 20};
		int port;
		ssock_server *srv = np_server(&o, &port);
		CHECK(srv);
		int fd = np_connect_rcvbuf(port, false, 16 << 10);
		CHECK(fd >= 0);
		uint64_t id = np_take_connect(srv);
		CHECK(id);
		ref_count r;
		ref_init(&r, buf);
		storm s = {.srv = srv, .id = id, .buf = buf, .len = len, .r = &r};
		pthread_t th[3];
		for (int i = 0; i < 3; i++)
			pthread_create(&th[i], NULL, storm_sender, &s);
		/* Read a bit so that writes make progress, then cut. */
		uint8_t sink[65536];
		for (int i = 0; i < 20; i++)
			if (np_read_some(fd, sink, sizeof sink, 20) < 0)
				break;
		if (round & 1) {
			ssock_server_disconnect(srv, id);
		} else { /* a reset */
			np_reset_close(fd);
			fd = -1;
		}
		/* The senders go on until they have seen the cut. */
		bool seen = test_wait_until(storm_cut_seen, &s, T);
		atomic_store(&s.stop, true);
		for (int i = 0; i < 3; i++)
			pthread_join(th[i], NULL);
		CHECK(seen);
		if (fd >= 0)
			close(fd);
		ssock_server_free(srv);
		CHECK_INT(atomic_load(&r.released), ==, atomic_load(&s.ok));
		CHECK_INT(atomic_load(&r.wrong), ==, 0);
	}
	free(buf);
}

/* ------------------------------------------------------------------ */
/* A sender waiting for room (timeout) when the server is freed: refused
 * (ESHUTDOWN) and not given back. */
typedef struct waiter {
	ssock_server *srv;
	uint64_t id;
	const uint8_t *buf;
	size_t len;
	ref_count *r;
	int rc;
} waiter;

static void *wait_sender(void *arg)
{
	waiter *w = arg;
	w->rc = ssock_server_send_ref(w->srv, w->id, w->buf, w->len, 5000, on_release, w->r);
	return NULL;
}

struct fill {
	ssock_server *srv;
	uint64_t id;
	const uint8_t *buf;
	size_t len;
	ref_count *r;
	int queued, refused_in_a_row;
};

static bool fill_up(void *arg)
{
	struct fill *f = arg;
	if (ssock_server_send_ref(f->srv, f->id, f->buf, f->len, 0, on_release, f->r) == 0) {
		f->queued++;
		f->refused_in_a_row = 0;
		return false;
	}
	return ++f->refused_in_a_row >= 3;
}

static bool waits_for_room(void *arg)
{
	ssock_loop *l = arg;
	return atomic_load(&l->room_waiters) > 0;
}

TEST(ref_send_waiting_for_room_when_server_freed)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	ssock_server_opts o = {.loop = l, .send_queue_max = 1u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	size_t len = 900u << 10;
	uint8_t *buf = pattern(len, 16);
	ref_count r1, r2;
	ref_init(&r1, buf);
	ref_init(&r2, buf);
	/* Fill the queue and the kernel's buffers: until sends are refused
	 * three looks in a row. */
	struct fill f = {srv, id, buf, len, &r1, 0, 0};
	CHECK(test_wait_until(fill_up, &f, T));
	int queued = f.queued;
	CHECK(queued > 0);
	/* No room: with a timeout, refused at its end, still ours. */
	CHECK_INT(ssock_server_send_ref(srv, id, buf, len, 100, on_release, &r2), ==,
		  SSOCK_ETIMEDOUT);
	CHECK_INT(atomic_load(&r2.released), ==, 0);
	waiter w = {srv, id, buf, len, &r2, 1};
	pthread_t th;
	pthread_create(&th, NULL, wait_sender, &w);
	/* Freed while it waits (a thread may not call a handle being freed
	 * before it is in the call): refused, its buffer still its own. */
	CHECK(test_wait_until(waits_for_room, l, T));
	ssock_server_free(srv);
	pthread_join(th, NULL);
	CHECK_INT(atomic_load(&r1.released), ==, queued);
	CHECK_INT(w.rc, ==, SSOCK_ESHUTDOWN);
	CHECK_INT(atomic_load(&r2.released), ==, 0);
	close(fd);
	ssock_loop_free(l);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* Graceful close (ssock_server_disconnect) with a ref message queued: it is
 * written in full, then given back. */
TEST(ref_message_flushed_by_graceful_disconnect)
{
	ssock_server_opts o = {.send_queue_max = 64u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	size_t len = 4u << 20;
	uint8_t *buf = pattern(len, 17);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(srv, id, buf, len, 0, on_release, &r));
	CHECK_OK(ssock_server_disconnect(srv, id));
	/* After a disconnect the id no longer takes sends. */
	int rc = ssock_server_send_ref(srv, id, buf, len, 0, on_release, &r);
	CHECK(rc != 0);
	void *got;
	size_t n;
	CHECK_OK(np_recv_u32(fd, &got, &n, T));
	CHECK_INT(n, ==, len);
	CHECK(np_pattern_ok(got, n, 17));
	free(got);
	CHECK(released_within(&r, 1, T));
	close(fd);
	ssock_server_free(srv);
	CHECK_INT(atomic_load(&r.released), ==, 1);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* tinyproto: copied and given back at once. */
TEST(tinyproto_ref_message_is_copied)
{
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(srv);
	CHECK(id);
	size_t len = 64u << 10;
	uint8_t *buf = pattern(len, 18);
	ref_count r;
	ref_init(&r, buf);
	int rc = ssock_server_send_ref(srv, id, buf, len, 0, on_release, &r);
	CHECK_INT(atomic_load(&r.released), ==, rc == 0 ? 1 : 0);
	close(fd);
	ssock_server_free(srv);
	CHECK_INT(atomic_load(&r.released), ==, rc == 0 ? 1 : 0);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* Two handles on one shared loop: a client's message callback sends by
 * reference through the server (another handle, same loop thread). */
static ssock_server *xs_srv;
static uint64_t xs_id;
static ref_count xs_ref;
static uint8_t xs_buf[200u << 10];
static atomic_int xs_err;

static void xs_on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)data;
	(void)len;
	(void)user;
	int rc = ssock_server_send_ref(xs_srv, xs_id, xs_buf, sizeof xs_buf, 1000, on_release,
				       &xs_ref);
	if (rc != 0)
		atomic_store(&xs_err, rc);
}

TEST(ref_send_from_another_handles_callback_on_a_shared_loop)
{
	ssock_loop *l = np_started_loop();
	CHECK(l);
	np_pattern(xs_buf, sizeof xs_buf, 19);
	ref_init(&xs_ref, xs_buf);
	ssock_server_opts so = {.loop = l, .send_queue_max = 64u << 20};
	int port;
	xs_srv = np_server(&so, &port);
	CHECK(xs_srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	xs_id = np_take_connect(xs_srv);
	CHECK(xs_id);
	/* A second server on the same loop whose callback sends via xs_srv. */
	ssock_server_opts so2 = {.loop = l, .on_message = xs_on_message};
	int port2;
	ssock_server *s2 = np_server(&so2, &port2);
	CHECK(s2);
	int fd2 = np_connect(port2, false);
	CHECK(fd2 >= 0);
	for (int i = 0; i < 4; i++)
		CHECK_OK(np_send_u32(fd2, "x", 1));
	for (int i = 0; i < 4; i++) {
		void *got;
		size_t n;
		CHECK_OK(np_recv_u32(fd, &got, &n, T));
		CHECK_INT(n, ==, sizeof xs_buf);
		CHECK(np_pattern_ok(got, n, 19));
		free(got);
	}
	CHECK(released_within(&xs_ref, 4, T));
	CHECK_INT(atomic_load(&xs_err), ==, 0);
	close(fd);
	close(fd2);
	ssock_server_free(s2);
	ssock_server_free(xs_srv);
	ssock_loop_free(l);
	CHECK_INT(atomic_load(&xs_ref.released), ==, 4);
}

/* ------------------------------------------------------------------ */
/* A user-driven loop (ssock_loop_run): sends by reference from the driving
 * thread between passes, and a free from that thread. */
TEST(ref_send_on_a_user_driven_loop)
{
	ssock_loop *l;
	CHECK_OK(ssock_loop_new(&l));
	ssock_server_opts so = {.loop = l, .send_queue_max = 64u << 20, .listen = "127.0.0.1:0"};
	ssock_server *srv;
	CHECK_OK(ssock_server_new(&srv, &so));
	ssock_addr a;
	CHECK_OK(ssock_server_addr(srv, 0, &a));
	int fd = np_connect_rcvbuf(ssock_addr_port(&a), false, 16 << 10);
	CHECK(fd >= 0);
	ssock_event ev;
	uint64_t id = 0;
	for (int i = 0; i < 200 && !id; i++) {
		ssock_loop_run(l, 10);
		if (ssock_server_next_event(srv, &ev, 0) == 0) {
			if (ev.type == SSOCK_EVENT_CONNECT)
				id = ev.conn;
			ssock_event_release(&ev);
		}
	}
	CHECK(id);
	size_t len = 4u << 20;
	uint8_t *buf = pattern(len, 20);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(srv, id, buf, len, 0, on_release, &r));
	CHECK_OK(ssock_server_send_ref(srv, id, buf, len, 0, on_release, &r));
	for (int i = 0; i < 5; i++)
		ssock_loop_run(l, 5);
	CHECK_INT(atomic_load(&r.released), ==, 0);
	ssock_server_free(srv);
	CHECK_INT(atomic_load(&r.released), ==, 2);
	close(fd);
	ssock_loop_free(l);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* Echo of the callback's own buffer by reference (the library's "lent"
 * payload): data is valid during the call only, yet the API accepts it
 * and keeps a pointer to it. */
static ref_count lend_ref;
static void lend_on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	lend_ref.data = data;
	ssock_server_send_ref(ssock_conn_server(c), ssock_conn_id(c), data, len, 0, on_release,
			      &lend_ref);
}

TEST(ref_send_of_the_callbacks_own_payload)
{
	ref_init(&lend_ref, NULL);
	ssock_server_opts o = {.on_message = lend_on_message, .send_queue_max = 64u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	size_t len = 1u << 20;
	uint8_t *buf = pattern(len, 21);
	CHECK_OK(np_send_u32(fd, buf, len));
	void *got;
	size_t n;
	CHECK_OK(np_recv_u32(fd, &got, &n, T));
	CHECK_INT(n, ==, len);
	CHECK(np_pattern_ok(got, n, 21));
	free(got);
	close(fd);
	ssock_server_free(srv);
	free(buf);
}

/* The same with a message delivered in place (in the shared read buffer,
 * reused once the callback returns): two messages in one read. */
TEST(ref_send_of_the_callbacks_own_payload_in_the_read_buffer)
{
	ref_init(&lend_ref, NULL);
	ssock_server_opts o = {.on_message = lend_on_message, .send_queue_max = 64u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	size_t len = 8u << 10;
	uint8_t *wire = malloc(4 * (len + 4));
	CHECK(wire);
	for (int i = 0; i < 4; i++) {
		uint8_t *m = wire + i * (len + 4);
		m[0] = 0, m[1] = 0, m[2] = (uint8_t)(len >> 8), m[3] = (uint8_t)len;
		np_pattern(m + 4, len, (uint64_t)i + 30);
	}
	CHECK_OK(np_write(fd, wire, 4 * (len + 4)));
	for (int i = 0; i < 4; i++) {
		void *got;
		size_t n;
		CHECK_OK(np_recv_u32(fd, &got, &n, T));
		CHECK_INT(n, ==, len);
		CHECK(np_pattern_ok(got, n, (uint64_t)i + 30));
		free(got);
	}
	close(fd);
	ssock_server_free(srv);
	free(wire);
}

/* A reset connection with a disconnect callback: what it dropped is given
 * back once. The disconnect may come first (the release is at the end of
 * the pass), so a program must not free its buffers in on_disconnect:
 * only release gives them back (include/ssock.h). */
static ref_count disc_ref;
static atomic_int disc_seen_released = -1;
static void disc_cb(ssock_conn *c, int reason, void *user)
{
	(void)c;
	(void)reason;
	(void)user;
	atomic_store(&disc_seen_released, atomic_load(&disc_ref.released));
}
static void noop_msg(ssock_conn *c, const void *d, size_t n, void *u)
{
	(void)c, (void)d, (void)n, (void)u;
}
static atomic_uint_least64_t disc_id;
static void disc_conn(ssock_conn *c, void *u)
{
	(void)u;
	atomic_store(&disc_id, ssock_conn_id(c));
}

static bool disc_seen(void *arg)
{
	(void)arg;
	return atomic_load(&disc_seen_released) >= 0;
}

static bool disc_connected(void *arg)
{
	(void)arg;
	return atomic_load(&disc_id) != 0;
}

TEST(reset_with_a_disconnect_callback_gives_back_once)
{
	ssock_server_opts o = {.on_message = noop_msg,
			       .on_connect = disc_conn,
			       .on_disconnect = disc_cb,
			       .send_queue_max = 64u << 20};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	CHECK(test_wait_until(disc_connected, NULL, T));
	size_t len = 8u << 20;
	uint8_t *buf = malloc(len);
	CHECK(buf);
	memset(buf, 7, len);
	ref_init(&disc_ref, buf);
	CHECK_OK(ssock_server_send_ref(srv, atomic_load(&disc_id), buf, len, 0, on_release,
				       &disc_ref));
	np_reset_close(fd);
	CHECK(released_within(&disc_ref, 1, T));
	/* Once, whichever comes first: the header says the release may come
	 * after the disconnect (today at the end of that pass). */
	CHECK(test_wait_until(disc_seen, NULL, T));
	CHECK_INT(atomic_load(&disc_ref.released), ==, 1);
	CHECK_INT(atomic_load(&disc_ref.wrong), ==, 0);
	ssock_server_free(srv);
	free(buf);
}
