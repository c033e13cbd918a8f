/*
 * The fixture every hostile-peer test uses: an echo server in callback mode
 * that records, per connection, why it ended (without keeping payloads, so
 * the heap it measures is the library's), a well-behaved raw peer ("good")
 * that stays connected through the fault, and the process's baseline (open
 * fds, heap bytes in use) taken once the server and the good peer are warm.
 *
 * Each case then: does its harm, waits for the bad connection's disconnect
 * and checks its reason and its error-log entry, and calls fx_check_healthy()
 * (the good peer still echoes, a newcomer is served, the server's fds and
 * heap are back at the baseline) and fx_finish() (server closed, fds and heap
 * back to what they were before it existed).
 */
#ifndef SSOCK_FAULT_H
#define SSOCK_FAULT_H

#include "net_helpers.h"
#include "ssock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define FX_RING              256
/* Heap a warm server may hold beyond its baseline without having leaked:
 * its loop's read buffer growing and its few spare send chunks. Cases that
 * fill send queues allow the loop's whole spare-chunk cache and its shared
 * output buffer at their largest (see conn.c: MAX_FREE_CHUNKS * CHUNK_SIZE
 * = 4 MiB, OBUF_MAX = 256 KiB). */
#define FX_HEAP_SLACK        (256 << 10)
#define FX_HEAP_SLACK_CHUNKS ((4 << 20) + (256 << 10) + FX_HEAP_SLACK)

typedef struct fx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ssock_server *srv;
	int port;
	ssock_framing framing;
	bool echo;
	int connects, disconnects, messages, errors;
	uint64_t last_conn; /* last connection that connected */
	struct {            /* the last FX_RING disconnects */
		uint64_t id;
		int reason;
	} disc[FX_RING];
	struct { /* disconnects by reason */
		int reason, count;
	} by_reason[16];
	int good; /* the well-behaved raw peer's fd */
	uint64_t good_id;
	int fds_before, fds0; /* before the server; baseline */
	int64_t heap_before, heap0;
	long rss0;
} fx;

/* Runs `threads` threads at once, each using malloc, so that glibc creates
 * the arenas a test's own threads will use before the baseline is taken
 * (an arena's header counts as heap in use, and arenas are never freed). */
void fx_warm_arenas(int threads);

/* Starts the server (o->listen, callbacks and user are filled in; the
 * framing is o->framing), connects the good peer, echoes once and takes the
 * baseline. Returns false (and prints why) on failure. */
bool fx_start(fx *f, ssock_server_opts *o);

/* Connects a raw peer and waits until the server has it; *id gets its id.
 * For tinyproto it also does the handshake. Returns the fd or -1. */
int fx_peer(fx *f, uint64_t *id);
/* The same without the tinyproto handshake. */
int fx_peer_raw(fx *f, uint64_t *id);

/* One echo over fd in the server's framing. Returns true when the reply is
 * the message, whole. */
bool fx_echo(fx *f, int fd, const char *msg);

/* Waits for connection id's disconnect; returns its reason, or 1 when none
 * came before the deadline. */
int fx_reason(fx *f, uint64_t id, int timeout_ms);

/* Messages delivered to the server so far (echoes included). */
int fx_messages(fx *f);

/* Number of disconnects with this reason so far. */
int fx_count_reason(fx *f, int reason);
/* Waits until `want` disconnects with this reason (or `want` errors in all)
 * have come. Returns false at the deadline. */
bool fx_wait_reason(fx *f, int reason, int want, int timeout_ms);
bool fx_wait_errors(fx *f, int want, int timeout_ms);

/* True when the server's error log has an entry for conn id with this code
 * (and op, when op is not NULL). */
bool fx_logged(fx *f, uint64_t id, int code, const char *op);

/* The health checks after a fault, as one boolean with the reason printed
 * when false: the good peer echoes, a new peer is served (and leaves), the
 * server holds only the good connection plus `extra`, and fds and heap are
 * back at the baseline (heap within `slack` bytes). */
bool fx_healthy(fx *f, int extra, int64_t slack);

/* Closes the good peer and the server; true when fds and heap are back at
 * what they were before fx_start(). */
bool fx_finish(fx *f);

#endif
