/* Socket set-up for every family (see sock.h). */
#include "sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int neg_errno(void)
{
	return errno > 0 ? -errno : -EINVAL;
}

static bool is_tcp_family(int family)
{
	return family == AF_INET || family == AF_INET6;
}

/* An IPv6 wildcard serves IPv4 too, so ":PORT" is one dual-stack socket. */
static void dual_stack(int fd, int family)
{
	int zero = 0;
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
}

static int local_addr(int fd, ssock_addr *out)
{
	out->len = sizeof out->u;
	return getsockname(fd, &out->u.sa, &out->len) == 0 ? 0 : neg_errno();
}

int ssock__sock_listen(const ssock_addr *a, int backlog, int *fdp, ssock_addr *bound)
{
	int family = a->u.sa.sa_family;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	dual_stack(fd, family);
	int rc = 0;
	if (bind(fd, &a->u.sa, a->len) != 0 || listen(fd, backlog) != 0)
		rc = neg_errno();
	if (rc == 0)
		rc = local_addr(fd, bound);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}

int ssock__sock_accept(int lfd, int *fdp, ssock_addr *peer)
{
	peer->len = sizeof peer->u;
	int fd = accept4(lfd, &peer->u.sa, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : neg_errno();
	*fdp = fd;
	return 0;
}

int ssock__sock_connect(const ssock_addr *a, int *fdp)
{
	int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	int rc = connect(fd, &a->u.sa, a->len) == 0 ? 0 : neg_errno();
	if (rc != 0 && rc != -EINPROGRESS) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return rc;
}

int ssock__sock_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return neg_errno();
	if (err != 0)
		return -err;
	/* No error yet: connected only if there is a peer. */
	ssock_addr peer;
	peer.len = sizeof peer.u;
	return getpeername(fd, &peer.u.sa, &peer.len) == 0 ? 0 : -EINPROGRESS;
}

int ssock__sock_setup(int fd, int family, int keepalive_s)
{
	if (!is_tcp_family(family))
		return 0;
	int one = 1;
	/* Messages are written whole with one writev: Nagle would only add
	 * latency to the last segment of each. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
		return neg_errno();
	if (keepalive_s > 0) {
		int intvl = keepalive_s < 10 ? keepalive_s : 10, cnt = 3;
		if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_s, sizeof keepalive_s) !=
			    0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) != 0 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) != 0)
			return neg_errno();
	}
	return 0;
}

int ssock__sock_udp(const ssock_addr *local, const ssock_addr *peer, int *fdp, ssock_addr *bound,
		    ssock_addr *peer_out)
{
	int family = local ? local->u.sa.sa_family : peer->u.sa.sa_family;
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	/* No SO_REUSEADDR: on UDP it would let two sockets share a port. */
	dual_stack(fd, family);
	int rc = 0;
	if (local && bind(fd, &local->u.sa, local->len) != 0)
		rc = neg_errno();
	if (rc == 0 && peer && connect(fd, &peer->u.sa, peer->len) != 0)
		rc = neg_errno();
	if (rc == 0)
		rc = local_addr(fd, bound);
	if (rc == 0 && peer) {
		peer_out->len = sizeof peer_out->u;
		if (getpeername(fd, &peer_out->u.sa, &peer_out->len) != 0)
			rc = neg_errno();
	}
	if (rc != 0) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}
