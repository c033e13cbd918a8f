/* Start-up helpers for the benchmark programs: address parsing, listening sockets, limits. */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *prog = "bench";

void bench_set_prog(const char *name)
{
	const char *slash = strrchr(name, '/');
	prog = slash ? slash + 1 : name;
}

void bench_die(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t n = strlen(fmt);

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	/* A trailing ':' asks for the system's reason, like perror. */
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
	exit(1);
}

/* Splits "HOST:PORT" / "[HOST]:PORT" into host and port; returns 0 or -1. */
static int split_host_port(const char *text, char *host, size_t cap, unsigned *port)
{
	const char *colon;
	size_t hlen;
	char *end;
	unsigned long p;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return -1;
		hlen = (size_t)(close - text - 1);
		text++;
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return -1;
		hlen = (size_t)(colon - text);
	}
	if (hlen >= cap)
		return -1;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p > 65535)
		return -1;
	*port = (unsigned)p;
	return 0;
}

int bench_parse_addr(const char *text, struct bench_addr *out)
{
	char host[64];
	unsigned port;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;

	if (split_host_port(text, host, sizeof host, &port) < 0)
		return -1;
	memset(out, 0, sizeof *out);
	if (host[0] == '\0' || strcmp(host, "localhost") == 0)
		strcpy(host, host[0] ? "127.0.0.1" : "0.0.0.0");
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		out->len = sizeof *in4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		out->len = sizeof *in6;
		return 0;
	}
	return -1;
}

int bench_is_loopback(const struct bench_addr *a)
{
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
		return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return 0;
}

void bench_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
		snprintf(buf, cap, "%s:%u", host, ntohs(in4->sin_port));
	}
}

void bench_print_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char text[INET6_ADDRSTRLEN + 16];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		bench_die("getsockname:");
	bench_format_addr((struct sockaddr *)&ss, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);
}

void bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		bench_die("getrlimit(RLIMIT_NOFILE):");
	if (rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		bench_die("setrlimit(RLIMIT_NOFILE):");
}

size_t bench_fd_slots(void)
{
	struct rlimit rl;

	bench_raise_nofile();
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		bench_die("getrlimit:");
	return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
}

int bench_epoll_listen(const struct bench_addr *addr, int *listen_fd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		bench_die("epoll_create1:");
	*listen_fd = bench_listen_tcp(addr);
	ev.data.fd = *listen_fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, *listen_fd, &ev) < 0)
		bench_die("epoll_ctl(ADD listen):");
	bench_print_listening(*listen_fd);
	return ep;
}

int bench_listen_tcp(const struct bench_addr *addr)
{
	int one = 1;
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		bench_die("socket:");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		bench_die("setsockopt(SO_REUSEADDR):");
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
		bench_die("bind:");
	if (listen(fd, SOMAXCONN) < 0)
		bench_die("listen:");
	return fd;
}

int bench_bind_udp(const struct bench_addr *addr, int nonblock)
{
	int flags = SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
	int fd = socket(addr->ss.ss_family, flags, 0);

	if (fd < 0)
		bench_die("socket:");
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
		bench_die("bind:");
	return fd;
}

static void server_usage(const char *extra_flag)
{
	fprintf(stderr, "usage: %s --listen HOST:PORT%s%s%s\n", prog, extra_flag ? " [" : "",
		extra_flag ? extra_flag : "", extra_flag ? "]" : "");
	exit(2);
}

void bench_server_args(int argc, char **argv, const char *extra_flag, int *extra,
		       struct bench_addr *addr)
{
	const char *listen_text = NULL;

	bench_set_prog(argv[0]);
	if (extra)
		*extra = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen_text = argv[++i];
		else if (extra_flag && strcmp(argv[i], extra_flag) == 0)
			*extra = 1;
		else
			server_usage(extra_flag);
	}
	if (!listen_text)
		server_usage(extra_flag);
	if (bench_parse_addr(listen_text, addr) < 0) {
		fprintf(stderr, "%s: bad listen address '%s'\n", prog, listen_text);
		server_usage(extra_flag);
	}
}
