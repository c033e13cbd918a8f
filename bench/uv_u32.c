/* Reference server (c): a u32-framed echo on libuv, written the way a competent libuv user
 * would: one static read buffer handed out by the alloc callback (safe because the read
 * callback consumes it before the next read), frames decoded in place by the same decoder
 * as the epoll reference, all replies to one read gathered and sent with uv_try_write(),
 * and only the bytes the kernel refused copied into a uv_write request. While a write is
 * queued the connection is not read, so memory stays bounded.
 *
 * usage: bench_libuv --listen HOST:PORT     (prints "listening on HOST:PORT")
 */
#include "common.h"
#include "u32in.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct conn {
	uv_tcp_t tcp; /* first, so the handle pointer is the connection pointer */
	struct u32_in in;
	int reading;
};

struct write_req {
	uv_write_t req;
	uv_buf_t buf;
	char data[];
};

static uv_loop_t *loop;
static char slab[BENCH_READ_SIZE];
static struct u32_out out; /* replies to the read being handled */

static void on_closed(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h;

	u32_in_free(&c->in);
	free(c);
}

static void close_conn(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(slab, sizeof slab);
}

/* The echo "handler": sends the message back, which appends a framed copy to out. */
static void deliver(void *ctx, const uint8_t *payload, size_t len)
{
	(void)ctx;
	u32_out_append(&out, payload, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
	struct conn *c = (struct conn *)req->handle;

	free(req);
	if (status < 0 || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (!c->reading && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
		c->reading = 1;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

/* Sends out.buf now if the kernel takes it; queues the rest. Returns 0 or -1 to close. */
static int send_out(struct conn *c)
{
	uv_stream_t *s = (uv_stream_t *)&c->tcp;
	uv_buf_t b = uv_buf_init((char *)out.buf, (unsigned)out.len);
	struct write_req *wr;
	int r = uv_try_write(s, &b, 1);

	if (r == UV_EAGAIN)
		r = 0; /* kernel full, or earlier writes still queued: keep order */
	if (r < 0)
		return -1;
	if ((size_t)r == out.len)
		return 0;
	wr = malloc(sizeof *wr + out.len - (size_t)r);
	if (!wr)
		return -1;
	memcpy(wr->data, out.buf + r, out.len - (size_t)r);
	wr->buf = uv_buf_init(wr->data, (unsigned)(out.len - (size_t)r));
	if (uv_write(&wr->req, s, &wr->buf, 1, on_written) < 0) {
		free(wr);
		return -1;
	}
	c->reading = 0;
	uv_read_stop(s);
	return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;

	if (nread < 0) {
		if (nread != UV_EOF && nread != UV_ECONNRESET)
			fprintf(stderr, "bench_libuv: read: %s\n", uv_strerror((int)nread));
		close_conn(c);
		return;
	}
	out.len = 0;
	out.oom = 0;
	if (u32_feed(&c->in, (const uint8_t *)buf->base, (size_t)nread, deliver, NULL) < 0) {
		fprintf(stderr, "bench_libuv: frame above %u bytes, closing\n", BENCH_MAX_MESSAGE);
		close_conn(c);
		return;
	}
	if (out.oom || (out.len > 0 && send_out(c) < 0))
		close_conn(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct conn *c;

	if (status < 0) {
		fprintf(stderr, "bench_libuv: accept: %s\n", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c)
		bench_die("out of memory");
	uv_tcp_init(loop, &c->tcp);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		close_conn(c);
		return;
	}
	/* Echo replies are small writes; Nagle would hold them back behind delayed ACKs. */
	uv_tcp_nodelay(&c->tcp, 1);
	c->reading = 1;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
	struct bench_addr addr;
	uv_tcp_t server;
	uv_os_fd_t fd;
	int r;

	bench_server_args(argc, argv, NULL, NULL, &addr);
	bench_raise_nofile();
	loop = uv_default_loop();
	uv_tcp_init(loop, &server);
	r = uv_tcp_bind(&server, (const struct sockaddr *)&addr.ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
	if (r < 0)
		bench_die("listen: %s", uv_strerror(r));
	if (uv_fileno((uv_handle_t *)&server, &fd) < 0)
		bench_die("uv_fileno failed");
	bench_print_listening(fd);
	return uv_run(loop, UV_RUN_DEFAULT);
}
