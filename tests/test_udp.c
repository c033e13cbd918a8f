/*
 * UDP over loopback: binding (port 0 read back, IPv4, IPv6, dual-stack),
 * datagram boundaries, callbacks and the inbox, send_to from several threads
 * at once, oversized datagrams refused with SSOCK_EMSGSIZE and never
 * delivered, the connected form hearing only its peer, a clean close, and the
 * `ssock` tool's `echo --udp` and `chat --udp` run as programs.
 *
 * Every wait has a deadline; nothing sleeps to wait for something. Tests
 * that need IPv6 on loopback say "skipped" and pass when the host has none.
 */
#define _GNU_SOURCE /* pipe2 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssock.h"
#include "test.h"

extern char **environ;

/* ------------------------------------------------------------- helpers */

static int port_of(ssock_udp *u)
{
	ssock_addr a;
	if (ssock_udp_addr(u, &a) != 0)
		return -1;
	return ssock_addr_port(&a);
}

/* A bound handle in inbox mode (opts may add to it), or NULL. */
static ssock_udp *udp_bind(const char *addr, ssock_udp_opts *opts)
{
	ssock_udp_opts o = {0};
	if (opts)
		o = *opts;
	o.bind = addr;
	ssock_udp *u = NULL;
	int rc = ssock_udp_new(&u, &o);
	if (rc != 0)
		fprintf(stderr, "ssock_udp_new(bind %s): %s\n", addr, ssock_strerror(rc));
	return u;
}

/* A connected handle (inbox mode) to HOST:port of target's address. */
static ssock_udp *udp_connect_to(ssock_udp *target, bool v6)
{
	char text[64];
	snprintf(text, sizeof text, v6 ? "[::1]:%d" : "127.0.0.1:%d", port_of(target));
	ssock_udp_opts o = {.connect = text};
	ssock_udp *u = NULL;
	int rc = ssock_udp_new(&u, &o);
	if (rc != 0)
		fprintf(stderr, "ssock_udp_new(connect %s): %s\n", text, ssock_strerror(rc));
	return u;
}

static bool have_ipv6(void)
{
	ssock_udp_opts o = {.bind = "[::1]:0"};
	ssock_udp *u;
	if (ssock_udp_new(&u, &o) != 0)
		return false;
	ssock_udp_free(u);
	return true;
}

static void addr_of(ssock_udp *u, ssock_addr *out)
{
	ssock_udp_addr(u, out);
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

static int count_threads(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* What callbacks saw. */
#define SINK_MAX   64
#define THREADS    4
#define PER_THREAD 500
struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int datagrams, errors, last_error, close_rc;
	ssock_addr last_from, last_error_peer;
	char *data[SINK_MAX];
	size_t len[SINK_MAX];
	bool echo;      /* answer each datagram with send_to from the callback */
	bool try_close; /* call ssock_udp_free() from the callback */
	/* send_to_threads: datagrams seen per sender thread, and duplicates */
	int per[THREADS];
	bool seen[THREADS][PER_THREAD];
	int dups, bad;
};

static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
}

