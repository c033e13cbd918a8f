/* loadgen: the benchmark's load generator. One thread and one epoll set drive up to
 * thousands of loopback connections to an echo server, check every echoed byte, and print
 * one "RESULT key=value ..." line after a human-readable summary.
 *
 * Every byte a connection sends is a pure function of (connection seed, stream offset):
 * headers are the fixed u32 length, payloads come from a fixed pseudo-random pattern. So
 * nothing sent is stored: the sender regenerates bytes the kernel refused, and the receiver
 * compares what comes back against the same function, through one shared read buffer. A
 * mismatch, a short or extra echo, an unexpected close or a stall longer than --timeout
 * ends the run with a message on stderr and exit status 1. Every run ends by itself:
 * after --seconds of measurement or --count messages, then a drain bounded by --timeout.
 *
 * usage: loadgen MODE --addr HOST:PORT [options]   (loadgen --help for the list)
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PAT_LEN         65521u /* prime, so the pattern never lines up with a message size */
#define IO_BUF          (256 * 1024)
#define MAX_EVENTS      512
#define MAX_CONNECTING  256 /* connects in flight at once: stays inside any listen backlog */
#define READS_PER_EVENT 16
#define UDP_MAX         65507

enum mode { M_PINGPONG, M_PIPELINE, M_BULK, M_CHURN, M_IDLE, M_UDP };

static const char *const mode_names[] = {"pingpong", "pipeline", "bulk", "churn", "idle", "udp"};

struct opts {
	enum mode mode;
	const char *addr_text;
	struct bench_addr addr;
	long conns, depth, sources;
	long long size, count, pid;
	double seconds, warmup, timeout;
	int raw;
	const char *tag;
};

enum cstate { C_FREE, C_CONNECTING, C_OPEN };

struct conn {
	int fd;
	uint8_t state;
	uint8_t out_armed; /* EPOLLOUT is in the interest set */
	uint32_t seed;     /* where this connection's stream starts in the pattern */
	uint64_t tx_off;   /* wire bytes sent */
	uint64_t tx_end;   /* wire bytes queued: messages queued * wire.msg */
	uint64_t rx_off;   /* wire bytes received and verified */
	uint64_t queued;   /* messages queued (tx_end / wire.msg, kept to avoid dividing) */
	uint64_t echoed;   /* messages received whole */
};

/* A position in a connection's expected byte stream. It advances without dividing: the
 * per-segment divisions were a visible share of the load generator's time, and the load
 * generator must stay cheaper than the servers it measures. */
struct cursor {
	uint64_t in;   /* offset inside the current message, header included */
	uint32_t ppos; /* pattern index of the next payload byte */
};

/* Log-linear latency histogram in nanoseconds: 64 linear buckets per power of two, so
 * every reported percentile is within about 1.6% of the true value. */
#define H_SUB_BITS 6
#define H_SUB      (1u << H_SUB_BITS)
#define H_BUCKETS  ((64 - H_SUB_BITS + 1) * H_SUB)

struct hist {
	uint64_t n[H_BUCKETS];
	uint64_t count, max;
};

static struct opts opt;
static struct {
	uint64_t msg;         /* wire bytes per message */
	unsigned hdr;         /* 4 with u32 framing, 0 with --raw */
	uint8_t hdr_bytes[4]; /* the u32 header every message carries */
} wire;
static uint8_t pat[2 * PAT_LEN]; /* doubled, so any PAT_LEN bytes from any start are contiguous */
static uint8_t rbuf[IO_BUF], tbuf[IO_BUF];
static int ep = -1;
static struct conn *conns;
static uint64_t *stamps; /* queue time of each outstanding message: conns * ring */
static uint64_t ring;    /* stamps per connection: depth rounded up to a power of two */
static struct hist hist;
static struct {
	int measuring, stopping;
	uint64_t t_start, t_end;    /* measured window */
	uint64_t done, bytes;       /* completions and payload bytes while measuring */
	uint64_t queued, completed; /* all messages, for the drain */
	uint64_t loop_now, last_progress;
	uint64_t next_serial; /* churn: connections started */
	long connecting;
	uint64_t srv_cpu0, srv_cpu1, own_cpu0, own_cpu1; /* CPU ns at window start and end */
} st;

/* ---- small utilities ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t sec_to_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

static size_t min_sz(uint64_t a, uint64_t b)
{
	return (size_t)(a < b ? a : b);
}

static unsigned conn_index(const struct conn *c)
{
	return (unsigned)(c - conns);
}

static void progress(void)
{
	st.last_progress = st.loop_now;
}

static void pattern_init(void)
{
	uint64_t x = 0x9E3779B97F4A7C15u;

	for (unsigned i = 0; i < PAT_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pat[i] = (uint8_t)(x >> 56);
	}
	memcpy(pat + PAT_LEN, pat, PAT_LEN);
}

/* Spreads seeds over the pattern so that two connections' streams differ. */
static uint32_t seed_for(uint64_t n)
{
	return (uint32_t)((n * 40503u + 17) % PAT_LEN);
}

