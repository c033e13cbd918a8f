/*
 * Shared bits of the libFuzzer harnesses. A broken invariant aborts, which
 * libFuzzer reports as a crash and saves the input.
 */
#ifndef SSOCK_FUZZ_H
#define SSOCK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                      \
			abort();                                                             \
		}                                                                            \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A limit picked by one input byte, so the limits' edges get exercised. */
static inline uint32_t fuzz_pick_max(uint8_t b)
{
	static const uint32_t maxes[] = {0, 1, 2, 4, 16, 255, 16u << 20, UINT32_MAX};
	return maxes[b % (sizeof maxes / sizeof maxes[0])];
}

/* A small deterministic generator for read sizes, seeded from the input. */
static inline uint32_t fuzz_next(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 16;
}

#endif