static void sink_free(struct sink *s)
{
	for (int i = 0; i < SINK_MAX; i++)
		free(s->data[i]);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

static void on_datagram(ssock_udp *u, const ssock_addr *from, const void *data, size_t len,
			void *user)
{
	struct sink *s = user;
	if (s->echo)
		ssock_udp_send_to(u, from, data, len);
	int close_rc = s->try_close ? ssock_udp_free(u) : 0;
	pthread_mutex_lock(&s->mu);
	int t, seq;
	char tail, text[32] = "";
	if (len < sizeof text)
		memcpy(text, data, len);
	if (len < sizeof text && sscanf(text, "t%d:%d%c", &t, &seq, &tail) == 2 && t >= 0 &&
	    t < THREADS && seq >= 0 && seq < PER_THREAD) {
		if (s->seen[t][seq])
			s->dups++;
		s->seen[t][seq] = true;
		s->per[t]++;
	} else if (s->datagrams < SINK_MAX) {
		s->data[s->datagrams] = malloc(len + 1);
		memcpy(s->data[s->datagrams], data, len);
		s->data[s->datagrams][len] = '\0';
		s->len[s->datagrams] = len;
	}
	s->close_rc = close_rc;
	s->last_from = *from;
	s->datagrams++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_error(const ssock_error_info *e, void *user)
{
	struct sink *s = user;
	pthread_mutex_lock(&s->mu);
	s->errors++;
	s->last_error = e->code;
	s->last_error_peer = e->peer;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Waits until *field >= want. Returns true, or false at the deadline. */
static bool sink_wait(struct sink *s, const int *field, int want, int timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	while (*field < want && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0) {
	}
	bool ok = *field >= want;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static void sink_opts(struct sink *s, ssock_udp_opts *o)
{
	o->on_datagram = on_datagram;
	o->on_error = on_error;
	o->user = s;
}

/* ------------------------------------------------------------- binding */

TEST(bind_port0_ipv4)
{
	ssock_udp *u = udp_bind("127.0.0.1:0", NULL);
	CHECK(u != NULL);
	ssock_addr a;
	CHECK_OK(ssock_udp_addr(u, &a));
	CHECK_INT(a.u.sa.sa_family, ==, AF_INET);
	int port = ssock_addr_port(&a);
	CHECK_INT(port, >, 0);
	char text[SSOCK_ADDRSTRLEN], want[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_format(&a, text, sizeof text), >, 0);
	snprintf(want, sizeof want, "127.0.0.1:%d", port);
	CHECK(strcmp(text, want) == 0);

	/* The port is really taken: a second bind to it is refused. */
	ssock_udp_opts o = {.bind = want};
	ssock_udp *u2 = NULL;
	CHECK_INT(ssock_udp_new(&u2, &o), ==, SSOCK_EADDRINUSE);
	CHECK(u2 == NULL);
	CHECK_OK(ssock_udp_free(u));
}

TEST(bad_options)
{
	ssock_udp *u = (ssock_udp *)1;
	ssock_udp_opts none = {0};
	CHECK_INT(ssock_udp_new(&u, &none), ==, SSOCK_EINVAL);
	CHECK(u == NULL);
	CHECK_INT(ssock_udp_new(&u, NULL), ==, SSOCK_EINVAL);
	ssock_udp_opts big = {.bind = "127.0.0.1:0", .max_message = SSOCK_UDP_MAX_MESSAGE + 1};
	CHECK_INT(ssock_udp_new(&u, &big), ==, SSOCK_EINVAL);
	ssock_udp_opts bad = {.bind = "127.0.0.1"};
	CHECK_INT(ssock_udp_new(&u, &bad), ==, SSOCK_EBADADDR);
	ssock_udp_opts mixed = {.bind = "127.0.0.1:0", .connect = "[::1]:9"};
	CHECK_INT(ssock_udp_new(&u, &mixed), ==, SSOCK_EAFNOSUPPORT);
	CHECK(u == NULL);
	CHECK_OK(ssock_udp_free(NULL));
}

TEST(ipv6)
{
	if (!have_ipv6()) {
		printf("skipped: no IPv6 loopback\n");
		return;
	}
	ssock_udp *srv = udp_bind("[::1]:0", NULL);
	CHECK(srv != NULL);
	ssock_addr a;
	addr_of(srv, &a);
	CHECK_INT(a.u.sa.sa_family, ==, AF_INET6);
	char text[SSOCK_ADDRSTRLEN], want[SSOCK_ADDRSTRLEN];
	ssock_addr_format(&a, text, sizeof text);
	snprintf(want, sizeof want, "[::1]:%d", port_of(srv));
	CHECK(strcmp(text, want) == 0);

	ssock_udp *cli = udp_connect_to(srv, true);
	CHECK(cli != NULL);
	CHECK_OK(ssock_udp_send(cli, "six", 3));
	void *data;
	size_t len;
	ssock_addr from;
	CHECK_OK(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 3);
	CHECK_MEM(data, "six", 3);
	ssock_free(data);
	CHECK_INT(from.u.sa.sa_family, ==, AF_INET6);
	CHECK_INT(ssock_addr_port(&from), ==, port_of(cli));

	CHECK_OK(ssock_udp_send_to(srv, &from, "back", 4));
	CHECK_OK(ssock_udp_recv(cli, &data, &len, NULL, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 4);
	CHECK_MEM(data, "back", 4);
	ssock_free(data);
	CHECK_OK(ssock_udp_free(cli));
	CHECK_OK(ssock_udp_free(srv));
}

TEST(dual_stack)
{
	if (!have_ipv6()) {
		printf("skipped: no IPv6 loopback\n");
		return;
	}
	/* ":PORT" is one [::] socket that hears IPv4 too. */
	ssock_udp *srv = udp_bind(":0", NULL);
	CHECK(srv != NULL);
	ssock_addr a;
	addr_of(srv, &a);
	CHECK_INT(a.u.sa.sa_family, ==, AF_INET6);

	ssock_udp *v4 = udp_connect_to(srv, false);
	ssock_udp *v6 = udp_connect_to(srv, true);
	CHECK(v4 != NULL && v6 != NULL);
	CHECK_OK(ssock_udp_send(v4, "four", 4));
	CHECK_OK(ssock_udp_send(v6, "six", 3));
	for (int i = 0; i < 2; i++) {
		void *data;
		size_t len;
		ssock_addr from;
		CHECK_OK(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS));
		bool is4 = len == 4;
		CHECK_MEM(data, is4 ? "four" : "six", len);
		ssock_free(data);
		CHECK_INT(ssock_addr_port(&from), ==, port_of(is4 ? v4 : v6));
		/* Replying to the sender's address as received works. */
		CHECK_OK(ssock_udp_send_to(srv, &from, "ok", 2));
	}
	/* So does a plain IPv4 address on the IPv6 socket (mapped for it). */
	ssock_addr v4addr;
	addr_of(v4, &v4addr);
	CHECK_INT(v4addr.u.sa.sa_family, ==, AF_INET);
	CHECK_OK(ssock_udp_send_to(srv, &v4addr, "plain", 5));

	const char *want4[] = {"ok", "plain"};
	for (int i = 0; i < 2; i++) {
		void *data;
		size_t len;
		CHECK_OK(ssock_udp_recv(v4, &data, &len, NULL, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, strlen(want4[i]));
		CHECK_MEM(data, want4[i], len);
		ssock_free(data);
	}
	void *data;
	size_t len;
	CHECK_OK(ssock_udp_recv(v6, &data, &len, NULL, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 2);
	ssock_free(data);
	ssock_udp_free(v4);
	ssock_udp_free(v6);
	ssock_udp_free(srv);
}

/* ---------------------------------------------------- delivery modes */

TEST(boundaries_kept)
{
	ssock_udp *srv = udp_bind("127.0.0.1:0", NULL);
	CHECK(srv != NULL);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(cli != NULL);
	static uint8_t big[SSOCK_UDP_MAX_MESSAGE];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	const size_t sizes[] = {3, 3, 0, 1, 1000, SSOCK_UDP_MAX_MESSAGE, 2};
	const int n = (int)(sizeof sizes / sizeof sizes[0]);
	CHECK_OK(ssock_udp_send(cli, "one", 3));
	CHECK_OK(ssock_udp_send(cli, "two", 3));
	CHECK_OK(ssock_udp_send(cli, NULL, 0));
	for (int i = 3; i < n; i++)
		CHECK_OK(ssock_udp_send_to_timeout(cli, NULL, big, sizes[i], TEST_TIMEOUT_MS));
	for (int i = 0; i < n; i++) {
		ssock_event ev;
		CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
		CHECK_INT(ev.type, ==, SSOCK_EVENT_MESSAGE);
		CHECK_INT(ev.len, ==, sizes[i]);
		if (i < 2)
			CHECK_MEM(ev.data, i == 0 ? "one" : "two", 3);
		else if (i == 2)
			CHECK(ev.data == NULL);
		else
			CHECK_MEM(ev.data, big, ev.len);
		ssock_event_release(&ev);
	}
	ssock_event ev;
	CHECK_INT(ssock_udp_next_event(srv, &ev, 0), ==, SSOCK_ETIMEDOUT);
	ssock_udp_free(cli);
	ssock_udp_free(srv);
}

TEST(inbox)
{
	ssock_udp *srv = udp_bind("127.0.0.1:0", NULL);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	void *data = (void *)1;
	size_t len = 1;
	/* A wait with nothing coming ends at its deadline. */
	CHECK_INT(ssock_udp_recv(srv, &data, &len, NULL, 50), ==, SSOCK_ETIMEDOUT);
	CHECK(data == NULL && len == 0);

	CHECK_OK(ssock_udp_send(cli, "ping", 4));
	ssock_event ev;
	CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_MESSAGE);
	CHECK_INT(ev.conn, ==, 0);
	CHECK_INT(ev.len, ==, 4);
	CHECK_MEM(ev.data, "ping", 4);
	CHECK_INT(ssock_addr_port(&ev.peer), ==, port_of(cli));
	/* The caller may keep the data and free it itself. */
	void *kept = ev.data;
	ev.data = NULL;
	ssock_event_release(&ev);
	ssock_free(kept);

	CHECK_OK(ssock_udp_send(cli, "pong", 4));
	ssock_addr from;
	CHECK_OK(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 4);
	CHECK_MEM(data, "pong", 4);
	CHECK_INT(ssock_addr_port(&from), ==, port_of(cli));
	ssock_free(data);
	ssock_udp_free(cli);
	ssock_udp_free(srv);
}

TEST(inbox_full_pauses_then_resumes)
{
	/* An inbox of 4: reading stops at 4 and resumes as they are taken;
	 * the rest wait in the kernel's buffer, none lost or reordered. */
	ssock_udp_opts o = {.inbox_max = 4};
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 40; i++) {
			char msg[16];
			int n = snprintf(msg, sizeof msg, "m%d", i);
			CHECK_OK(ssock_udp_send(cli, msg, (size_t)n));
		}
		for (int i = 0; i < 40; i++) {
			void *data;
			size_t len;
			char want[16];
			snprintf(want, sizeof want, "m%d", i);
			CHECK_OK(ssock_udp_recv(srv, &data, &len, NULL, TEST_TIMEOUT_MS));
			CHECK_INT(len, ==, strlen(want));
			CHECK_MEM(data, want, len);
			ssock_free(data);
		}
	}
	ssock_udp_free(cli);
	ssock_udp_free(srv);
}

TEST(callbacks)
{
	struct sink s;
	sink_init(&s);
	s.echo = true;
	ssock_udp_opts o = {0};
	sink_opts(&s, &o);
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	const char *msgs[] = {"alpha", "beta", "gamma"};
	for (int i = 0; i < 3; i++)
		CHECK_OK(ssock_udp_send(cli, msgs[i], strlen(msgs[i])));
	CHECK(sink_wait(&s, &s.datagrams, 3, TEST_TIMEOUT_MS));
	for (int i = 0; i < 3; i++) {
		CHECK_INT(s.len[i], ==, strlen(msgs[i]));
		CHECK(strcmp(s.data[i], msgs[i]) == 0);
	}
	pthread_mutex_lock(&s.mu);
	int from_port = ssock_addr_port(&s.last_from);
	pthread_mutex_unlock(&s.mu);
	CHECK_INT(from_port, ==, port_of(cli));
	/* The callback answered each with send_to from the loop thread. */
	for (int i = 0; i < 3; i++) {
		void *data;
		size_t len;
		CHECK_OK(ssock_udp_recv(cli, &data, &len, NULL, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, strlen(msgs[i]));
		CHECK_MEM(data, msgs[i], len);
		ssock_free(data);
	}
	/* Callback mode has no inbox. */
	ssock_event ev;
	CHECK_INT(ssock_udp_next_event(srv, &ev, 0), ==, SSOCK_ENOINBOX);
	void *data;
	size_t len;
	CHECK_INT(ssock_udp_recv(srv, &data, &len, NULL, 0), ==, SSOCK_ENOINBOX);
	ssock_udp_free(cli);
	ssock_udp_free(srv);
	sink_free(&s);
}

/* ------------------------------------------------ sends from threads */

struct sender {
	ssock_udp *u;
	ssock_addr to;
	struct sink *s;
	int t;
	int failed;
};

static void *sender_main(void *arg)
{
	struct sender *sd = arg;
	const int window = 16; /* in flight per thread: far below the socket buffer */
	for (int seq = 0; seq < PER_THREAD; seq++) {
		if (seq >= window &&
		    !sink_wait(sd->s, &sd->s->per[sd->t], seq - window + 1, TEST_TIMEOUT_MS)) {
			sd->failed = SSOCK_ETIMEDOUT;
			return NULL;
		}
		char msg[32];
		int n = snprintf(msg, sizeof msg, "t%d:%d", sd->t, seq);
		int rc = ssock_udp_send_to_timeout(sd->u, &sd->to, msg, (size_t)n, TEST_TIMEOUT_MS);
		if (rc != 0) {
			sd->failed = rc;
			return NULL;
		}
	}
	return NULL;
}

TEST(send_to_threads)
{
	struct sink s;
	sink_init(&s);
	ssock_udp_opts o = {0};
	sink_opts(&s, &o);
	ssock_udp *rx = udp_bind("127.0.0.1:0", &o);
	ssock_udp *tx = udp_bind("127.0.0.1:0", NULL);
	CHECK(rx != NULL && tx != NULL);
	struct sender sd[THREADS];
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++) {
		sd[t] = (struct sender){.u = tx, .s = &s, .t = t};
		addr_of(rx, &sd[t].to);
		CHECK_INT(pthread_create(&th[t], NULL, sender_main, &sd[t]), ==, 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < THREADS; t++) {
		CHECK_OK(sd[t].failed);
		CHECK(sink_wait(&s, &s.per[t], PER_THREAD, TEST_TIMEOUT_MS));
	}
	pthread_mutex_lock(&s.mu);
	int dups = s.dups, total = s.datagrams;
	pthread_mutex_unlock(&s.mu);
	CHECK_INT(dups, ==, 0);
	CHECK_INT(total, ==, THREADS * PER_THREAD);
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++)
			CHECK(s.seen[t][i]);
	ssock_udp_free(tx);
	ssock_udp_free(rx);
	sink_free(&s);
}

/* ---------------------------------------------------------- limits */

TEST(oversized_refused_inbox)
{
	ssock_udp_opts o = {.max_message = 100};
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false); /* default limit: 65507 */
	CHECK(srv != NULL && cli != NULL);
	uint8_t buf[SSOCK_UDP_MAX_MESSAGE + 1];
	memset(buf, 'x', sizeof buf);
	CHECK_OK(ssock_udp_send(cli, buf, 101));
	CHECK_OK(ssock_udp_send(cli, buf, 100));

	ssock_event ev;
	CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_ERROR);
	CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
	CHECK(ev.op && strcmp(ev.op, "recv") == 0);
	CHECK_INT(ssock_addr_port(&ev.peer), ==, port_of(cli));
	ssock_event_release(&ev);
	CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_MESSAGE);
	CHECK_INT(ev.len, ==, 100);
	ssock_event_release(&ev);
	CHECK_INT(ssock_udp_next_event(srv, &ev, 0), ==, SSOCK_ETIMEDOUT);

	ssock_error_info errs[4];
	CHECK_INT(ssock_udp_errors(srv, errs, 4, 1), ==, 1);
	CHECK_INT(errs[0].code, ==, SSOCK_EMSGSIZE);
	CHECK_INT(ssock_udp_errors(srv, errs, 4, 0), ==, 0);

	/* recv reports a refused datagram as its error, with the sender. */
	CHECK_OK(ssock_udp_send(cli, buf, 500));
	void *data;
	size_t len;
	ssock_addr from;
	CHECK_INT(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS), ==, SSOCK_EMSGSIZE);
	CHECK(data == NULL);
	CHECK_INT(ssock_addr_port(&from), ==, port_of(cli));

	/* Sending above the limit fails before anything is sent. */
	ssock_addr to;
	addr_of(cli, &to);
	CHECK_INT(ssock_udp_send_to(srv, &to, buf, 101), ==, SSOCK_EMSGSIZE);
	CHECK_INT(ssock_udp_send(cli, buf, SSOCK_UDP_MAX_MESSAGE + 1), ==, SSOCK_EMSGSIZE);
	CHECK_INT(ssock_udp_next_event(cli, &ev, 0), ==, SSOCK_ETIMEDOUT);
	ssock_udp_free(cli);
	ssock_udp_free(srv);
}

