/*
 * Sends by reference (ssock_server_send_ref(), ssock_client_send_ref()): the
 * bytes on the wire are the caller's, in order with copied sends, and the
 * buffer is given back exactly once however its message ends: written,
 * dropped with its connection, freed with its handle, copied after all
 * (small, line framing) or refused (then never: it is still the caller's).
 */
#include "net_helpers.h"
#include "ref_count.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* ----------------------------------------------------------- helpers */

/* An inbox server on its own loop thread, a raw peer connected to it, and
 * the peer's connection id. */
typedef struct setup {
	ssock_server *srv;
	int fd;
	uint64_t id;
} setup;

static bool setup_open(setup *s, ssock_framing framing, int rcvbuf)
{
	ssock_server_opts o = {.framing = framing, .send_queue_max = 64u << 20};
	int port;
	s->srv = np_server(&o, &port);
	if (!s->srv)
		return false;
	s->fd = np_connect_rcvbuf(port, false, rcvbuf);
	s->id = s->fd >= 0 ? np_take_connect(s->srv) : 0;
	return s->id != 0;
}

static void setup_close(setup *s)
{
	if (s->fd >= 0)
		close(s->fd);
	ssock_server_free(s->srv);
}

/* Reads one u32 message and checks it is len bytes of pattern seed. */
static bool peer_reads(int fd, size_t len, uint64_t seed)
{
	void *got;
	size_t n;
	if (np_recv_u32(fd, &got, &n, T) != 0)
		return false;
	bool ok = n == len && np_pattern_ok(got, n, seed);
	free(got);
	return ok;
}

/* ------------------------------------------ written, then given back */

TEST(ref_message_is_written_then_given_back_once)
{
	setup s;
	CHECK(setup_open(&s, SSOCK_FRAMING_U32, 64 << 10));
	size_t len = 4u << 20; /* far more than the socket buffers take */
	uint8_t *buf = pattern(len, 1);
	CHECK(buf);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(s.srv, s.id, buf, len, 0, on_release, &r));
	/* The peer has read nothing: the message cannot be all written yet,
	 * so the buffer is still ssock's. */
	CHECK_INT(atomic_load(&r.released), ==, 0);
	CHECK(peer_reads(s.fd, len, 1));
	CHECK(released_within(&r, 1, T));
	CHECK_INT(atomic_load(&r.wrong), ==, 0);
	setup_close(&s);
	CHECK_INT(atomic_load(&r.released), ==, 1);
	free(buf);
}

/* Many messages of every size around the reference threshold, by reference
 * and copied, interleaved: every byte arrives, in call order, and every
 * buffer is given back once. Header and payload of one message are two
 * pieces of one write: a write that stops anywhere must resume right. */
TEST(ref_and_copied_messages_keep_call_order)
{
	setup s;
	CHECK(setup_open(&s, SSOCK_FRAMING_U32, 16 << 10));
	enum { N = 120 };
	static uint8_t *bufs[N];
	static size_t lens[N];
	static ref_count refs[N];
	uint64_t rng = 7;
	for (int i = 0; i < N; i++) {
		lens[i] = 1 + np_rand(&rng) % (96u << 10);
		bufs[i] = pattern(lens[i], (uint64_t)i + 100);
		CHECK(bufs[i]);
		ref_init(&refs[i], bufs[i]);
		if (i % 3 == 2)
			CHECK_OK(ssock_server_send_timeout(s.srv, s.id, bufs[i], lens[i], T));
		else
			CHECK_OK(ssock_server_send_ref(s.srv, s.id, bufs[i], lens[i], T, on_release,
						       &refs[i]));
	}
	for (int i = 0; i < N; i++)
		CHECK(peer_reads(s.fd, lens[i], (uint64_t)i + 100));
	for (int i = 0; i < N; i++) {
		if (i % 3 != 2) {
			CHECK(released_within(&refs[i], 1, T));
			CHECK_INT(atomic_load(&refs[i].wrong), ==, 0);
		}
	}
	setup_close(&s);
	for (int i = 0; i < N; i++) {
		CHECK_INT(atomic_load(&refs[i].released), ==, i % 3 != 2);
		free(bufs[i]);
	}
}

