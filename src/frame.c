/*
 * Frame codecs (see frame.h): pure functions over a caller's buffer. They
 * never allocate, never block and never look at buf[len] or beyond, so the
 * connection code can call them on whatever a read() left in its buffer.
 */
#include "frame.h"

#include <limits.h>
#include <string.h>

#include "ssock.h"

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void ssock__u32_header(uint8_t out[SSOCK__U32_HEADER], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

ssize_t ssock__u32_decode(const uint8_t *buf, size_t len, uint32_t max, const uint8_t **msg,
			  size_t *msg_len, size_t *need)
{
	if (len < SSOCK__U32_HEADER) {
		*need = SSOCK__U32_HEADER;
		return 0;
	}
	uint32_t n = load_be32(buf);
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

/*
 * With no '\n' in buf yet, the payload of the line being received is at least
 * buf[0..len), except that a final '\r' may turn out to be the one stripped
 * before the '\n'. Anything beyond that is not yet certain.
 */
static int partial_line_too_long(const uint8_t *buf, size_t len, uint32_t max)
{
	size_t least = len - (buf[len - 1] == '\r');
	return least > max;
}

ssize_t ssock__line_decode(const uint8_t *buf, size_t len, uint32_t max, size_t *scanned,
			   const uint8_t **msg, size_t *msg_len)
{
	/* A hint beyond the buffer can only come from a caller that dropped
	 * bytes without resetting it; rescanning is always safe. */
	size_t from = *scanned <= len ? *scanned : 0;
	if (len == 0) {
		*scanned = 0;
		return 0;
	}
	const uint8_t *nl = memchr(buf + from, '\n', len - from);
	if (nl == NULL) {
		*scanned = len;
		return partial_line_too_long(buf, len, max) ? SSOCK_EMSGSIZE : 0;
	}
	size_t end = (size_t)(nl - buf);
	size_t n = end;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n > max || end >= (size_t)SSIZE_MAX)
		return SSOCK_EMSGSIZE;
	*scanned = 0;
	*msg = buf;
	*msg_len = n;
	return (ssize_t)(end + 1);
}

int ssock__line_check(const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return SSOCK_EFRAMING;
	if (len > 0 && memchr(data, '\n', len) != NULL)
		return SSOCK_EFRAMING;
	return 0;
}
