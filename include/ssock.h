/*
 * ssock.h - framed TCP servers and clients, and UDP sockets, on an event loop.
 *
 * This is the only public header of libssock. Everything here is documented
 * function by function: what it returns, who owns what, which thread may call
 * it. Conventions that hold everywhere unless a function says otherwise:
 *
 *   - Every call that can fail returns 0 (or a non-negative count) on success
 *     and a negative error code on failure: -errno where one fits, else one of
 *     the SSOCK_E* codes below. ssock_strerror() names every code. errno is
 *     never the channel for an error.
 *   - Handles (ssock_loop, ssock_server, ssock_client, ssock_udp) are opaque and
 *     allocated by the library; every public call on them is thread-safe.
 *   - Options structs are read during the *_new() call only; every zero field
 *     means the documented default, so `ssock_server_opts o = {.listen =
 *     ":9000"};` is a complete configuration.
 *   - Callbacks run on the I/O (loop) thread. A `ssock_conn *` passed to a
 *     callback is valid only during that callback; keep its id instead.
 *   - Connection ids are 64-bit and never reused within a process, so a stale
 *     id is an error (SSOCK_ENOCONN), never a use-after-free.
 *   - The library never changes process-wide state: no signal handlers, no
 *     rlimits. SIGPIPE cannot be raised by it (every send uses MSG_NOSIGNAL).
 */
#ifndef SSOCK_H
#define SSOCK_H

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define SSOCK_VERSION_MAJOR  0
#define SSOCK_VERSION_MINOR  2
#define SSOCK_VERSION_PATCH  0
#define SSOCK_VERSION_STRING "0.2.0"
#define SSOCK_VERSION_NUMBER \
	((SSOCK_VERSION_MAJOR << 16) | (SSOCK_VERSION_MINOR << 8) | SSOCK_VERSION_PATCH)

/* Returns the version string of the library actually linked (e.g. "0.2.0");
 * a static string. Any thread. */
const char *ssock_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Every error code with its message, in one list so that ssock_strerror() and
 * ssock_errname() can never drift from it. Codes that have an errno equivalent
 * are -errno; the rest are below -30000, far from any errno value.
 */
#define SSOCK_ERRORS(X)                                                                         \
	X(SSOCK_EINVAL, -EINVAL, "invalid argument")                                            \
	X(SSOCK_ENOMEM, -ENOMEM, "out of memory")                                               \
	X(SSOCK_EBUSY, -EBUSY, "resource busy (still in use)")                                  \
	X(SSOCK_EMSGSIZE, -EMSGSIZE, "message too large")                                       \
	X(SSOCK_ETIMEDOUT, -ETIMEDOUT, "timed out")                                             \
	X(SSOCK_ECONNREFUSED, -ECONNREFUSED, "connection refused")                              \
	X(SSOCK_ECONNRESET, -ECONNRESET, "connection reset by peer")                            \
	X(SSOCK_EPIPE, -EPIPE, "broken pipe")                                                   \
	X(SSOCK_EADDRINUSE, -EADDRINUSE, "address already in use")                              \
	X(SSOCK_EADDRNOTAVAIL, -EADDRNOTAVAIL, "address not available")                         \
	X(SSOCK_EACCES, -EACCES, "permission denied")                                           \
	X(SSOCK_EMFILE, -EMFILE, "too many open files")                                         \
	X(SSOCK_ENFILE, -ENFILE, "too many open files in system")                               \
	X(SSOCK_ENETUNREACH, -ENETUNREACH, "network unreachable")                               \
	X(SSOCK_EHOSTUNREACH, -EHOSTUNREACH, "host unreachable")                                \
	X(SSOCK_ENOTCONN, -ENOTCONN, "not connected")                                           \
	X(SSOCK_EAFNOSUPPORT, -EAFNOSUPPORT, "address family not supported")                    \
	X(SSOCK_ENOCONN, -30001, "no such connection (unknown or stale id)")                    \
	X(SSOCK_ECLOSED, -30002, "connection or handle is closing")                             \
	X(SSOCK_ESENDQFULL, -30003, "send queue full")                                          \
	X(SSOCK_ETRUNCATED, -30004, "peer closed the connection in mid-message")                \
	X(SSOCK_EFRAMING, -30005, "message cannot be framed or frame is malformed")             \
	X(SSOCK_ELIMIT, -30006, "connection limit reached")                                     \
	X(SSOCK_EIDLE, -30007, "idle timeout")                                                  \
	X(SSOCK_ESTALLED, -30008, "peer stalled in mid-message (read timeout)")                 \
	X(SSOCK_EBADADDR, -30009, "invalid address (expected HOST:PORT, [IPV6]:PORT or :PORT)") \
	X(SSOCK_ERESOLVE, -30010, "host name could not be resolved")                            \
	X(SSOCK_ELOOPTHREAD, -30011, "cannot block or close from the loop thread")              \
	X(SSOCK_ELOCAL, -30012, "closed by this side")                                          \
	X(SSOCK_ESHUTDOWN, -30013, "server or client is shutting down")                         \
	X(SSOCK_ENOINBOX, -30014, "events go to callbacks, not to the inbox")                   \
	X(SSOCK_EPROTO, -30015, "protocol error (bad handshake or status byte)")                \
	X(SSOCK_EREFUSED, -30016, "peer refused the message")                                   \
	X(SSOCK_ECOLLISION, -30017,                                                             \
	  "both sides started a message at once (half-duplex collision)")                       \
	X(SSOCK_EHANDSHAKE, -30018,                                                             \
	  "handshake did not complete (does the peer speak this protocol?)")

enum ssock_error_code {
#define SSOCK__ERR_ENUM(name, value, msg) name = (value),
	SSOCK_ERRORS(SSOCK__ERR_ENUM)
#undef SSOCK__ERR_ENUM
};

