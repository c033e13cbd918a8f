/*
 * Internal declarations shared by the library's files. Nothing here is API.
 *
 *   poller.h     the poller (poll_epoll.c): readable/writable interest
 *   loop.h       the loop: timers, commands, the id table, shared buffers
 *   endpoint.h   what handles share: inbox, error log, settings
 *   conn.h       connections (conn.c, conn_read.c, conn_write.c)
 *   codec.h      framings as units (codec_*.c)
 *   transport.h  how sockets are made and bytes move (transport_tcp.c)
 *   sock.h       socket set-up for every family (sock.c)
 *
 * Threading model, in one place:
 *   - All loop state (the poller, timers, connections' I/O state) is touched
 *     only by the thread that holds loop->drive_mu: the loop's background
 *     thread while it handles a batch of events, or a thread driving the loop
 *     with ssock_loop_run(), or (for a loop nobody drives) a thread running a
 *     synchronous command itself. ssock__on_loop() tells whether the calling
 *     thread is that thread.
 *   - Other threads reach a loop through loop->mu: the command queue, the
 *     table of connections by id, each connection's posted sends and its
 *     `closing` and `gone` flags. The loop thread takes loop->mu only to
 *     change those, never per message on its own fast path.
 */
#ifndef SSOCK_INTERNAL_H
#define SSOCK_INTERNAL_H

#include "endpoint.h"
#include "loop.h"
#include "ssock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SSOCK__DEFAULT_MAX_MESSAGE          (16u << 20)
#define SSOCK__DEFAULT_READ_SIZE            (64u << 10)
#define SSOCK__DEFAULT_SENDQ                (32u << 20)
#define SSOCK__DEFAULT_INBOX_MAX            1024
#define SSOCK__DEFAULT_INBOX_BYTES          (64u << 20)
#define SSOCK__DEFAULT_ERRLOG               64
#define SSOCK__DEFAULT_CONNECT_TIMEOUT_MS   10000
#define SSOCK__DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define SSOCK__LINGER_MS                    5000 /* bound on a graceful close's flush + drain */
#define SSOCK__ACCEPT_RETRY_MS              100  /* after EMFILE and the like */

int64_t ssock__now_ms(void);
int64_t ssock__wall_ms(void);

/* Sets *ts to now + timeout_ms on CLOCK_MONOTONIC, for timed waits on
 * condition variables created with that clock. */
void ssock__abstime(struct timespec *ts, int timeout_ms);

/* Waits on cv (created with CLOCK_MONOTONIC) until woken, or until deadline
 * when timeout_ms >= 0 (the deadline from ssock__abstime(timeout_ms)).
 * Returns 0, or SSOCK_ETIMEDOUT once the deadline has passed. The one timed
 * wait of the library's blocking calls. */
int ssock__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int timeout_ms,
		     const struct timespec *deadline);

int ssock__errno(void); /* -errno, never 0 */
uint64_t ssock__next_id(void);

#endif
