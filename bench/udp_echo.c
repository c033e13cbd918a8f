/* Reference server (e): a plain UDP echo. By default a blocking recvfrom()/sendto() loop,
 * the least work a datagram echo can do; with --epoll the same on a non-blocking socket
 * driven by epoll, the floor for an event-loop server, shown beside it for context.
 *
 * usage: bench_udp --listen HOST:PORT [--epoll]     (prints "listening on HOST:PORT")
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DATAGRAMS_PER_WAKEUP 64

static uint8_t buf[65536];

/* Receives and echoes one datagram. Returns 1 when one was echoed, 0 when none was ready. */
static int echo_one(int fd)
{
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		/* An ICMP error from an earlier reply's peer; the socket itself is fine. */
		if (errno == ECONNREFUSED)
			return 1;
		bench_die("recvfrom:");
	}
	/* A send failure loses one reply, as UDP may; the echo carries on. */
	if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen) < 0 &&
	    errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR)
		perror("bench_udp: sendto");
	return 1;
}

static void run_blocking(int fd)
{
	for (;;)
		echo_one(fd);
}

static void run_epoll(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		bench_die("epoll:");
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1);

		if (n < 0 && errno != EINTR)
			bench_die("epoll_wait:");
		for (int i = 0; n > 0 && i < DATAGRAMS_PER_WAKEUP; i++)
			if (!echo_one(fd))
				break;
	}
}

int main(int argc, char **argv)
{
	struct bench_addr addr;
	int use_epoll, fd;

	bench_server_args(argc, argv, "--epoll", &use_epoll, &addr);
	bench_raise_nofile();
	fd = bench_bind_udp(&addr, use_epoll);
	bench_print_listening(fd);
	if (use_epoll)
		run_epoll(fd);
	else
		run_blocking(fd);
	return 0;
}
