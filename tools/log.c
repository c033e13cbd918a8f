/*
 * The tool's log of per-peer lines (errors, refusals), written to stderr by
 * a thread of its own so that the thread that queues a line never waits for
 * stderr: a terminal scrolled back, or a pipe nobody reads, must not stop a
 * server from serving everyone else.
 *
 * cli_log() formats the line and queues it, or drops it when the queue is
 * full or the rate is above LOG_RATE lines a second (after a burst of
 * LOG_BURST); dropped lines are counted, and the count is written as one
 * line ("ssock: ... N more lines dropped") once the queue is written, at
 * most every LOG_NOTICE_MS.
 */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_SLOTS     256 /* lines queued at most */
#define LOG_LINE      512 /* bytes per line at most (longer ones are cut) */
#define LOG_BURST     100 /* lines accepted at once... */
#define LOG_RATE      10  /* ...and per second after that */
#define LOG_NOTICE_MS 500 /* drop counts are written at most this often */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake, idle;
	char line[LOG_SLOTS][LOG_LINE];
	unsigned short len[LOG_SLOTS];
	unsigned head, count; /* the queue: `count` lines from `head` */
	unsigned long long dropped;
	double tokens;
	int64_t refill_ms;
	bool started, stopping, writing;
	pthread_t thread;
} lg = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.tokens = LOG_BURST,
};

/* Queues one line; the caller holds lg.mu and has checked there is room. */
static void push(const char *text, size_t n)
{
	unsigned slot = (lg.head + lg.count) % LOG_SLOTS;
	memcpy(lg.line[slot], text, n);
	lg.len[slot] = (unsigned short)n;
	lg.count++;
	pthread_cond_signal(&lg.wake);
}

/* Queues the count of dropped lines if there is any and room for it. */
static void push_drop_notice(void)
{
	if (lg.dropped == 0 || lg.count == LOG_SLOTS)
		return;
	char text[96];
	int n = snprintf(text, sizeof text, "%s: ... %llu more line%s dropped\n", prog, lg.dropped,
			 lg.dropped == 1 ? "" : "s");
	lg.dropped = 0;
	push(text, (size_t)n);
}

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* stderr closed or broken: the line is lost, as it would be */
		p += w;
		n -= (size_t)w;
	}
}

/* Waits on lg.wake until ms (monotonic) at the latest. */
static void wait_until(int64_t ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	pthread_cond_timedwait(&lg.wake, &lg.mu, &t);
}

static void *writer(void *arg)
{
	(void)arg;
	char buf[LOG_LINE];
	int64_t notice_ms = 0; /* when a drop count was last queued */
	pthread_mutex_lock(&lg.mu);
	for (;;) {
		if (lg.count == 0) {
			/* All written: the count of what was dropped meanwhile, at
			 * most every LOG_NOTICE_MS (a flood must not become a flood
			 * of counts), and at once when stopping. */
			int64_t now = cli_now_ms();
			if (lg.dropped > 0 && (lg.stopping || now - notice_ms >= LOG_NOTICE_MS)) {
				push_drop_notice();
				notice_ms = now;
				continue;
			}
			pthread_cond_broadcast(&lg.idle);
			if (lg.stopping)
				break;
			wait_until(lg.dropped ? notice_ms + LOG_NOTICE_MS : now + LOG_NOTICE_MS);
			continue;
		}
		size_t n = lg.len[lg.head];
		memcpy(buf, lg.line[lg.head], n);
		lg.head = (lg.head + 1) % LOG_SLOTS;
		lg.count--;
		lg.writing = true;
		pthread_mutex_unlock(&lg.mu);
		write_all(buf, n); /* may block: only this thread waits */
		pthread_mutex_lock(&lg.mu);
		lg.writing = false;
	}
	pthread_mutex_unlock(&lg.mu);
	return NULL;
}

void cli_log_start(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lg.wake, &ca);
	pthread_cond_init(&lg.idle, &ca);
	pthread_condattr_destroy(&ca);
	lg.refill_ms = cli_now_ms();
	/* The writer takes no signals: SIGINT and SIGTERM are for sigwait(),
	 * and a SIGPIPE for a stderr nobody reads stays pending on it (the
	 * write fails with EPIPE) instead of killing the process. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	lg.started = pthread_create(&lg.thread, NULL, writer, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cli_log(const char *fmt, ...)
{
	char text[LOG_LINE];
	int n = snprintf(text, sizeof text - 1, "%s: ", prog);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(text + n, sizeof text - 1 - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
	if (len > sizeof text - 2)
		len = sizeof text - 2; /* cut */
	while (len > 0 && text[len - 1] == '\n')
		len--;
	text[len++] = '\n';
	if (!lg.started) { /* no thread: the line goes out directly */
		write_all(text, len);
		return;
	}
	pthread_mutex_lock(&lg.mu);
	int64_t now = cli_now_ms();
	lg.tokens += (double)(now - lg.refill_ms) * LOG_RATE / 1000.0;
	if (lg.tokens > LOG_BURST)
		lg.tokens = LOG_BURST;
	lg.refill_ms = now;
	/* One slot stays free for the drop count. */
	if (lg.tokens < 1 || lg.count + 2 > LOG_SLOTS) {
		lg.dropped++;
	} else {
		lg.tokens -= 1;
		push(text, len);
	}
	pthread_mutex_unlock(&lg.mu);
}

void cli_log_stop(int wait_ms)
{
	if (!lg.started)
		return;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += wait_ms / 1000;
	t.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&lg.mu);
	lg.stopping = true;
	pthread_cond_signal(&lg.wake);
	bool drained = true;
	while (lg.count > 0 || lg.writing || lg.dropped > 0)
		if (pthread_cond_timedwait(&lg.idle, &lg.mu, &t) != 0) {
			drained = false;
			break;
		}
	pthread_mutex_unlock(&lg.mu);
	/* A writer stuck on a stderr nobody reads is left behind: the process
	 * is about to exit, and exit must not wait for a reader. */
	if (drained)
		pthread_join(lg.thread, NULL);
	else
		pthread_detach(lg.thread);
	lg.started = false;
}