/* Returns a static, human-readable message for any code: the SSOCK_E* codes,
 * any other -errno, and 0 ("success"). Never NULL. Any thread. */
const char *ssock_strerror(int code);

/* Returns the symbolic name of a code ("SSOCK_ESENDQFULL", or "E..." for an
 * -errno not in the list, "UNKNOWN" otherwise); static string. Any thread. */
const char *ssock_errname(int code);

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */
/* ------------------------------------------------------------------------ */

/* An IPv4 or IPv6 socket address. Plain data: copy it freely. (Sized for
 * IPv6, not for sockaddr_storage: every connection keeps one, and idle
 * connections should cost little memory.) */
typedef struct ssock_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} u;
	socklen_t len;
} ssock_addr;

/* Large enough for any text ssock_addr_format() writes, with its NUL. */
#define SSOCK_ADDRSTRLEN 64

/* Writes "1.2.3.4:80" or "[::1]:80" into buf (always NUL-terminated when
 * size > 0). Returns the length written (without the NUL), SSOCK_EINVAL for an
 * unset address or SSOCK_EMSGSIZE when buf is too small. Any thread. */
int ssock_addr_format(const ssock_addr *addr, char *buf, size_t size);

/* Returns the port of addr in host order, or -1 for an unset address. */
int ssock_addr_port(const ssock_addr *addr);

/* Resolves "HOST:PORT", "[IPV6]:PORT" or ":PORT" (HOST may be a name) into
 * up to max addresses, in resolver order. `passive` selects wildcard addresses
 * for ":PORT" (for binding: [::] then 0.0.0.0) instead of loopback. Returns the
 * number of addresses (>= 1), SSOCK_EBADADDR for malformed text, or
 * SSOCK_ERESOLVE when the name does not resolve. May block on DNS. Any thread. */
int ssock_addr_resolve(const char *text, int passive, ssock_addr *out, int max);

/* ------------------------------------------------------------------------ */
/* Framing, events, connections                                              */
/* ------------------------------------------------------------------------ */

/* How messages are delimited on the wire (see docs/DESIGN.md, "Wire formats"). */
typedef enum ssock_framing {
	SSOCK_FRAMING_U32 = 0,   /* 4-byte big-endian length, then payload (default) */
	SSOCK_FRAMING_LINE,      /* payload then '\n'; a '\r' before it is stripped */
	SSOCK_FRAMING_RAW,       /* no framing: bytes as they arrive */
	SSOCK_FRAMING_TINYPROTO, /* Python tinyproto 3.0 wire format */
} ssock_framing;

/* Parses "u32", "line", "raw" or "tinyproto". Returns 0 and sets *out, or
 * SSOCK_EINVAL. Any thread. */
int ssock_framing_parse(const char *name, ssock_framing *out);

/* Returns the name of a framing ("u32", ...), or "?" for an unknown value. */
const char *ssock_framing_name(ssock_framing f);

/* The connection behind a callback. Valid only during that callback. */
typedef struct ssock_conn ssock_conn;

typedef enum ssock_event_type {
	SSOCK_EVENT_NONE = 0,
	SSOCK_EVENT_CONNECT,    /* a connection is established */
	SSOCK_EVENT_MESSAGE,    /* one whole message arrived */
	SSOCK_EVENT_DISCONNECT, /* a connection ended; `code` says why */
	SSOCK_EVENT_ERROR,      /* something failed in the background */
} ssock_event_type;

/*
 * One event taken from an inbox. After ssock_*_next_event() returns 0 the
 * caller owns the event and must pass it to ssock_event_release() (which frees
 * `data`); it may instead take `data` for itself, set it to NULL, and later
 * free it with ssock_free().
 */
typedef struct ssock_event {
	ssock_event_type type;
	uint64_t conn;   /* connection id; 0 for an error not tied to one */
	ssock_addr peer; /* the peer's address (unset for some errors) */
	int code;        /* DISCONNECT: reason, 0 when the peer closed cleanly;
	                     ERROR: the error code */
	const char *op;  /* ERROR: the operation that failed ("accept", "read",
	                     "connect", "frame", ...); static string */
	void *data;      /* MESSAGE: payload (NULL when len == 0) */
	size_t len;      /* MESSAGE: payload length */
	size_t unsent;   /* DISCONNECT: queued bytes that were never sent */
} ssock_event;

/* Frees what an event owns and resets it to SSOCK_EVENT_NONE. Safe on a
 * zeroed or already released event (not on a copy of a released one: that
 * is a double free). Any thread. A message payload of 64 KiB or more may be
 * kept for the next large read instead (16 blocks, 16 MiB in all, per
 * process, only while a loop is busy; see the README's limits). */
void ssock_event_release(ssock_event *ev);

/* Frees memory the library handed over (event data, ssock_client_recv()
 * payloads). NULL is fine. Any thread. */
void ssock_free(void *p);

/* One entry of a server's or client's background error log. */
typedef struct ssock_error_info {
	int code;        /* the error code */
	const char *op;  /* the operation that failed; static string */
	uint64_t conn;   /* connection id, 0 when none */
	ssock_addr peer; /* peer address, unset when none */
	int64_t time_ms; /* wall-clock time (ms since the Unix epoch) */
} ssock_error_info;

/*
 * Callbacks, all optional, all called on the loop thread with the `user`
 * pointer given in the options. A callback may call any ssock function except
 * the blocking ones (those that take a wait or timeout, and *_free() of the
 * handle the callback belongs to), which return SSOCK_ELOOPTHREAD there.
 *
 * Where events go: if on_message is set, the handle is in callback mode and
 * events whose callback is not set are discarded. If on_message is NULL, the
 * handle is in inbox mode: every event whose callback is not set goes to the
 * inbox (see ssock_server_next_event()).
 */
