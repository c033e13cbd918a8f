/* The TCP client's state, shared by client.c (connecting, reconnecting,
 * its life) and client_io.c (sending, receiving, the blocking calls). */
#ifndef SSOCK_CLIENT_H
#define SSOCK_CLIENT_H

#include "conn.h"
#include "resolve.h"

struct ssock_client {
	ssock__stream_ep ep;
	char *target;
	int connect_timeout_ms;
	bool auto_reconnect, queue_offline;
	int backoff_min, backoff_max, max_tries;

	/* Loop only. */
	ssock__io cio;             /* the socket being connected; fd -1: none */
	ssock__resolve *resolving; /* the name being looked up */
	ssock_addr addrs[SSOCK__RESOLVE_MAX];
	int naddrs, next_addr;
	int last_attempt_rc;
	bool last_reported; /* the last failure's error went out already */
	uint64_t hs_id;     /* the connection in its handshake, if any */
	bool hs_aborted;    /* it ended before its handshake was done */
	int hs_reason;      /* and why */
	ssock__timer timer; /* resolving, connect timeout, or backoff */
	bool in_backoff;
	bool attempt_waits; /* an automatic reconnect waits for inbox room */
	int fails;          /* failed attempts in a row */
	uint64_t rng;
	bool closed;

	/* Under loop->mu. */
	ssock_client_state state;
	uint64_t cur_id;
	uint64_t connects; /* connections made so far */
	bool want;         /* the program wants to be connected */
	int last_error;
	uint64_t last_id;   /* the latest connection opened (0: none) */
	uint64_t gone_id;   /* the last connection that ended ... */
	size_t gone_unsent; /* ... and the bytes it never wrote */
	ssock__chunk *off_head, *off_tail;
	size_t off_bytes;
};

static inline ssock_loop *ssock__client_loop(ssock_client *cli)
{
	return cli->ep.base.loop;
}

#endif
