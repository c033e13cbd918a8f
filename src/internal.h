/*
 * Internal declarations shared by the library's files. Nothing here is API.
 *
 * Threading model, in one place:
 *   - All loop state (epoll set, timers, connections' I/O state) is touched
 *     only by the thread that holds loop->drive_mu: the loop's background
 *     thread while it handles a batch of events, or a thread driving the loop
 *     with ssock_loop_run(), or (for a loop nobody drives) a thread running a
 *     synchronous command itself. ssock__on_loop() tells whether the calling
 *     thread is that thread.
 *   - Other threads reach a loop through loop->mu: the command queue, the
 *     table of connections by id, each connection's cross-thread send queue
 *     and its `closing` flag. The loop thread takes loop->mu only to change
 *     those, never per message on its own fast path.
 */
#ifndef SSOCK_INTERNAL_H
#define SSOCK_INTERNAL_H

#include "ssock.h"
#include "tinyproto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SSOCK__DEFAULT_MAX_MESSAGE (16u << 20)
#define SSOCK__DEFAULT_READ_SIZE (64u << 10)
#define SSOCK__DEFAULT_SENDQ (32u << 20)
#define SSOCK__DEFAULT_INBOX_MAX 1024
#define SSOCK__DEFAULT_INBOX_BYTES (64u << 20)
#define SSOCK__DEFAULT_ERRLOG 64
#define SSOCK__DEFAULT_CONNECT_TIMEOUT_MS 10000
#define SSOCK__LINGER_MS 5000 /* bound on a graceful close's flush + drain */
#define SSOCK__ACCEPT_RETRY_MS 100 /* after EMFILE and the like */

int64_t ssock__now_ms(void);
int64_t ssock__wall_ms(void);

/* Sets *ts to now + timeout_ms on CLOCK_MONOTONIC, for timed waits on
 * condition variables created with that clock. */
void ssock__abstime(struct timespec *ts, int timeout_ms);

/* ------------------------------------------------------------------------ */
/* Loop                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct ssock__io ssock__io;
typedef void (*ssock__io_fn)(ssock__io *io, uint32_t revents);

/* Anything registered with epoll: a listener, a connection, the wakeup fd. */
struct ssock__io {
	int fd;
	uint32_t events; /* the mask epoll currently has for fd; 0: not added */
	ssock__io_fn on_io;
};

typedef struct ssock__timer ssock__timer;
struct ssock__timer {
	int64_t due;     /* monotonic ms */
	size_t heap_idx; /* position in the loop's heap; SIZE_MAX: not armed */
	void (*fn)(ssock__timer *t);
};

/* A call posted to the loop from another thread. */
typedef struct ssock__cmd ssock__cmd;
struct ssock__cmd {
	ssock__cmd *next;
	void (*fn)(ssock__cmd *cmd);
	void *arg;
	uint64_t id;
	int result;
	bool sync;  /* a thread waits on it: don't free, set done */
	bool done;  /* under loop->mu */
};

/* Open-addressing hash table: connection id -> connection. */
typedef struct ssock__table {
	struct ssock__slot {
		uint64_t id; /* 0: empty; UINT64_MAX: deleted */
		ssock_conn *conn;
	} *slots;
	size_t cap, count, used;
} ssock__table;

typedef struct ssock__chunk ssock__chunk;

struct ssock_loop {
	int epfd;
	ssock__io wake_io;          /* eventfd */
	atomic_int wake_pending;    /* an eventfd write is on its way */
	atomic_int room_waiters;    /* threads waiting for send-queue room */

	pthread_mutex_t drive_mu;   /* held by whoever runs loop code */
	pthread_mutex_t mu;         /* guards the fields below it */
	pthread_cond_t cv;          /* sync commands done; send-queue room */
	ssock__cmd *cmd_head, *cmd_tail;
	ssock_conn *xq_head;        /* connections with cross-thread sends */
	ssock__table conns;         /* all connections of this loop, by id */
	int users;                  /* servers and clients on this loop */
	bool has_thread, driving, stopping;
	pthread_t thread;
	bool driven;                /* ssock_loop_run() has been called ... */
	pthread_t driver;           /* ... last by this thread */

