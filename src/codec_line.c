/* line framing: the payload, then '\n'; a '\r' before it is not part of the
 * payload. The decoder is frame.c's pure ssock__line_decode(). */
#include "conn.h"
#include "frame.h"

/* 1 when a message ends in '\r': it goes out as "...\r\r\n", so that the
 * receiver, which strips one '\r' before the '\n', gets it back whole. */
static size_t ends_in_cr(const void *data, size_t len)
{
	return len > 0 && ((const uint8_t *)data)[len - 1] == '\r';
}

static ssize_t line_wire_size(const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return SSOCK_EMSGSIZE;
	if (ssock__line_check(data, len) != 0)
		return SSOCK_EFRAMING;
	return (ssize_t)(len + 1 + ends_in_cr(data, len));
}

static void line_encode(uint8_t *dst, const void *data, size_t len)
{
	size_t cr = ends_in_cr(data, len);
	if (len)
		memcpy(dst, data, len);
	if (cr)
		dst[len++] = '\r';
	dst[len] = '\n';
}

static ssize_t line_decode(ssock_conn *c, const uint8_t *buf, size_t len, ssock__frame *f)
{
	f->is_msg = true;
	return ssock__line_decode(buf, len, c->ep->cfg.max_message, &f->scanned, &f->msg, &f->len);
}

const ssock__codec ssock__codec_line = {
	.name = "line",
	.overhead = 2, /* "\r\n" at most */
	.max_payload = UINT32_MAX,
	.wire_size = line_wire_size,
	.encode = line_encode,
	.decode = line_decode,
};
