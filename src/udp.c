/*
 * UDP: one socket per handle, read on a loop with recvmmsg() in batches,
 * written from any thread with sendto() (no queue: sendto on a UDP socket is
 * thread-safe and the kernel's send buffer is the queue). What a handle
 * shares with TCP servers and clients is ssock__ep: the loop it runs on,
 * the inbox, the error log and error reporting.
 *
 * Inbox backpressure: when the inbox is full the socket is not read (the
 * kernel then drops what overflows its buffer, as UDP does) until the inbox
 * says there is room (on_room(), as for TCP: see inbox.c).
 */
#include "addr.h"
#include "internal.h"
#include "sock.h"

#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UDP_BATCH_MAX        16           /* datagrams per recvmmsg() call */
#define UDP_BATCH_BYTES      (256u << 10) /* receive buffer of one handle */
#define UDP_READS_PER_WAKEUP 64           /* so one busy socket can't starve a shared loop */
#define UDP_MAX_ADDRS        16

struct ssock_udp {
	ssock__ep ep;
	ssock__io io;
	int family;       /* of the socket */
	ssock_addr local; /* bound address */
	ssock_addr peer;  /* connected form: the peer */
	bool connected;
	uint32_t max_message;
	ssock_datagram_cb on_datagram;

	/* Loop only. */
	bool closed;
	int batch; /* slots of max_message bytes in buf */
	uint8_t *buf;
	struct mmsghdr msgs[UDP_BATCH_MAX];
	struct iovec iov[UDP_BATCH_MAX];
	ssock_addr from[UDP_BATCH_MAX];

	bool paused; /* loop only: inbox full, the socket not read */
};

static ssock_udp *udp_of_io(ssock__io *io)
{
	return (ssock_udp *)((char *)io - offsetof(ssock_udp, io));
}

/* ------------------------------------------------------------- receiving */

static void set_reading(ssock_udp *u, bool on)
{
	int rc = ssock__io_set(u->ep.loop, &u->io, on ? SSOCK__IN : 0);
	if (rc != 0)
		ssock__ep_error(&u->ep, rc, "recv", 0, NULL);
}

/* Inbox mode: returns true (reading stopped) while no datagram fits. */
static bool pause_if_full(ssock_udp *u)
{
	if (!ssock__inbox_blocked(&u->ep.inbox))
		return false;
	u->paused = true;
	set_reading(u, false);
	return true;
}

/* The inbox has room again. */
static void on_room(ssock__ep *ep)
{
	ssock_udp *u = (ssock_udp *)((char *)ep - offsetof(ssock_udp, ep));
	if (u->closed || !u->paused)
		return;
	u->paused = false;
	set_reading(u, true);
}

static void deliver(ssock_udp *u, const ssock_addr *from, const uint8_t *data, size_t len,
		    bool truncated)
{
	/* The kernel filters a connected socket; this catches what arrived
	 * between bind() and connect() when both were asked for. */
	if (u->connected && !ssock__same_addr(from, &u->peer))
		return;
	if (truncated || len > u->max_message) {
		ssock__ep_error(&u->ep, SSOCK_EMSGSIZE, "recv", 0, from);
		return;
	}
	if (u->on_datagram) {
		u->on_datagram(u, from, data, len, u->ep.user);
		return;
	}
	ssock_event ev = {.type = SSOCK_EVENT_MESSAGE, .peer = *from, .len = len};
	if (len > 0) {
		ev.data = malloc(len);
		if (!ev.data) {
			ssock__ep_error(&u->ep, SSOCK_ENOMEM, "recv", 0, from);
			return;
		}
		memcpy(ev.data, data, len);
	}
	/* pause_if_full() ran before this datagram was read, so only a
	 * failure to grow the ring can refuse it. */
	if (!ssock__inbox_push(&u->ep.inbox, &ev, false)) {
		free(ev.data);
		ssock__ep_error(&u->ep, SSOCK_ENOMEM, "recv", 0, from);
	}
}

/* Points each recvmmsg() header at its slot of buf, its iovec and its
 * sender address, once. */