/* ---- histogram ---- */

static unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < H_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return (e - H_SUB_BITS + 1) * H_SUB + (unsigned)((v >> (e - H_SUB_BITS)) - H_SUB);
}

/* The middle of bucket i: the value a percentile falling into it reports. */
static uint64_t hist_value(unsigned i)
{
	unsigned b = i / H_SUB, sub = i % H_SUB;

	if (i < H_SUB)
		return i;
	return ((uint64_t)(H_SUB + sub) << (b - 1)) + ((1ull << (b - 1)) >> 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->n[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

/* Returns the q-quantile (0 < q <= 1) in microseconds, or 0 when empty. */
static double hist_quantile_us(const struct hist *h, double q)
{
	double want = q * (double)h->count;
	uint64_t rank = (uint64_t)want, cum = 0;

	if ((double)rank < want)
		rank++;
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < H_BUCKETS && h->count; i++) {
		cum += h->n[i];
		if (cum >= rank) {
			uint64_t v = hist_value(i);
			return (double)(v > h->max ? h->max : v) / 1000.0;
		}
	}
	return 0;
}

/* ---- the expected byte stream ---- */

static struct cursor cursor_at(const struct conn *c, uint64_t off)
{
	uint64_t size = wire.msg - wire.hdr, m = off / wire.msg, in = off - m * wire.msg;
	uint64_t pay = in > wire.hdr ? in - wire.hdr : 0;

	return (struct cursor){in, (uint32_t)((c->seed + m * size + pay) % PAT_LEN)};
}

/* Points *p at the expected bytes at cur, returns how many of them (at most n) are
 * contiguous there (never past the end of a header or a message), and moves cur past them.
 * Payload bytes follow one another through the pattern across messages, so the pattern
 * index only ever moves forward. */
static size_t cursor_next(struct cursor *cur, size_t n, const uint8_t **p)
{
	size_t k;

	if (cur->in < wire.hdr) {
		k = min_sz(wire.hdr - cur->in, n);
		*p = wire.hdr_bytes + cur->in;
	} else {
		k = min_sz(min_sz(wire.msg - cur->in, n), PAT_LEN);
		*p = pat + cur->ppos;
		cur->ppos += (uint32_t)k;
		if (cur->ppos >= PAT_LEN)
			cur->ppos -= PAT_LEN;
	}
	cur->in += k;
	if (cur->in == wire.msg)
		cur->in = 0;
	return k;
}

static void wire_fill(const struct conn *c, uint64_t off, uint8_t *dst, size_t n)
{
	struct cursor cur = cursor_at(c, off);

	while (n > 0) {
		const uint8_t *src;
		size_t k = cursor_next(&cur, n, &src);

		memcpy(dst, src, k);
		dst += k;
		n -= k;
	}
}

static void __attribute__((noreturn))
mismatch(const struct conn *c, uint64_t off, const uint8_t *got, const uint8_t *exp)
{
	uint64_t m = off / wire.msg, in = off - m * wire.msg;
	int in_hdr = in < wire.hdr;

	fprintf(stderr,
		"loadgen: VERIFY FAILED: connection %u, stream byte %llu (message %llu, %s byte "
		"%llu): expected 0x%02x, got 0x%02x\n",
		conn_index(c), (unsigned long long)off, (unsigned long long)m,
		in_hdr ? "header" : "payload", (unsigned long long)(in_hdr ? in : in - wire.hdr),
		*exp, *got);
	exit(1);
}

/* Checks n received bytes that start at the connection's rx_off. */
static void verify(const struct conn *c, const uint8_t *d, size_t n)
{
	uint64_t off = c->rx_off;
	struct cursor cur = cursor_at(c, off);

	while (n > 0) {
		const uint8_t *exp;
		size_t k = cursor_next(&cur, n, &exp);

		if (memcmp(d, exp, k) != 0) {
			size_t i = 0;
			while (d[i] == exp[i])
				i++;
			mismatch(c, off + i, d + i, exp + i);
		}
		d += k;
		off += k;
		n -= k;
	}
}

/* ---- sockets ---- */

static void ep_ctl(int op, struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u64 = conn_index(c)};

	if (epoll_ctl(ep, op, c->fd, &ev) < 0)
		bench_die("epoll_ctl:");
}

/* Source address for churn connection n: rotating over 127.0.0.1.. spreads the closed
 * connections' TIME_WAIT entries over many addresses, so ephemeral ports never run out. */
static void bind_source(int fd, uint64_t n)
{
	struct sockaddr_in src = {.sin_family = AF_INET};
	int one = 1;

	if (opt.addr.ss.ss_family != AF_INET || opt.sources <= 1)
		return;
	src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(n % (uint64_t)opt.sources));
	/* Let connect() pick the port per destination, not bind() per address. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
		bench_die("bind to source 127.0.0.%u:", 1 + (unsigned)(n % (uint64_t)opt.sources));
}

/* Starts a non-blocking TCP connect for c. Returns 1 when already connected, 0 when the
 * connect is in progress (EPOLLOUT will say when it is done). */
static int tcp_start(struct conn *c, uint64_t n)
{
	int one = 1, r;

	c->fd = socket(opt.addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		bench_die("socket:");
	/* Requests are small and must leave at once; Nagle would add delayed-ACK stalls. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (opt.mode == M_CHURN)
		bind_source(c->fd, n);
	r = connect(c->fd, (struct sockaddr *)&opt.addr.ss, opt.addr.len);
	if (r < 0 && errno != EINPROGRESS) {
		if (errno == EADDRNOTAVAIL)
			bench_die("connect: out of local ports (too many connections in "
				  "TIME_WAIT?):");
		bench_die("connect to %s:", opt.addr_text);
	}
	c->tx_off = c->tx_end = c->rx_off = c->queued = c->echoed = 0;
	c->state = r == 0 ? C_OPEN : C_CONNECTING;
	return r == 0;
}

/* Finishes a connect that epoll reported; dies when it failed. */
static void tcp_finish(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		bench_die("getsockopt(SO_ERROR):");
	if (err) {
		errno = err;
		bench_die("connect to %s:", opt.addr_text);
	}
	c->state = C_OPEN;
	st.connecting--;
	progress();
}

/* ---- sending and receiving a stream ---- */

/* Queues one more message on c, stamped with its queue time. */
static void queue_one(struct conn *c, uint64_t now)
{
	stamps[(uint64_t)conn_index(c) * ring + (c->queued & (ring - 1))] = now;
	c->queued++;
	c->tx_end += wire.msg;
	st.queued++;
}

/* Tops c up to depth outstanding messages, unless the run is stopping. */
static void queue_msgs(struct conn *c, uint64_t now)
{
	while (!st.stopping && c->queued - c->echoed < (uint64_t)opt.depth)
		queue_one(c, now);
}

static void set_out(struct conn *c, int want)
{
	if (c->out_armed == want)
		return;
	c->out_armed = (uint8_t)want;
	ep_ctl(EPOLL_CTL_MOD, c, EPOLLIN | (want ? EPOLLOUT : 0));
}

/* Writes everything queued on c that the kernel takes: all of it in one send() when it
 * fits, which is what batches pipelined messages. */
static void flush(struct conn *c)
{
	while (c->tx_off < c->tx_end) {
		size_t len = min_sz(c->tx_end - c->tx_off, sizeof tbuf);
		ssize_t n;

		wire_fill(c, c->tx_off, tbuf, len);
		n = send(c->fd, tbuf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			bench_die("connection %u: send:", conn_index(c));
		c->tx_off += (uint64_t)n;
		progress();
		if ((size_t)n < len)
			break;
	}
	if (opt.mode != M_CHURN) /* churn is edge-triggered with EPOLLOUT always set */
		set_out(c, c->tx_off < c->tx_end);
}

/* CPU time (user + system) used so far by process pid, in ns; 0 when unreadable (the
 * server died: the run fails elsewhere with a better message). Knowing whether the server
 * or the load generator was the busy one is what makes a ratio meaningful. */
static uint64_t proc_cpu_ns(long long pid)
{
	char path[64], buf[1024];
	unsigned long long ut, stm;
	const char *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%lld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields 14 and 15, counted after the ')' that ends the command name. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stm) != 2)
		return 0;
	return (ut + stm) * (1000000000u / (uint64_t)sysconf(_SC_CLK_TCK));
}

static uint64_t own_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stop(uint64_t now)
{
	if (st.stopping)
		return;
	st.stopping = 1;
	if (st.measuring) {
		st.t_end = now;
		st.own_cpu1 = own_cpu_ns();
		st.srv_cpu1 = opt.pid > 0 ? proc_cpu_ns(opt.pid) : 0;
	}
	st.measuring = 0;
}

static void start_measuring(uint64_t now)
{
	memset(&hist, 0, sizeof hist);
	st.done = st.bytes = 0;
	st.t_start = now;
	st.own_cpu0 = own_cpu_ns();
	st.srv_cpu0 = opt.pid > 0 ? proc_cpu_ns(opt.pid) : 0;
	st.measuring = 1;
}

/* Accounts messages [first, last) of c as echoed at time now. */
static void complete(struct conn *c, uint64_t first, uint64_t last, uint64_t now)
{
	const uint64_t *sent = stamps + (uint64_t)conn_index(c) * ring;

	c->echoed = last;
	for (uint64_t m = first; m < last; m++) {
		st.completed++;
		if (!st.measuring)
			continue;
		hist_add(&hist, now - sent[m & (ring - 1)]);
		st.done++;
		st.bytes += wire.msg - wire.hdr;
	}
	if (st.measuring && opt.count > 0 && st.done >= (uint64_t)opt.count)
		stop(now);
}

/* Checks n received bytes of c and accounts the messages they complete.
 * Returns the number of messages completed. */
static uint64_t absorb(struct conn *c, const uint8_t *d, size_t n)
{
	uint64_t before = c->echoed, after;

	if (n > c->tx_off - c->rx_off) {
		fprintf(stderr,
			"loadgen: VERIFY FAILED: connection %u: %zu bytes arrived but only %llu "
			"sent bytes were not yet echoed\n",
			conn_index(c), n, (unsigned long long)(c->tx_off - c->rx_off));
		exit(1);
	}
	verify(c, d, n);
	c->rx_off += n;
	progress();
	after = c->rx_off / wire.msg;
	if (after > before)
		complete(c, before, after, now_ns());
	return after - before;
}

static void __attribute__((noreturn)) peer_closed(const struct conn *c, ssize_t n)
{
	if (n == 0)
		fprintf(stderr,
			"loadgen: FAILED: server closed connection %u after echoing %llu of %llu "
			"bytes\n",
			conn_index(c), (unsigned long long)c->rx_off,
			(unsigned long long)c->tx_off);
	else
		fprintf(stderr, "loadgen: FAILED: connection %u: recv: %s\n", conn_index(c),
			strerror(errno));
	exit(1);
}

/* Reads what c has (a bounded number of reads), verifies it, and tops the pipeline up. */
static void stream_readable(struct conn *c)
{
	for (int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			peer_closed(c, n);
		if (absorb(c, rbuf, (size_t)n) > 0) {
			queue_msgs(c, now_ns());
			flush(c);
		}
		if ((size_t)n < sizeof rbuf)
			return;
	}
}

static void stream_event(struct conn *c, uint32_t events)
{
	if (c->state == C_CONNECTING) {
		tcp_finish(c);
		ep_ctl(EPOLL_CTL_MOD, c, EPOLLIN);
		c->out_armed = 0;
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		stream_readable(c);
	if ((events & EPOLLOUT) && c->out_armed)
		flush(c);
}

/* ---- the event loop ---- */

typedef void (*event_fn)(struct conn *c, uint32_t events);

/* Fails when work is outstanding but nothing moved for --timeout seconds. */
static void watchdog(void)
{
	uint64_t waiting = st.queued - st.completed;

	if (waiting == 0 && st.connecting == 0)
		return;
	if (st.loop_now - st.last_progress < sec_to_ns(opt.timeout))
		return;
	fprintf(stderr,
		"loadgen: FAILED: no progress for %.1f s with %llu messages unanswered and %ld "
		"connects pending (server stuck or dropping data?)\n",
		opt.timeout, (unsigned long long)waiting, st.connecting);
	exit(1);
}

/* One epoll_wait of at most wait_ns, dispatching events to fn. */
static void poll_once(event_fn fn, uint64_t wait_ns)
{
	struct epoll_event evs[MAX_EVENTS];
	int ms = (int)((wait_ns + 999999) / 1000000);
	int n = epoll_wait(ep, evs, MAX_EVENTS, ms > 100 ? 100 : ms);

	if (n < 0 && errno != EINTR)
		bench_die("epoll_wait:");
	st.loop_now = now_ns();
	for (int i = 0; i < n; i++)
		fn(&conns[evs[i].data.u64], evs[i].events);
	watchdog();
}

/* Runs the loop until every queued message has been echoed. */
static void drain(event_fn fn)
{
	while (st.queued != st.completed || st.connecting > 0)
		poll_once(fn, 100000000);
}

/* Opens opt.conns TCP connections, at most MAX_CONNECTING in flight, and waits for all. */
static void connect_all(void)
{
	long next = 0;

	st.loop_now = now_ns();
	progress();
	while (next < opt.conns || st.connecting > 0) {
		for (; next < opt.conns && st.connecting < MAX_CONNECTING; next++) {
			struct conn *c = &conns[next];
			int done = tcp_start(c, (uint64_t)next);

			c->seed = seed_for((uint64_t)next);
			c->out_armed = !done;
			ep_ctl(EPOLL_CTL_ADD, c, done ? EPOLLIN : EPOLLIN | EPOLLOUT);
			if (!done)
				st.connecting++;
		}
		poll_once(stream_event, 100000000);
	}
}

/* ---- modes ---- */

/* pingpong, pipeline, bulk: depth messages outstanding per connection for the duration. */
static void run_stream(void)
{
	uint64_t warm_end, end, now;

	connect_all();
	now = now_ns();
	warm_end = now + sec_to_ns(opt.warmup);
	end = warm_end + sec_to_ns(opt.seconds > 0 ? opt.seconds : 1e6);
	if (opt.warmup <= 0)
		start_measuring(now);
	for (long i = 0; i < opt.conns; i++) {
		queue_msgs(&conns[i], now);
		flush(&conns[i]);
	}
	while (!st.stopping) {
		uint64_t next = st.measuring ? end : warm_end;

		poll_once(stream_event, next > st.loop_now ? next - st.loop_now : 0);
		if (!st.measuring && !st.stopping && st.loop_now >= warm_end)
			start_measuring(st.loop_now);
		if (st.loop_now >= end)
			stop(st.loop_now);
	}
	drain(stream_event);
}

/* Starts churn connection number st.next_serial in slot c, its one message queued. */
static void churn_start(struct conn *c)
{
	uint64_t n = st.next_serial++;
	int done = tcp_start(c, n);

	c->seed = seed_for(n);
	queue_one(c, now_ns());
	ep_ctl(EPOLL_CTL_ADD, c, EPOLLIN | EPOLLOUT | EPOLLET);
	if (done)
		flush(c);
	else
		st.connecting++;
}

/* Reads c until its message is back (then closes it and starts the next) or EAGAIN. */
static void churn_readable(struct conn *c)
{
	while (c->rx_off < c->tx_end) {
		ssize_t n = recv(c->fd, rbuf, min_sz(c->tx_end - c->rx_off, sizeof rbuf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			peer_closed(c, n);
		absorb(c, rbuf, (size_t)n);
	}
	close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
	if (!st.stopping)
		churn_start(c);
}

static void churn_event(struct conn *c, uint32_t events)
{
	if (c->state == C_FREE)
		return; /* a stale event for a connection closed earlier in this batch */
	if (c->state == C_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		tcp_finish(c);
	}
	if (c->tx_off < c->tx_end)
		flush(c);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		churn_readable(c);
}

/* churn: connect, send one message, receive it, close, for the duration; opt.conns at once. */
static void run_churn(void)
{
	uint64_t start = now_ns(), warm_end = start + sec_to_ns(opt.warmup);
	uint64_t end = warm_end + sec_to_ns(opt.seconds > 0 ? opt.seconds : 1e6);

	st.loop_now = start;
	progress();
	if (opt.warmup <= 0)
		start_measuring(start);
	for (long i = 0; i < opt.conns; i++)
		churn_start(&conns[i]);
	while (!st.stopping) {
		uint64_t next = st.measuring ? end : warm_end;

		poll_once(churn_event, next > st.loop_now ? next - st.loop_now : 0);
		if (!st.measuring && !st.stopping && st.loop_now >= warm_end)
			start_measuring(st.loop_now);
		if (st.loop_now >= end)
			stop(st.loop_now);
	}
	drain(churn_event);
}

/* Returns the VmRSS of process pid in kB, or dies: idle's numbers mean nothing without it. */
static long long read_rss_kb(long long pid)
{
	char path[64], line[256];
	long long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%lld/status", pid);
	f = fopen(path, "r");
	if (!f)
		bench_die("open %s:", path);
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
			break;
	fclose(f);
	if (kb < 0)
		bench_die("no VmRSS in %s", path);
	return kb;
}

/* One message echoed on every open connection, all at once. */
static void round_trip_all(void)
{
	uint64_t now = now_ns();

	for (long i = 0; i < opt.conns; i++) {
		queue_one(&conns[i], now);
		flush(&conns[i]);
	}
	drain(stream_event);
}

/* Holds every connection idle for the duration; any event then is a failure. */
static void hold_idle(void)
{
	uint64_t end = now_ns() + sec_to_ns(opt.seconds);
	struct epoll_event ev;

	for (uint64_t now = now_ns(); now < end; now = now_ns()) {
		int ms = (int)((end - now + 999999) / 1000000);
		int n = epoll_wait(ep, &ev, 1, ms);

		if (n < 0 && errno != EINTR)
			bench_die("epoll_wait:");
		if (n > 0) {
			fprintf(stderr,
				"loadgen: FAILED: idle connection %llu got an event (0x%x) while "
				"idle\n",
				(unsigned long long)ev.data.u64, ev.events);
			exit(1);
		}
	}
}

struct idle_result {
	long long rss_before, rss_after;
	double open_s;
};

/* idle: N connections opened, one round trip each, held idle, measured, proven live. */
static void run_idle(struct idle_result *r)
{
	uint64_t t0;

	st.stopping = 1; /* round trips are queued explicitly, never topped up */
	r->rss_before = opt.pid > 0 ? read_rss_kb(opt.pid) : 0;
	t0 = now_ns();
	connect_all();
	round_trip_all(); /* the server has now accepted and served every connection */
	r->open_s = (double)(now_ns() - t0) / 1e9;
	hold_idle();
	r->rss_after = opt.pid > 0 ? read_rss_kb(opt.pid) : 0;
	st.measuring = 1;
	st.t_start = now_ns();
	round_trip_all(); /* proof that every connection is still live */
	st.t_end = now_ns();
}

/* ---- udp ---- */

/* Sends datagram number c->queued on c: the pattern at its position, exactly size bytes. */
static void udp_send(struct conn *c, uint64_t now)
{
	const uint8_t *p = pat + (c->seed + c->queued * (uint64_t)opt.size) % PAT_LEN;

	if (send(c->fd, p, (size_t)opt.size, 0) != (ssize_t)opt.size)
		bench_die("udp socket %u: send:", conn_index(c));
	queue_one(c, now);
}

/* Checks datagram n (of size bytes) received on c against what was sent. */
static void udp_check(struct conn *c, ssize_t n)
{
	const uint8_t *exp = pat + (c->seed + c->echoed * (uint64_t)opt.size) % PAT_LEN;

	if (c->echoed >= c->queued) {
		fprintf(stderr,
			"loadgen: VERIFY FAILED: udp socket %u: unexpected extra datagram\n",
			conn_index(c));
		exit(1);
	}
	if (n != opt.size) {
		fprintf(stderr,
			"loadgen: VERIFY FAILED: udp socket %u, datagram %llu: got %zd bytes, sent "
			"%lld\n",
			conn_index(c), (unsigned long long)c->echoed, n, opt.size);
		exit(1);
	}
	if (memcmp(rbuf, exp, (size_t)n) != 0) {
		fprintf(stderr,
			"loadgen: VERIFY FAILED: udp socket %u, datagram %llu: content differs "
			"from "
			"what was sent (lost, duplicated, reordered or corrupted)\n",
			conn_index(c), (unsigned long long)c->echoed);
		exit(1);
	}
}

static void udp_event(struct conn *c, uint32_t events)
{
	(void)events;
	for (int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
		uint64_t now;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			bench_die("udp socket %u: recv (server gone?):", conn_index(c));
		udp_check(c, n);
		now = now_ns();
		progress();
		complete(c, c->echoed, c->echoed + 1, now);
		if (!st.stopping)
			udp_send(c, now);
	}
}

/* udp: opt.conns connected UDP sockets, one datagram outstanding on each. */
static void run_udp(void)
{
	uint64_t now = now_ns(), warm_end = now + sec_to_ns(opt.warmup);
	uint64_t end = warm_end + sec_to_ns(opt.seconds > 0 ? opt.seconds : 1e6);

	st.loop_now = now;
	progress();
	for (long i = 0; i < opt.conns; i++) {
		struct conn *c = &conns[i];

		c->fd = socket(opt.addr.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&opt.addr.ss, opt.addr.len) < 0)
			bench_die("udp socket to %s:", opt.addr_text);
		c->seed = seed_for((uint64_t)i);
		c->state = C_OPEN;
		ep_ctl(EPOLL_CTL_ADD, c, EPOLLIN);
	}
	if (opt.warmup <= 0)
		start_measuring(now);
	for (long i = 0; i < opt.conns; i++)
		udp_send(&conns[i], now);
	while (!st.stopping) {
		uint64_t next = st.measuring ? end : warm_end;

		poll_once(udp_event, next > st.loop_now ? next - st.loop_now : 0);
		if (!st.measuring && !st.stopping && st.loop_now >= warm_end)
			start_measuring(st.loop_now);
		if (st.loop_now >= end)
			stop(st.loop_now);
	}
	drain(udp_event);
}

/* ---- command line ---- */

static void __attribute__((noreturn)) usage(const char *why)
{
	if (why)
		fprintf(stderr, "loadgen: %s\n", why);
	fprintf(stderr,
		"usage: loadgen MODE --addr HOST:PORT [options]\n"
		"modes: pingpong pipeline bulk churn idle udp\n"
		"  --addr A       echo server to drive; loopback only (127.0.0.0/8, ::1)\n"
		"  --conns N      connections (udp: sockets); default pipeline 10, idle 10000,\n"
		"                 others 1\n"
		"  --size B       message size in bytes (k/m suffixes); default 64, bulk 1m\n"
		"  --depth D      messages outstanding per connection; default pipeline 64,\n"
		"                 bulk 4, others 1 (churn, idle and udp always 1)\n"
		"  --seconds S    measured duration (idle: how long to hold); default 2\n"
		"  --warmup S     unmeasured lead-in before the measured window; default 0.2\n"
		"  --count N      also stop after N measured messages (churn: connections)\n"
		"  --raw          no u32 headers: bare payload bytes, for a plain byte echo\n"
		"  --pid P        server pid: idle reports its VmRSS, other modes its CPU use\n"
		"  --timeout S    fail when nothing moves for S seconds; default 5\n"
		"  --sources N    churn: rotate over N source addresses 127.0.0.x; default 64\n"
		"  --tag T        copied into the result line as tag=T\n");
	exit(2);
}

static long long parse_num(const char *s, const char *what, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1024 * 1024, end++;
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "loadgen: bad %s '%s' (must be %lld..%lld)\n", what, s, lo, hi);
		usage(NULL);
	}
	return v;
}

static double parse_secs(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 86400) {
		fprintf(stderr, "loadgen: bad %s '%s'\n", what, s);
		usage(NULL);
	}
	return v;
}

static void parse_mode(const char *name)
{
	for (unsigned i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
		if (strcmp(name, mode_names[i]) == 0) {
			opt.mode = (enum mode)i;
			return;
		}
	usage("unknown mode");
}

/* Fills in the per-mode defaults of every option left unset (-1). */
static void apply_defaults(void)
{
	if (opt.conns < 0)
		opt.conns = opt.mode == M_PIPELINE ? 10 : opt.mode == M_IDLE ? 10000 : 1;
	if (opt.size < 0)
		opt.size = opt.mode == M_BULK ? 1024 * 1024 : 64;
	if (opt.depth < 0)
		opt.depth = opt.mode == M_PIPELINE ? 64 : opt.mode == M_BULK ? 4 : 1;
	if (opt.mode == M_CHURN || opt.mode == M_IDLE || opt.mode == M_UDP)
		opt.depth = 1;
	if (opt.mode == M_UDP && opt.size > UDP_MAX)
		usage("udp datagrams are at most 65507 bytes");
	if (opt.seconds <= 0 && opt.count <= 0 && opt.mode != M_IDLE)
		usage("a run needs --seconds or --count to end");
	if (!bench_is_loopback(&opt.addr))
		usage("the load generator only drives loopback servers (127.0.0.0/8 or ::1)");
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"addr", 1, 0, 'a'},    {"conns", 1, 0, 'c'},   {"size", 1, 0, 's'},
		{"depth", 1, 0, 'd'},   {"seconds", 1, 0, 't'}, {"warmup", 1, 0, 'w'},
		{"count", 1, 0, 'n'},   {"raw", 0, 0, 'r'},     {"pid", 1, 0, 'p'},
		{"timeout", 1, 0, 'T'}, {"sources", 1, 0, 'S'}, {"tag", 1, 0, 'g'},
		{"help", 0, 0, 'h'},    {0, 0, 0, 0},
	};
	int ch;

	opt = (struct opts){.conns = -1,
			    .size = -1,
			    .depth = -1,
			    .seconds = 2,
			    .warmup = 0.2,
			    .timeout = 5,
			    .sources = 64};
	if (argc < 2 || argv[1][0] == '-')
		usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? NULL : "missing MODE");
	parse_mode(argv[1]);
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			opt.addr_text = optarg;
			break;
		case 'c':
			opt.conns = parse_num(optarg, "--conns", 1, 1000000);
			break;
		case 's':
			opt.size = parse_num(optarg, "--size", 0, BENCH_MAX_MESSAGE);
			break;
		case 'd':
			opt.depth = parse_num(optarg, "--depth", 1, 65536);
			break;
		case 't':
			opt.seconds = parse_secs(optarg, "--seconds");
			break;
		case 'w':
			opt.warmup = parse_secs(optarg, "--warmup");
			break;
		case 'n':
			opt.count = parse_num(optarg, "--count", 1, (long long)1 << 50);
			break;
		case 'r':
			opt.raw = 1;
			break;
		case 'p':
			opt.pid = parse_num(optarg, "--pid", 1, 1 << 30);
			break;
		case 'T':
			opt.timeout = parse_secs(optarg, "--timeout");
			break;
		case 'S':
			opt.sources = parse_num(optarg, "--sources", 1, 65536);
			break;
		case 'g':
			opt.tag = optarg;
			break;
		default:
			usage(NULL);
		}
	}
	if (optind != argc)
		usage("unexpected argument");
	if (!opt.addr_text)
		usage("--addr is required");
	if (bench_parse_addr(opt.addr_text, &opt.addr) < 0)
		usage("bad --addr (HOST:PORT or [IPV6]:PORT, numeric)");
	apply_defaults();
}

