/* Address text parsing (pure, fuzzable) behind ssock_addr_resolve(). */
#ifndef SSOCK_ADDR_H
#define SSOCK_ADDR_H

#include "ssock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest host part accepted (a DNS name is at most 253 characters). */
#define SSOCK__HOST_MAX 256

/*
 * Splits "HOST:PORT", "[IPV6]:PORT" or ":PORT" into host (NUL-terminated,
 * brackets removed; empty for ":PORT") and port. host must have room for
 * SSOCK__HOST_MAX bytes. Returns 0, or SSOCK_EBADADDR for anything else: a
 * missing or non-numeric port, a port above 65535, an unbracketed host with a
 * ':', brackets around something that is not IPv6 text, a host too long or
 * holding a NUL, space or control character.
 */
int ssock__addr_split(const char *text, char host[SSOCK__HOST_MAX], uint16_t *port);

/* Whether text can be resolved without asking the resolver: a literal
 * address, ":PORT", or text so malformed that resolving fails at once. */
bool ssock__addr_numeric(const char *text);

/* Whether two addresses are the same endpoint: family, address, port and,
 * for IPv6, scope. */
bool ssock__same_addr(const ssock_addr *a, const ssock_addr *b);

#endif
