/*
 * Load and churn (issue 5, part 3), against the fixture of fault.h (an echo
 * server in callback mode, a good peer kept connected throughout, fds and
 * heap measured against a baseline):
 *   - 100,000 connect/send/echo/close cycles from several client threads;
 *   - 10,000 connections open at once, each exchanging messages (the client
 *     side runs in a child process, so each process needs ~10,000 fds);
 * Counts shrink with SSOCK_LOAD_SCALE (a divisor) for slow runs (valgrind).
 * Figures are printed on stderr for docs/RELIABILITY.md.
 */
#define _GNU_SOURCE /* pipe2 */
#include "fault.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

static long scaled(long n)
{
	long d = np_scale("SSOCK_LOAD_SCALE", 1);
	return n / d > 0 ? n / d : 1;
}

/* A TCP socket bound to 127.0.0.<2 + k % 200> (any port), so that 100,000
 * short connections do not run one source address out of ports. */
static int socket_from(unsigned k, bool nonblock)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + k % 200);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int connect_to(int fd, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return connect(fd, (struct sockaddr *)&a, sizeof a);
}

/* ------------------------------------------------------------- churn */

struct churn {
	fx *f;
	long cycles; /* per thread */
	unsigned thread;
	atomic_long *ok;
	atomic_long *failed;
	test_signal *done; /* raised by each thread at its end */
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	for (long i = 0; i < c->cycles; i++) {
		int fd = socket_from((unsigned)(c->thread * 7919 + i), false);
		if (fd < 0 || connect_to(fd, c->f->port) != 0) {
			if (fd >= 0)
				close(fd);
			atomic_fetch_add(c->failed, 1);
			continue;
		}
		char msg[32];
		int n = snprintf(msg, sizeof msg, "t%u c%ld", c->thread, i);
		void *data = NULL;
		size_t len = 0;
		bool good = np_send_u32(fd, msg, (size_t)n) == 0 &&
			    np_recv_u32(fd, &data, &len, T) == 0 && len == (size_t)n &&
			    memcmp(data, msg, len) == 0;
		free(data);
		close(fd);
		atomic_fetch_add(good ? c->ok : c->failed, 1);
	}
	test_signal_raise(c->done, 1);
	return NULL;
}

TEST(load_churn_100k_connect_send_close)
{
	enum { THREADS = 4 };
	long total = scaled(100000);
	CHECK_INT(np_raise_nofile(), >=, 1024);
	fx_warm_arenas(THREADS + 2); /* the clients, the server's loop, this one */
	fx f;
	ssock_server_opts o = {0};
	CHECK(fx_start(&f, &o));
	int d0 = f.disconnects;
	atomic_long ok = 0, failed = 0;
	struct churn c[THREADS];
	pthread_t th[THREADS];
	int64_t t0 = test_now_ms();
	test_signal done;
	test_signal_init(&done);
	for (unsigned i = 0; i < THREADS; i++) {
		c[i] = (struct churn){&f, total / THREADS, i, &ok, &failed, &done};
		CHECK_INT(pthread_create(&th[i], NULL, churn_thread, &c[i]), ==, 0);
	}
	/* meanwhile the good peer is served: an echo every 100 ms until the
	 * churn threads are done */
	int echoes = 0;
	do {
		CHECK(fx_echo(&f, f.good, "during churn"));
		echoes++;
	} while (test_signal_wait(&done, THREADS, 100) == TEST_SIGNAL_TIMEOUT &&
		 test_now_ms() - t0 < 120000);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	int64_t ms = test_now_ms() - t0;
	CHECK_INT(atomic_load(&failed), ==, 0);
	CHECK_INT(atomic_load(&ok), ==, total / THREADS * THREADS);
	/* every cycle was one connection, seen to its clean end */
	int want = d0 + (int)(total / THREADS * THREADS);
	fx_wait_reason(&f, 0, want, T);
	CHECK_INT(fx_count_reason(&f, 0), ==, want);
	long rss = np_rss_kb();
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	fprintf(stderr,
		"churn: %ld cycles in %lld ms (%lld/s), %d good-peer echoes meanwhile; fds %d "
		"(baseline %d); heap %+lld bytes; RSS %ld kB (baseline %ld), peak %ld kB\n",
		atomic_load(&ok), (long long)ms,
		(long long)(atomic_load(&ok) * 1000 / (ms ? ms : 1)), echoes, np_count_fds(),
		f.fds0, (long long)(np_heap_bytes() >= 0 ? np_heap_bytes() - f.heap0 : 0), rss,
		f.rss0, np_peak_rss_kb());
	/* (Under ASan freed memory sits in its quarantine: RSS says nothing
	 * there, and its leak check does the job.) */
	if (np_heap_measurable())
		CHECK_INT(rss - f.rss0, <, 32 * 1024);
	CHECK(fx_finish(&f));
}

