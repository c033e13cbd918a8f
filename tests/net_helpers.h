/*
 * Helpers shared by the loopback tests: a raw blocking test peer built on
 * plain sockets (so what ssock sends and accepts is checked against bytes on
 * the wire, not against ssock itself), waits on ssock inboxes that skip the
 * events a test does not care about, a thread-safe collector for callback
 * mode, and readings of the process's own resources (fds, RSS, threads, CPU
 * time) from /proc and getrusage.
 *
 * Every wait here has a deadline; nothing sleeps to wait for something.
 */
#ifndef SSOCK_NET_HELPERS_H
#define SSOCK_NET_HELPERS_H

#include "ssock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ addresses */

/* Returns the port of listener `index` of srv, or -1. */
int np_server_port(ssock_server *srv, int index);

/* Writes "127.0.0.1:PORT" (or "[::1]:PORT" when v6) into buf. */
void np_addr_text(char *buf, size_t size, int port, bool v6);

/* A client for 127.0.0.1:port (or [::1]:port when v6) with opts (NULL:
 * defaults; its connect field is filled in). Returns it, or NULL with the
 * reason printed. */
ssock_client *np_client(ssock_client_opts *opts, int port, bool v6);

/* Starts a server on 127.0.0.1:0 with opts (listen filled in when NULL).
 * Returns the server or NULL; *port gets the bound port. */
ssock_server *np_server(ssock_server_opts *opts, int *port);

/* --------------------------------------------------------- raw test peer */

/* A blocking TCP socket connected to HOST:port (IPv4 loopback, or IPv6
 * loopback when v6), with TCP_NODELAY and 10 s send/receive timeouts.
 * Returns the fd or -1. */
int np_connect(int port, bool v6);

/* As np_connect(), with SO_RCVBUF set to rcvbuf bytes first (0: the
 * default), so that a sender that outruns the reader fills it quickly. */
int np_connect_rcvbuf(int port, bool v6, int rcvbuf);

/* Writes all of buf (blocking). Returns 0 or -1. */
int np_write(int fd, const void *buf, size_t len);

/* Writes buf one byte per send() call. Returns 0 or -1. */
int np_write_bytewise(int fd, const void *buf, size_t len);

/* Writes one u32-framed message (header + payload in one write). */
int np_send_u32(int fd, const void *data, size_t len);

/* Reads exactly len bytes before the deadline (ms from now). Returns 0, -1
 * on error or early EOF, or -2 on timeout. */
int np_read_exact(int fd, void *buf, size_t len, int timeout_ms);

/* Reads one u32-framed message; on 0 *data is malloc'd (caller frees). */
int np_recv_u32(int fd, void **data, size_t *len, int timeout_ms);

/* Reads whatever arrives within timeout_ms (at least one byte, up to size).
 * Returns the count, 0 at EOF, -1 on error, -2 on timeout. */
long np_read_some(int fd, void *buf, size_t size, int timeout_ms);

/* Closes fd with a reset (SO_LINGER 0): the peer sees ECONNRESET, and what
 * fd had queued or not yet read is dropped. */
void np_reset_close(int fd);
/* Waits for the peer's EOF (or a reset), discarding data. Returns 0, or -2
 * on timeout. */
int np_wait_eof(int fd, int timeout_ms);

/* Returns true when nothing (no data, no EOF) is readable for wait_ms. A
 * negative test: used only to show that something does NOT happen. */
bool np_quiet(int fd, int wait_ms);

/* A listening IPv4 socket on 127.0.0.1:0 with the given backlog; *port is
 * its port. Returns the fd or -1. */
int np_listen(int backlog, int *port);

/* ------------------------------------------------------ a loop on demand */

/* A thread of the test's own that drives a loop (ssock_loop_run() in 20 ms
 * slices) until stopped: between a stop and the next start nobody runs the
 * loop, so sends from other threads wait in their posted queues. */
typedef struct np_driver {
	ssock_loop *loop;
	pthread_t th;
	atomic_int stop;
	atomic_int errors; /* ssock_loop_run() calls that failed */
} np_driver;

bool np_drive_start(np_driver *d);
void np_drive_stop(np_driver *d);

/* ------------------------------------------------------------ inbox waits */

