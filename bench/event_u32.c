/* Reference server (d): a u32-framed echo on libevent, in two styles.
 *
 * Default: the style of libevent's best-known high-performance user, memcached: a
 * persistent EV_READ event per connection, reads into one shared buffer, frames decoded in
 * place by the same decoder as the epoll and libuv references, all replies to one read sent
 * with one send(), and only what the kernel refuses kept, with an EV_WRITE event (and no
 * reading) until it is written. This is the libevent a user chasing speed would write.
 *
 * --bufferevent: the high-level API most users start with: a bufferevent per connection,
 * frames peeked with evbuffer_copyout(), made contiguous with evbuffer_pullup(), replies
 * added with bufferevent_write(). libevent 2.1 (Debian 12's) reads at most 4096 bytes per
 * readv() into an evbuffer (evbuffer_set_max_read() only exists from 2.2), and a
 * bufferevent does one such read per loop turn, so this style is far slower on large
 * transfers; it is kept, outside the default table, so that cost can be seen.
 *
 * usage: bench_libevent --listen HOST:PORT [--bufferevent]   (prints "listening on ...")
 */
#include "common.h"
#include "u32in.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* bufferevent writes happen on the next loop turn, so some output always waits after a
 * read; pause reading only well above one read's worth. */
#define OUTPUT_HIGH (4 * BENCH_READ_SIZE)

/* Largest single bufferevent write: a whole 1 MiB message and its header. */
#define MAX_SINGLE_WRITE (2 * 1024 * 1024)

static struct event_base *base;

/* ---- default: raw events, memcached style ---- */

struct conn {
	struct event *ev;
	evutil_socket_t fd;
	struct u32_in in;
	uint8_t *pend; /* reply bytes the kernel refused, or NULL */
	size_t pend_len, pend_off;
};

static uint8_t rbuf[BENCH_READ_SIZE];
static struct u32_out out; /* replies to the read being handled */

static void on_conn_event(evutil_socket_t fd, short what, void *arg);

static void close_conn(struct conn *c)
{
	event_free(c->ev);
	evutil_closesocket(c->fd);
	u32_in_free(&c->in);
	free(c->pend);
	free(c);
}

/* Switches c between reading (EV_READ) and waiting to write (EV_WRITE). */
static int watch(struct conn *c, short what)
{
	event_del(c->ev);
	if (event_assign(c->ev, base, c->fd, what | EV_PERSIST, on_conn_event, c) < 0)
		return -1;
	return event_add(c->ev, NULL);
}

/* The echo "handler": sends the message back, which appends a framed copy to out. */
static void deliver(void *ctx, const uint8_t *payload, size_t len)
{
	(void)ctx;
	u32_out_append(&out, payload, len);
}

/* Sends out.buf; keeps what the kernel refused and waits for EV_WRITE. Returns 0 or -1. */
static int flush_out(struct conn *c)
{
	int rc = u32_out_send(&out, c->fd, &c->pend, &c->pend_len);

	if (rc != 1)
		return rc;
	c->pend_off = 0;
	return watch(c, EV_WRITE);
}

/* One read's worth. Returns 1 to keep reading, 0 to stop for now, -1 to close. */
static int read_once(struct conn *c)
{
	ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	out.len = 0;
	out.oom = 0;
	if (u32_feed(&c->in, rbuf, (size_t)n, deliver, NULL) < 0) {
		fprintf(stderr, "bench_libevent: frame above %u bytes, closing\n",
			BENCH_MAX_MESSAGE);
		return -1;
	}
	if (out.oom || (out.len > 0 && flush_out(c) < 0))
		return -1;
	return !c->pend && (size_t)n == sizeof rbuf;
}

static void on_writable(struct conn *c)
{
	ssize_t w = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);

	if (w < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (w < 0) {
		close_conn(c);
		return;
	}
	c->pend_off += (size_t)w;
	if (c->pend_off < c->pend_len)
		return;
	free(c->pend);
	c->pend = NULL;
	if (watch(c, EV_READ) < 0)
		close_conn(c);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int r = 1;

	(void)fd;
	(void)what;
	if (c->pend) {
		on_writable(c);
		return;
	}
	/* A bounded number of reads per wakeup, like the epoll reference. */
	for (int i = 0; i < 16 && r == 1; i++)
		r = read_once(c);
	if (r < 0)
		close_conn(c);
}

static void start_conn(evutil_socket_t fd)
{
	struct conn *c = calloc(1, sizeof *c);

	if (!c)
		bench_die("out of memory");
	c->fd = fd;
	c->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_conn_event, c);
	if (!c->ev || event_add(c->ev, NULL) < 0)
		bench_die("event_new/event_add failed");
}

/* ---- --bufferevent: the high-level API ---- */

/* Echoes every complete frame in the input. Returns 0, or -1 on an oversized length. */
static int bev_echo_frames(struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[4];
		uint32_t len;
		unsigned char *frame;

		if (avail < 4)
			return 0;
		evbuffer_copyout(in, hdr, 4);
		len = bench_get_be32(hdr);
		if (len > BENCH_MAX_MESSAGE)
			return -1;
		if (avail - 4 < len)
			return 0;
		frame = evbuffer_pullup(in, 4 + (ev_ssize_t)len);
		if (!frame)
			return -1;
		/* The reply is a new message: its own header, then the payload. */
		bufferevent_write(bev, hdr, 4);
		bufferevent_write(bev, frame + 4, len);
		evbuffer_drain(in, 4 + (size_t)len);
	}
}

static void bev_on_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (bev_echo_frames(bev) < 0) {
		fprintf(stderr, "bench_libevent: frame above %u bytes, closing\n",
			BENCH_MAX_MESSAGE);
		bufferevent_free(bev);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(bev)) > OUTPUT_HIGH)
		bufferevent_disable(bev, EV_READ);
}

/* Called when the output has drained to the low watermark (0). */
static void bev_on_write(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (!(bufferevent_get_enabled(bev) & EV_READ))
		bufferevent_enable(bev, EV_READ);
}

static void bev_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void start_bufferevent(evutil_socket_t fd)
{
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

	if (!bev) {
		fprintf(stderr, "bench_libevent: bufferevent_socket_new failed\n");
		evutil_closesocket(fd);
		return;
	}
	/* libevent's defaults are 16 KiB per read and per write; use the others' read size
     * and let a write take everything queued, as the other references do. */
	bufferevent_set_max_single_read(bev, BENCH_READ_SIZE);
	bufferevent_set_max_single_write(bev, MAX_SINGLE_WRITE);
	bufferevent_setcb(bev, bev_on_read, bev_on_write, bev_on_event, NULL);
	bufferevent_enable(bev, EV_READ);
}

/* ---- listener ---- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	int one = 1;

	(void)l;
	(void)sa;
	(void)salen;
	/* Echo replies are small writes; Nagle would hold them back behind delayed ACKs. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (arg)
		start_bufferevent(fd);
	else
		start_conn(fd);
}

int main(int argc, char **argv)
{
	struct bench_addr addr;
	struct evconnlistener *listener;
	int use_bev;

	bench_server_args(argc, argv, "--bufferevent", &use_bev, &addr);
	bench_raise_nofile();
	base = event_base_new();
	if (!base)
		bench_die("event_base_new failed");
	listener = evconnlistener_new_bind(base, on_accept, use_bev ? (void *)base : NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, SOMAXCONN,
					   (struct sockaddr *)&addr.ss, (int)addr.len);
	if (!listener)
		bench_die("listen:");
	bench_print_listening(evconnlistener_get_fd(listener));
	return event_base_dispatch(base) < 0 ? 1 : 0;
}