typedef void (*ssock_connect_cb)(ssock_conn *conn, void *user);
/* `data` is owned by the library and valid during the call only. */
typedef void (*ssock_message_cb)(ssock_conn *conn, const void *data, size_t len, void *user);
/* `reason` is 0 when the peer closed cleanly, else an error code. */
typedef void (*ssock_disconnect_cb)(ssock_conn *conn, int reason, void *user);
/* `err` is valid during the call only. */
typedef void (*ssock_error_cb)(const ssock_error_info *err, void *user);

/* Returns the connection's id. */
uint64_t ssock_conn_id(const ssock_conn *conn);

/* Returns the peer's address; valid as long as conn is. */
const ssock_addr *ssock_conn_peer(const ssock_conn *conn);

/* Queues a copy of data[0..len) as one message on this connection; the caller's
 * buffer is free on return. The fast path for replying from a callback.
 * Returns 0, SSOCK_ESENDQFULL when the send queue has no room, SSOCK_EMSGSIZE
 * when the message can never fit (above 4 GiB - 1 or the send queue limit),
 * SSOCK_EFRAMING when line framing is used and data holds a '\n', or
 * SSOCK_ECLOSED when the connection is closing. Loop thread (callbacks) only. */
int ssock_conn_send(ssock_conn *conn, const void *data, size_t len);

/* Closes the connection gracefully: stops reading, sends what is queued, then
 * closes. (With tinyproto it reads on for the peer's answers that queued
 * messages wait for; a message the peer starts meanwhile is refused.) The
 * disconnect event follows with reason SSOCK_ELOCAL. Returns 0 or
 * SSOCK_ECLOSED if already closing. Loop thread (callbacks) only. */
int ssock_conn_close(ssock_conn *conn);

/* A pointer of the program's own, kept per connection (initially NULL). */
void ssock_conn_set_user(ssock_conn *conn, void *ptr);
void *ssock_conn_user(const ssock_conn *conn);

/* The server (or client) the connection belongs to, so a callback can reach
 * its handle without a global. ssock_conn_server() returns NULL for a
 * client's connection, ssock_conn_client() NULL for a server's. Valid as
 * long as conn is. */
struct ssock_server *ssock_conn_server(const ssock_conn *conn);
struct ssock_client *ssock_conn_client(const ssock_conn *conn);

/* ------------------------------------------------------------------------ */
/* Loop                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * An epoll event loop. Servers and clients normally own one each (running on
 * a background thread they start and join). To run many servers/clients on one
 * thread, create a loop and pass it in their options; then either start it on
 * a background thread with ssock_loop_start(), or drive it from a thread of
 * your own with ssock_loop_run().
 */
typedef struct ssock_loop ssock_loop;

/* Creates a loop (not yet running). Returns 0 and sets *out, or a negative
 * code (SSOCK_ENOMEM, -EMFILE, ...). Any thread. */
int ssock_loop_new(ssock_loop **out);

/* Runs the loop on a new background thread. Returns 0, SSOCK_EBUSY if it is
 * already running or being driven, or a pthread error. Any thread. */
int ssock_loop_start(ssock_loop *loop);

/* Runs one pass of the loop on the calling thread: waits up to timeout_ms (-1:
 * no limit) for I/O, timers or cross-thread calls, and handles them. Returns
 * 0, SSOCK_EBUSY if a background thread runs this loop, or another negative
 * code. Call it repeatedly from one thread at a time. */
int ssock_loop_run(ssock_loop *loop, int timeout_ms);

/* Stops the background thread started by ssock_loop_start() and joins it.
 * Returns 0 (also when it was not running) or SSOCK_ELOOPTHREAD when called
 * from the loop thread itself. Any other thread. */
int ssock_loop_stop(ssock_loop *loop);

/* Stops the loop if running and frees it. Returns 0, or SSOCK_EBUSY (and
 * frees nothing) while servers or clients still use it. Not from the loop
 * thread. */
int ssock_loop_free(ssock_loop *loop);

/* ------------------------------------------------------------------------ */
/* TCP server                                                                */
/* ------------------------------------------------------------------------ */

typedef struct ssock_server ssock_server;

/* The largest keepalive_s the kernel takes (Linux's TCP_KEEPIDLE limit). */
#define SSOCK_KEEPALIVE_MAX 32767

