/* Helpers shared by the benchmark's reference servers and load generator.
 *
 * Everything here is deliberately plain: the reference servers must cost as little as
 * hand-written code can, so these helpers only run at start-up, never on a hot path.
 */
#ifndef SSOCK_BENCH_COMMON_H
#define SSOCK_BENCH_COMMON_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Largest u32 frame the framed references accept: the same default as ssock (docs/DESIGN.md),
 * so a hostile length is refused before anything is allocated. */
#define BENCH_MAX_MESSAGE (16u * 1024 * 1024)

/* Bytes each reference server asks for per read(); the same for all of them so the
 * comparison measures the event loop and framing, not the read size. */
#define BENCH_READ_SIZE (64 * 1024)

struct bench_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Prints "PROG: message" (and strerror(errno) when the format ends in ':') to stderr
 * and exits 1. Used for start-up failures, where continuing makes no sense. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Sets the name bench_die() prefixes its messages with. */
void bench_set_prog(const char *name);

/* Parses "HOST:PORT", "[IPV6]:PORT" or ":PORT" with numeric hosts (plus "localhost").
 * Returns 0, or -1 when the text is not such an address. */
int bench_parse_addr(const char *text, struct bench_addr *out);

/* Returns 1 when the address is 127.0.0.0/8 or ::1: the benchmark never leaves loopback. */
int bench_is_loopback(const struct bench_addr *a);

/* Formats an address as "HOST:PORT" or "[HOST]:PORT" into buf. */
void bench_format_addr(const struct sockaddr *sa, char *buf, size_t cap);

/* Prints "listening on HOST:PORT" for the bound socket fd and flushes stdout: the same
 * start-up line as `ssock echo`, so the runner treats every server alike. */
void bench_print_listening(int fd);

/* Raises the soft RLIMIT_NOFILE to the hard limit, so the idle row's 10,000 connections fit. */
void bench_raise_nofile(void);

/* Returns a non-blocking TCP socket bound to addr and listening, or dies with a message. */
int bench_listen_tcp(const struct bench_addr *addr);

/* Raises the fd limit (bench_raise_nofile()) and returns how many entries a table indexed
 * by fd needs under it. Dies with a message on failure. */
size_t bench_fd_slots(void);

/* Returns a new epoll set holding a listening socket on addr (stored in *listen_fd, and as
 * its event's data.fd) after printing the "listening on" line. Dies on failure. */
int bench_epoll_listen(const struct bench_addr *addr, int *listen_fd);

/* Returns a UDP socket bound to addr (blocking unless nonblock), or dies with a message. */
int bench_bind_udp(const struct bench_addr *addr, int nonblock);

/* Parses the reference servers' command line, "--listen ADDR [extra flag]", into addr.
 * When extra_flag is not NULL and present, *extra is set to 1. Exits 2 on bad usage. */
void bench_server_args(int argc, char **argv, const char *extra_flag, int *extra,
		       struct bench_addr *addr);

/* Big-endian u32 load and store for frame headers. */
static inline uint32_t bench_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void bench_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
