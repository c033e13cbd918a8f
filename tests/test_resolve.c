/*
 * Host names are resolved off the loop. The silent_* tests run inside a
 * network namespace whose resolv.conf names 127.0.0.1 as the name server,
 * where they start a name server that reads every query and never answers
 * (tests/dns_silent.sh sets that up, as root, and sets SSOCK_TEST_SILENT_DNS).
 * The others run anywhere.
 */
#include "internal.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T           TEST_TIMEOUT_MS
#define SILENT_NAME "silent.ssock.test"

static bool in_silent_namespace(void)
{
	const char *e = getenv("SSOCK_TEST_SILENT_DNS");
	return e && strcmp(e, "1") == 0;
}

/* One u32 echo through port from a raw peer. */
static bool echo_once(int port, const char *what)
{
	int fd = np_connect(port, false);
	if (fd < 0)
		return false;
	size_t n = strlen(what);
	void *data = NULL;
	size_t len = 0;
	bool ok = np_send_u32(fd, what, n) == 0 && np_recv_u32(fd, &data, &len, T) == 0 &&
		  len == n && memcmp(data, what, n) == 0;
	free(data);
	close(fd);
	return ok;
}

static void echo_cb(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len);
}

TEST(silent_name_server_does_not_block_the_loop)
{
	if (!in_silent_namespace())
		TEST__FAIL("run by tests/dns_silent.sh (SSOCK_TEST_SILENT_DNS=1)");
	int dns[2];
	CHECK(np_silent_dns(dns));
	ssock_loop *l;
	CHECK_OK(ssock_loop_new(&l));
	CHECK_OK(ssock_loop_start(l));
	ssock_server_opts so = {.loop = l, .on_message = echo_cb};
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	CHECK(echo_once(port, "before"));

	/* Sixteen clients on the same loop look the silent name up: every
	 * resolver thread there is hangs on it. */
	enum { N = 16 };
	ssock_client *named[N];
	for (int i = 0; i < N; i++) {
		ssock_client_opts co = {
			.connect = SILENT_NAME ":9", .loop = l, .connect_timeout_ms = 1500};
		CHECK_OK(ssock_client_new(&named[i], &co));
		/* Returns at once, as documented: the lookup is not on the loop
		 * and not on this thread. */
		CHECK_OK(ssock_client_connect(named[i], 0));
		CHECK_INT(ssock_client_state_get(named[i]), ==, SSOCK_STATE_CONNECTING);
	}
	/* Meanwhile the loop serves: echoes, and a client with a numeric
	 * address, which never waits for the resolver. */
	CHECK(echo_once(port, "during"));
	ssock_client *numeric = np_client(&(ssock_client_opts){.loop = l}, port, false);
	CHECK(numeric);
	CHECK_OK(ssock_client_connect(numeric, T));
	CHECK_OK(ssock_client_send(numeric, "numeric", 7));
	void *data;
	size_t len;
	CHECK_OK(ssock_client_recv(numeric, &data, &len, T));
	CHECK(len == 7 && memcmp(data, "numeric", 7) == 0);
	ssock_free(data);
	for (int i = 0; i < N; i++)
		CHECK_INT(ssock_client_state_get(named[i]), ==, SSOCK_STATE_CONNECTING);

	/* Each attempt ends at its deadline, reported as a lookup that timed
	 * out; the loop still serves. */
	for (int i = 0; i < N; i++) {
		ssock_event ev;
		CHECK_OK(np_client_wait(named[i], SSOCK_EVENT_ERROR, &ev, T));
		CHECK_INT(ev.code, ==, SSOCK_ETIMEDOUT);
		CHECK(strcmp(ev.op, "resolve") == 0);
		ssock_event_release(&ev);
		CHECK_INT(ssock_client_state_get(named[i]), ==, SSOCK_STATE_DISCONNECTED);
	}
	CHECK(echo_once(port, "after"));
	for (int i = 0; i < N; i++)
		CHECK_OK(ssock_client_free(named[i]));
	CHECK_OK(ssock_client_free(numeric));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(l));
	close(dns[0]);
	close(dns[1]);
}

/* ---------------------------------------------- anywhere: names on a loop */

struct on_loop_try {
	ssock_loop *loop;
	int server_rc, udp_rc, numeric_rc;
	ssock_server *numeric;
	test_signal done;
};

static void try_names(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	(void)data;
	(void)len;
	struct on_loop_try *t = user;
	if (t->numeric)
		return;
	ssock_server *srv = NULL;
	ssock_server_opts o = {.listen = "localhost:0", .loop = t->loop};
	t->server_rc = ssock_server_new(&srv, &o);
	ssock_udp *u = NULL;
	ssock_udp_opts uo = {.bind = "localhost:0", .loop = t->loop};
	t->udp_rc = ssock_udp_new(&u, &uo);
	o.listen = "127.0.0.1:0";
	t->numeric_rc = ssock_server_new(&t->numeric, &o);
	test_signal_raise(&t->done, 1);
}

TEST(a_name_is_refused_on_a_loop_thread)
{
	/* Creating a server or UDP socket from a callback with a name to
	 * resolve would stop the loop on the resolver: refused, while a
	 * numeric address works. */
	struct on_loop_try t = {0};
	test_signal_init(&t.done);
	CHECK_OK(ssock_loop_new(&t.loop));
	CHECK_OK(ssock_loop_start(t.loop));
	ssock_server_opts so = {.loop = t.loop, .on_message = try_names, .user = &t};
	int port;
	ssock_server *srv = np_server(&so, &port);
	CHECK(srv);
	int fd = np_connect(port, false);
	CHECK(fd >= 0);
	CHECK_INT(np_send_u32(fd, "go", 2), ==, 0);
	CHECK_INT(test_signal_wait(&t.done, 1, T), ==, 1);
	CHECK_INT(t.server_rc, ==, SSOCK_ELOOPTHREAD);
	CHECK_INT(t.udp_rc, ==, SSOCK_ELOOPTHREAD);
	CHECK_OK(t.numeric_rc);
	close(fd);
	CHECK_OK(ssock_server_free(t.numeric));
	CHECK_OK(ssock_server_free(srv));
	CHECK_OK(ssock_loop_free(t.loop));
}