typedef struct ssock_server_opts {
	/* Listen address: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (all addresses,
	 * IPv6 and IPv4). Port 0 picks a free port: read it with
	 * ssock_server_addr(). Required. More: ssock_server_listen(). */
	const char *listen;
	int backlog;              /* listen() backlog; default SOMAXCONN */
	int max_conns;            /* connections at once; 0: no limit but the fd limit.
	                        One over the limit is accepted and closed at once,
	                        and an SSOCK_ELIMIT error is reported. */
	ssock_framing framing;    /* default SSOCK_FRAMING_U32 */
	uint32_t max_message;     /* largest message accepted from a peer, in bytes;
	                          default 16 MiB, at most 4 GiB - 1. A peer that
	                          announces more is closed with SSOCK_EMSGSIZE
	                          before anything is allocated. */
	size_t read_size;         /* bytes per read() call; default 64 KiB */
	size_t send_queue_max;    /* bytes queued per connection; default 32 MiB or
	                          max_message + 8 if that is larger (room
	                          for any framing's header). Counted in
	                          bytes on the wire; small messages share
	                          memory blocks, so memory stays near it
	                          (tinyproto: about 60 bytes more per
	                          message, each waits on its own) */
	size_t send_budget;       /* bytes queued to send across all connections,
	                          the server's bound on memory held for slow
	                          readers; default 64 MiB, or twice
	                          send_queue_max if that is larger. While the
	                          total is above half of it, a connection
	                          holding more than 64 KiB is not read from
	                          until it drains (its peer is slow: stop
	                          making replies for it); a send that would go
	                          over it fails with SSOCK_ESENDQFULL as a full
	                          queue does. */
	size_t inbox_max;         /* inbox mode: messages held before reading stops
	                          (TCP backpressure); default 1024 */
	size_t inbox_max_bytes;   /* inbox mode: payload bytes held likewise;
	                          default 64 MiB */
	int idle_timeout_ms;      /* close a connection with no traffic either way
	                          for this long (SSOCK_EIDLE); 0: never. When
	                          it runs out while the connection's messages
	                          wait in the inbox for the program (or its
	                          reading waits for room there), the wait is
	                          this side's: the clock starts again. */
	int read_timeout_ms;      /* close a connection whose partial message has
	                          not completed in this long (SSOCK_ESTALLED);
	                          time spent waiting for room in a full inbox
	                          does not count; 0: never */
	int handshake_timeout_ms; /* a connection whose handshake has not
	                          finished in this long is closed with
	                          SSOCK_EHANDSHAKE; default 10000. With
	                          tinyproto framing that is the peer's 0xFF
	                          (the connect event comes at once, and
	                          messages wait for it). A client uses its
	                          connect_timeout_ms. */
	int keepalive_s;          /* TCP keepalive idle seconds, at most
	                          SSOCK_KEEPALIVE_MAX; 0: off */
	int error_log_max;        /* entries kept in the error log; default 64 */
	ssock_loop *loop;         /* shared loop; NULL: the server owns a loop on a
	                          background thread */
	ssock_connect_cb on_connect;
	ssock_message_cb on_message;
	ssock_disconnect_cb on_disconnect;
	ssock_error_cb on_error;
	void *user; /* passed to every callback */
} ssock_server_opts;

/* Creates a server, binds and listens on opts->listen, and starts serving
 * (on its own background thread unless opts->loop is given). Returns 0, or
 * SSOCK_EINVAL (bad options), SSOCK_EBADADDR, SSOCK_ERESOLVE,
 * SSOCK_EADDRINUSE, ... *out is set before any callback can run (a program
 * that keeps the server in a variable sees it set in its first on_connect),
 * and is NULL after a failure, which leaves nothing allocated. Any thread;
 * a host name is resolved on the calling thread (it may block on DNS), so
 * on a loop thread (from a callback) only a numeric address is taken, and
 * a name is SSOCK_ELOOPTHREAD. */
int ssock_server_new(ssock_server **out, const ssock_server_opts *opts);

/* Adds another listen address (tinyproto's add_addr). Returns the index of
 * the new listener (>= 1), or an error as ssock_server_new(). Any thread. */
int ssock_server_listen(ssock_server *srv, const char *addr);

/* Copies the bound address of listener `index` (0 is opts->listen) into *out.
 * Returns 0 or SSOCK_EINVAL for an unknown index. Any thread. */
int ssock_server_addr(ssock_server *srv, int index, ssock_addr *out);

/* Queues a copy of data[0..len) as one message to connection `id`; the
 * caller's buffer is free on return. Returns 0 (queued: it will be sent unless
 * the connection ends first, in which case the disconnect event counts it in
 * `unsent`), SSOCK_ENOCONN for an unknown or stale id, SSOCK_ECLOSED when the
 * connection is closing, SSOCK_ESENDQFULL when its send queue has no room,
 * SSOCK_EMSGSIZE or SSOCK_EFRAMING as ssock_conn_send(). Any thread; messages
 * from one thread to one connection are sent in call order. */
int ssock_server_send(ssock_server *srv, uint64_t id, const void *data, size_t len);

/* As ssock_server_send(), but when the send queue is full waits up to
 * timeout_ms (-1: no limit) for room; returns SSOCK_ETIMEDOUT if none came.
 * On the loop thread it cannot wait and returns SSOCK_ESENDQFULL at once. */
int ssock_server_send_timeout(ssock_server *srv, uint64_t id, const void *data, size_t len,
			      int timeout_ms);

/* Gives back a buffer sent by reference: called once with the data and arg
 * given to ssock_server_send_ref() or ssock_client_send_ref(). It runs on the
 * loop's thread (the message was written, or dropped with its connection), on
 * the thread freeing the handle, or on the sending thread before the send
 * returns (the message was copied after all). It must not block and must not
 * call ssock functions other than ssock_free().
 *
 * Only this call gives the buffer back: not the connection's disconnect event
 * (a message dropped with its connection may be given back just after it),
 * nor ssock_client_flush() returning (the bytes were written; the release
 * follows). */
typedef void (*ssock_release_fn)(const void *data, void *arg);

/* As ssock_server_send_timeout(), without copying a large payload: data[0..len)
 * stays the caller's memory, which ssock reads while the message waits to be
 * written, and is given back with release(data, arg) once ssock is done with
 * it. The caller must not change or free those bytes until then. release must
 * not be NULL. data must be the program's own memory: the data a message
 * callback is given is ssock's, for the call only (ssock_conn_send() of it
 * already echoes it without a copy); given here, it is sent as
 * ssock_conn_send() would, and given back at once.
 *
 * Returns 0 when the message was taken: release will be called exactly once,
 * maybe before this returns. Small messages (under 4 KiB) and framings whose
 * wire form is not a header followed by the payload (line, tinyproto) are
 * copied as by ssock_server_send_timeout() and given back at once. Any other
 * return is an error of ssock_server_send_timeout() (or SSOCK_EINVAL):
 * release is not called and data is still the caller's. Any thread; order as
 * ssock_server_send(). */
