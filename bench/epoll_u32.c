/* Reference server (b): the raw epoll echo plus u32 framing, written the way a careful
 * hand-written framed server would be: frames are parsed in place from one shared read
 * buffer (many per read), each message is "sent" by appending a fresh header and a copy of
 * its payload to a shared output buffer, and all replies to one read go out in one send().
 * A connection owns memory only for a frame split across reads or output the kernel
 * refused; while output is pending it is not read, so memory stays bounded.
 *
 * usage: bench_epoll_u32 --listen HOST:PORT     (prints "listening on HOST:PORT")
 */
#define _GNU_SOURCE
#include "common.h"
#include "u32in.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_EVENTS         256
#define READS_PER_WAKEUP   16
#define ACCEPTS_PER_WAKEUP 64

struct conn {
	struct u32_in in;
	uint8_t *pend; /* echo bytes the kernel refused, or NULL */
	size_t pend_len, pend_off;
};

static int ep;
static int listen_fd;
static struct conn **conns; /* indexed by fd */
static size_t conn_slots;
static uint8_t rbuf[BENCH_READ_SIZE];
static struct u32_out out; /* replies to the read being handled */

static void close_conn(int fd)
{
	struct conn *c = conns[fd];

	u32_in_free(&c->in);
	free(c->pend);
	free(c);
	conns[fd] = NULL;
	close(fd);
}

static void set_interest(int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
		bench_die("epoll_ctl(MOD):");
}

/* The echo "handler": sends the message back, which appends a framed copy to out. */
static void deliver(void *ctx, const uint8_t *payload, size_t len)
{
	(void)ctx;
	u32_out_append(&out, payload, len);
}

/* Sends out.buf; keeps what the kernel refused. Returns 0, 1 if output is now pending, -1. */
static int flush_out(int fd, struct conn *c)
{
	int rc = u32_out_send(&out, fd, &c->pend, &c->pend_len);

	if (rc == 1) {
		c->pend_off = 0;
		set_interest(fd, EPOLLOUT);
	}
	return rc;
}

/* Handles one read's worth of bytes. Returns 0, 1 if output is pending, -1 to close. */
static int handle_bytes(int fd, struct conn *c, size_t n)
{
	out.len = 0;
	out.oom = 0;
	if (u32_feed(&c->in, rbuf, n, deliver, NULL) < 0) {
		fprintf(stderr, "bench_epoll_u32: fd %d: frame above %u bytes, closing\n", fd,
			BENCH_MAX_MESSAGE);
		return -1;
	}
	if (out.oom)
		return -1;
	return out.len ? flush_out(fd, c) : 0;
}

static void on_readable(int fd, struct conn *c)
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
		r = handle_bytes(fd, c, (size_t)n);
		if (r < 0)
			close_conn(fd);
		if (r != 0 || (size_t)n < sizeof rbuf)
			return;
	}
}

static void on_writable(int fd, struct conn *c)
{
	ssize_t w = send(fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);

	if (w < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (w < 0) {
		close_conn(fd);
		return;
	}
	c->pend_off += (size_t)w;
	if (c->pend_off < c->pend_len)
		return;
	free(c->pend);
	c->pend = NULL;
	set_interest(fd, EPOLLIN);
}

static void add_conn(int fd)
{
	int one = 1;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

	if ((size_t)fd >= conn_slots || !(conns[fd] = calloc(1, sizeof(struct conn)))) {
		fprintf(stderr, "bench_epoll_u32: no room for fd %d\n", fd);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		bench_die("epoll_ctl(ADD):");
}

static void on_accept(void)
{
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				perror("bench_epoll_u32: accept4");
			return;
		}
		add_conn(fd);
	}
}

static void setup(const struct bench_addr *addr)
{
	conn_slots = bench_fd_slots();
	conns = calloc(conn_slots, sizeof *conns);
	if (!conns)
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
			struct conn *c;

			if (fd == listen_fd) {
				on_accept();
				continue;
			}
			c = conns[fd];
			if (!c)
				continue; /* closed earlier in this batch */
			if (c->pend)
				on_writable(fd, c);
			else
				on_readable(fd, c);
		}
	}
}