TEST(oversized_refused_callback)
{
	struct sink s;
	sink_init(&s);
	ssock_udp_opts o = {.max_message = 64};
	sink_opts(&s, &o);
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	char buf[200];
	memset(buf, 'y', sizeof buf);
	CHECK_OK(ssock_udp_send(cli, buf, 65));
	CHECK_OK(ssock_udp_send(cli, "small", 5));
	CHECK(sink_wait(&s, &s.datagrams, 1, TEST_TIMEOUT_MS));
	CHECK(sink_wait(&s, &s.errors, 1, TEST_TIMEOUT_MS));
	pthread_mutex_lock(&s.mu);
	int n = s.datagrams, code = s.last_error, port = ssock_addr_port(&s.last_error_peer);
	pthread_mutex_unlock(&s.mu);
	CHECK_INT(n, ==, 1);
	CHECK_INT(s.len[0], ==, 5);
	CHECK(strcmp(s.data[0], "small") == 0);
	CHECK_INT(code, ==, SSOCK_EMSGSIZE);
	CHECK_INT(port, ==, port_of(cli));
	ssock_udp_free(cli);
	ssock_udp_free(srv);
	sink_free(&s);
}

TEST(oversized_at_hard_limit_ipv6)
{
	/* IPv6 can carry 65508 bytes and more; at the default (and highest)
	 * limit such a datagram is still refused, never cut short. */
	if (!have_ipv6()) {
		printf("skipped: no IPv6 loopback\n");
		return;
	}
	ssock_udp *srv = udp_bind("[::1]:0", NULL);
	CHECK(srv != NULL);
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	ssock_addr to;
	addr_of(srv, &to);
	static uint8_t buf[SSOCK_UDP_MAX_MESSAGE + 10];
	memset(buf, 'z', sizeof buf);
	CHECK_INT(sendto(fd, buf, SSOCK_UDP_MAX_MESSAGE + 1, 0, &to.u.sa, to.len), ==,
		  SSOCK_UDP_MAX_MESSAGE + 1);
	CHECK_INT(sendto(fd, buf, SSOCK_UDP_MAX_MESSAGE, 0, &to.u.sa, to.len), ==,
		  SSOCK_UDP_MAX_MESSAGE);
	close(fd);
	ssock_event ev;
	CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_ERROR);
	CHECK_INT(ev.code, ==, SSOCK_EMSGSIZE);
	ssock_event_release(&ev);
	CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_MESSAGE);
	CHECK_INT(ev.len, ==, SSOCK_UDP_MAX_MESSAGE);
	ssock_event_release(&ev);
	ssock_udp_free(srv);
}