int ssock_server_send_ref(ssock_server *srv, uint64_t id, const void *data, size_t len,
			  int timeout_ms, ssock_release_fn release, void *arg);

/* Queues a copy of the message to every open connection. Returns the number
 * of connections it was queued to (those with a full queue are skipped and
 * reported as SSOCK_ESENDQFULL errors), or a negative code. Any thread. */
int ssock_server_broadcast(ssock_server *srv, const void *data, size_t len);

/* As ssock_server_broadcast(), to every open connection but `except_id` (the
 * sender, in a chat room). An except_id that names no connection excludes
 * nothing. Any thread. */
int ssock_server_broadcast_except(ssock_server *srv, uint64_t except_id, const void *data,
				  size_t len);

/* Closes connection `id` gracefully (as ssock_conn_close()). Returns 0,
 * SSOCK_ENOCONN or SSOCK_ECLOSED. Any thread. */
int ssock_server_disconnect(ssock_server *srv, uint64_t id);

/* Stops reading from connection `id` / starts again. While paused its peer
 * meets TCP backpressure (with tinyproto, its next message waits for this
 * side's answer); messages already read may still be delivered, and the
 * read timeout does not run. For a program that serves one connection more
 * slowly than the others (a queue of its own that is full) without holding
 * them up. Pausing a paused connection (or resuming a running one) is fine;
 * a pause takes effect at the next message, a resume in the loop's next
 * round of commands. With tinyproto framing the peer's answers to this
 * side's messages wait too (and its handshake byte, if it has not come
 * yet): what is sent while paused goes out after the resume. Closing the
 * connection (ssock_server_disconnect()) ends the pause.
 * Returns 0, SSOCK_ENOCONN for an unknown or stale id, or SSOCK_ENOMEM.
 * Any thread. */
int ssock_server_pause_reading(ssock_server *srv, uint64_t id);
int ssock_server_resume_reading(ssock_server *srv, uint64_t id);

/* Waits up to timeout_ms (-1: no limit; 0: only looks) until what is queued
 * to connection `id` (0: to every connection) has been written to its
 * socket, including what other threads queued before the call and what a
 * closing connection still sends. A connection that ends meanwhile ends
 * the wait for it: its disconnect event counts what it never sent in
 * `unsent`. Call before ssock_server_free(), which discards queues, when
 * they matter. Returns 0, SSOCK_ETIMEDOUT, SSOCK_ENOCONN when `id` names no
 * open connection of srv, SSOCK_ESHUTDOWN when the server is freed
 * meanwhile, or SSOCK_ELOOPTHREAD from a callback (of any loop) or the
 * thread that drives a loop without a thread of its own. Any other thread. */
int ssock_server_flush(ssock_server *srv, uint64_t id, int timeout_ms);

/* A connection as listed by ssock_server_conns(). */
typedef struct ssock_conn_info {
	uint64_t id;
	ssock_addr peer;
	size_t queued; /* bytes waiting in its send queue */
} ssock_conn_info;

/* Copies up to max open connections (oldest first) into out. Returns the
 * total number open, which may exceed max. Any thread. */
int ssock_server_conns(ssock_server *srv, ssock_conn_info *out, int max);

/* A server's counters and what it holds now, as ssock_server_stats_get() reads
 * them. */
typedef struct ssock_server_stats {
	uint64_t accepted;   /* connections accepted since the start */
	uint64_t refused;    /* closed at once: over max_conns */
	int conns;           /* open now */
	int accepting;       /* 1 while listeners accept; 0 while paused (by
	                         ssock_server_pause(), a full inbox or running
	                         out of fds) */
	size_t queued;       /* bytes queued to send, all connections */
	size_t inbox_events; /* events waiting in the inbox */
	size_t inbox_bytes;  /* their payload bytes */
} ssock_server_stats;

/* Fills *out. Returns 0. Any thread; the figures are read one after
 * another, not as one snapshot. */
int ssock_server_stats_get(ssock_server *srv, ssock_server_stats *out);

/* Pauses accepting new connections (listeners stay bound; the kernel backlog
 * fills) / resumes it. Returns 0. Any thread. */
int ssock_server_pause(ssock_server *srv);
int ssock_server_resume(ssock_server *srv);

/* Inbox mode: takes the oldest event into *ev, waiting up to timeout_ms (0:
 * don't wait, -1: no limit). Returns 0 (the caller now owns *ev: see
 * ssock_event), SSOCK_ETIMEDOUT when none came, SSOCK_ENOINBOX in callback
 * mode, SSOCK_ESHUTDOWN once the server is closing, or SSOCK_ELOOPTHREAD for
 * a wait (timeout_ms != 0) from any callback (of any loop), or on the
 * thread that drives a loop without a background thread with
 * ssock_loop_run() (the wait could never end). Once a DISCONNECT event has
 * been taken, its connection id is gone: sends to it fail with
 * SSOCK_ENOCONN and ssock_server_conns() omits it.
 * Any thread; never spins.
 *
 * Bounds: messages as inbox_max / inbox_max_bytes say (reading stops when
 * full); connect and disconnect events: when inbox_max of them wait, the
 * server stops accepting until the program takes some, so a peer that
 * connects and resets in a loop cannot grow the inbox. The disconnect of a
 * connection whose connect was queued always goes in (at most one per open
 * connection), so every connection the program saw ends, in order. */
int ssock_server_next_event(ssock_server *srv, ssock_event *ev, int timeout_ms);

/* Inbox mode: a file descriptor that is readable while the inbox holds an
 * event (and once the server is closing), for poll(), epoll or an asyncio
 * loop; then take events with ssock_server_next_event(srv, &ev, 0). Only
 * wait for it to be readable: never read, write or close it. Created on
 * the first call (later calls return the same fd) and closed by
 * ssock_server_free(). Returns the fd, SSOCK_ENOINBOX in callback mode, or
 * a -errno from creating it. Any thread. */