/* ------------------------------------------------ 10,000 at once */

enum { MSGS_EACH = 4 };

/* The client side of the 10,000-connection test, in a child process:
 * connects n sockets (at most 512 connecting at a time), reports, waits for
 * "go", sends MSGS_EACH messages on each and checks every echo, reports how
 * many connections got all theirs back, waits for "close", closes all. */
static int many_clients(int port, int n, int rd, int wr)
{
	np_raise_nofile();
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int *fds = calloc((size_t)n, sizeof *fds);
	int *got = calloc((size_t)n, sizeof *got); /* bytes of echo received */
	if (ep < 0 || !fds || !got)
		return 1;
	int next = 0, pending = 0, connected = 0;
	int64_t deadline = test_now_ms() + 60000;
	struct epoll_event evs[256];
	while (connected < n && test_now_ms() < deadline) {
		while (next < n && pending < 512) {
			int fd = socket_from((unsigned)next, true);
			if (fd < 0)
				return 2;
			if (connect_to(fd, port) != 0 && errno != EINPROGRESS)
				return 3;
			fds[next] = fd;
			struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)next};
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
			next++;
			pending++;
		}
		int k = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			int idx = (int)evs[i].data.u32, err = 0;
			socklen_t el = sizeof err;
			getsockopt(fds[idx], SOL_SOCKET, SO_ERROR, &err, &el);
			if (err != 0)
				return 4;
			struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
			epoll_ctl(ep, EPOLL_CTL_MOD, fds[idx], &e);
			pending--;
			connected++;
		}
	}
	char b = 'c';
	if (connected < n || write(wr, &b, 1) != 1 || read(rd, &b, 1) != 1)
		return 5;
	/* Every connection sends its messages in one write. */
	size_t each = 0;
	uint8_t frames[MSGS_EACH * 20];
	for (int i = 0; i < n; i++) {
		each = 0;
		for (int m = 0; m < MSGS_EACH; m++) {
			char p[16];
			int len = snprintf(p, sizeof p, "%06d/%d", i, m);
			uint32_t be = htonl((uint32_t)len);
			memcpy(frames + each, &be, 4);
			memcpy(frames + each + 4, p, (size_t)len);
			each += 4 + (size_t)len;
		}
		if (write(fds[i], frames, each) != (ssize_t)each)
			return 6;
	}
	int complete = 0, bad = 0;
	while (complete + bad < n && test_now_ms() < deadline) {
		int k = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			int idx = (int)evs[i].data.u32;
			uint8_t buf[256];
			ssize_t r = read(fds[idx], buf, sizeof buf);
			if (r <= 0) {
				if (r == 0 || errno != EAGAIN) {
					bad++;
					epoll_ctl(ep, EPOLL_CTL_DEL, fds[idx], NULL);
				}
				continue;
			}
			/* rebuild what this connection sent and compare */
			size_t exp = 0;
			for (int m = 0; m < MSGS_EACH; m++) {
				char p[16];
				int len = snprintf(p, sizeof p, "%06d/%d", idx, m);
				uint32_t be = htonl((uint32_t)len);
				memcpy(frames + exp, &be, 4);
				memcpy(frames + exp + 4, p, (size_t)len);
				exp += 4 + (size_t)len;
			}
			if ((size_t)got[idx] + (size_t)r > exp ||
			    memcmp(frames + got[idx], buf, (size_t)r) != 0) {
				bad++;
				epoll_ctl(ep, EPOLL_CTL_DEL, fds[idx], NULL);
				continue;
			}
			got[idx] += (int)r;
			if ((size_t)got[idx] == exp) {
				complete++;
				epoll_ctl(ep, EPOLL_CTL_DEL, fds[idx], NULL);
			}
		}
	}
	if (write(wr, &complete, sizeof complete) != sizeof complete || read(rd, &b, 1) != 1)
		return 7;
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	free(got);
	return 0;
}