static void setup_batch(ssock_udp *u)
{
	for (int i = 0; i < u->batch; i++) {
		u->iov[i].iov_base = u->buf + (size_t)i * u->max_message;
		u->iov[i].iov_len = u->max_message;
		memset(&u->msgs[i], 0, sizeof u->msgs[i]);
		u->msgs[i].msg_hdr.msg_iov = &u->iov[i];
		u->msgs[i].msg_hdr.msg_iovlen = 1;
		u->msgs[i].msg_hdr.msg_name = &u->from[i].u;
	}
}

/* Reads up to n datagrams and delivers them. Returns how many were read (0:
 * none ready, or an error was reported). */
static int read_batch(ssock_udp *u, int n)
{
	/* The headers point at their slots since setup_batch(); a read only
	 * changes the lengths and flags. */
	for (int i = 0; i < n; i++)
		u->msgs[i].msg_hdr.msg_namelen = sizeof u->from[i].u;
	int got;
	/* MSG_TRUNC: msg_len is the datagram's real length, so one larger
	 * than max_message is seen as such and refused. */
	do
		got = recvmmsg(u->io.fd, u->msgs, (unsigned)n, MSG_DONTWAIT | MSG_TRUNC, NULL);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		int err = errno;
		/* A connected socket's pending ICMP error (ECONNREFUSED) is
		 * cleared by this read: reporting it once is right. */
		if (err != EAGAIN && err != EWOULDBLOCK)
			ssock__ep_error(&u->ep, -err, "recv", 0, u->connected ? &u->peer : NULL);
		return 0;
	}
	for (int i = 0; i < got; i++) {
		struct msghdr *h = &u->msgs[i].msg_hdr;
		u->from[i].len = h->msg_namelen;
		deliver(u, &u->from[i], h->msg_iov->iov_base, u->msgs[i].msg_len,
			(h->msg_flags & MSG_TRUNC) != 0);
	}
	return got;
}

static void on_readable(ssock__io *io, uint32_t revents)
{
	(void)revents;
	ssock_udp *u = udp_of_io(io);
	/* Closed in this same pass: the event was fetched before. */
	if (u->closed)
		return;
	int left = UDP_READS_PER_WAKEUP;
	while (left > 0) {
		/* Inbox mode reads one at a time, checking for room before each,
		 * so a datagram is never read that the inbox cannot take. */
		int n = u->ep.inbox_mode ? 1 : (u->batch < left ? u->batch : left);
		if (u->ep.inbox_mode && pause_if_full(u))
			return;
		int got = read_batch(u, n);
		if (got < n)
			return; /* drained (level-triggered: more wakes us again) */
		left -= got;
	}
}

static void attach_cmd(ssock__cmd *cmd)
{
	ssock_udp *u = cmd->arg;
	cmd->result = ssock__io_set(u->ep.loop, &u->io, SSOCK__IN);
}

static void close_cmd(ssock__cmd *cmd)
{
	ssock_udp *u = cmd->arg;
	u->closed = true;
	ssock__io_remove(u->ep.loop, &u->io);
}

/* --------------------------------------------------------------- opening */

/* Creates the socket, binds it to local and/or connects it to peer. */
static int open_one(ssock_udp *u, const ssock_addr *local, const ssock_addr *peer)
{
	int rc = ssock__sock_udp(local, peer, &u->io.fd, &u->local, &u->peer);
	if (rc != 0)
		return rc;
	u->family = local ? local->u.sa.sa_family : peer->u.sa.sa_family;
	u->connected = peer != NULL;
	return 0;
}

static int open_socket(ssock_udp *u, const ssock_udp_opts *o)
{
	ssock_addr peer, local[UDP_MAX_ADDRS];
	/* A name would block a loop on the resolver: not from a loop thread. */
	if (ssock__on_any_loop() && ((o->connect && !ssock__addr_numeric(o->connect)) ||
				     (o->bind && !ssock__addr_numeric(o->bind))))
		return SSOCK_ELOOPTHREAD;
	if (o->connect) {
		int n = ssock_addr_resolve(o->connect, 0, &peer, 1);
		if (n < 0)
			return n;
	}
	if (!o->bind)
		return open_one(u, NULL, &peer);
	int nlocal = ssock_addr_resolve(o->bind, 1, local, UDP_MAX_ADDRS);
	if (nlocal < 0)
		return nlocal;
	int rc = SSOCK_EAFNOSUPPORT; /* no local address of the peer's family */
	for (int i = 0; i < nlocal; i++) {
		if (o->connect && local[i].u.sa.sa_family != peer.u.sa.sa_family)
			continue;
		rc = open_one(u, &local[i], o->connect ? &peer : NULL);
		if (rc == 0)
			break;
	}
	return rc;
}