int ssock_server_event_fd(ssock_server *srv);

/* Copies up to max entries of the error log (oldest first) into out, and
 * clears the log when `clear` is non-zero. Returns the number of entries the
 * log held. Any thread. */
int ssock_server_errors(ssock_server *srv, ssock_error_info *out, int max, int clear);

/* Stops accepting, closes every connection (queued data is discarded:
 * ssock_server_flush() first if it matters),
 * joins the server's thread if it owns one, closes every socket and frees
 * the server. Inbox events not yet taken are freed. Threads waiting in
 * ssock_server_next_event() wake with SSOCK_ESHUTDOWN before the memory
 * goes; no other call on srv may start once freeing has begun. Returns 0,
 * or SSOCK_ELOOPTHREAD (and does nothing) when called from the loop thread.
 * NULL is fine. (To end one connection, see ssock_server_disconnect().) */
int ssock_server_free(ssock_server *srv);

/* The name ssock_server_free() had before 0.2: kept so programs written
 * against 0.1 still build. It frees the server, as it always did. */
int ssock_server_close(ssock_server *srv);

/* ------------------------------------------------------------------------ */
/* TCP client                                                                */
/* ------------------------------------------------------------------------ */

typedef struct ssock_client ssock_client;

/* The client's connection state. */
typedef enum ssock_client_state {
	SSOCK_STATE_DISCONNECTED = 0,
	SSOCK_STATE_CONNECTING,
	SSOCK_STATE_CONNECTED,
} ssock_client_state;

typedef struct ssock_client_opts {
	const char *connect;     /* "HOST:PORT" or "[IPV6]:PORT"; HOST may be a
	                          name, resolved again on every attempt. Required. */
	ssock_framing framing;   /* default SSOCK_FRAMING_U32 */
	uint32_t max_message;    /* as in ssock_server_opts */
	size_t read_size;        /* as in ssock_server_opts */
	size_t send_queue_max;   /* as in ssock_server_opts */
	size_t inbox_max;        /* as in ssock_server_opts */
	size_t inbox_max_bytes;  /* as in ssock_server_opts */
	int connect_timeout_ms;  /* per attempt; default 10000 */
	int idle_timeout_ms;     /* as in ssock_server_opts */
	int read_timeout_ms;     /* as in ssock_server_opts */
	int keepalive_s;         /* as in ssock_server_opts */
	int auto_reconnect;      /* non-zero: after a lost connection or a failed
	                          attempt, try again with exponential backoff and
	                          jitter, until ssock_client_disconnect() */
	int reconnect_min_ms;    /* first backoff delay; default 100 */
	int reconnect_max_ms;    /* backoff cap; default 10000 */
	int reconnect_max_tries; /* give up after this many failed attempts in a
	                            row; 0: never */
	int queue_while_offline; /* non-zero: sends while not connected are
	                            queued (bounded by send_queue_max) and sent on
	                            (re)connect; zero: they fail with
	                            SSOCK_ENOTCONN at once */
	int error_log_max;       /* as in ssock_server_opts */
	ssock_loop *loop;        /* as in ssock_server_opts */
	ssock_connect_cb on_connect;
	ssock_message_cb on_message;
	ssock_disconnect_cb on_disconnect;
	ssock_error_cb on_error;
	void *user;
} ssock_client_opts;

/* Creates a client (not yet connected; call ssock_client_connect()). Returns
 * 0 and sets *out, or SSOCK_EINVAL / SSOCK_EBADADDR for bad options (then
 * *out is NULL and nothing is left allocated). Any thread. */
int ssock_client_new(ssock_client **out, const ssock_client_opts *opts);

/* Starts connecting. A host name is looked up again on every attempt, on a
 * resolver thread (never on the loop, so a name server that does not answer
 * stalls nothing else), within the attempt's connect_timeout_ms (then an
 * SSOCK_ETIMEDOUT error with op "resolve"). With wait_ms == 0 returns 0 at
 * once and the result comes as a connect event or error event. Otherwise
 * waits up to wait_ms (-1: no limit; each attempt is still bounded by
 * connect_timeout_ms) and returns 0 once connected (with tinyproto: once
 * the TCP connection is up; messages sent before the server's handshake
 * byte wait for it; connect_timeout_ms bounds that wait too), the attempt's error
 * (SSOCK_ECONNREFUSED, SSOCK_ETIMEDOUT, SSOCK_ERESOLVE, ...) when it failed
 * and auto_reconnect is off, or SSOCK_ETIMEDOUT when wait_ms passed first.
 * Returns 0 at once if already connected. Any thread; waiting is refused on
 * the loop thread (SSOCK_ELOOPTHREAD). */
int ssock_client_connect(ssock_client *cli, int wait_ms);

/* Drops the current connection (if any) and connects again, as
 * ssock_client_connect(cli, 0). Returns 0. Any thread. */
int ssock_client_reconnect(ssock_client *cli);

/* Closes the connection gracefully (queued data is sent first) and stops
 * reconnecting. Returns 0, or SSOCK_ENOTCONN when not connected. Any thread. */
int ssock_client_disconnect(ssock_client *cli);

/* Returns the current state. Any thread. */
ssock_client_state ssock_client_state_get(ssock_client *cli);

/* Returns the id of the current connection, or 0 when not connected. Every
 * (re)connection gets a new id. Any thread. */
uint64_t ssock_client_id(ssock_client *cli);

/* Queues a copy of data[0..len) as one message. Returns 0, SSOCK_ENOTCONN
 * when not connected (unless queue_while_offline), or the errors of
 * ssock_server_send(). Any thread. */
