/*
 * The poller: how a loop waits for its file descriptors. poll_epoll.c is the
 * one implementation and the only file that knows epoll; a second one (an
 * io_uring poller) would be another file with these five functions, chosen
 * at loop creation. The rest of the library speaks interest: readable,
 * writable.
 */
#ifndef SSOCK_POLLER_H
#define SSOCK_POLLER_H

#include <stdint.h>

/* Interest, and readiness as the poller reports it. */
enum {
	SSOCK__IN = 1u,  /* readable (or the peer hung up: a read says so) */
	SSOCK__OUT = 2u, /* writable */
	SSOCK__ERR = 4u, /* reported only: an error is pending on the socket */
};

typedef struct ssock__io ssock__io;
typedef void (*ssock__io_fn)(ssock__io *io, unsigned ready);

/* Anything a loop waits on: a listener, a connection, a connect in
 * progress, a UDP socket, the wakeup fd. */
struct ssock__io {
	int fd;
	unsigned interest; /* what the poller has for fd; 0: not registered */
	ssock__io_fn on_io;
};

typedef struct ssock__poller ssock__poller;

/* One readiness report. */
typedef struct ssock__ready {
	ssock__io *io;
	unsigned flags; /* SSOCK__IN | SSOCK__OUT | SSOCK__ERR */
} ssock__ready;

/* Creates a poller. Returns 0 or -errno. */
int ssock__poller_open(ssock__poller **out);
void ssock__poller_close(ssock__poller *p);

/* Sets what io->fd is watched for (0: nothing, the fd is taken off). Returns
 * 0 or -errno; io->interest is what the poller has after the call. */
int ssock__poller_set(ssock__poller *p, ssock__io *io, unsigned interest);

/* Takes io->fd off the poller, if it is on; call before closing the fd. */
void ssock__poller_forget(ssock__poller *p, ssock__io *io);

/* Waits up to timeout_ms (-1: no limit) and fills out[0..max) with what is
 * ready. Returns the count (0 at the timeout or on a signal) or -errno. */
int ssock__poller_wait(ssock__poller *p, ssock__ready *out, int max, int timeout_ms);

#endif
