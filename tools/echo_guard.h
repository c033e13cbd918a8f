/*
 * echo_guard.h - which datagrams `ssock echo --udp` answers.
 *
 * A UDP echo answers whatever source address a datagram names, and that
 * address can be forged: one datagram "from" the server itself, or from
 * another echo service, starts a ping-pong that never ends. The guard:
 *
 *   - never answers the server's own address: its port on any local
 *     address (the kernel is asked: a local address is one a socket can
 *     bind to), also when it is bound to 0.0.0.0 or [::];
 *   - answers one source address at most ECHO_GUARD_RATE datagrams a
 *     second (bursts of ECHO_GUARD_BURST), a token bucket per source;
 *   - answers a datagram that is one of its own replies of the last second
 *     coming back to it (same source, same bytes) at most
 *     ECHO_GUARD_BACK_RATE a second per source (bursts of as many). Two
 *     echo services answering each other do nothing else, and do it faster
 *     than that, so the bucket empties and the datagram is dropped, which
 *     ends the game; a client that repeats the same payload gets that many
 *     answers a second.
 *
 * A rate per source alone cannot tell that game from a benchmark client
 * doing ping-pong as fast as it can, so the strict limit applies only to
 * replies coming back. Sources live in a table of ECHO_GUARD_SOURCES slots
 * (one address per slot, hashed; a newcomer takes over the slot with a
 * full bucket), replies in one of ECHO_GUARD_RECENT slots.
 *
 * Not thread-safe: one guard per loop thread. Used by tools/cmd_echo_chat.c,
 * tested by tests/test_echo_guard.c.
 */
#ifndef SSOCK_ECHO_GUARD_H
#define SSOCK_ECHO_GUARD_H

#include "ssock.h"

#include <stdbool.h>
#include <stdint.h>

#define ECHO_GUARD_RATE      50000
#define ECHO_GUARD_BURST     5000
#define ECHO_GUARD_BACK_RATE 1000
#define ECHO_GUARD_RECENT_MS 1000
#define ECHO_GUARD_SOURCES   1024
#define ECHO_GUARD_RECENT    4096
#define ECHO_GUARD_LOG_MS    10000 /* a source's refusals are reported once per 10 s */

typedef enum {
	ECHO_ANSWER = 0,
	ECHO_SELF,    /* from our own address: never answered */
	ECHO_RATE,    /* above the source's rate */
	ECHO_BOUNCED, /* our own reply came back, above ECHO_GUARD_BACK_RATE */
} echo_verdict;

struct echo_guard_source {
	ssock_addr addr;
	double tokens, back_tokens;
	int64_t ms;        /* when the buckets were last filled */
	int64_t logged_ms; /* when a refusal was last reported */
};

struct echo_guard {
	int port; /* the bound port */
	struct echo_guard_source src[ECHO_GUARD_SOURCES];
	struct {
		uint64_t key;
		int64_t ms;
	} recent[ECHO_GUARD_RECENT];
};

/* Prepares g for a socket bound to `bound`. */
void echo_guard_init(struct echo_guard *g, const ssock_addr *bound);

/* Whether to answer `from` with data[0..len) at now_ms (monotonic). An
 * answer is remembered as a reply sent. *first is set on the refusal that
 * should be reported (the first for that source in ECHO_GUARD_LOG_MS). */
echo_verdict echo_guard_check(struct echo_guard *g, const ssock_addr *from, const void *data,
			      size_t len, int64_t now_ms, bool *first);

/* Whether addr is an address of this host (any port). */
bool echo_guard_is_local(const ssock_addr *addr);

#endif