int ssock_client_send(ssock_client *cli, const void *data, size_t len);

/* As ssock_client_send(), waiting up to timeout_ms for room in a full send
 * queue (see ssock_server_send_timeout()). */
int ssock_client_send_timeout(ssock_client *cli, const void *data, size_t len, int timeout_ms);

/* As ssock_client_send_timeout(), by reference: see ssock_server_send_ref().
 * A message queued while offline holds data until it is written on the next
 * connection, or given back when the client is freed. */
int ssock_client_send_ref(ssock_client *cli, const void *data, size_t len, int timeout_ms,
			  ssock_release_fn release, void *arg);

/* Waits up to timeout_ms (-1: no limit) until everything queued has been
 * written to the socket: on the latest connection (also while it closes
 * after ssock_client_disconnect()), and what queue_while_offline holds,
 * which waits for the next connection while the client is connecting.
 * Returns 0, SSOCK_ETIMEDOUT, SSOCK_ENOTCONN when the connection ended with
 * data unsent or offline data has no connection coming, or SSOCK_ESHUTDOWN
 * when the client is freed meanwhile. Not from the loop thread. */
int ssock_client_flush(ssock_client *cli, int timeout_ms);

/* As ssock_server_pause_reading() / _resume_reading(), for the client's
 * current connection (a new connection starts reading). Returns 0, or
 * SSOCK_ENOTCONN when there is none. Any thread. */
int ssock_client_pause_reading(ssock_client *cli);
int ssock_client_resume_reading(ssock_client *cli);

/* Blocking receive for simple programs (inbox mode only): waits up to
 * timeout_ms (-1: no limit) for the next message and hands it over: on 0,
 * *data (NULL when *len == 0) is the caller's to free with ssock_free().
 * Connect events are skipped. Returns 0, SSOCK_ETIMEDOUT, SSOCK_ENOTCONN when
 * the connection ended (the disconnect event is consumed), the code of an
 * error event, or SSOCK_ENOINBOX in callback mode. Any thread but the loop's. */
int ssock_client_recv(ssock_client *cli, void **data, size_t *len, int timeout_ms);

/* Inbox mode: as ssock_server_next_event(). */
int ssock_client_next_event(ssock_client *cli, ssock_event *ev, int timeout_ms);

/* Inbox mode: as ssock_server_event_fd(). */
int ssock_client_event_fd(ssock_client *cli);

/* As ssock_server_errors(). */
int ssock_client_errors(ssock_client *cli, ssock_error_info *out, int max, int clear);

/* Closes the connection at once (queued data is discarded: flush first if it
 * matters), stops reconnecting, joins the client's thread if it owns one and
 * frees the client. Returns 0, or SSOCK_ELOOPTHREAD (and does nothing) on the
 * loop thread. NULL is fine. (To end only the connection, see
 * ssock_client_disconnect().) */
int ssock_client_free(ssock_client *cli);

/* The name of ssock_client_free() before 0.2, kept for programs written
 * against 0.1. */
int ssock_client_close(ssock_client *cli);

/* ------------------------------------------------------------------------ */
/* UDP                                                                       */
/* ------------------------------------------------------------------------ */

/*
 * A UDP socket: one datagram is one message, delivered whole with its
 * sender's address, through a callback or the inbox, like a server's
 * messages. Reading runs on a loop (its own background thread, or a shared
 * one); sending needs no loop at all: every send is one non-blocking
 * sendto(..., MSG_NOSIGNAL) on the socket by the calling thread, so there is
 * no send queue and nothing to flush (the kernel's socket buffer is the
 * queue; sendto on a UDP socket is thread-safe).
 *
 * Two forms:
 *   - bound (opts.bind): receives from anyone, sends to any address with
 *     ssock_udp_send_to();
 *   - connected (opts.connect): the socket is connect()ed to one peer;
 *     ssock_udp_send() goes to it, and only its datagrams are delivered
 *     (others are dropped unseen). ICMP "port unreachable" from that peer is
 *     reported as an SSOCK_ECONNREFUSED error (op "recv") or returned by the
 *     next send.
 *
 * UDP has no backpressure: in inbox mode, when the inbox is full the socket
 * is not read until there is room again, and meanwhile the kernel drops what
 * overflows its receive buffer. Datagrams can be lost or reordered by the
 * network; ssock never merges, splits or duplicates them.
 */
typedef struct ssock_udp ssock_udp;

/* The largest UDP payload over IPv4 (65535 - 20 - 8), ssock's UDP limit. */
#define SSOCK_UDP_MAX_MESSAGE 65507

/* `from` and `data` are owned by the library and valid during the call
 * only. Loop thread. */
typedef void (*ssock_datagram_cb)(ssock_udp *udp, const ssock_addr *from, const void *data,
				  size_t len, void *user);

typedef struct ssock_udp_opts {
	/* Local address: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (all addresses:
	 * one dual-stack [::] socket that also serves IPv4, whose IPv4 peers
	 * then appear as ::ffff:a.b.c.d). Port 0 picks a free port: read it
	 * with ssock_udp_addr(). Required unless `connect` is set; with
	 * `connect` it fixes the local end (default: any address, free port). */
	const char *bind;
	/* Peer for the connected form: "HOST:PORT" or "[IPV6]:PORT" (HOST may
	 * be a name; the first address it resolves to is used). NULL: the
	 * bound form. */
	const char *connect;
	uint32_t max_message; /* largest datagram accepted and sent, in bytes;
	                         default and at most SSOCK_UDP_MAX_MESSAGE.
	                         A larger one from a peer is refused: not
	                         delivered, and reported as an SSOCK_EMSGSIZE
	                         error (op "recv", peer = its sender). */
	size_t inbox_max;     /* inbox mode: datagrams held before reading
	                         stops; default 1024 */
	int error_log_max;    /* entries kept in the error log; default 64 */
	ssock_loop *loop;     /* shared loop; NULL: the handle owns a loop on a
	                         background thread */
	/* Set: callback mode. NULL: inbox mode, datagrams come as
	 * SSOCK_EVENT_MESSAGE events (see ssock_udp_next_event()). */
	ssock_datagram_cb on_datagram;
	/* Background errors; called on the loop thread. When NULL they go to
	 * the inbox in inbox mode (SSOCK_EVENT_ERROR). They always go to the
	 * error log. */
	ssock_error_cb on_error;
	void *user; /* passed to every callback */
} ssock_udp_opts;

