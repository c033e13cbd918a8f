/* XXH64 with seed 0; see xxh64.h. */
#include "xxh64.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* Little-endian loads, whatever the host's byte order. */
static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t round64(uint64_t acc, uint64_t input)
{
	acc += input * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

static uint64_t merge(uint64_t acc, uint64_t v)
{
	acc ^= round64(0, v);
	return acc * P1 + P4;
}

static void stripe(uint64_t v[4], const unsigned char *p)
{
	for (int i = 0; i < 4; i++)
		v[i] = round64(v[i], le64(p + 8 * i));
}

void xxh64_init(struct xxh64 *s)
{
	memset(s, 0, sizeof *s);
	s->v[0] = P1 + P2;
	s->v[1] = P2;
	s->v[2] = 0;
	s->v[3] = 0 - P1;
}

void xxh64_update(struct xxh64 *s, const void *data, size_t len)
{
	const unsigned char *p = data;
	s->total += len;
	if (s->buffered) {
		size_t take = 32 - s->buffered < len ? 32 - s->buffered : len;
		memcpy(s->buf + s->buffered, p, take);
		s->buffered += take;
		p += take;
		len -= take;
		if (s->buffered < 32)
			return;
		stripe(s->v, s->buf);
		s->buffered = 0;
	}
	for (; len >= 32; p += 32, len -= 32)
		stripe(s->v, p);
	memcpy(s->buf, p, len);
	s->buffered = len;
}

uint64_t xxh64_digest(const struct xxh64 *s)
{
	uint64_t h;
	if (s->total >= 32) {
		const uint64_t *v = s->v;
		h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
		for (int i = 0; i < 4; i++)
			h = merge(h, v[i]);
	} else {
		h = P5; /* seed 0 */
	}
	h += s->total;
	const unsigned char *p = s->buf;
	size_t len = s->buffered;
	for (; len >= 8; p += 8, len -= 8) {
		h ^= round64(0, le64(p));
		h = rotl(h, 27) * P1 + P4;
	}
	if (len >= 4) {
		h ^= (uint64_t)le32(p) * P1;
		h = rotl(h, 23) * P2 + P3;
		p += 4;
		len -= 4;
	}
	for (; len > 0; p++, len--) {
		h ^= *p * P5;
		h = rotl(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}
