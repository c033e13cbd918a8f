/* The plain TCP transport and socket options. A TLS or Unix-domain transport
 * would be another ssock__transport beside this one. */
#include "internal.h"

#include <netinet/tcp.h>
#include <unistd.h>

/* One buffer (the common case) goes through read()/send(), not their
 * vector forms: the kernel's single-buffer path skips importing an iovec
 * array, which is measurable when every message is its own syscall. */
static ssize_t tcp_readv(ssock_conn *c, struct iovec *iov, int n)
{
	ssize_t r;
	do
		r = n == 1 ? read(c->io.fd, iov[0].iov_base, iov[0].iov_len) : readv(c->io.fd, iov, n);
	while (r < 0 && errno == EINTR);
	return r < 0 ? ssock__errno() : r;
}

static ssize_t tcp_writev(ssock_conn *c, const struct iovec *iov, int n)
{
	/* sendmsg rather than writev: MSG_NOSIGNAL keeps SIGPIPE away without
	 * touching the process's signal state. */
	struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	ssize_t r;
	do
		r = n == 1 ? send(c->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
			   : sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? ssock__errno() : r;
}

static int tcp_shutdown_wr(ssock_conn *c)
{
	return shutdown(c->io.fd, SHUT_WR) == 0 ? 0 : ssock__errno();
}

static void tcp_close(ssock_conn *c)
{
	if (c->io.fd >= 0)
		close(c->io.fd);
	c->io.fd = -1;
}

const ssock__transport ssock__tcp_transport = {
	.readv = tcp_readv,
	.writev = tcp_writev,
	.shutdown_wr = tcp_shutdown_wr,
	.close = tcp_close,
};

int ssock__socket_opts(int fd, int keepalive_s)
{
	int one = 1;
	/* Messages are written whole with one writev: Nagle would only add
	 * latency to the last segment of each. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
		return ssock__errno();
	if (keepalive_s > 0) {
		int intvl = keepalive_s < 10 ? keepalive_s : 10, cnt = 3;
		if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_s, sizeof keepalive_s) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) != 0)
			return ssock__errno();
	}
	return 0;
}
