/* The poller on epoll (see poller.h): level-triggered, one registration per
 * fd, the io pointer carried in the event. */
#include "poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_BATCH 256

struct ssock__poller {
	int epfd;
	struct epoll_event evs[MAX_BATCH];
};

int ssock__poller_open(ssock__poller **out)
{
	ssock__poller *p = malloc(sizeof *p);
	if (!p)
		return -ENOMEM;
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		int rc = -errno;
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void ssock__poller_close(ssock__poller *p)
{
	if (!p)
		return;
	close(p->epfd);
	free(p);
}

static uint32_t to_epoll(unsigned interest)
{
	return (interest & SSOCK__IN ? EPOLLIN : 0) | (interest & SSOCK__OUT ? EPOLLOUT : 0);
}

int ssock__poller_set(ssock__poller *p, ssock__io *io, unsigned interest)
{
	if (io->interest == interest)
		return 0;
	struct epoll_event ev = {.events = to_epoll(interest), .data.ptr = io};
	int op = io->interest ? (interest ? EPOLL_CTL_MOD : EPOLL_CTL_DEL) : EPOLL_CTL_ADD;
	if (epoll_ctl(p->epfd, op, io->fd, &ev) != 0)
		return errno > 0 ? -errno : -EINVAL;
	io->interest = interest;
	return 0;
}

void ssock__poller_forget(ssock__poller *p, ssock__io *io)
{
	/* Deleted even though close() would drop it: a descriptor shared with
	 * a forked child would otherwise stay registered, with a stale
	 * pointer. */
	if (io->interest)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->interest = 0;
}

int ssock__poller_wait(ssock__poller *p, ssock__ready *out, int max, int timeout_ms)
{
	if (max > MAX_BATCH)
		max = MAX_BATCH;
	int n = epoll_wait(p->epfd, p->evs, max, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint32_t e = p->evs[i].events;
		out[i].io = p->evs[i].data.ptr;
		/* A hang-up or an error is seen by reading; an error alone on a
		 * socket that only writes is seen by writing (SSOCK__ERR). */
		out[i].flags = (e & (EPOLLIN | EPOLLHUP | EPOLLERR) ? SSOCK__IN : 0) |
			       (e & EPOLLOUT ? SSOCK__OUT : 0) | (e & EPOLLERR ? SSOCK__ERR : 0);
	}
	return n;
}
