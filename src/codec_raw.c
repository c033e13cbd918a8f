/* raw framing: no framing at all. A message is whatever one read brought;
 * sending writes the bytes as they are (an empty message writes nothing). */
#include "conn.h"

#include <limits.h>

static void raw_encode(uint8_t *dst, const void *data, size_t len)
{
	if (len)
		memcpy(dst, data, len);
}

static size_t raw_header(uint8_t *dst, size_t len)
{
	(void)dst;
	(void)len;
	return 0;
}

static ssize_t raw_decode(ssock_conn *c, const uint8_t *buf, size_t len, ssock__frame *f)
{
	(void)c;
	f->is_msg = true;
	f->msg = buf;
	f->len = len;
	return (ssize_t)len;
}

const ssock__codec ssock__codec_raw = {
	.name = "raw",
	.overhead = 0,
	.max_payload = SSIZE_MAX,
	.encode = raw_encode,
	.header = raw_header,
	.decode = raw_decode,
};