	/* Loop thread only: */
	ssock__timer **heap;
	size_t heap_len, heap_cap;
	uint8_t *rbuf;              /* shared read buffer */
	size_t rbuf_size;
	uint8_t *rbuf_retired;      /* the one before it grew, kept to the end
	                               of the pass that grew it */
	/* Output of this pass, written at its end (ssock__flush_all): the
	 * connections with something to write, in order, and the bytes that
	 * they queued with nothing else in their queue, back to back in one
	 * shared buffer; so replies cost no allocation and no buffer per
	 * connection. What the kernel does not take moves into chunks. */
	struct ssock__flush {
		ssock_conn *conn;
		uint32_t off, len;  /* its bytes in obuf, if any */
	} *flush;
	size_t nflush, flush_cap;
	uint8_t *obuf;
	size_t obuf_len, obuf_cap;
	ssock_conn *zombies;        /* closed, freed at the end of the pass */
	uint8_t *lending;           /* the malloc'd payload a message callback
	                               is looking at, which a send may take */
	ssock__chunk *free_chunks;  /* spare standard-size send chunks */
	int nfree_chunks;
	/* Giving memory back once the load that took it is gone: a timer
	 * (armed by ssock__loop_released()) that trims the spare chunks and
	 * malloc's free pages when a second passed with no spare chunk used. */
	ssock__timer tidy;
	size_t released;            /* bytes freed since the last tidy-up */
	uint64_t chunk_takes, takes_at_tidy;
	int64_t now;                /* cached monotonic ms of this pass */
	atomic_uint_fast64_t passes; /* epoll waits so far (tests see a spin) */
};

bool ssock__on_loop(const ssock_loop *loop);
/* Whether the calling thread may block until the loop does something: not
 * the loop's thread, nor the thread that drives a loop that has no thread
 * of its own (it would wait for itself). */
bool ssock__may_wait(ssock_loop *loop);
int ssock__loop_acquire(ssock_loop **loopp, ssock_loop *given, bool *owned);
void ssock__loop_release(ssock_loop *loop, bool owned);
int ssock__io_set(ssock_loop *loop, ssock__io *io, uint32_t events);
void ssock__io_remove(ssock_loop *loop, ssock__io *io);
void ssock__timer_init(ssock__timer *t, void (*fn)(ssock__timer *t));
void ssock__timer_start(ssock_loop *loop, ssock__timer *t, int64_t due);
void ssock__timer_stop(ssock_loop *loop, ssock__timer *t);
void ssock__wake(ssock_loop *loop);
/* Posts cmd (heap-allocated, freed by the loop after fn) to run on the loop. */
void ssock__post(ssock_loop *loop, ssock__cmd *cmd);
/* Runs fn(cmd) on the loop and waits for it; inline when already on it. */
int ssock__call(ssock_loop *loop, void (*fn)(ssock__cmd *cmd), void *arg, uint64_t id);
/* Notes that bytes of memory went back to malloc (0: the spare chunks
 * grew), so that a tidy-up follows once the loop is quiet. Loop only. */
void ssock__loop_released(ssock_loop *l, size_t bytes);
/* Frees spare send chunks beyond what an idle loop keeps. Loop only. */
void ssock__chunks_trim(ssock_loop *l);
/* Grows the shared read buffer to at least size. */
int ssock__loop_rbuf(ssock_loop *loop, size_t size);

int ssock__table_put(ssock__table *t, uint64_t id, ssock_conn *conn);
ssock_conn *ssock__table_get(const ssock__table *t, uint64_t id);
void ssock__table_del(ssock__table *t, uint64_t id);
void ssock__table_free(ssock__table *t);

/* ------------------------------------------------------------------------ */
/* Inbox and error log                                                       */
/* ------------------------------------------------------------------------ */

typedef struct ssock__inbox_item {
	ssock_event ev;
	bool ack; /* tell the loop when taken (a half-closed connection) */
} ssock__inbox_item;

typedef struct ssock__inbox {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ssock__inbox_item *ring;
	size_t cap, head, count;
	size_t msgs, bytes;         /* messages held and their bytes */
	size_t links;               /* connect and disconnect events held */
	size_t max_msgs, max_bytes;
	atomic_bool full;           /* readable by the loop without mu */
	bool loop_waiting;          /* the loop held something back: tell it
	                               (ep->on_room) once there is room */
	int waiters;                /* threads inside ssock__inbox_next() */
	bool closed;
	int efd;                    /* readable while count > 0 or closed; -1
	                               until the program asks for it */
} ssock__inbox;

typedef struct ssock__errlog {
	pthread_mutex_t mu;
	ssock_error_info *ring;
	int cap, head, count;
} ssock__errlog;

struct ssock__ep;
int ssock__inbox_init(ssock__inbox *ib, size_t max_msgs, size_t max_bytes);
void ssock__inbox_destroy(ssock__inbox *ib);
/* Loop side: appends ev (taking what it owns). Messages are refused (false)
 * when the inbox is full; other events always fit. */