static void free_udp(ssock_udp *u)
{
	if (u->io.fd >= 0)
		close(u->io.fd);
	if (u->ep.loop)
		ssock__ep_destroy(&u->ep);
	free(u->buf);
	free(u);
}

static int check_opts(const ssock_udp_opts *o)
{
	if (!o || (!o->bind && !o->connect) || o->max_message > SSOCK_UDP_MAX_MESSAGE ||
	    o->error_log_max < 0)
		return SSOCK_EINVAL;
	return 0;
}

int ssock_udp_new(ssock_udp **out, const ssock_udp_opts *opts)
{
	if (!out)
		return SSOCK_EINVAL;
	*out = NULL;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;
	ssock_udp *u = calloc(1, sizeof *u);
	if (!u)
		return SSOCK_ENOMEM;
	u->io.fd = -1;
	u->io.on_io = on_readable;
	u->on_datagram = opts->on_datagram;
	u->max_message = opts->max_message ? opts->max_message : SSOCK_UDP_MAX_MESSAGE;
	u->batch = (int)(UDP_BATCH_BYTES / u->max_message);
	if (u->batch < 1)
		u->batch = 1;
	if (u->batch > UDP_BATCH_MAX)
		u->batch = UDP_BATCH_MAX;
	u->buf = malloc((size_t)u->batch * u->max_message);
	if (u->buf)
		setup_batch(u);
	rc = u->buf ? open_socket(u, opts) : SSOCK_ENOMEM;
	if (rc != 0) {
		free_udp(u);
		return rc;
	}
	rc = ssock__ep_init(&u->ep, opts->loop, opts->on_datagram == NULL, opts->inbox_max, 0,
			    opts->error_log_max, opts->on_error, opts->user);
	if (rc != 0) {
		u->ep.loop = NULL;
		free_udp(u);
		return rc;
	}
	u->ep.on_room = on_room;
	/* Set before the socket is attached: on a shared loop that runs, the
	 * first datagram's callback may come before this returns. */
	*out = u;
	rc = ssock__call(u->ep.loop, attach_cmd, u, 0);
	if (rc == 0 && u->ep.owns_loop)
		rc = ssock_loop_start(u->ep.loop);
	if (rc != 0) {
		*out = NULL;
		ssock__ep_shutdown(&u->ep, close_cmd, u);
		free_udp(u);
		return rc;
	}
	return 0;
}

int ssock_udp_close(ssock_udp *u)
{
	return ssock_udp_free(u);
}

int ssock_udp_free(ssock_udp *u)
{
	if (!u)
		return 0;
	if (ssock__on_any_loop())
		return SSOCK_ELOOPTHREAD;
	ssock__ep_shutdown(&u->ep, close_cmd, u);
	free_udp(u);
	return 0;
}

/* --------------------------------------------------------------- sending */

/* Picks the destination: NULL for the connected peer, else to (an IPv4
 * address mapped to ::ffff:a.b.c.d on an IPv6 socket, in *tmp). */
static int pick_dest(ssock_udp *u, const ssock_addr *to, ssock_addr *tmp, const ssock_addr **dest)
{
	*dest = NULL;
	if (u->connected)
		return !to || ssock__same_addr(to, &u->peer) ? 0 : SSOCK_EINVAL;
	if (!to)
		return SSOCK_EINVAL;
	int fam = to->u.sa.sa_family;
	if (fam == AF_INET && u->family == AF_INET6) {
		memset(tmp, 0, sizeof *tmp);
		tmp->u.in6.sin6_family = AF_INET6;
		tmp->u.in6.sin6_port = to->u.in4.sin_port;
		tmp->u.in6.sin6_addr.s6_addr[10] = 0xff;
		tmp->u.in6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&tmp->u.in6.sin6_addr.s6_addr[12], &to->u.in4.sin_addr, 4);
		tmp->len = sizeof tmp->u.in6;
		*dest = tmp;
		return 0;
	}
	if (fam == AF_INET6 && u->family == AF_INET)
		return SSOCK_EAFNOSUPPORT;
	if (fam != AF_INET && fam != AF_INET6)
		return SSOCK_EINVAL;
	/* The length follows from the family: a hand-built address may
	 * have left `len` unset. */
	*tmp = *to;
	tmp->len = fam == AF_INET ? sizeof tmp->u.in4 : sizeof tmp->u.in6;
	*dest = tmp;
	return 0;
}