/* Creates a UDP socket (SOCK_NONBLOCK | SOCK_CLOEXEC), binds and/or
 * connects it as opts says and starts receiving (on its own background
 * thread unless opts->loop is given). Returns 0, or SSOCK_EINVAL (bad
 * options, max_message above SSOCK_UDP_MAX_MESSAGE), SSOCK_EBADADDR,
 * SSOCK_ERESOLVE, SSOCK_EADDRINUSE, SSOCK_EAFNOSUPPORT (bind and connect
 * addresses of different families), ... *out is set before any callback can
 * run, and is NULL after a failure, which leaves nothing allocated. A host
 * name is resolved on the calling thread (it may block on DNS); on a loop
 * thread a name is SSOCK_ELOOPTHREAD. Any thread. */
int ssock_udp_new(ssock_udp **out, const ssock_udp_opts *opts);

/* Copies the socket's local address into *out (the real port when port 0
 * was asked for, or the one the kernel chose for the connected form).
 * Returns 0 or SSOCK_EINVAL. Any thread. */
int ssock_udp_addr(ssock_udp *udp, ssock_addr *out);

/* Sends data[0..len) as one datagram to `to` (an IPv4 address is accepted
 * on a dual-stack IPv6 socket). Never blocks and never queues: on return
 * the datagram is in the kernel or was not sent, and the caller's buffer is
 * free. Returns 0, SSOCK_EMSGSIZE when len is above max_message,
 * SSOCK_ESENDQFULL when the socket's send buffer is full (nothing sent: try
 * again later, or use ssock_udp_send_to_timeout()), SSOCK_EINVAL for a bad
 * address (or, in the connected form, any `to` but the connected peer;
 * NULL means that peer), SSOCK_EAFNOSUPPORT for an IPv6 `to` on an IPv4
 * socket, or the kernel's -errno (-ENETUNREACH, SSOCK_ECONNREFUSED after an
 * ICMP refusal in the connected form, ...). Any thread, also callbacks;
 * not concurrently with ssock_udp_free(). */
int ssock_udp_send_to(ssock_udp *udp, const ssock_addr *to, const void *data, size_t len);

/* As ssock_udp_send_to(), but while the send buffer is full waits up to
 * timeout_ms (-1: no limit) for room, then SSOCK_ETIMEDOUT. On the loop
 * thread it cannot wait and returns SSOCK_ESENDQFULL at once. */
int ssock_udp_send_to_timeout(ssock_udp *udp, const ssock_addr *to, const void *data, size_t len,
			      int timeout_ms);

/* Connected form: sends one datagram to the peer, as ssock_udp_send_to().
 * Returns SSOCK_ENOTCONN on a handle of the bound form. */
int ssock_udp_send(ssock_udp *udp, const void *data, size_t len);

/* Inbox mode: takes the oldest event into *ev, waiting up to timeout_ms (0:
 * don't wait, -1: no limit). Datagrams are SSOCK_EVENT_MESSAGE events with
 * `peer` = the sender and conn = 0; errors are SSOCK_EVENT_ERROR. Returns 0
 * (the caller now owns *ev: see ssock_event), SSOCK_ETIMEDOUT, SSOCK_ENOINBOX
 * in callback mode, SSOCK_ESHUTDOWN once the handle is closing. Any thread;
 * waiting is refused on the loop thread (SSOCK_ELOOPTHREAD). */
int ssock_udp_next_event(ssock_udp *udp, ssock_event *ev, int timeout_ms);

/* Inbox mode: as ssock_server_event_fd(). */
int ssock_udp_event_fd(ssock_udp *udp);

/* Blocking receive for simple programs (inbox mode): waits up to timeout_ms
 * (-1: no limit) for the next datagram and hands it over: on 0, *data (NULL
 * when *len == 0) is the caller's to free with ssock_free(), and *from (may
 * be NULL) is its sender. Returns 0, SSOCK_ETIMEDOUT, the code of an error
 * event that came first (e.g. SSOCK_EMSGSIZE for a refused datagram, with
 * *from set to its sender), SSOCK_ENOINBOX in callback mode or
 * SSOCK_ESHUTDOWN. Any thread but the loop's. */
int ssock_udp_recv(ssock_udp *udp, void **data, size_t *len, ssock_addr *from, int timeout_ms);

/* As ssock_server_errors(). */
int ssock_udp_errors(ssock_udp *udp, ssock_error_info *out, int max, int clear);

/* Stops receiving, joins the handle's thread if it owns one, closes the
 * socket and frees the handle; inbox events not yet taken are freed.
 * Returns 0, or SSOCK_ELOOPTHREAD (and does nothing) on the loop thread.
 * No other call on this handle may run concurrently or follow. NULL is fine. */
int ssock_udp_free(ssock_udp *udp);

/* The name of ssock_udp_free() before 0.2, kept for programs written
 * against 0.1. */
int ssock_udp_close(ssock_udp *udp);

#ifdef __cplusplus
}
#endif

#endif /* SSOCK_H */
