/* The plain TCP transport: sockets from sock.c, bytes straight to and from
 * the socket, no handshake and nothing held inside. */
#include "conn.h"
#include "sock.h"

#include <sys/syscall.h>
#include <unistd.h>

static int tcp_accept(int lfd, int *fd, ssock_addr *peer)
{
	int rc = ssock__sock_accept(lfd, fd, peer);
	return rc == -EAGAIN ? SSOCK__WANT_READ : rc;
}

static int tcp_connect(const ssock_addr *addr, int *fd)
{
	int rc = ssock__sock_connect(addr, fd);
	return rc == -EINPROGRESS ? SSOCK__WANT_WRITE : rc;
}

static int tcp_connect_result(int fd)
{
	int rc = ssock__sock_connect_result(fd);
	return rc == -EINPROGRESS ? SSOCK__WANT_WRITE : rc;
}

/* One buffer (the common case) goes through read/send, not their vector
 * forms: the kernel's single-buffer path skips importing an iovec array,
 * which is measurable when every message is its own syscall.
 *
 * The calls are made with syscall(), not through libc's read() and send():
 * those are thread cancellation points, which in a process with threads
 * cost two calls into the cancellation machinery around every call (about a
 * hundred instructions per echoed message). A loop must never be cancelled
 * in the middle of a pass anyway (it holds its lock and half-done state),
 * so being a cancellation point only adds a hazard. */
static ssize_t tcp_read(ssock_conn *c, struct iovec *iov, int n)
{
	ssize_t r;
	do
		r = n == 1 ? syscall(SYS_read, c->io.fd, iov[0].iov_base, iov[0].iov_len)
			   : syscall(SYS_readv, c->io.fd, iov, n);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EAGAIN || errno == EWOULDBLOCK ? SSOCK__WANT_READ : ssock__errno();
}

static ssize_t tcp_write(ssock_conn *c, const struct iovec *iov, int n)
{
	/* send/sendmsg rather than write/writev: MSG_NOSIGNAL keeps SIGPIPE
	 * away without touching the process's signal state. */
	ssize_t r;
	do {
		if (n == 1) {
			r = syscall(SYS_sendto, c->io.fd, iov[0].iov_base, iov[0].iov_len,
				    MSG_NOSIGNAL, NULL, 0);
		} else {
			struct msghdr msg = {.msg_iov = (struct iovec *)iov,
					     .msg_iovlen = (size_t)n};
			r = syscall(SYS_sendmsg, c->io.fd, &msg, MSG_NOSIGNAL);
		}
	} while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	return errno == EAGAIN || errno == EWOULDBLOCK ? SSOCK__WANT_WRITE : ssock__errno();
}

static int tcp_shutdown(ssock_conn *c)
{
	return shutdown(c->io.fd, SHUT_WR) == 0 ? 0 : ssock__errno();
}

static void tcp_close(ssock_conn *c)
{
	if (c->io.fd >= 0)
		close(c->io.fd);
	c->io.fd = -1;
}

const ssock__transport ssock__transport_tcp = {
	.name = "tcp",
	.listen = ssock__sock_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.connect_result = tcp_connect_result,
	.setup = ssock__sock_setup,
	.read = tcp_read,
	.write = tcp_write,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
};

static const ssock__transport *default_transport = &ssock__transport_tcp;

const ssock__transport *ssock__transport_default(void)
{
	return default_transport;
}

void ssock__transport_set_default(const ssock__transport *t)
{
	default_transport = t ? t : &ssock__transport_tcp;
}