static int send_once(ssock_udp *u, const ssock_addr *dest, const void *data, size_t len)
{
	ssize_t n;
	do {
		if (dest)
			n = sendto(u->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT, &dest->u.sa,
				   dest->len);
		else
			n = send(u->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return SSOCK_ESENDQFULL;
	return ssock__errno();
}

/* Waits up to left_ms (-1: no limit) for room in the socket's send buffer. */
static void wait_writable(ssock_udp *u, int left_ms)
{
	struct pollfd p = {.fd = u->io.fd, .events = POLLOUT};
	while (poll(&p, 1, left_ms) < 0 && errno == EINTR) {
	}
}

int ssock_udp_send_to_timeout(ssock_udp *u, const ssock_addr *to, const void *data, size_t len,
			      int timeout_ms)
{
	if (!u || (!data && len > 0))
		return SSOCK_EINVAL;
	if (len > u->max_message)
		return SSOCK_EMSGSIZE;
	ssock_addr tmp;
	const ssock_addr *dest;
	int rc = pick_dest(u, to, &tmp, &dest);
	if (rc != 0)
		return rc;
	bool can_wait = timeout_ms != 0 && !ssock__on_loop(u->ep.loop);
	/* The wait is for the kernel's send buffer, not for the loop: a thread
	 * driving the loop may wait too. */
	int64_t deadline = timeout_ms > 0 ? ssock__now_ms() + timeout_ms : 0;
	for (;;) {
		rc = send_once(u, dest, data, len);
		if (rc != SSOCK_ESENDQFULL || !can_wait)
			return rc;
		int left = -1;
		if (timeout_ms > 0) {
			int64_t d = deadline - ssock__now_ms();
			if (d <= 0)
				return SSOCK_ETIMEDOUT;
			left = (int)d;
		}
		wait_writable(u, left);
	}
}

int ssock_udp_send_to(ssock_udp *u, const ssock_addr *to, const void *data, size_t len)
{
	return ssock_udp_send_to_timeout(u, to, data, len, 0);
}

int ssock_udp_send(ssock_udp *u, const void *data, size_t len)
{
	if (!u)
		return SSOCK_EINVAL;
	if (!u->connected)
		return SSOCK_ENOTCONN;
	return ssock_udp_send_to_timeout(u, NULL, data, len, 0);
}

/* ------------------------------------------------------------- receiving */

int ssock_udp_addr(ssock_udp *u, ssock_addr *out)
{
	if (!u || !out)
		return SSOCK_EINVAL;
	*out = u->local; /* set before the handle was returned; never changes */
	return 0;
}

int ssock_udp_next_event(ssock_udp *u, ssock_event *ev, int timeout_ms)
{
	if (!u)
		return SSOCK_EINVAL;
	return ssock__inbox_next(&u->ep, ev, timeout_ms);
}

int ssock_udp_recv(ssock_udp *u, void **data, size_t *len, ssock_addr *from, int timeout_ms)
{
	if (!u || !data || !len)
		return SSOCK_EINVAL;
	*data = NULL;
	*len = 0;
	ssock_event ev;
	int rc = ssock__inbox_recv(&u->ep, &ev, timeout_ms);
	if (rc != 0)
		return rc;
	if (from)
		*from = ev.peer;
	if (ev.type == SSOCK_EVENT_ERROR)
		return ev.code;
	*data = ev.data;
	*len = ev.len;
	return 0;
}

int ssock_udp_event_fd(ssock_udp *u)
{
	if (!u)
		return SSOCK_EINVAL;
	return ssock__inbox_fd(&u->ep);
}

int ssock_udp_errors(ssock_udp *u, ssock_error_info *out, int max, int clear)
{
	if (!u || max < 0)
		return SSOCK_EINVAL;
	return ssock__errlog_read(&u->ep.errlog, out, max, clear);
}