/* ------------------------------------------------ given back unsent */

TEST(ref_message_is_given_back_when_its_connection_drops)
{
	setup s;
	CHECK(setup_open(&s, SSOCK_FRAMING_U32, 16 << 10));
	size_t len = 8u << 20;
	uint8_t *buf = pattern(len, 2);
	CHECK(buf);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(s.srv, s.id, buf, len, 0, on_release, &r));
	np_reset_close(s.fd); /* nothing more is taken */
	s.fd = -1;
	ssock_event ev;
	CHECK_OK(np_server_wait(s.srv, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.unsent, >, 0);
	ssock_event_release(&ev);
	CHECK(released_within(&r, 1, T));
	setup_close(&s);
	CHECK_INT(atomic_load(&r.released), ==, 1);
	free(buf);
}

TEST(ref_message_is_given_back_when_its_server_is_freed)
{
	setup s;
	CHECK(setup_open(&s, SSOCK_FRAMING_RAW, 16 << 10));
	size_t len = 8u << 20;
	uint8_t *buf = pattern(len, 3);
	CHECK(buf);
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(s.srv, s.id, buf, len, 0, on_release, &r));
	CHECK_INT(atomic_load(&r.released), ==, 0);
	setup_close(&s); /* the peer never read: the free drops the message */
	CHECK_INT(atomic_load(&r.released), ==, 1);
	CHECK_INT(atomic_load(&r.wrong), ==, 0);
	free(buf);
}

/* -------------------------------------------- refused: still the caller's */

TEST(refused_ref_send_leaves_the_buffer_to_the_caller)
{
	setup s;
	CHECK(setup_open(&s, SSOCK_FRAMING_U32, 0));
	static uint8_t buf[64 << 10];
	ref_count r;
	ref_init(&r, buf);
	CHECK_INT(ssock_server_send_ref(s.srv, s.id + 1000, buf, sizeof buf, 0, on_release, &r), ==,
		  SSOCK_ENOCONN);
	CHECK_INT(ssock_server_send_ref(s.srv, s.id, buf, sizeof buf, 0, NULL, NULL), ==,
		  SSOCK_EINVAL);
	CHECK_INT(ssock_server_send_ref(s.srv, s.id, NULL, 10, 0, on_release, &r), ==,
		  SSOCK_EINVAL);
	CHECK_INT(ssock_server_send_ref(NULL, s.id, buf, sizeof buf, 0, on_release, &r), ==,
		  SSOCK_EINVAL);
	/* A queue too small for it. */
	ssock_server_opts o = {.send_queue_max = 16 << 10};
	int port;
	ssock_server *small = np_server(&o, &port);
	CHECK(small);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	uint64_t id = np_take_connect(small);
	CHECK(id);
	CHECK_INT(ssock_server_send_ref(small, id, buf, sizeof buf, 0, on_release, &r), ==,
		  SSOCK_EMSGSIZE);
	close(fd);
	ssock_server_free(small);
	setup_close(&s);
	CHECK_INT(atomic_load(&r.released), ==, 0);
}

/* ------------------------------------------------- copied after all */

/* Small messages and the line framing are copied: the buffer is given back
 * before the call returns, and changing it afterwards changes nothing. */
static void copied_case(ssock_framing framing, size_t len)
{
	setup s;
	CHECK(setup_open(&s, framing, 0));
	uint8_t *buf = malloc(len + 1);
	CHECK(buf);
	memset(buf, 'a', len);
	buf[len] = '\n';
	ref_count r;
	ref_init(&r, buf);
	CHECK_OK(ssock_server_send_ref(s.srv, s.id, buf, len, 0, on_release, &r));
	CHECK_INT(atomic_load(&r.released), ==, 1);
	memset(buf, 'b', len);
	uint8_t *got = malloc(len + 4);
	CHECK(got);
	size_t wire = framing == SSOCK_FRAMING_LINE ? len + 1 : len + 4;
	CHECK_INT(np_read_exact(s.fd, got, wire, T), ==, 0);
	size_t at = framing == SSOCK_FRAMING_LINE ? 0 : 4;
	for (size_t i = 0; i < len; i++)
		CHECK_INT(got[at + i], ==, 'a');
	free(got);
	free(buf);
	setup_close(&s);
	CHECK_INT(atomic_load(&r.released), ==, 1);
}