bool ssock__inbox_push(ssock__inbox *ib, const ssock_event *ev, bool ack);
void ssock__inbox_close(ssock__inbox *ib);
/* Loop side: true when no message fits now; the taker that makes room will
 * then call ep->on_room on the loop. */
bool ssock__inbox_blocked(ssock__inbox *ib);
/* Loop side: true when max_msgs connect, disconnect and error events wait:
 * accept no connection (make no automatic reconnect) until ep->on_room. */
bool ssock__inbox_control_blocked(ssock__inbox *ib);
int ssock__inbox_next(struct ssock__ep *ep, ssock_event *ev, int timeout_ms);
/* How many events and payload bytes the inbox holds. */
void ssock__inbox_counts(ssock__inbox *ib, size_t *events, size_t *bytes);
/* The inbox's event fd (see ssock_server_event_fd()). */
int ssock__inbox_fd(struct ssock__ep *ep);

int ssock__errlog_init(ssock__errlog *log, int cap);
void ssock__errlog_destroy(ssock__errlog *log);
void ssock__errlog_add(ssock__errlog *log, const ssock_error_info *e);
int ssock__errlog_read(ssock__errlog *log, ssock_error_info *out, int max, int clear);

/* ------------------------------------------------------------------------ */
/* Endpoints (what servers and clients share) and connections               */
/* ------------------------------------------------------------------------ */

/* Settings both a server and a client apply to their connections. */
typedef struct ssock__cfg {
	ssock_framing framing;
	uint32_t max_message;
	size_t read_size;
	size_t send_queue_max;
	int idle_timeout_ms;
	int read_timeout_ms;
	int keepalive_s;
	ssock_connect_cb on_connect;
	ssock_message_cb on_message;
	ssock_disconnect_cb on_disconnect;
	ssock_error_cb on_error;
	void *user;
} ssock__cfg;

/* The settings a server's or a client's options share, by field name (both
 * options structs spell them the same way). */
#define SSOCK__CFG_FROM_OPTS(o)                                                                  \
	((ssock__cfg){                                                                             \
		.framing = (o)->framing,                                                           \
		.max_message = (o)->max_message,                                                   \
		.read_size = (o)->read_size,                                                       \
		.send_queue_max = (o)->send_queue_max,                                             \
		.idle_timeout_ms = (o)->idle_timeout_ms,                                           \
		.read_timeout_ms = (o)->read_timeout_ms,                                           \
		.keepalive_s = (o)->keepalive_s,                                                   \
		.on_connect = (o)->on_connect,                                                     \
		.on_message = (o)->on_message,                                                     \
		.on_disconnect = (o)->on_disconnect,                                               \
		.on_error = (o)->on_error,                                                         \
		.user = (o)->user,                                                                 \
	})

typedef struct ssock__ep ssock__ep;
struct ssock__ep {
	ssock_loop *loop;
	bool owns_loop;
	bool is_client;
	ssock__cfg cfg;
	bool inbox_mode;
	ssock__inbox inbox;
	ssock__errlog errlog;
	/* Connections, oldest first; changed by the loop under loop->mu. */
	ssock_conn *conns_head, *conns_tail;
	int nconns;
	ssock_conn *paused_head;   /* loop only: reading stopped (inbox full) */
	/* Loop only: the inbox has room again for what the loop held back
	 * (see ssock__inbox_blocked()). Each kind of handle resumes its own. */
	void (*on_room)(ssock__ep *ep);
	bool closing;              /* under loop->mu */
	const struct ssock__transport *tp; /* how its connections do I/O */
	/* Bytes queued to send on all its connections, and their bound (see
	 * ssock_server_opts.send_budget; SIZE_MAX for a client). */
	atomic_size_t queued;
	size_t send_budget;
	/* Hooks for the owner: a connection opened (before its connect event)
	 * and ended (right before its disconnect event, which for a peer's
	 * clean close comes while the socket still finishes closing). Loop
	 * only. */
	void (*on_conn_open)(ssock__ep *ep, ssock_conn *conn);
	void (*on_conn_closed)(ssock__ep *ep, ssock_conn *conn, int reason);
};

int ssock__ep_init(ssock__ep *ep, ssock_loop *given, const ssock__cfg *cfg, size_t inbox_max,
		   size_t inbox_bytes, int errlog_max, bool is_client);
