/* See net_helpers.h. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "net_helpers.h"
#include "internal.h"
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ------------------------------------------------------------ addresses */

int np_server_port(ssock_server *srv, int index)
{
	ssock_addr a;
	if (ssock_server_addr(srv, index, &a) != 0)
		return -1;
	return ssock_addr_port(&a);
}

void np_addr_text(char *buf, size_t size, int port, bool v6)
{
	snprintf(buf, size, v6 ? "[::1]:%d" : "127.0.0.1:%d", port);
}

ssock_server *np_server(ssock_server_opts *opts, int *port)
{
	ssock_server_opts dflt = {0};
	if (!opts)
		opts = &dflt;
	if (!opts->listen)
		opts->listen = "127.0.0.1:0";
	ssock_server *srv = NULL;
	int rc = ssock_server_new(&srv, opts);
	if (rc != 0) {
		fprintf(stderr, "ssock_server_new: %s\n", ssock_strerror(rc));
		return NULL;
	}
	if (port)
		*port = np_server_port(srv, 0);
	return srv;
}

/* --------------------------------------------------------- raw test peer */

ssock_client *np_client(ssock_client_opts *opts, int port, bool v6)
{
	char text[64];
	np_addr_text(text, sizeof text, port, v6);
	ssock_client_opts dflt = {0};
	if (!opts)
		opts = &dflt;
	opts->connect = text; /* copied by ssock_client_new() */
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, opts);
	opts->connect = NULL;
	if (rc != 0)
		fprintf(stderr, "ssock_client_new: %s\n", ssock_strerror(rc));
	return cli;
}

int np_connect(int port, bool v6)
{
	return np_connect_rcvbuf(port, v6, 0);
}

