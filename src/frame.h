/*
 * Frame codecs: pure functions over a buffer. No I/O, no allocation, no
 * hidden state, so they can be unit-tested byte by byte and fuzzed. Every
 * decoder returns the bytes consumed (> 0) when buf starts with a whole frame,
 * 0 when more bytes are needed, or a negative SSOCK_E* code when the bytes
 * can never form an acceptable frame. Decoders never read past buf[len - 1].
 */
#ifndef SSOCK_FRAME_H
#define SSOCK_FRAME_H

#include "ssock.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SSOCK__U32_HEADER 4

/*
 * u32 framing: 4-byte big-endian length, then that many payload bytes.
 * On a whole frame: sets *msg and *msg_len to the payload inside buf and returns
 * SSOCK__U32_HEADER + *msg_len. When more is needed: returns 0 and sets *need
 * to the total frame size (header + payload) once the header is complete,
 * else to SSOCK__U32_HEADER. A length above max returns SSOCK_EMSGSIZE as soon
 * as the header is complete, before any payload is looked at.
 *
 * Inline, as the header writer below: every message of the default framing
 * goes through them.
 */
static inline uint32_t ssock__load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline ssize_t ssock__u32_decode(const uint8_t *buf, size_t len, uint32_t max,
					const uint8_t **msg, size_t *msg_len, size_t *need)
{
	if (len < SSOCK__U32_HEADER) {
		*need = SSOCK__U32_HEADER;
		return 0;
	}
	uint32_t n = ssock__load_be32(buf);
	/* The limit is checked before the caller is told how much to expect,
	 * so no buffer is ever sized from a hostile length. */
	if (n > max)
		return SSOCK_EMSGSIZE;
#if SIZE_MAX <= UINT32_MAX
	/* With a 32-bit size_t a frame near 4 GiB cannot be counted. */
	if (n > (size_t)SSIZE_MAX - SSOCK__U32_HEADER)
		return SSOCK_EMSGSIZE;
#endif
	size_t total = SSOCK__U32_HEADER + (size_t)n;
	if (len < total) {
		*need = total;
		return 0;
	}
	*msg = buf + SSOCK__U32_HEADER;
	*msg_len = n;
	return (ssize_t)total;
}

/* Writes the 4-byte big-endian header for a payload of len bytes. len must be
 * at most UINT32_MAX (callers check). */
static inline void ssock__u32_header(uint8_t out[SSOCK__U32_HEADER], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

/*
 * line framing: payload then '\n'; one '\r' right before the '\n' is not part
 * of the payload. *scanned is in/out: the number of leading bytes of buf
 * already known to hold no '\n' (pass 0 for a fresh buffer; the decoder
 * updates it on "need more" so a long partial line is not rescanned, and
 * resets it to 0 after a whole line). On a whole line: sets *msg and *msg_len and
 * returns the bytes consumed including the '\n'. Returns SSOCK_EMSGSIZE as
 * soon as the payload is certain to exceed max (even before its '\n').
 */
ssize_t ssock__line_decode(const uint8_t *buf, size_t len, uint32_t max, size_t *scanned,
			   const uint8_t **msg, size_t *msg_len);

/* Returns 0 when data[0..len) can be sent as one line (no '\n' in it and
 * len <= UINT32_MAX), else SSOCK_EFRAMING. */
int ssock__line_check(const void *data, size_t len);

#endif
