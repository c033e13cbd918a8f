/* See fault.h. */
#include "fault.h"

#include "test.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

static void on_connect(ssock_conn *conn, void *user)
{
	fx *f = user;
	pthread_mutex_lock(&f->mu);
	f->connects++;
	f->last_conn = ssock_conn_id(conn);
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void on_message(ssock_conn *conn, const void *data, size_t len, void *user)
{
	fx *f = user;
	if (f->echo)
		ssock_conn_send(conn, data, len); /* a full queue is the peer's problem */
	pthread_mutex_lock(&f->mu);
	f->messages++;
	pthread_mutex_unlock(&f->mu);
}

static void on_disconnect(ssock_conn *conn, int reason, void *user)
{
	fx *f = user;
	pthread_mutex_lock(&f->mu);
	f->disc[f->disconnects % FX_RING].id = ssock_conn_id(conn);
	f->disc[f->disconnects % FX_RING].reason = reason;
	f->disconnects++;
	for (int i = 0; i < 16; i++) {
		if (f->by_reason[i].count == 0 || f->by_reason[i].reason == reason) {
			f->by_reason[i].reason = reason;
			f->by_reason[i].count++;
			break;
		}
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void on_error(const ssock_error_info *e, void *user)
{
	fx *f = user;
	(void)e;
	pthread_mutex_lock(&f->mu);
	f->errors++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* The count of disconnects with this reason; f->mu held. */
static int count_reason_locked(fx *f, int reason)
{
	for (int i = 0; i < 16; i++)
		if (f->by_reason[i].count && f->by_reason[i].reason == reason)
			return f->by_reason[i].count;
	return 0;
}

/* Waits for *field >= want (or, with field NULL, for `want` disconnects
 * with `reason`) under f->mu. */
static bool wait_for(fx *f, const int *field, int reason, int want, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	pthread_mutex_lock(&f->mu);
	while ((field ? *field : count_reason_locked(f, reason)) < want) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	}
	bool ok = (field ? *field : count_reason_locked(f, reason)) >= want;
	pthread_mutex_unlock(&f->mu);
	return ok;
}

static bool wait_field(fx *f, const int *field, int want, int timeout_ms)
{
	return wait_for(f, field, 0, want, timeout_ms);
}

bool fx_wait_reason(fx *f, int reason, int want, int timeout_ms)
{
	return wait_for(f, NULL, reason, want, timeout_ms);
}

bool fx_wait_errors(fx *f, int want, int timeout_ms)
{
	return wait_for(f, &f->errors, 0, want, timeout_ms);
}

static int tp_handshake(int fd)
{
	uint8_t b;
	if (np_read_exact(fd, &b, 1, T) != 0 || b != 0xFF)
		return -1;
	return np_write(fd, "\xff", 1);
}

int fx_peer_raw(fx *f, uint64_t *id)
{
	pthread_mutex_lock(&f->mu);
	int want = f->connects + 1;
	pthread_mutex_unlock(&f->mu);
	int fd = np_connect(f->port, false);
	if (fd < 0)
		return -1;
	if (!wait_field(f, &f->connects, want, T)) {
		close(fd);
		return -1;
	}
	pthread_mutex_lock(&f->mu);
	if (id)
		*id = f->last_conn;
	pthread_mutex_unlock(&f->mu);
	return fd;
}

int fx_peer(fx *f, uint64_t *id)
{
	int fd = fx_peer_raw(f, id);
	if (fd >= 0 && f->framing == SSOCK_FRAMING_TINYPROTO && tp_handshake(fd) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool echo_line(int fd, const char *msg)
{
	size_t n = strlen(msg);
	char buf[512];
	snprintf(buf, sizeof buf, "%s\n", msg);
	if (np_write(fd, buf, n + 1) != 0 || np_read_exact(fd, buf, n + 1, T) != 0)
		return false;
	return memcmp(buf, msg, n) == 0 && buf[n] == '\n';
}

/* tinyproto, as the Python library does it: size, wait for 0xFF, payload;
 * then the echo comes back the same way with us answering. */
static bool echo_tinyproto(int fd, const char *msg)
{
	uint32_t n = (uint32_t)strlen(msg), be = htonl(n);
	uint8_t st;
	if (np_write(fd, &be, 4) != 0 || np_read_exact(fd, &st, 1, T) != 0 || st != 0xFF)
		return false;
	if (np_write(fd, msg, n) != 0 || np_read_exact(fd, &be, 4, T) != 0 || ntohl(be) != n)
		return false;
	if (np_write(fd, "\xff", 1) != 0)
		return false;
	char buf[512];
	return n < sizeof buf && np_read_exact(fd, buf, n, T) == 0 && memcmp(buf, msg, n) == 0;
}

bool fx_echo(fx *f, int fd, const char *msg)
{
	if (f->framing == SSOCK_FRAMING_LINE)
		return echo_line(fd, msg);
	if (f->framing == SSOCK_FRAMING_TINYPROTO)
		return echo_tinyproto(fd, msg);
	void *data;
	size_t len;
	if (np_send_u32(fd, msg, strlen(msg)) != 0 || np_recv_u32(fd, &data, &len, T) != 0)
		return false;
	bool ok = len == strlen(msg) && memcmp(data, msg, len) == 0;
	free(data);
	return ok;
}

static pthread_barrier_t warm_barrier;

static void *warm_thread(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&warm_barrier); /* all alive at once: one arena each */
	free(malloc(64));
	return NULL;
}

void fx_warm_arenas(int threads)
{
	pthread_t th[64];
	if (threads > 64)
		threads = 64;
	pthread_barrier_init(&warm_barrier, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, warm_thread, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&warm_barrier);
}

bool fx_start(fx *f, ssock_server_opts *o)
{
	memset(f, 0, sizeof *f);
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	f->good = -1;
	f->echo = true;
	f->framing = o->framing;
	f->fds_before = np_count_fds();
	f->heap_before = np_heap_bytes();
	o->on_connect = on_connect;
	o->on_message = on_message;
	o->on_disconnect = on_disconnect;
	o->on_error = on_error;
	o->user = f;
	f->srv = np_server(o, &f->port);
	if (!f->srv)
		return false;
	f->good = fx_peer(f, &f->good_id);
	if (f->good < 0 || !fx_echo(f, f->good, "warm up")) {
		fprintf(stderr, "fx_start: the good peer got no echo\n");
		return false;
	}
	/* A newcomer too, so the loop's buffers are as big as they get. */
	int x = fx_peer(f, NULL);
	if (x < 0 || !fx_echo(f, x, "warm up too"))
		return false;
	int want = f->disconnects + 1;
	close(x);
	if (!wait_field(f, &f->disconnects, want, T))
		return false;
	/* A connection leaves the server's count after its socket is closed. */
	np_wait_conns(f->srv, 1, false, T);
	f->fds0 = np_count_fds();
	f->heap0 = np_heap_bytes();
	f->rss0 = np_rss_kb();
	return true;
}

int fx_reason(fx *f, uint64_t id, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		int seen = f->disconnects;
		int first = seen > FX_RING ? seen - FX_RING : 0;
		for (int i = seen - 1; i >= first; i--) {
			if (f->disc[i % FX_RING].id == id) {
				int r = f->disc[i % FX_RING].reason;
				pthread_mutex_unlock(&f->mu);
				return r;
			}
		}
		pthread_mutex_unlock(&f->mu);
		int64_t left = deadline - test_now_ms();
		if (left <= 0 || !wait_field(f, &f->disconnects, seen + 1, (int)left))
			return 1;
	}
}

int fx_messages(fx *f)
{
	pthread_mutex_lock(&f->mu);
	int n = f->messages;
	pthread_mutex_unlock(&f->mu);
	return n;
}

int fx_count_reason(fx *f, int reason)
{
	pthread_mutex_lock(&f->mu);
	int n = count_reason_locked(f, reason);
	pthread_mutex_unlock(&f->mu);
	return n;
}

bool fx_logged(fx *f, uint64_t id, int code, const char *op)
{
	ssock_error_info e[64];
	int n = ssock_server_errors(f->srv, e, 64, 0);
	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++)
		if (e[i].conn == id && e[i].code == code && (!op || strcmp(e[i].op, op) == 0))
			return true;
	return false;
}

bool fx_healthy(fx *f, int extra, int64_t slack)
{
	if (!fx_echo(f, f->good, "still here")) {
		fprintf(stderr, "fx_healthy: the good peer got no echo\n");
		return false;
	}
	uint64_t id;
	int x = fx_peer(f, &id);
	if (x < 0 || !fx_echo(f, x, "newcomer")) {
		fprintf(stderr, "fx_healthy: a new peer was not served\n");
		return false;
	}
	close(x);
	if (fx_reason(f, id, T) != 0) {
		fprintf(stderr, "fx_healthy: the newcomer's clean close was not seen as one\n");
		return false;
	}
	int conns = np_wait_conns(f->srv, 1 + extra, false, T);
	if (conns != 1 + extra) {
		fprintf(stderr, "fx_healthy: %d connections open, want %d\n", conns, 1 + extra);
		return false;
	}
	int fds = np_wait_fds_at_most(f->fds0 + extra * 2, T);
	if (fds > f->fds0 + extra * 2) {
		fprintf(stderr, "fx_healthy: %d fds open, baseline %d (+%d)\n", fds, f->fds0,
			extra * 2);
		return false;
	}
	int64_t heap = np_heap_bytes();
	if (heap >= 0 && heap - f->heap0 > slack) {
		fprintf(stderr, "fx_healthy: heap %lld bytes over its baseline (allowed %lld)\n",
			(long long)(heap - f->heap0), (long long)slack);
		return false;
	}
	return true;
}

bool fx_finish(fx *f)
{
	if (f->good >= 0)
		close(f->good);
	ssock_server_free(f->srv);
	f->srv = NULL;
	int fds = np_count_fds();
	int64_t heap = np_heap_bytes();
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	bool ok = true;
	if (fds != f->fds_before) {
		fprintf(stderr, "fx_finish: %d fds open, %d before the server\n", fds,
			f->fds_before);
		ok = false;
	}
	/* stdio and the resolver may keep a little of their own, and glibc
	 * keeps about 2 kB for each thread that has exited (the loop's and a
	 * test's client threads: measured 2256 bytes per arena); a leak per
	 * connection over these tests' thousands of connections is far more. */
	if (heap >= 0 && heap - f->heap_before > 32 * 1024) {
		fprintf(stderr, "fx_finish: heap %lld bytes over what it was before the server\n",
			(long long)(heap - f->heap_before));
		ok = false;
	}
	return ok;
}