void ssock__ep_destroy(ssock__ep *ep);
/* Reports a background error to the log, on_error or the inbox. Loop only. */
void ssock__ep_error(ssock__ep *ep, int code, const char *op, uint64_t conn,
		     const ssock_addr *peer);
/* Runs fn(arg) on the loop to take the endpoint's sockets off it, then
 * makes sure the loop can no longer reach the endpoint (its own thread
 * joined, or a shared loop's current pass over). Then it may be freed. */
void ssock__ep_shutdown(ssock__ep *ep, void (*fn)(ssock__cmd *cmd), void *arg);
void ssock__cfg_defaults(ssock__cfg *cfg);
int ssock__cfg_check(const ssock__cfg *cfg);

/* The I/O functions of a connection, so that TLS or Unix-domain sockets can
 * come later without touching framing or server/client logic. All return
 * bytes (>= 0) or -errno. */
typedef struct ssock__transport {
	ssize_t (*readv)(ssock_conn *c, struct iovec *iov, int n);
	ssize_t (*writev)(ssock_conn *c, const struct iovec *iov, int n);
	int (*shutdown_wr)(ssock_conn *c);
	void (*close)(ssock_conn *c);
} ssock__transport;

extern const ssock__transport ssock__tcp_transport;

struct ssock__chunk {
	ssock__chunk *next;
	uint8_t *ext;         /* a payload buffer taken over, used instead of
	                         data[] (freed with the chunk); usually NULL */
	size_t off, len, cap; /* bytes[off..len) is still to be written */
	uint8_t data[];
};

enum ssock__conn_state {
	SSOCK__OPEN,     /* reading and writing */
	SSOCK__HALF,     /* peer sent EOF: still writable until its disconnect
	                    event has been delivered */
	SSOCK__CLOSING,  /* flushing what is queued, then shutdown + drain */
	SSOCK__DRAINING, /* write side shut: reading until EOF to avoid RST */
	SSOCK__CLOSED,
};

/* What only some connections need, allocated when first needed (a frame
 * that spans reads, a timeout, a graceful close, tinyproto) and freed when
 * nothing in it is in use, so an idle connection of the other framings
 * without an idle timeout carries none of it. Loop only. */
typedef struct ssock__conn_x {
	ssock_conn *conn;
	/* A frame that spans reads. */
	uint8_t *stash;            /* bytes of a partial frame */
	size_t stash_len, stash_cap;
	size_t scanned;            /* line framing: stash bytes without '\n' */
	uint8_t *big;              /* u32 payload too big for the read buffer */
	size_t big_len, big_have, big_cap;
	bool big_ready;            /* complete but not yet delivered */
	int64_t partial_since;     /* when the current partial frame began */
	/* Timeouts: idle, read (a partial frame), linger (a graceful close). */
	ssock__timer timer;
	int64_t last_io, linger_due;
	/* tinyproto: protocol state, messages waiting for their turn, and the
	 * one whose size was sent and awaits its answer. */
	ssock__tp proto;
	ssock__chunk *tq_head, *tq_tail;
	ssock__chunk *tx_cur;
} ssock__conn_x;

/* A connection. Kept small (168 bytes): an idle server holds one per peer.
 * Loop-only flags share a bitfield; the two flags other threads read under
 * loop->mu are separate bytes, so they never share a memory location with
 * what the loop changes without the lock. */
struct ssock_conn {
	ssock__io io;              /* first: the io pointer is the conn */
	uint64_t id;
	ssock__ep *ep;
	ssock_addr peer;
	void *user;
	ssock_conn *prev, *next;   /* ep's list, changed under loop->mu */

	/* Send side. */
	atomic_size_t queued;      /* bytes in sq, xq and (tinyproto) tq */
	ssock__chunk *sq_head, *sq_tail; /* loop only */
	ssock__chunk *xq_head, *xq_tail; /* cross-thread sends, under mu */
	ssock_conn *xq_next;       /* in loop->xq_head list, under mu */
	union {                    /* never in both lists at once */
		ssock_conn *paused_next; /* ep->paused_head: inbox full */
		ssock_conn *zombie_next; /* loop->zombies: closed */
	};

	ssock__conn_x *x;          /* NULL when nothing in it is needed */
	int close_reason;          /* reason reported when it ends */
	uint32_t flush_idx;        /* 1 + its index in loop->flush; 0: none */
	uint8_t state;             /* enum ssock__conn_state */
	bool disc_emitted : 1;     /* the disconnect event went out */
	bool paused : 1, wpaused : 1, want_write : 1, peer_eof : 1;
	bool in_process : 1;       /* decoding input (callbacks may run) */
	bool closing;              /* under loop->mu: sends are refused */
	bool in_xq_list;           /* under loop->mu */
	atomic_bool gone;          /* set under loop->mu: the program has seen
	                              its disconnect, so its id names nothing */
};

