/*
 * A second transport, to prove the interface (src/transport.h) carries
 * everything a transport like TLS needs. The whole test suites of the
 * server, the client, the framings and the regressions run over it
 * (tests/CMakeLists.txt registers them again as "transport.*", with
 * SSOCK_TEST_TRANSPORT=test, which test_main.c reads).
 *
 * On the wire it is plain TCP, so the tests' raw peers still speak to it;
 * inside it behaves like a TLS stack:
 *   - a handshake of a few steps, each asking to wait for writability,
 *     before the connection counts as connected;
 *   - reads take everything the socket has into a buffer of its own and
 *     hand it out a few bytes at a time, so the connection code must read
 *     again without a readiness event (pending) and frames arrive in
 *     pieces of every size;
 *   - writes take only part of what they are given, and now and then
 *     nothing at all (SSOCK__WANT_WRITE on a writable socket);
 *   - now and then a read asks for writability first (SSOCK__WANT_WRITE,
 *     as TLS does during a renegotiation). (A write never asks for
 *     readability here: against a quiet raw peer it would wait forever,
 *     where TLS would have the peer's record on its way.)
 */
#include "transport_test.h"
#include "conn.h"
#include "sock.h"

#include <sys/syscall.h>
#include <unistd.h>

#define HOLD_MAX        (64u << 10)
#define HANDSHAKE_STEPS 3

typedef struct held {
	uint8_t buf[HOLD_MAX];
	size_t off, len;
	int steps;    /* handshake steps taken */
	uint32_t rng; /* slice sizes and refusals, per connection */
	bool eof;     /* the socket said end of stream */
	bool want_write_once;
} held;

static uint32_t next(held *h)
{
	h->rng ^= h->rng << 13;
	h->rng ^= h->rng >> 17;
	h->rng ^= h->rng << 5;
	return h->rng;
}

static held *held_of(const ssock_conn *c)
{
	return c->extra ? c->extra->transport_state : NULL;
}

static int t_accept(int lfd, int *fd, ssock_addr *peer)
{
	int rc = ssock__sock_accept(lfd, fd, peer);
	return rc == -EAGAIN ? SSOCK__WANT_READ : rc;
}

static int t_connect(const ssock_addr *addr, int *fd)
{
	int rc = ssock__sock_connect(addr, fd);
	return rc == -EINPROGRESS ? SSOCK__WANT_WRITE : rc;
}

static int t_connect_result(int fd)
{
	int rc = ssock__sock_connect_result(fd);
	return rc == -EINPROGRESS ? SSOCK__WANT_WRITE : rc;
}

static int t_open(ssock_conn *c, bool client)
{
	ssock__conn_extra *x = ssock__conn_extra_get(c, "open");
	if (!x)
		return SSOCK_ENOMEM;
	held *h = malloc(sizeof *h);
	if (!h)
		return SSOCK_ENOMEM;
	h->off = h->len = 0;
	h->steps = 0;
	h->rng = (uint32_t)(c->id * 2654435761u) | 1u;
	h->eof = false;
	h->want_write_once = false;
	(void)client;
	x->transport_state = h;
	return 0;
}

static int t_handshake(ssock_conn *c)
{
	held *h = held_of(c);
	return ++h->steps < HANDSHAKE_STEPS ? SSOCK__WANT_WRITE : 0;
}

static ssize_t t_read(ssock_conn *c, struct iovec *iov, int n)
{
	(void)n; /* like TLS: only the first buffer */
	held *h = held_of(c);
	if (h->off == h->len && !h->eof) {
		/* Now and then, as TLS may, ask for writability before reading. */
		if ((next(h) & 15) == 0 && !h->want_write_once) {
			h->want_write_once = true;
			return SSOCK__WANT_WRITE;
		}
		h->want_write_once = false;
		ssize_t r;
		do
			r = syscall(SYS_read, c->io.fd, h->buf, sizeof h->buf);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return errno == EAGAIN ? SSOCK__WANT_READ : -errno;
		if (r == 0)
			h->eof = true;
		h->off = 0;
		h->len = (size_t)r;
	}
	if (h->off == h->len)
		return 0; /* end of stream, once everything held was handed out */
	size_t slice = 1 + next(h) % 1500;
	if (slice > h->len - h->off)
		slice = h->len - h->off;
	if (slice > iov[0].iov_len)
		slice = iov[0].iov_len;
	memcpy(iov[0].iov_base, h->buf + h->off, slice);
	h->off += slice;
	return (ssize_t)slice;
}

static ssize_t t_write(ssock_conn *c, const struct iovec *iov, int n)
{
	held *h = held_of(c);
	if ((next(h) & 7) == 0)
		return SSOCK__WANT_WRITE; /* took nothing this time */
	size_t limit = 1 + next(h) % 65536, total = 0;
	struct iovec part[64];
	int k = 0;
	for (int i = 0; i < n && k < 64 && total < limit; i++, k++) {
		part[k] = iov[i];
		if (part[k].iov_len > limit - total)
			part[k].iov_len = limit - total;
		total += part[k].iov_len;
	}
	struct msghdr msg = {.msg_iov = part, .msg_iovlen = (size_t)k};
	ssize_t r;
	do
		r = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN ? SSOCK__WANT_WRITE : -errno;
	return r;
}

static bool t_pending(const ssock_conn *c)
{
	const held *h = held_of(c);
	return h && h->off < h->len;
}

static int t_shutdown(ssock_conn *c)
{
	return shutdown(c->io.fd, SHUT_WR) == 0 ? 0 : -errno;
}

static void t_close(ssock_conn *c)
{
	if (c->extra) {
		free(c->extra->transport_state);
		c->extra->transport_state = NULL;
	}
	if (c->io.fd >= 0)
		close(c->io.fd);
	c->io.fd = -1;
}

const ssock__transport test_transport = {
	.name = "test",
	.listen = ssock__sock_listen,
	.accept = t_accept,
	.connect = t_connect,
	.connect_result = t_connect_result,
	.setup = ssock__sock_setup,
	.open = t_open,
	.handshake = t_handshake,
	.read = t_read,
	.write = t_write,
	.pending = t_pending,
	.shutdown = t_shutdown,
	.close = t_close,
};
