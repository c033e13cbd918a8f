/*
 * Frame codecs (see frame.h): pure functions over a caller's buffer. They
 * never allocate, never block and never look at buf[len] or beyond, so the
 * connection code can call them on whatever a read() left in its buffer.
 */
#include "frame.h"

#include <limits.h>
#include <string.h>

#include "ssock.h"

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