/* Counts bytes into or out of c's send queue and its endpoint's total. */
static inline void ssock__queued_add(ssock_conn *c, size_t n)
{
	atomic_fetch_add_explicit(&c->queued, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->ep->queued, n, memory_order_relaxed);
}

static inline void ssock__queued_sub(ssock_conn *c, size_t n)
{
	atomic_fetch_sub_explicit(&c->queued, n, memory_order_relaxed);
	atomic_fetch_sub_explicit(&c->ep->queued, n, memory_order_relaxed);
}

/* Allocates a connection for a connected socket fd and registers it; the
 * connect event is emitted. Returns NULL (fd closed, error reported) on
 * failure. Loop only. */
ssock_conn *ssock__conn_open(ssock__ep *ep, int fd, const ssock_addr *peer);
/* Ends a connection now: socket closed, queue discarded, disconnect event. */
void ssock__conn_fail(ssock_conn *c, int reason);
/* The connection of ep that id names for the program: NULL when there is
 * none, it is another endpoint's, or its disconnect has been seen. Loop
 * thread, or loop->mu held. */
ssock_conn *ssock__conn_by_id(ssock__ep *ep, uint64_t id);
/* The program has seen c's disconnect (loop->mu not held). */
void ssock__conn_gone(ssock_conn *c);
/* Starts a graceful close (flush, shutdown, drain). Loop only. */
int ssock__conn_close(ssock_conn *c, int reason);
/* Queues one message; loop only. */
int ssock__conn_send(ssock_conn *c, const void *data, size_t len);
/* With loop->mu held: queues chunk on connection id of ep from another
 * thread. Returns 0 (chunk taken), SSOCK_ENOCONN, SSOCK_ECLOSED or
 * SSOCK_ESENDQFULL. */
int ssock__xq_push_locked(ssock__ep *ep, uint64_t id, ssock__chunk *ch);
/* With loop->mu held: waits until a send queue may have room. Returns 0 or
 * SSOCK_ETIMEDOUT (deadline is used when timeout_ms > 0). */
int ssock__wait_room_locked(ssock_loop *loop, int timeout_ms, const struct timespec *deadline);
/* Queues ch from a thread other than the loop's: push_locked(arg, ch) under
 * loop->mu, and while it says SSOCK_ESENDQFULL, waits up to timeout_ms (-1:
 * no limit) for room where this thread may wait. Returns 0 (ch taken) or
 * push_locked's error, or SSOCK_ETIMEDOUT (ch still the caller's). */
int ssock__queue_wait(ssock_loop *l, ssock__chunk *ch, int timeout_ms,
		      int (*push_locked)(void *arg, ssock__chunk *ch), void *arg);
/* Cross-thread send by id (any thread; inline on the loop thread). */
int ssock__send_id(ssock__ep *ep, uint64_t id, const void *data, size_t len, int timeout_ms);
/* Queues one framed message whose room is reserved: to the socket queue, or
 * (tinyproto) to wait for its turn. Loop only. */
void ssock__conn_enqueue(ssock_conn *c, ssock__chunk *ch);
/* Frames data into a freshly allocated chunk (for sends from other threads). */
int ssock__frame_chunk(ssock_framing f, const void *data, size_t len, size_t max_queue,
		       ssock__chunk **out);
/* Resumes reading on connections paused by a full inbox. Loop only. */
void ssock__ep_resume_paused(ssock__ep *ep);
/* Handles the acknowledgement of a half-closed connection's disconnect. */
void ssock__conn_ack(ssock_loop *loop, uint64_t id);
/* Loop only: writes what connections queued during this pass, then frees
 * the connections closed during it. */
void ssock__flush_all(ssock_loop *loop);
/* Loop only: moves cross-thread sends into their connections' queues. */
void ssock__take_xq(ssock_loop *loop);
void ssock__chunk_free(ssock_loop *loop, ssock__chunk *ch);
/* Closes every connection of ep at once (server/client close). Loop only. */
void ssock__ep_close_all(ssock__ep *ep, int reason);

/* Socket helpers. */
int ssock__socket_opts(int fd, int keepalive_s);
int ssock__errno(void); /* -errno, never 0 */
uint64_t ssock__next_id(void);

#endif
