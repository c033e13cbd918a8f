/*
 * fuzz_line: the line decoder over arbitrary bytes.
 * Input: byte 0 picks max, byte 1 seeds the read sizes, the rest is a stream.
 * Invariants: every call agrees with a plain byte-by-byte reference decoder
 * (so the memchr and `scanned` shortcuts change nothing); consumed <= len;
 * the payload is at the start of buf and holds no '\n'; decoding the stream
 * in random-sized reads, keeping `scanned` between reads as a connection
 * does (each read's bytes in a buffer of their exact size, so ASan sees any
 * over-read), gives exactly what decoding it whole gives; and the messages,
 * encoded again and concatenated, decode back to themselves.
 */
#include <string.h>
#include <sys/types.h>

#include "frame.h"
#include "fuzz.h"
#include "ssock.h"

struct msgs {
	size_t *off, *len;
	size_t n;
	ssize_t last;
	size_t rest;
};

/* The rule of docs/DESIGN.md spelled out one byte at a time. */
static ssize_t reference(const uint8_t *b, size_t len, uint32_t max, size_t *msg_len)
{
	for (size_t i = 0; i < len; i++) {
		if (b[i] != '\n')
			continue;
		size_t n = (i > 0 && b[i - 1] == '\r') ? i - 1 : i;
		if (n > max)
			return SSOCK_EMSGSIZE;
		*msg_len = n;
		return (ssize_t)i + 1;
	}
	/* no newline yet: too long only if it is certain whatever follows */
	if (len > 0 && len - (b[len - 1] == '\r') > max)
		return SSOCK_EMSGSIZE;
	return 0;
}

static ssize_t decode(const uint8_t *buf, size_t len, uint32_t max, size_t *scanned,
		      size_t *msg_len)
{
	const uint8_t *msg = NULL;
	size_t want_len = 0;
	ssize_t want = reference(buf, len, max, &want_len);
	ssize_t rc = ssock__line_decode(buf, len, max, scanned, &msg, msg_len);
	FUZZ_CHECK(rc == want);
	if (rc > 0) {
		FUZZ_CHECK((size_t)rc <= len && msg == buf && *msg_len == want_len);
		FUZZ_CHECK(*scanned == 0 && buf[rc - 1] == '\n');
		FUZZ_CHECK(memchr(msg, '\n', *msg_len) == NULL);
	} else if (rc == 0) {
		FUZZ_CHECK(*scanned == len);
	}
	return rc;
}

static void decode_whole(const uint8_t *s, size_t n, uint32_t max, struct msgs *m)
{
	size_t pos = 0;
	m->n = 0;
	for (;;) {
		size_t scanned = 0, len;
		ssize_t rc = decode(s + pos, n - pos, max, &scanned, &len);
		if (rc <= 0) {
			m->last = rc;
			m->rest = pos;
			return;
		}
		m->off[m->n] = pos;
		m->len[m->n++] = len;
		pos += (size_t)rc;
	}
}

static void decode_in_reads(const uint8_t *s, size_t n, uint32_t max, uint32_t seed,
			    const struct msgs *whole)
{
	size_t pos = 0, end = 0, i = 0, scanned = 0;
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
		size_t len;
		rc = decode(buf, end - pos, max, &scanned, &len);
		free(buf);
		if (rc > 0) {
			FUZZ_CHECK(i < whole->n);
			FUZZ_CHECK(whole->off[i] == pos && whole->len[i] == len);
			i++;
			pos += (size_t)rc;
		}
	}
	FUZZ_CHECK(i == whole->n && rc == whole->last && pos == whole->rest);
}

static size_t ends_in_cr(const uint8_t *p, size_t len)
{
	return len > 0 && p[len - 1] == '\r';
}

/*
 * Each message goes out with "\n" appended; one that ends in '\r' needs
 * "\r\n" instead, or the receiver would strip its own '\r' (see the note in
 * the report on ssock__line_check()).
 */
static void round_trip(const uint8_t *s, uint32_t max, const struct msgs *m)
{
	size_t total = 0, pos = 0;
	for (size_t i = 0; i < m->n; i++)
		total += m->len[i] + 1 + ends_in_cr(s + m->off[i], m->len[i]);
	uint8_t *enc = malloc(total); /* exact: ASan sees over-reads */
	for (size_t i = 0; i < m->n; i++) {
		const uint8_t *p = s + m->off[i];
		FUZZ_CHECK(ssock__line_check(p, m->len[i]) == 0);
		memcpy(enc + pos, p, m->len[i]);
		pos += m->len[i];
		if (ends_in_cr(p, m->len[i]))
			enc[pos++] = '\r';
		enc[pos++] = '\n';
	}
	FUZZ_CHECK(pos == total);
	pos = 0;
	for (size_t i = 0; i < m->n; i++) {
		size_t scanned = 0, len;
		ssize_t rc = decode(enc + pos, total - pos, max, &scanned, &len);
		FUZZ_CHECK(rc > 0 && len == m->len[i]);
		FUZZ_CHECK(memcmp(enc + pos, s + m->off[i], len) == 0);
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
	m.off = malloc((n + 1) * sizeof *m.off);
	m.len = malloc((n + 1) * sizeof *m.len);
	decode_whole(s, n, max, &m);
	decode_in_reads(s, n, max, seed, &m);
	round_trip(s, max, &m);
	/* line_check agrees with memchr on the raw bytes */
	FUZZ_CHECK((ssock__line_check(s, n) == 0) == (memchr(s, '\n', n) == NULL));
	free(m.off);
	free(m.len);
	return 0;
}
