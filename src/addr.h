/* Address text parsing (pure, fuzzable) behind ssock_addr_resolve(). */
#ifndef SSOCK_ADDR_H
#define SSOCK_ADDR_H

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

#endif
