/*
 * Large payload buffers, recycled. A message too large for the shared read
 * buffer is read into a malloc'd buffer of its own, handed to the program
 * (an inbox event's data, or lent to a callback) and freed when the program
 * is done with it, often on another thread. glibc gives such blocks back to
 * the system as soon as they merge into the top of a thread's arena, so at a
 * high rate every message costs page faults for a fresh megabyte. Instead,
 * the buffers ssock frees (and those the program gives back with ssock_free()
 * or ssock_event_release()) are kept here, up to CACHE_COUNT of them and
 * CACHE_BYTES in all, for the next large read; a loop's tidy-up (a second
 * with no I/O) gives them all back.
 *
 * Every buffer here is a plain malloc'd block: one the program free()s
 * instead of ssock_free()ing simply never comes back here.
 */
#include "internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

/* Under AddressSanitizer a kept block is poisoned: a read of a payload
 * after the program gave it back is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KEEP(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TAKE(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define KEEP(p, n) ((void)(p), (void)(n))
#define TAKE(p, n) ((void)(p), (void)(n))
#endif

#define BIG_MIN     (64u << 10) /* smaller blocks: malloc's own bins reuse them */
#define CACHE_COUNT 16
#define CACHE_BYTES (16u << 20)

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *buf;
	size_t size; /* malloc_usable_size() */
} cache[CACHE_COUNT];
static int cached;
static size_t cached_bytes;

void *ssock__big_alloc(size_t len)
{
	if (len >= BIG_MIN) {
		void *b = NULL;
		pthread_mutex_lock(&cache_mu);
		/* The newest that fits and wastes at most half: its pages are
		 * the likeliest to be warm. */
		for (int i = cached - 1; i >= 0; i--) {
			if (cache[i].size >= len && cache[i].size - len <= len / 2) {
				b = cache[i].buf;
				cached_bytes -= cache[i].size;
				cache[i] = cache[--cached];
				break;
			}
		}
		pthread_mutex_unlock(&cache_mu);
		if (b) {
			TAKE(b, malloc_usable_size(b));
			return b;
		}
	}
	return malloc(len);
}

void ssock__big_free(void *p)
{
	if (!p)
		return;
	size_t size = malloc_usable_size(p);
	if (size >= BIG_MIN) {
		pthread_mutex_lock(&cache_mu);
		bool kept = cached < CACHE_COUNT && cached_bytes + size <= CACHE_BYTES;
		if (kept) {
			KEEP(p, size);
			cache[cached].buf = p;
			cache[cached++].size = size;
			cached_bytes += size;
		}
		pthread_mutex_unlock(&cache_mu);
		if (kept)
			return;
	}
	free(p);
}

int ssock__big_kept(size_t *bytes)
{
	pthread_mutex_lock(&cache_mu);
	int n = cached;
	*bytes = cached_bytes;
	pthread_mutex_unlock(&cache_mu);
	return n;
}

void ssock__big_trim(void)
{
	pthread_mutex_lock(&cache_mu);
	while (cached > 0) {
		cached--;
		TAKE(cache[cached].buf, cache[cached].size);
		free(cache[cached].buf);
	}
	cached_bytes = 0;
	pthread_mutex_unlock(&cache_mu);
}