/* ---------------------------------------------------- connected form */

TEST(connected_ignores_others)
{
	ssock_udp *srv = udp_bind("127.0.0.1:0", NULL);
	ssock_udp *other = udp_bind("127.0.0.1:0", NULL);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && other != NULL && cli != NULL);
	ssock_addr cli_addr, other_addr, srv_addr;
	addr_of(cli, &cli_addr);
	addr_of(other, &other_addr);
	addr_of(srv, &srv_addr);
	CHECK_INT(ssock_addr_port(&cli_addr), >, 0);

	/* The intruder's datagram goes first (loopback delivers at once), so
	 * had it been accepted it would be queued before the peer's. */
	CHECK_OK(ssock_udp_send_to(other, &cli_addr, "intruder", 8));
	CHECK_OK(ssock_udp_send_to(srv, &cli_addr, "hello", 5));
	void *data;
	size_t len;
	ssock_addr from;
	CHECK_OK(ssock_udp_recv(cli, &data, &len, &from, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 5);
	CHECK_MEM(data, "hello", 5);
	ssock_free(data);
	CHECK_INT(ssock_addr_port(&from), ==, port_of(srv));
	ssock_event ev;
	CHECK_INT(ssock_udp_next_event(cli, &ev, 0), ==, SSOCK_ETIMEDOUT);

	/* send() goes to the peer; send_to elsewhere is refused. */
	CHECK_OK(ssock_udp_send(cli, "hi", 2));
	CHECK_OK(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS));
	CHECK_INT(len, ==, 2);
	CHECK_MEM(data, "hi", 2);
	ssock_free(data);
	CHECK_INT(ssock_addr_port(&from), ==, port_of(cli));
	CHECK_INT(ssock_udp_send_to(cli, &other_addr, "x", 1), ==, SSOCK_EINVAL);
	CHECK_OK(ssock_udp_send_to(cli, &srv_addr, "y", 1));
	CHECK_OK(ssock_udp_send_to(cli, NULL, "z", 1));
	for (int i = 0; i < 2; i++) {
		CHECK_OK(ssock_udp_recv(srv, &data, &len, NULL, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, 1);
		CHECK_INT(((char *)data)[0], ==, i == 0 ? 'y' : 'z');
		ssock_free(data);
	}
	/* The bound form has no peer. */
	CHECK_INT(ssock_udp_send(srv, "x", 1), ==, SSOCK_ENOTCONN);
	CHECK_INT(ssock_udp_send_to(srv, NULL, "x", 1), ==, SSOCK_EINVAL);
	CHECK_INT(ssock_udp_next_event(other, &ev, 0), ==, SSOCK_ETIMEDOUT);
	ssock_udp_free(cli);
	ssock_udp_free(other);
	ssock_udp_free(srv);
}

