/* u32 framing: a 4-byte big-endian length, then the payload. The decoder
 * is frame.c's pure ssock__u32_decode(). */
#include "conn.h"
#include "frame.h"

static size_t u32_header(uint8_t *dst, size_t len)
{
	ssock__u32_header(dst, (uint32_t)len);
	return SSOCK__U32_HEADER;
}

void ssock__codec_u32_encode(uint8_t *dst, const void *data, size_t len)
{
	ssock__u32_header(dst, (uint32_t)len);
	if (len)
		memcpy(dst + SSOCK__U32_HEADER, data, len);
}

static ssize_t u32_decode(ssock_conn *c, const uint8_t *buf, size_t len, ssock__frame *f)
{
	f->is_msg = true;
	f->header = SSOCK__U32_HEADER;
	return ssock__u32_decode(buf, len, c->ep->cfg.max_message, &f->msg, &f->len, &f->need);
}

const ssock__codec ssock__codec_u32 = {
	.name = "u32",
	.overhead = SSOCK__U32_HEADER,
	.max_payload = UINT32_MAX,
	.encode = ssock__codec_u32_encode,
	.header = u32_header,
	.decode = u32_decode,
};