int np_connect_rcvbuf(int port, bool v6, int rcvbuf)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* before connect(): the window offered in the handshake follows it */
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int rc;
	if (v6) {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6,
					 .sin6_port = htons((uint16_t)port)};
		a.sin6_addr = in6addr_loopback;
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	}
	if (rc != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int np_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int np_write_bytewise(int fd, const void *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (np_write(fd, (const char *)buf + i, 1) != 0)
			return -1;
	return 0;
}

int np_send_u32(int fd, const void *data, size_t len)
{
	char *buf = malloc(len + 4);
	if (!buf)
		return -1;
	uint32_t be = htonl((uint32_t)len);
	memcpy(buf, &be, 4);
	if (len)
		memcpy(buf + 4, data, len);
	int rc = np_write(fd, buf, len + 4);
	free(buf);
	return rc;
}

/* Waits until fd is readable before the deadline. Returns 1, or -2. */
static int wait_readable(int fd, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0)
			return -2;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

int np_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	char *p = buf;
	while (len > 0) {
		int w = wait_readable(fd, deadline);
		if (w < 0)
			return w;
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int np_recv_u32(int fd, void **data, size_t *len, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	uint32_t be;
	int rc = np_read_exact(fd, &be, 4, timeout_ms);
	if (rc != 0)
		return rc;
	*len = ntohl(be);
	*data = malloc(*len ? *len : 1);
	if (!*data)
		return -1;
	int left = (int)(deadline - test_now_ms());
	rc = np_read_exact(fd, *data, *len, left > 0 ? left : 1);
	if (rc != 0) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

long np_read_some(int fd, void *buf, size_t size, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	for (;;) {
		int w = wait_readable(fd, deadline);
		if (w < 0)
			return w;
		ssize_t n = recv(fd, buf, size, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return n < 0 ? -1 : (long)n;
	}
}

void np_reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

int np_wait_eof(int fd, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	char buf[4096];
	for (;;) {
		int w = wait_readable(fd, deadline);
		if (w < 0)
			return -2;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return 0;
	}
}

bool np_quiet(int fd, int wait_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, wait_ms) == 0;
}

static void *drive(void *arg)
{
	np_driver *d = arg;
	while (!atomic_load(&d->stop))
		if (ssock_loop_run(d->loop, 20) != 0)
			atomic_fetch_add(&d->errors, 1);
	return NULL;
}

bool np_drive_start(np_driver *d)
{
	atomic_store(&d->stop, 0);
	return pthread_create(&d->th, NULL, drive, d) == 0;
}

void np_drive_stop(np_driver *d)
{
	atomic_store(&d->stop, 1);
	pthread_join(d->th, NULL);
}

int np_listen(int backlog, int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* ------------------------------------------------------------ inbox waits */

typedef int (*next_fn)(void *h, ssock_event *ev, int timeout_ms);

static int wait_type(next_fn next, void *h, ssock_event_type type, ssock_event *ev, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - test_now_ms();
		int rc = next(h, ev, left > 0 ? (int)left : 0);
		if (rc != 0)
			return rc;
		if (ev->type == type)
			return 0;
		ssock_event_release(ev);
	}
}

static int srv_next(void *h, ssock_event *ev, int t)
{
	return ssock_server_next_event(h, ev, t);
}

static int cli_next(void *h, ssock_event *ev, int t)
{
	return ssock_client_next_event(h, ev, t);
}

int np_server_wait(ssock_server *srv, ssock_event_type type, ssock_event *ev, int timeout_ms)
{
	return wait_type(srv_next, srv, type, ev, timeout_ms);
}

int np_client_wait(ssock_client *cli, ssock_event_type type, ssock_event *ev, int timeout_ms)
{
	return wait_type(cli_next, cli, type, ev, timeout_ms);
}

/* ------------------------------------------------- callback-mode collector */

void np_collect_init(np_collect *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
}

void np_collect_free(np_collect *c)
{
	for (int i = 0; i < NP_MAX_MSGS; i++)
		free(c->msg[i]);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
}

static void c_connect(ssock_conn *conn, void *user)
{
	np_collect *c = user;
	pthread_mutex_lock(&c->mu);
	c->connects++;
	c->last_conn = ssock_conn_id(conn);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_message(ssock_conn *conn, const void *data, size_t len, void *user)
{
	np_collect *c = user;
	int rc = c->echo ? ssock_conn_send(conn, data, len) : 0;
	pthread_mutex_lock(&c->mu);
	if (rc != 0)
		c->echo_failures++;
	if (c->messages < NP_MAX_MSGS) {
		c->msg[c->messages] = malloc(len + 1);
		if (c->msg[c->messages]) {
			memcpy(c->msg[c->messages], data, len);
			c->msg[c->messages][len] = 0;
		}
		c->msg_len[c->messages] = len;
	}
	c->messages++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_disconnect(ssock_conn *conn, int reason, void *user)
{
	np_collect *c = user;
	pthread_mutex_lock(&c->mu);
	c->disconnects++;
	c->last_conn = ssock_conn_id(conn);
	c->last_reason = reason;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_error(const ssock_error_info *e, void *user)
{
	np_collect *c = user;
	pthread_mutex_lock(&c->mu);
	c->errors++;
	c->last_error = e->code;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void np_collect_server_opts(np_collect *c, ssock_server_opts *o)
{
	o->on_connect = c_connect;
	o->on_message = c_message;
	o->on_disconnect = c_disconnect;
	o->on_error = c_error;
	o->user = c;
}

void np_collect_client_opts(np_collect *c, ssock_client_opts *o)
{
	o->on_connect = c_connect;
	o->on_message = c_message;
	o->on_disconnect = c_disconnect;
	o->on_error = c_error;
	o->user = c;
}

bool np_collect_wait(np_collect *c, const int *field, int want, int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	int rc = 0;
	while (*field < want && rc == 0)
		rc = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	bool ok = *field >= want;
	pthread_mutex_unlock(&c->mu);
	return ok;
}

/* ------------------------------------------------------ process resources */

int np_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static long status_field(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	size_t nlen = strlen(name);
	long v = -1;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
			v = strtol(line + nlen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

long np_rss_kb(void)
{
	return status_field("VmRSS");
}

long np_peak_rss_kb(void)
{
	return status_field("VmHWM");
}

bool np_heap_measurable(void)
{
	/* Sanitizers and valgrind replace malloc: glibc's counters then say
	 * nothing (and those tools check leaks themselves). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return false;
#else
	const char *pre = getenv("LD_PRELOAD");
	return !(pre && (strstr(pre, "vgpreload") || strstr(pre, "valgrind")));
#endif
}

int64_t np_heap_bytes(void)
{
	if (!np_heap_measurable())
		return -1;
	struct mallinfo2 mi = mallinfo2();
	/* Not the large blocks kept for reuse: a bounded pool, given back
	 * when a loop is quiet (src/memory.c, its own tests). */
	size_t kept;
	ssock__big_kept(&kept);
	return (int64_t)(mi.uordblks + mi.hblkhd) - (int64_t)kept;
}

long np_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			return -1;
	}
	return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

long np_scale(const char *env, long dflt)
{
	const char *v = getenv(env);
	if (!v || !*v)
		return dflt;
	long n = strtol(v, NULL, 10);
	return n > 0 ? n : dflt;
}

int np_thread_count(void)
{
	return (int)status_field("Threads");
}

int64_t np_cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static bool fds_at_most(void *arg)
{
	return np_count_fds() <= *(int *)arg;
}

int np_wait_fds_at_most(int want, int timeout_ms)
{
	/* /proc offers nothing to wait on: look again after each pause. */
	test_wait_until(fds_at_most, &want, timeout_ms);
	return np_count_fds();
}

static bool conns_at_most(void *arg)
{
	struct np_conns_want *w = arg;
	int n = ssock_server_conns(w->srv, NULL, 0);
	return w->at_least ? n >= w->n : n <= w->n;
}

int np_wait_conns(ssock_server *srv, int n, bool at_least, int timeout_ms)
{
	struct np_conns_want w = {srv, n, at_least};
	test_wait_until(conns_at_most, &w, timeout_ms);
	return ssock_server_conns(srv, NULL, 0);
}

/* ------------------------------------------------------- test patterns */

uint64_t np_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

void np_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed ^ ((uint64_t)len << 32) ^ 0x5DEECE66Dull;
	uint8_t *p = buf;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t r = np_rand(&s);
		memcpy(p + i, &r, 8);
	}
	if (i < len) {
		uint64_t r = np_rand(&s);
		memcpy(p + i, &r, len - i);
	}
}

bool np_pattern_ok(const void *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed ^ ((uint64_t)len << 32) ^ 0x5DEECE66Dull;
	const uint8_t *p = buf;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t r = np_rand(&s);
		if (memcmp(p + i, &r, 8) != 0)
			return false;
	}
	if (i < len) {
		uint64_t r = np_rand(&s);
		if (memcmp(p + i, &r, len - i) != 0)
			return false;
	}
	return true;
}

uint64_t np_take_connect(ssock_server *srv)
{
	ssock_event ev;
	if (np_server_wait(srv, SSOCK_EVENT_CONNECT, &ev, TEST_TIMEOUT_MS) != 0)
		return 0;
	uint64_t id = ev.conn;
	ssock_event_release(&ev);
	return id;
}

ssock_loop *np_started_loop(void)
{
	ssock_loop *l = NULL;
	if (ssock_loop_new(&l) != 0)
		return NULL;
	if (ssock_loop_start(l) != 0) {
		ssock_loop_free(l);
		return NULL;
	}
	return l;
}

bool np_joined_within(pthread_t th, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

bool np_silent_dns(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fds[0] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fds[0] >= 0 && fds[1] >= 0 && bind(fds[0], (struct sockaddr *)&a, sizeof a) == 0 &&
	       bind(fds[1], (struct sockaddr *)&a, sizeof a) == 0 && listen(fds[1], 64) == 0;
}