TEST(connected_with_bind)
{
	/* bind + connect: the local end is fixed, the peer is still the only
	 * one heard. ":0" picks the wildcard of the peer's family. */
	ssock_udp *srv = udp_bind("127.0.0.1:0", NULL);
	CHECK(srv != NULL);
	char peer[64];
	snprintf(peer, sizeof peer, "127.0.0.1:%d", port_of(srv));
	const char *binds[] = {"127.0.0.1:0", ":0"};
	for (int i = 0; i < 2; i++) {
		ssock_udp_opts o = {.bind = binds[i], .connect = peer};
		ssock_udp *cli;
		CHECK_OK(ssock_udp_new(&cli, &o));
		ssock_addr local;
		CHECK_OK(ssock_udp_addr(cli, &local));
		CHECK_INT(local.u.sa.sa_family, ==, AF_INET);
		CHECK_INT(ssock_addr_port(&local), >, 0);
		CHECK_OK(ssock_udp_send(cli, "bound", 5));
		void *data;
		size_t len;
		ssock_addr from;
		CHECK_OK(ssock_udp_recv(srv, &data, &len, &from, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, 5);
		ssock_free(data);
		CHECK_INT(ssock_addr_port(&from), ==, ssock_addr_port(&local));
		CHECK_OK(ssock_udp_send_to(srv, &from, "back", 4));
		CHECK_OK(ssock_udp_recv(cli, &data, &len, NULL, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, 4);
		ssock_free(data);
		CHECK_OK(ssock_udp_free(cli));
	}
	ssock_udp_free(srv);
}

TEST(connected_refused)
{
	/* A port nobody listens on: the ICMP refusal is reported. */
	ssock_udp *gone = udp_bind("127.0.0.1:0", NULL);
	CHECK(gone != NULL);
	ssock_udp *cli = udp_connect_to(gone, false);
	CHECK(cli != NULL);
	ssock_udp_free(gone);
	CHECK_OK(ssock_udp_send(cli, "anyone?", 7));
	ssock_event ev;
	CHECK_OK(ssock_udp_next_event(cli, &ev, TEST_TIMEOUT_MS));
	CHECK_INT(ev.type, ==, SSOCK_EVENT_ERROR);
	CHECK_INT(ev.code, ==, SSOCK_ECONNREFUSED);
	CHECK(strcmp(ev.op, "recv") == 0);
	ssock_event_release(&ev);
	ssock_udp_free(cli);
}

/* ------------------------------------------------------- lifecycle */

/* Waits until the process has at most `want` threads. A joined thread
 * leaves /proc's count a moment after pthread_join() returns, and there is
 * no event for that: look again after each pause, until the deadline. */
static bool threads_at_most(void *arg)
{
	return count_threads() <= *(int *)arg;
}

static int wait_threads_at_most(int want, int timeout_ms)
{
	test_wait_until(threads_at_most, &want, timeout_ms);
	return count_threads();
}

TEST(close_is_clean)
{
	/* One round first, so threads a sanitizer starts lazily are counted
	 * in the baseline. */
	int before = count_threads();
	ssock_udp *warm = udp_bind("127.0.0.1:0", NULL);
	CHECK(warm != NULL);
	ssock_udp_free(warm);
	int fds = count_fds();
	int threads = wait_threads_at_most(before, 500);
	for (int i = 0; i < 20; i++) {
		ssock_udp *srv = udp_bind("127.0.0.1:0", NULL);
		ssock_udp *cli = udp_connect_to(srv, false);
		CHECK(srv != NULL && cli != NULL);
		for (int j = 0; j < 5; j++)
			CHECK_OK(ssock_udp_send(cli, "left unread", 11));
		/* Wait for one so some sit in the inbox at close. */
		ssock_event ev;
		CHECK_OK(ssock_udp_next_event(srv, &ev, TEST_TIMEOUT_MS));
		ssock_event_release(&ev);
		CHECK_OK(ssock_udp_free(cli));
		CHECK_OK(ssock_udp_free(srv));
	}
	CHECK_INT(count_fds(), ==, fds); /* closed by close() itself */
	CHECK_INT(wait_threads_at_most(threads, TEST_TIMEOUT_MS), <=, threads);
}

TEST(close_from_callback_refused)
{
	struct sink s;
	sink_init(&s);
	s.try_close = true;
	ssock_udp_opts o = {0};
	sink_opts(&s, &o);
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	CHECK_OK(ssock_udp_send(cli, "x", 1));
	CHECK(sink_wait(&s, &s.datagrams, 1, TEST_TIMEOUT_MS));
	pthread_mutex_lock(&s.mu);
	int rc = s.close_rc;
	pthread_mutex_unlock(&s.mu);
	CHECK_INT(rc, ==, SSOCK_ELOOPTHREAD);
	CHECK_OK(ssock_udp_free(cli));
	CHECK_OK(ssock_udp_free(srv));
	sink_free(&s);
}

TEST(shared_loop)
{
	int fds = count_fds();
	ssock_loop *loop;
	CHECK_OK(ssock_loop_new(&loop));
	CHECK_OK(ssock_loop_start(loop));
	struct sink s;
	sink_init(&s);
	s.echo = true;
	ssock_udp_opts so = {.loop = loop};
	sink_opts(&s, &so);
	ssock_udp *srv = udp_bind("127.0.0.1:0", &so);
	CHECK(srv != NULL);
	char text[64];
	snprintf(text, sizeof text, "127.0.0.1:%d", port_of(srv));
	ssock_udp_opts co = {.connect = text, .loop = loop};
	ssock_udp *cli;
	CHECK_OK(ssock_udp_new(&cli, &co));
	CHECK_INT(ssock_loop_free(loop), ==, SSOCK_EBUSY);
	for (int i = 0; i < 50; i++) {
		CHECK_OK(ssock_udp_send(cli, "round", 5));
		void *data;
		size_t len;
		CHECK_OK(ssock_udp_recv(cli, &data, &len, NULL, TEST_TIMEOUT_MS));
		CHECK_INT(len, ==, 5);
		ssock_free(data);
	}
	CHECK_OK(ssock_udp_free(srv));
	/* The other handle on the loop goes on. */
	CHECK_OK(ssock_udp_send(cli, "late", 4));
	CHECK_OK(ssock_udp_free(cli));
	CHECK_OK(ssock_loop_free(loop));
	CHECK_INT(count_fds(), ==, fds);
	sink_free(&s);
}

TEST(loop_driven_by_caller)
{
	/* A loop nobody runs in the background: the program drives it. */
	ssock_loop *loop;
	CHECK_OK(ssock_loop_new(&loop));
	struct sink s;
	sink_init(&s);
	ssock_udp_opts o = {.loop = loop};
	sink_opts(&s, &o);
	ssock_udp *srv = udp_bind("127.0.0.1:0", &o);
	ssock_udp *cli = udp_connect_to(srv, false);
	CHECK(srv != NULL && cli != NULL);
	CHECK_OK(ssock_udp_send(cli, "driven", 6));
	int64_t deadline = test_now_ms() + TEST_TIMEOUT_MS;
	while (!sink_wait(&s, &s.datagrams, 1, 0) && test_now_ms() < deadline)
		CHECK_OK(ssock_loop_run(loop, 100));
	CHECK(sink_wait(&s, &s.datagrams, 1, 0));
	CHECK(strcmp(s.data[0], "driven") == 0);
	CHECK_OK(ssock_udp_free(cli));
	CHECK_OK(ssock_udp_free(srv));
	CHECK_OK(ssock_loop_free(loop));
	sink_free(&s);
}

/* ---------------------------------------------------- the ssock tool */

struct proc {
	pid_t pid;
	int in, out, err; /* our ends of its stdin, stdout, stderr; -1: closed */
};

static int spawn(struct proc *p, char *const argv[])
{
	int in[2], out[2], err[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->in = in[1];
	p->out = out[0];
	p->err = err[0];
	return rc == 0 ? 0 : -1;
}

/* Reads a child's stdout and stderr until both reach EOF or the deadline.
 * Returns true at EOF. */
static bool read_all(struct proc *p, char *out, size_t out_size, char *err, size_t err_size,
		     int timeout_ms)
{
	size_t no = 0, ne = 0;
	out[0] = err[0] = '\0';
	int64_t deadline = test_now_ms() + timeout_ms;
	while (p->out >= 0 || p->err >= 0) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0)
			return false;
		struct pollfd fds[2] = {{.fd = p->out, .events = POLLIN},
					{.fd = p->err, .events = POLLIN}};
		if (poll(fds, 2, (int)left) < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (!fds[i].revents)
				continue;
			char *buf = i == 0 ? out : err;
			size_t *n = i == 0 ? &no : &ne;
			size_t size = i == 0 ? out_size : err_size;
			char tmp[4096];
			ssize_t got = read(fds[i].fd, tmp, sizeof tmp);
			if (got <= 0) {
				close(fds[i].fd);
				*(i == 0 ? &p->out : &p->err) = -1;
				continue;
			}
			size_t take = (size_t)got < size - 1 - *n ? (size_t)got : size - 1 - *n;
			memcpy(buf + *n, tmp, take);
			*n += take;
			buf[*n] = '\0';
		}
	}
	return true;
}

/* Reads one line of the child's stdout (without '\n') before the deadline. */
static bool read_line_from(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t n = 0;
	int64_t deadline = test_now_ms() + timeout_ms;
	while (n + 1 < size) {
		int64_t left = deadline - test_now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		if (read(fd, buf + n, 1) != 1)
			return false;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return true;
		}
		n++;
	}
	return false;
}