/* ---- setup and report ---- */

static void setup(void)
{
	struct rlimit rl;

	if (opt.raw && opt.size == 0 && opt.mode != M_UDP)
		usage("--raw needs --size above 0: an empty raw message has no bytes to echo");
	wire.hdr = opt.raw ? 0 : 4;
	wire.msg = (uint64_t)opt.size + wire.hdr;
	bench_put_be32(wire.hdr_bytes, (uint32_t)opt.size);
	pattern_init();
	bench_raise_nofile();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)opt.conns + 16 > rl.rlim_cur)
		bench_die("%ld connections need more than the fd limit %llu (raise ulimit -n)",
			  opt.conns, (unsigned long long)rl.rlim_cur);
	for (ring = 1; ring < (uint64_t)opt.depth; ring *= 2)
		;
	conns = calloc((size_t)opt.conns, sizeof *conns);
	stamps = calloc((size_t)opt.conns * (size_t)ring, sizeof *stamps);
	if (!conns || !stamps)
		bench_die("out of memory for %ld connections", opt.conns);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench_die("epoll_create1:");
}

static const char *framing_name(void)
{
	return opt.mode == M_UDP ? "udp" : opt.raw ? "raw" : "u32";
}

static double cpu_pct(uint64_t cpu_ns, double secs)
{
	return secs > 0 ? (double)cpu_ns / 1e9 / secs * 100 : 0;
}