TEST(small_ref_message_is_copied_and_given_back_at_once)
{
	copied_case(SSOCK_FRAMING_U32, 100);
}

TEST(line_ref_message_is_copied_and_given_back_at_once)
{
	copied_case(SSOCK_FRAMING_LINE, 64 << 10);
}

/* ------------------------------------------------ from a callback */

static ref_count cb_ref;
static uint8_t cb_buf[256 << 10];

/* Answers each message with cb_buf by reference, on the loop thread. */
static void send_ref_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)data;
	(void)len;
	(void)user;
	int rc = ssock_server_send_ref(ssock_conn_server(c), ssock_conn_id(c), cb_buf,
				       sizeof cb_buf, 0, on_release, &cb_ref);
	if (rc != 0)
		atomic_fetch_add(&cb_ref.wrong, 1);
}

TEST(ref_send_from_a_message_callback)
{
	np_pattern(cb_buf, sizeof cb_buf, 4);
	ref_init(&cb_ref, cb_buf);
	ssock_server_opts o = {.on_message = send_ref_cb};
	int port;
	ssock_server *srv = np_server(&o, &port);
	CHECK(srv);
	int fd = np_connect_rcvbuf(port, false, 16 << 10);
	CHECK(fd >= 0);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(np_send_u32(fd, "go", 2), ==, 0);
		CHECK(peer_reads(fd, sizeof cb_buf, 4));
		CHECK(released_within(&cb_ref, i + 1, T));
	}
	close(fd);
	ssock_server_free(srv);
	CHECK_INT(atomic_load(&cb_ref.released), ==, 3);
	CHECK_INT(atomic_load(&cb_ref.wrong), ==, 0);
}

/* ------------------------------------------------------- the client */

TEST(client_ref_message_waits_offline_then_goes_out)
{
	ssock_server_opts so = {0};
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	size_t len = 1u << 20;
	uint8_t *buf = pattern(len, 5);
	CHECK(buf);
	ref_count r;
	ref_init(&r, buf);
	/* Offline: queued by reference, held until the connection comes. */
	ssock_client_opts co = {.queue_while_offline = true};
	ssock_client *cli = np_client(&co, port, false);
	CHECK(cli);
	CHECK_OK(ssock_client_send_ref(cli, buf, len, 0, on_release, &r));
	CHECK_INT(atomic_load(&r.released), ==, 0);
	CHECK_OK(ssock_client_connect(cli, T));
	ssock_event ev;
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, len);
	CHECK(np_pattern_ok(ev.data, ev.len, 5));
	ssock_event_release(&ev);
	CHECK(released_within(&r, 1, T));
	/* Connected: the same again. */
	CHECK_OK(ssock_client_send_ref(cli, buf, len, T, on_release, &r));
	CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
	CHECK_INT(ev.len, ==, len);
	CHECK(np_pattern_ok(ev.data, ev.len, 5));
	ssock_event_release(&ev);
	CHECK(released_within(&r, 2, T));
	ssock_client_free(cli);
	ssock_server_free(srv);
	CHECK_INT(atomic_load(&r.released), ==, 2);
	CHECK_INT(atomic_load(&r.wrong), ==, 0);
	free(buf);
}

TEST(client_freed_offline_gives_back_its_ref_messages)
{
	size_t len = 64u << 10;
	uint8_t *buf = pattern(len, 6);
	CHECK(buf);
	ref_count r;
	ref_init(&r, buf);
	/* Never connected: both messages wait offline until the free. */
	ssock_client_opts co = {.queue_while_offline = true};
	ssock_client *cli = np_client(&co, 9, false);
	CHECK(cli);
	CHECK_OK(ssock_client_send_ref(cli, buf, len, 0, on_release, &r));
	CHECK_OK(ssock_client_send_ref(cli, buf, len, 0, on_release, &r));
	CHECK_INT(atomic_load(&r.released), ==, 0);
	ssock_client_free(cli);
	CHECK_INT(atomic_load(&r.released), ==, 2);
	CHECK_INT(atomic_load(&r.wrong), ==, 0);
	free(buf);
}