/* Takes events from srv's inbox (releasing the ones of other types) until one
 * of `type` arrives. Returns 0 with *ev owned by the caller, or the
 * ssock_server_next_event() error (SSOCK_ETIMEDOUT at the deadline). */
int np_server_wait(ssock_server *srv, ssock_event_type type, ssock_event *ev, int timeout_ms);
/* Waits (TEST_TIMEOUT_MS) for srv's next connect event; its id, or 0. */
uint64_t np_take_connect(ssock_server *srv);
int np_client_wait(ssock_client *cli, ssock_event_type type, ssock_event *ev, int timeout_ms);

/* ------------------------------------------------- callback-mode collector */

/* What callbacks saw, for tests in callback mode. Messages are stored in
 * arrival order (up to NP_MAX_MSGS); counters are always kept. */
#define NP_MAX_MSGS 4096
typedef struct np_collect {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int connects, disconnects, errors, messages;
	uint64_t last_conn;
	int last_reason;
	int last_error;
	char *msg[NP_MAX_MSGS];
	size_t msg_len[NP_MAX_MSGS];
	bool echo; /* on_message answers with ssock_conn_send() */
	int echo_failures;
} np_collect;

void np_collect_init(np_collect *c);
void np_collect_free(np_collect *c);
/* Fills the callbacks of server or client options with the collector's. */
void np_collect_server_opts(np_collect *c, ssock_server_opts *o);
void np_collect_client_opts(np_collect *c, ssock_client_opts *o);
/* Waits until *field (one of the counters above) reaches at least want.
 * Returns true, or false at the deadline. */
bool np_collect_wait(np_collect *c, const int *field, int want, int timeout_ms);

/* ------------------------------------------------------ process resources */

int np_count_fds(void);    /* entries in /proc/self/fd */
long np_rss_kb(void);      /* VmRSS from /proc/self/status */
int np_thread_count(void); /* Threads from /proc/self/status */
long np_peak_rss_kb(void); /* VmHWM: the peak RSS so far */

/* Bytes of heap in use (glibc's mallinfo2: arenas + mmapped blocks, less the
 * large blocks ssock keeps for reuse: src/memory.c), or -1
 * when malloc is not glibc's (sanitizer builds, valgrind): a test asserting
 * memory is back to its baseline uses this, not RSS, which malloc does not
 * always give back. np_heap_measurable() says which. */
int64_t np_heap_bytes(void);
bool np_heap_measurable(void);

/* Raises the soft RLIMIT_NOFILE to the hard limit (tests only: the library
 * never touches rlimits). Returns the new soft limit, or -1. */
long np_raise_nofile(void);

/* A count a test may be told to shrink (valgrind, sanitizers): the value of
 * environment variable env if set to a positive number, else dflt. */
long np_scale(const char *env, long dflt);
/* A loop with its own thread started; NULL on failure. */
ssock_loop *np_started_loop(void);
/* Joins th within ms; false when it is still running (a hang). */
bool np_joined_within(pthread_t th, int ms);
/* A name server on 127.0.0.1:53 (UDP and TCP) that takes every query and
 * answers none (in tests/dns_silent.sh's namespace). False when it cannot
 * be set up here. */
bool np_silent_dns(int fds[2]);
int64_t np_cpu_ms(void); /* user + system CPU time of the process */

/* Waits until np_count_fds() <= want (the loop closes sockets
 * asynchronously). Returns the last count seen. */
int np_wait_fds_at_most(int want, int timeout_ms);

/* Waits until srv lists at least n connections (at_least) or at most n
 * (the loop takes and drops them asynchronously). Returns the last count. */
struct np_conns_want {
	ssock_server *srv;
	int n;
	bool at_least;
};
int np_wait_conns(ssock_server *srv, int n, bool at_least, int timeout_ms);

/* ------------------------------------------------------- test patterns */

/* Fills buf with bytes derived from (seed, len) so a receiver can check a
 * message without a copy of it; np_pattern_ok() checks. */
void np_pattern(void *buf, size_t len, uint64_t seed);
bool np_pattern_ok(const void *buf, size_t len, uint64_t seed);

/* xorshift64*: deterministic random numbers for tests. */
uint64_t np_rand(uint64_t *state);

#endif
