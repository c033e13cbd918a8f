/*
 * Socket set-up in one place, for every family (as Redis's anet.c): creating,
 * binding, listening, accepting and connecting, and the options each family
 * takes. Every socket is non-blocking and close-on-exec. A Unix-domain
 * family would be added here (its path handling, no TCP options) and in
 * addr.c, and nowhere else.
 */
#ifndef SSOCK_SOCK_H
#define SSOCK_SOCK_H

#include "ssock.h"

#include <stdbool.h>

/* A listening stream socket on addr: SO_REUSEADDR; an IPv6 wildcard also
 * serves IPv4. Returns 0 with *fd and the bound address, or -errno. */
int ssock__sock_listen(const ssock_addr *addr, int backlog, int *fd, ssock_addr *bound);

/* Accepts one connection. Returns 0 with *fd and *peer, -EAGAIN when none
 * waits, or -errno. */
int ssock__sock_accept(int lfd, int *fd, ssock_addr *peer);

/* Starts a stream connection. Returns 0 (connected) or -EINPROGRESS with *fd
 * set, or -errno (nothing left open). */
int ssock__sock_connect(const ssock_addr *addr, int *fd);

/* The outcome of a connection in progress: 0 connected, -EINPROGRESS not
 * yet, or its -errno. */
int ssock__sock_connect_result(int fd);

/* Options for a connected stream socket of the family: TCP_NODELAY, and
 * keepalive when keepalive_s > 0 (TCP families only). Returns 0 or -errno. */
int ssock__sock_setup(int fd, int family, int keepalive_s);

/* A UDP socket bound to local and/or connected to peer (either may be
 * NULL, not both): an IPv6 socket also serves IPv4. Returns 0 with *fd, the
 * bound address (and the peer's, when connected), or -errno. */
int ssock__sock_udp(const ssock_addr *local, const ssock_addr *peer, int *fd, ssock_addr *bound,
		    ssock_addr *peer_out);

#endif
