/* Incremental u32 frame decoder and reply buffer shared by the framed reference servers
 * (epoll, libuv and libevent), so they differ only in their event loop.
 *
 * Complete frames are handed to the caller in place, straight from the read buffer; only a
 * frame split across reads is copied, into a buffer that is freed as soon as the frame
 * completes, so an idle connection holds no buffer. */
#ifndef SSOCK_BENCH_U32IN_H
#define SSOCK_BENCH_U32IN_H

#include <stddef.h>
#include <stdint.h>

struct u32_in {
	uint8_t *part;   /* start of a frame split across reads (header included), or NULL */
	size_t part_len; /* bytes of it received so far */
	size_t part_cap;
};

/* Called once per complete frame, in order; payload is valid only during the call. */
typedef void (*u32_deliver_fn)(void *ctx, const uint8_t *payload, size_t len);

/* Feeds n received bytes. Returns 0, or -1 when a frame announces a length above
 * BENCH_MAX_MESSAGE or memory runs out: the caller then closes the connection. */
int u32_feed(struct u32_in *in, const uint8_t *data, size_t n, u32_deliver_fn deliver, void *ctx);

/* Frees any partial frame; the decoder can be reused afterwards. */
void u32_in_free(struct u32_in *in);

/* The replies to the read being handled: framed copies appended here, sent with one call,
 * and the buffer reused (one per server, not per connection). */
struct u32_out {
	uint8_t *buf;
	size_t len, cap;
	int oom; /* an append ran out of memory: the caller closes the connection */
};

/* Appends payload as one u32 frame; on allocation failure sets out->oom instead. */
void u32_out_append(struct u32_out *out, const uint8_t *payload, size_t len);

/* Sends out's bytes on fd with one send(). What the kernel refuses is copied into a new
 * malloc'd *rest of *rest_len bytes. Returns 0 (all sent), 1 (the rest is kept: wait until
 * fd is writable) or -1 (an error or no memory: close the connection). */
int u32_out_send(const struct u32_out *out, int fd, uint8_t **rest, size_t *rest_len);

#endif
