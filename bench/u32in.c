/* Incremental u32 frame decoder for the framed reference servers (see u32in.h). */
#include "u32in.h"

#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static int part_reserve(struct u32_in *in, size_t need)
{
	uint8_t *p;

	if (need <= in->part_cap)
		return 0;
	p = realloc(in->part, need);
	if (!p)
		return -1;
	in->part = p;
	in->part_cap = need;
	return 0;
}

void u32_in_free(struct u32_in *in)
{
	free(in->part);
	in->part = NULL;
	in->part_len = 0;
	in->part_cap = 0;
}

/* Appends to the carried-over frame and delivers it once complete.
 * Returns the bytes of data used, or -1 on an oversized length. */
static long finish_part(struct u32_in *in, const uint8_t *data, size_t n, u32_deliver_fn deliver,
			void *ctx)
{
	size_t used = 0, k;
	uint32_t len;

	if (in->part_len < 4) {
		k = min_size(4 - in->part_len, n);
		memcpy(in->part + in->part_len, data, k);
		in->part_len += k;
		used = k;
		if (in->part_len < 4)
			return (long)used;
	}
	len = bench_get_be32(in->part);
	if (len > BENCH_MAX_MESSAGE || part_reserve(in, 4 + (size_t)len) < 0)
		return -1;
	k = min_size(4 + (size_t)len - in->part_len, n - used);
	memcpy(in->part + in->part_len, data + used, k);
	in->part_len += k;
	used += k;
	if (in->part_len == 4 + (size_t)len) {
		deliver(ctx, in->part + 4, len);
		/* Freed rather than kept: an idle connection should hold no buffer. */
		u32_in_free(in);
	}
	return (long)used;
}

/* Keeps the incomplete tail of a read until more bytes arrive. */
static int stash_tail(struct u32_in *in, const uint8_t *data, size_t n)
{
	size_t want = 4;

	if (n >= 4) {
		uint32_t len = bench_get_be32(data);
		if (len > BENCH_MAX_MESSAGE)
			return -1;
		/* Reserve the whole frame at once so it is not regrown on every read. */
		want = 4 + (size_t)len;
	}
	if (part_reserve(in, want) < 0)
		return -1;
	memcpy(in->part, data, n);
	in->part_len = n;
	return 0;
}

int u32_feed(struct u32_in *in, const uint8_t *data, size_t n, u32_deliver_fn deliver, void *ctx)
{
	if (in->part_len > 0) {
		long used = finish_part(in, data, n, deliver, ctx);
		if (used < 0)
			return -1;
		data += used;
		n -= (size_t)used;
	}
	/* Whole frames are delivered in place, many per read. */
	while (n >= 4) {
		uint32_t len = bench_get_be32(data);
		if (len > BENCH_MAX_MESSAGE)
			return -1;
		if (n - 4 < len)
			break;
		deliver(ctx, data + 4, len);
		data += 4 + (size_t)len;
		n -= 4 + (size_t)len;
	}
	return n > 0 ? stash_tail(in, data, n) : 0;
}

void u32_out_append(struct u32_out *out, const uint8_t *payload, size_t len)
{
	size_t need = out->len + 4 + len;

	if (need > out->cap) {
		size_t cap = out->cap ? out->cap : BENCH_READ_SIZE;
		uint8_t *p;
		while (cap < need)
			cap *= 2;
		p = realloc(out->buf, cap);
		if (!p) {
			out->oom = 1;
			return;
		}
		out->buf = p;
		out->cap = cap;
	}
	bench_put_be32(out->buf + out->len, (uint32_t)len);
	memcpy(out->buf + out->len + 4, payload, len);
	out->len = need;
}

int u32_out_send(const struct u32_out *out, int fd, uint8_t **rest, size_t *rest_len)
{
	ssize_t w;

	do
		w = send(fd, out->buf, out->len, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno != EAGAIN)
		return -1;
	if (w < 0)
		w = 0;
	if ((size_t)w == out->len)
		return 0;
	*rest_len = out->len - (size_t)w;
	*rest = malloc(*rest_len);
	if (!*rest)
		return -1;
	memcpy(*rest, out->buf + w, *rest_len);
	return 1;
}