/* Reaps a child whose pipes reached EOF; returns its exit status, or -1. */
static int reap(struct proc *p)
{
	int st;
	if (waitpid(p->pid, &st, 0) != p->pid)
		return -1;
	if (p->in >= 0)
		close(p->in);
	p->in = -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void kill_proc(struct proc *p)
{
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	for (int *fd = &p->in; fd <= &p->err; fd++)
		if (*fd >= 0)
			close(*fd);
}

/* Starts `ssock echo --udp --listen listen`; *port gets the port it printed
 * and the line must be `listening on <want_host>:PORT`. */
static bool start_echo(struct proc *p, const char *listen, const char *want_host, int *port)
{
	char *argv[] = {SSOCK_TOOL, "echo", "--udp", "--listen", (char *)listen, NULL};
	if (spawn(p, argv) != 0)
		return false;
	char line[128], prefix[64];
	if (!read_line_from(p->out, line, sizeof line, TEST_TIMEOUT_MS)) {
		kill_proc(p);
		return false;
	}
	int n = snprintf(prefix, sizeof prefix, "listening on %s:", want_host);
	if (strncmp(line, prefix, (size_t)n) != 0 || sscanf(line + n, "%d", port) != 1 ||
	    *port <= 0) {
		fprintf(stderr, "unexpected first line: '%s'\n", line);
		kill_proc(p);
		return false;
	}
	return true;
}

/* Runs `ssock chat --udp addr --wait 5000` with `input` on stdin. */
static int run_chat(const char *addr, const char *input, char *out, size_t out_size, char *err,
		    size_t err_size)
{
	struct proc c;
	char *argv[] = {SSOCK_TOOL, "chat", "--udp", (char *)addr, "--wait", "5000", NULL};
	if (spawn(&c, argv) != 0)
		return -1;
	size_t len = strlen(input);
	if (write(c.in, input, len) != (ssize_t)len) {
		kill_proc(&c);
		return -1;
	}
	close(c.in);
	c.in = -1;
	if (!read_all(&c, out, out_size, err, err_size, TEST_TIMEOUT_MS)) {
		kill_proc(&c);
		return -1;
	}
	return reap(&c);
}

static int stop_echo(struct proc *p)
{
	kill(p->pid, SIGTERM);
	char out[256], err[1024];
	if (!read_all(p, out, sizeof out, err, sizeof err, TEST_TIMEOUT_MS)) {
		kill_proc(p);
		return -1;
	}
	if (err[0])
		fprintf(stderr, "echo said: [%s]\n", err);
	return reap(p);
}

TEST(tool_echo_chat)
{
	struct proc echo;
	int port;
	CHECK(start_echo(&echo, "127.0.0.1:0", "127.0.0.1", &port));
	char addr[64], out[1024] = "", err[1024] = "";
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	/* An empty line is an empty datagram and comes back as one. */
	int code = run_chat(addr, "hello\nworld\n\nbye\n", out, sizeof out, err, sizeof err);
	if (code != 0)
		fprintf(stderr, "chat stderr: %s\n", err);
	CHECK_INT(code, ==, 0);
	CHECK(strcmp(out, "hello\nworld\n\nbye\n") == 0);
	CHECK(err[0] == '\0');
	/* At EOF without 'bye' it also waits for the replies. */
	code = run_chat(addr, "one\ntwo", out, sizeof out, err, sizeof err);
	CHECK_INT(code, ==, 0);
	CHECK(strcmp(out, "one\ntwo\n") == 0);
	CHECK_INT(stop_echo(&echo), ==, 0);
}

TEST(tool_echo_chat_ipv6)
{
	if (!have_ipv6()) {
		printf("skipped: no IPv6 loopback\n");
		return;
	}
	struct proc echo;
	int port;
	CHECK(start_echo(&echo, "[::1]:0", "[::1]", &port));
	char addr[64], out[1024] = "", err[1024] = "";
	snprintf(addr, sizeof addr, "[::1]:%d", port);
	CHECK_INT(run_chat(addr, "over six\n", out, sizeof out, err, sizeof err), ==, 0);
	CHECK(strcmp(out, "over six\n") == 0);
	CHECK_INT(stop_echo(&echo), ==, 0);
}

TEST(tool_chat_refused)
{
	/* A port just freed: nobody listens, the refusal ends chat with 1. */
	ssock_udp *gone = udp_bind("127.0.0.1:0", NULL);
	CHECK(gone != NULL);
	char addr[64], out[1024] = "", err[1024] = "";
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port_of(gone));
	ssock_udp_free(gone);
	CHECK_INT(run_chat(addr, "anyone?\n", out, sizeof out, err, sizeof err), ==, 1);
	CHECK(out[0] == '\0');
	size_t n = strlen(err);
	CHECK(n > 0 && err[n - 1] == '\n' && strchr(err, '\n') == err + n - 1); /* one line */
	CHECK(strstr(err, addr) != NULL);
}
