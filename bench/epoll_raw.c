/* Reference server (a): the floor. A minimal single-threaded epoll byte echo.
 *
 * Whatever arrives is written straight back from one shared read buffer; a connection
 * owns memory only while the kernel refuses part of its echo, and stops being read until
 * that is written, so a slow reader cannot make the server buffer without bound.
 *
 * usage: bench_epoll_raw --listen HOST:PORT     (prints "listening on HOST:PORT")
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_EVENTS         256
#define READS_PER_WAKEUP   16 /* caps one busy peer's share of a wakeup */
#define ACCEPTS_PER_WAKEUP 64

/* Echo bytes the kernel did not take yet; exists only while there are some. */
struct pending {
	size_t len, off;
	uint8_t data[];
};

static int ep;
static int listen_fd;
static struct pending **pend; /* indexed by fd; NULL for nearly every connection */
static size_t pend_slots;
static uint8_t rbuf[BENCH_READ_SIZE];

static void close_conn(int fd)
{
	free(pend[fd]);
	pend[fd] = NULL;
	close(fd); /* also removes fd from the epoll set */
}

static void set_interest(int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
		bench_die("epoll_ctl(MOD):");
}

/* Sends data; keeps what the kernel refused and waits for EPOLLOUT.
 * Returns 0, 1 when the connection now has pending output, or -1 when it died. */
static int echo(int fd, const uint8_t *data, size_t n)
{
	ssize_t w;
	struct pending *p;

	do
		w = send(fd, data, n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno != EAGAIN)
		return -1;
	if (w < 0)
		w = 0;
	if ((size_t)w == n)
		return 0;
	p = malloc(sizeof *p + n - (size_t)w);
	if (!p)
		return -1;
	p->len = n - (size_t)w;
	p->off = 0;
	memcpy(p->data, data + w, p->len);
	pend[fd] = p;
	set_interest(fd, EPOLLOUT);
	return 1;
}

static void on_readable(int fd)
{
	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
		int r;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			close_conn(fd);
			return;
		}
		r = echo(fd, rbuf, (size_t)n);
		if (r < 0)
			close_conn(fd);
		/* A short read means the socket is drained: skip the read that would say EAGAIN. */
		if (r != 0 || (size_t)n < sizeof rbuf)
			return;
	}
}

static void on_writable(int fd)
{
	struct pending *p = pend[fd];
	ssize_t w = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);

	if (w < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (w < 0) {
		close_conn(fd);
		return;
	}
	p->off += (size_t)w;
	if (p->off < p->len)
		return;
	free(p);
	pend[fd] = NULL;
	set_interest(fd, EPOLLIN);
}

static void on_accept(void)
{
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		int one = 1;
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN};

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				perror("bench_epoll_raw: accept4");
			return;
		}
		if ((size_t)fd >= pend_slots) {
			fprintf(stderr, "bench_epoll_raw: fd %d above the fd limit\n", fd);
			close(fd);
			continue;
		}
		/* Echo replies are small writes; Nagle would hold them back behind delayed ACKs. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		ev.data.fd = fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			bench_die("epoll_ctl(ADD):");
	}
}

static void setup(const struct bench_addr *addr)
{
	pend_slots = bench_fd_slots();
	pend = calloc(pend_slots, sizeof *pend);
	if (!pend)
		bench_die("out of memory");
	ep = bench_epoll_listen(addr, &listen_fd);
}

int main(int argc, char **argv)
{
	struct bench_addr addr;
	struct epoll_event evs[MAX_EVENTS];

	bench_server_args(argc, argv, NULL, NULL, &addr);
	setup(&addr);
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			bench_die("epoll_wait:");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == listen_fd)
				on_accept();
			else if (pend[fd])
				on_writable(fd);
			else
				on_readable(fd);
		}
	}
}
