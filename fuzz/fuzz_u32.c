/*
 * fuzz_u32: the u32 decoder over arbitrary bytes.
 * Input: byte 0 picks max, byte 1 seeds the read sizes, the rest is a stream.
 * Invariants: consumed <= len and the payload lies inside buf; "need more"
 * asks for more than there is; an error only for a length above max;
 * decoding the stream in random-sized reads (each read's bytes in a buffer
 * of their exact size, so ASan sees any over-read) gives exactly what
 * decoding it whole gives; and the messages, encoded again and concatenated,
 * decode back to themselves.
 */
#include <string.h>
#include <sys/types.h>

#include "frame.h"
#include "fuzz.h"
#include "ssock.h"

struct msgs {
	size_t *off, *len; /* payload offset in the stream, length */
	size_t n;
	ssize_t last; /* the final decode result: 0 or an error */
	size_t rest;  /* offset of the undecoded rest */
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One decode with every invariant that holds for a single call. */
static ssize_t decode(const uint8_t *buf, size_t len, uint32_t max, size_t *msg_off,
		      size_t *msg_len)
{
	const uint8_t *msg = NULL;
	size_t need = 0;
	*msg_len = 0;
	ssize_t rc = ssock__u32_decode(buf, len, max, &msg, msg_len, &need);
	if (rc > 0) {
		FUZZ_CHECK((size_t)rc <= len);
		FUZZ_CHECK(msg == buf + SSOCK__U32_HEADER);
		FUZZ_CHECK((size_t)rc == *msg_len + SSOCK__U32_HEADER);
		FUZZ_CHECK(*msg_len <= max && *msg_len == be32(buf));
		*msg_off = SSOCK__U32_HEADER;
	} else if (rc == 0) {
		FUZZ_CHECK(need > len);
		FUZZ_CHECK(need == (len < 4 ? 4 : SSOCK__U32_HEADER + (size_t)be32(buf)));
		FUZZ_CHECK(len < 4 || be32(buf) <= max);
	} else {
		FUZZ_CHECK(rc == SSOCK_EMSGSIZE && len >= 4 && be32(buf) > max);
	}
	return rc;
}

/* Decodes all of s[0..n) in one buffer. */
static void decode_whole(const uint8_t *s, size_t n, uint32_t max, struct msgs *m)
{
	size_t pos = 0;
	m->n = 0;
	for (;;) {
		size_t off, len;
		ssize_t rc = decode(s + pos, n - pos, max, &off, &len);
		if (rc <= 0) {
			m->last = rc;
			m->rest = pos;
			return;
		}
		m->off[m->n] = pos + off;
		m->len[m->n++] = len;
		pos += (size_t)rc;
	}
}

/* Decodes s[0..n) as it would arrive in reads of random sizes, checking
 * each message against the whole decode as it comes. */
static void decode_in_reads(const uint8_t *s, size_t n, uint32_t max, uint32_t seed,
			    const struct msgs *whole)
{
	size_t pos = 0, end = 0, i = 0;
	ssize_t rc = 0;
	while (rc >= 0) {
		if (rc == 0) {
			if (end == n)
				break;
			size_t step = 1 + fuzz_next(&seed) % (fuzz_next(&seed) % 8 ? 16 : 512);
			end = step < n - end ? end + step : n;
		}
		uint8_t *buf = malloc(end - pos); /* exact: ASan sees over-reads */
		memcpy(buf, s + pos, end - pos);
		size_t off, len;
		rc = decode(buf, end - pos, max, &off, &len);
		free(buf);
		if (rc > 0) {
			FUZZ_CHECK(i < whole->n);
			FUZZ_CHECK(whole->off[i] == pos + off && whole->len[i] == len);
			i++;
			pos += (size_t)rc;
		}
	}
	FUZZ_CHECK(i == whole->n && rc == whole->last && pos == whole->rest);
}

/* Encodes the messages again, back to back, and decodes the lot. */
static void round_trip(const uint8_t *s, uint32_t max, const struct msgs *m)
{
	size_t total = 0, pos = 0;
	for (size_t i = 0; i < m->n; i++)
		total += SSOCK__U32_HEADER + m->len[i];
	uint8_t *enc = malloc(total);
	for (size_t i = 0; i < m->n; i++) {
		ssock__u32_header(enc + pos, (uint32_t)m->len[i]);
		memcpy(enc + pos + SSOCK__U32_HEADER, s + m->off[i], m->len[i]);
		pos += SSOCK__U32_HEADER + m->len[i];
	}
	pos = 0;
	for (size_t i = 0; i < m->n; i++) {
		size_t off, len;
		ssize_t rc = decode(enc + pos, total - pos, max, &off, &len);
		FUZZ_CHECK(rc > 0 && len == m->len[i]);
		FUZZ_CHECK(memcmp(enc + pos + off, s + m->off[i], len) == 0);
		pos += (size_t)rc;
	}
	FUZZ_CHECK(pos == total);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t max = fuzz_pick_max(data[0]);
	uint32_t seed = data[1];
	const uint8_t *s = data + 2;
	size_t n = size - 2;
	struct msgs m;
	/* every message takes at least 4 bytes */
	m.off = malloc((n / 4 + 1) * sizeof *m.off);
	m.len = malloc((n / 4 + 1) * sizeof *m.len);
	decode_whole(s, n, max, &m);
	decode_in_reads(s, n, max, seed, &m);
	round_trip(s, max, &m);
	free(m.off);
	free(m.len);
	return 0;
}