/* Server CPU per echoed message: stable even when the machine is noisy. */
static double srv_ns_per_msg(void)
{
	return st.done ? (double)(st.srv_cpu1 - st.srv_cpu0) / (double)st.done : 0;
}

static void report(const struct idle_result *idle)
{
	double secs = (double)(st.t_end - st.t_start) / 1e9;
	double rate = secs > 0 ? (double)st.done / secs : 0;
	double mbps = secs > 0 ? (double)st.bytes / secs / 1e6 : 0;
	double p50 = hist_quantile_us(&hist, 0.50), p99 = hist_quantile_us(&hist, 0.99);
	double p999 = hist_quantile_us(&hist, 0.999), max = (double)hist.max / 1000.0;
	const char *unit = opt.mode == M_CHURN ? "connections" : "messages";

	printf("%s %s: %ld %s x %lld B, depth %ld, %.2f s: %llu %s, %.0f/s, %.1f MB/s echoed\n",
	       mode_names[opt.mode], opt.addr_text, opt.conns,
	       opt.mode == M_UDP ? "sockets" : "connections", opt.size, opt.depth, secs,
	       (unsigned long long)st.done, unit, rate, mbps);
	printf("  %s p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us; every byte verified\n",
	       opt.mode == M_CHURN ? "connect-to-echo" : "round trip", p50, p99, p999, max);
	if (!idle && opt.pid > 0 && st.srv_cpu1 >= st.srv_cpu0 && st.srv_cpu1 > 0)
		printf("  server CPU %.0f%% (%.0f ns per %s), load generator CPU %.0f%%\n",
		       cpu_pct(st.srv_cpu1 - st.srv_cpu0, secs), srv_ns_per_msg(),
		       opt.mode == M_CHURN ? "connection" : "message",
		       cpu_pct(st.own_cpu1 - st.own_cpu0, secs));
	if (idle && opt.pid > 0)
		printf("  server VmRSS %lld kB before, %lld kB with %ld idle connections: %.0f B "
		       "per "
		       "connection (opened and served in %.2f s)\n",
		       idle->rss_before, idle->rss_after, opt.conns,
		       (double)(idle->rss_after - idle->rss_before) * 1024 / (double)opt.conns,
		       idle->open_s);
	printf("RESULT mode=%s framing=%s addr=%s conns=%ld size=%lld depth=%ld seconds=%.3f "
	       "msgs=%llu msgs_per_s=%.1f mb_per_s=%.3f p50_us=%.2f p99_us=%.2f p999_us=%.2f "
	       "max_us=%.2f",
	       mode_names[opt.mode], framing_name(), opt.addr_text, opt.conns, opt.size, opt.depth,
	       secs, (unsigned long long)st.done, rate, mbps, p50, p99, p999, max);
	if (opt.mode == M_CHURN)
		printf(" conns_per_s=%.1f", rate);
	if (!idle) {
		printf(" loadgen_cpu_pct=%.1f", cpu_pct(st.own_cpu1 - st.own_cpu0, secs));
		if (opt.pid > 0 && st.srv_cpu1 >= st.srv_cpu0 && st.srv_cpu1 > 0)
			printf(" server_cpu_pct=%.1f server_ns_per_msg=%.0f",
			       cpu_pct(st.srv_cpu1 - st.srv_cpu0, secs), srv_ns_per_msg());
	}
	if (idle && opt.pid > 0)
		printf(" rss_before_kb=%lld rss_after_kb=%lld bytes_per_conn=%.1f open_s=%.3f",
		       idle->rss_before, idle->rss_after,
		       (double)(idle->rss_after - idle->rss_before) * 1024 / (double)opt.conns,
		       idle->open_s);
	if (opt.tag)
		printf(" tag=%s", opt.tag);
	printf(" status=ok\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct idle_result idle = {0};

	bench_set_prog("loadgen");
	parse_args(argc, argv);
	setup();
	switch (opt.mode) {
	case M_PINGPONG:
	case M_PIPELINE:
	case M_BULK:
		run_stream();
		break;
	case M_CHURN:
		run_churn();
		break;
	case M_IDLE:
		run_idle(&idle);
		break;
	case M_UDP:
		run_udp();
		break;
	}
	report(opt.mode == M_IDLE ? &idle : NULL);
	return 0;
}
