/*
 * Transports: how a connection's socket is made and how its bytes move.
 * Plain TCP (transport_tcp.c) is one; TLS would be another file filling in
 * the same table (over the same sockets), and the tests bring a third of
 * their own. Everything above a transport (framing, events, queues) is the
 * same for all of them.
 *
 * A transport owns a socket's whole life: listening, accepting and
 * connecting (through sock.c, where every family's options are set), a
 * handshake before the connection counts as connected, reads and writes
 * that may ask for the other direction (SSOCK__WANT_READ from a write,
 * SSOCK__WANT_WRITE from a read, as TLS does) and may hold bytes the socket
 * will not announce again (pending), a shutdown of the write side, and
 * closing. A transport's per-connection state hangs off
 * c->extra->transport_state.
 */
#ifndef SSOCK_TRANSPORT_H
#define SSOCK_TRANSPORT_H

#include "ssock.h"

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

/* I/O results besides bytes (>= 0) and errors (-errno, SSOCK_E*). */
#define SSOCK__WANT_READ  (-40001) /* call again once the socket is readable */
#define SSOCK__WANT_WRITE (-40002) /* call again once the socket is writable */

typedef struct ssock__transport {
	const char *name;

	/* Sockets. Each returns 0 or a negative code. */
	int (*listen)(const ssock_addr *addr, int backlog, int *fd, ssock_addr *bound);
	/* A new connection from listener lfd, or SSOCK__WANT_READ when none
	 * waits. */
	int (*accept)(int lfd, int *fd, ssock_addr *peer);
	/* Starts connecting: 0 (connected) or SSOCK__WANT_WRITE (in
	 * progress) with *fd set, or an error (no fd left open). */
	int (*connect)(const ssock_addr *addr, int *fd);
	/* The outcome of a connect in progress once fd is writable: 0,
	 * SSOCK__WANT_WRITE (not yet), or the error. */
	int (*connect_result)(int fd);
	/* Options for a connected socket of the peer's family (TCP_NODELAY,
	 * keepalive ...). */
	int (*setup)(int fd, int family, int keepalive_s);

	/* The stream over a connected socket (c->io.fd). */

	/* Per-connection state, before the handshake (NULL: none). */
	int (*open)(ssock_conn *c, bool client);
	/* One step of the handshake (NULL: none): 0 when done,
	 * SSOCK__WANT_READ / SSOCK__WANT_WRITE, or an error. */
	int (*handshake)(ssock_conn *c);
	/* Reads into iov (the transport may fill only iov[0]): bytes (0 at
	 * the peer's end of stream), SSOCK__WANT_READ / SSOCK__WANT_WRITE, or
	 * an error. */
	ssize_t (*read)(ssock_conn *c, struct iovec *iov, int n);
	/* Writes from iov: bytes taken (the caller keeps the rest, and calls
	 * again with it first), SSOCK__WANT_WRITE / SSOCK__WANT_READ, or an
	 * error. Never raises SIGPIPE. */
	ssize_t (*write)(ssock_conn *c, const struct iovec *iov, int n);
	/* Whether it holds read bytes the socket will not announce again
	 * (NULL: never). */
	bool (*pending)(const ssock_conn *c);
	/* Ends the write side (the peer reads EOF after what was written). */
	int (*shutdown)(ssock_conn *c);
	/* Frees its state and closes the socket. */
	void (*close)(ssock_conn *c);
} ssock__transport;

extern const ssock__transport ssock__transport_tcp;

/* The transport new servers and clients use: plain TCP, unless a test has
 * put its own in place (before creating any handle). */
const ssock__transport *ssock__transport_default(void);
void ssock__transport_set_default(const ssock__transport *t);

#endif