TEST(load_10000_concurrent_connections)
{
	int n = (int)scaled(10000);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)n + 200) {
		fprintf(stderr,
			"SKIP: the hard fd limit (%lu) is below %d: each side of %d "
			"connections needs one fd per connection\n",
			(unsigned long)rl.rlim_max, n + 200, n);
		exit(77);
	}
	CHECK_INT(np_raise_nofile(), >=, n + 200);
	fx f;
	ssock_server_opts o = {.backlog = 4096};
	CHECK(fx_start(&f, &o));
	int to_child[2], from_child[2];
	CHECK_INT(pipe2(to_child, O_CLOEXEC), ==, 0);
	CHECK_INT(pipe2(from_child, O_CLOEXEC), ==, 0);
	int fds_with_pipes = np_count_fds();
	int m0 = fx_messages(&f);
	int64_t t0 = test_now_ms();
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(f.good);
		_exit(many_clients(f.port, n, to_child[0], from_child[1]));
	}
	char b;
	CHECK_INT(read(from_child[0], &b, 1), ==, 1);
	int64_t t_conn = test_now_ms() - t0;
	/* all of them open at once (and the good peer) */
	CHECK_INT(np_wait_conns(f.srv, n + 1, true, T), ==, n + 1);
	int fds_peak = np_count_fds();
	long rss_peak = np_rss_kb();
	int64_t heap_peak = np_heap_bytes();
	CHECK_INT(write(to_child[1], "g", 1), ==, 1);
	int complete = 0;
	CHECK_INT(read(from_child[0], &complete, sizeof complete), ==, sizeof complete);
	int64_t t_xchg = test_now_ms() - t0 - t_conn;
	CHECK_INT(complete, ==, n);
	CHECK_INT(fx_messages(&f) - m0, ==, n * MSGS_EACH);
	CHECK(fx_echo(&f, f.good, "one of 10,001"));
	CHECK_INT(write(to_child[1], "x", 1), ==, 1);
	int status = 0;
	CHECK_INT(waitpid(pid, &status, 0), ==, pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(to_child[0]);
	close(to_child[1]);
	close(from_child[0]);
	close(from_child[1]);
	(void)fds_with_pipes;
	/* The loop keeps its spare send chunks, and the table of connections
	 * by id keeps the size it grew to: both bounded, neither a leak (the
	 * server's close gives them back: fx_finish() checks). */
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK_CHUNKS + 64 * (int64_t)n));
	fprintf(stderr,
		"concurrent: %d connections open at once (connected in %lld ms, %d x %d echoes in "
		"%lld ms); server process at the peak: %d fds, RSS %ld kB (baseline %ld), heap "
		"%+lld bytes (%lld per connection); after: fds %d (baseline %d)\n",
		n, (long long)t_conn, n, MSGS_EACH, (long long)t_xchg, fds_peak, rss_peak, f.rss0,
		(long long)(heap_peak >= 0 ? heap_peak - f.heap0 : 0),
		(long long)(heap_peak >= 0 ? (heap_peak - f.heap0) / n : 0), np_count_fds(),
		f.fds0);
	CHECK(fx_finish(&f));
}
