/*
 * XXH64 (seed 0), the 64-bit xxHash, written from its published
 * specification (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): a fast
 * non-cryptographic checksum for file transfers. It catches corruption and
 * truncation, not an attacker (who could forge any checksum anyway).
 * Streaming: init, update any number of times, then digest.
 */
#ifndef SSOCK_XXH64_H
#define SSOCK_XXH64_H

#include <stddef.h>
#include <stdint.h>

struct xxh64 {
	uint64_t v[4];
	uint64_t total;
	unsigned char buf[32];
	size_t buffered;
};

void xxh64_init(struct xxh64 *s);
void xxh64_update(struct xxh64 *s, const void *data, size_t len);
uint64_t xxh64_digest(const struct xxh64 *s);

#endif /* SSOCK_XXH64_H */
