/*
 * What handles share. ssock__ep is what every handle (server, client, UDP)
 * has: its loop, its inbox, its error log and where background errors go.
 * ssock__stream_ep is what servers and clients add: stream connections,
 * their settings, transport and codec.
 */
#ifndef SSOCK_ENDPOINT_H
#define SSOCK_ENDPOINT_H

#include "loop.h"
#include "ssock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct ssock__transport ssock__transport;
typedef struct ssock__codec ssock__codec;

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
	size_t msgs, bytes; /* messages held and their bytes */
	size_t links;       /* connect and disconnect events held */
	size_t max_msgs, max_bytes;
	atomic_bool full;  /* readable by the loop without mu */
	bool loop_waiting; /* the loop held something back: tell it
	                       (ep->on_room) once there is room */
	int waiters;       /* threads inside ssock__inbox_next() */
	bool closed;
	int efd; /* readable while count > 0 or closed; -1 until
	                       the program asks for it */
} ssock__inbox;

typedef struct ssock__errlog {
	pthread_mutex_t mu;
	ssock_error_info *ring;
	int cap, head, count;
} ssock__errlog;

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct ssock__ep ssock__ep;
struct ssock__ep {
	ssock_loop *loop;
	bool owns_loop;
	bool inbox_mode;
	ssock__inbox inbox;
	ssock__errlog errlog;
	ssock_error_cb on_error;
	void *user;
	/* Loop only: the inbox has room again for what the loop held back
	 * (see ssock__inbox_blocked()). Each kind of handle resumes its own. */
	void (*on_room)(ssock__ep *ep);
};

/* Settings a server's or a client's connections follow. */
typedef struct ssock__cfg {
	ssock_framing framing;
	uint32_t max_message;
	size_t read_size;
	size_t send_queue_max;
	int idle_timeout_ms;
	int read_timeout_ms;
	int handshake_timeout_ms;
	int keepalive_s;
	ssock_connect_cb on_connect;
	ssock_message_cb on_message;
	ssock_disconnect_cb on_disconnect;
} ssock__cfg;

/* The settings a server's or a client's options share, by field name (both
 * options structs spell them the same way). */
#define SSOCK__CFG_FROM_OPTS(o)                          \
	((ssock__cfg){                                   \
		.framing = (o)->framing,                 \
		.max_message = (o)->max_message,         \
		.read_size = (o)->read_size,             \
		.send_queue_max = (o)->send_queue_max,   \
		.idle_timeout_ms = (o)->idle_timeout_ms, \
		.read_timeout_ms = (o)->read_timeout_ms, \
		.keepalive_s = (o)->keepalive_s,         \
		.on_connect = (o)->on_connect,           \
		.on_message = (o)->on_message,           \
		.on_disconnect = (o)->on_disconnect,     \
	})

typedef struct ssock__stream_ep ssock__stream_ep;
struct ssock__stream_ep {
	ssock__ep base; /* first */
	ssock__cfg cfg;
	bool is_client;
	const ssock__transport *transport;
	const ssock__codec *codec;
	/* Connections, oldest first; changed by the loop under loop->mu. */
	ssock_conn *conns_head, *conns_tail;
	int nconns;
	ssock_conn *paused_head; /* loop only: reading stopped (inbox full) */
	ssock_conn *resuming;    /* loop only: those of them being resumed */
	/* Threads of the program waiting in a blocking call on this handle
	 * (for room, a connection, a flush), and whether freeing has begun:
	 * they then leave with SSOCK_ESHUTDOWN, and the free waits for them.
	 * Under loop->mu. */
	int waiters;
	bool freeing;
	/* Bytes queued to send on all its connections, and their bound (see
	 * ssock_server_opts.send_budget; SIZE_MAX for a client). */
	atomic_size_t queued;
	size_t send_budget;
	/* Hooks for the owner, loop only: a connection's handshake is done
	 * (right before its connect event); one that was connected ends (right
	 * before its disconnect event, which for a peer's clean close comes
	 * while the socket still finishes closing); one ends before its
	 * handshake was done (no event follows). */
	void (*on_conn_open)(ssock__stream_ep *ep, ssock_conn *conn);
	void (*on_conn_closed)(ssock__stream_ep *ep, ssock_conn *conn, int reason);
	void (*on_conn_aborted)(ssock__stream_ep *ep, ssock_conn *conn, int reason);
	/* Any connection is gone (closed either way; its id no longer
	 * found), with `unsent` bytes never written. Loop thread, under
	 * loop->mu. */
	void (*on_conn_gone)(ssock__stream_ep *ep, ssock_conn *conn, size_t unsent);
};

/* Sets up what every handle has: takes the given loop or a new one, the
 * inbox (inbox_mode: events the program takes) and the error log. Returns
 * 0 or a negative code (then nothing is left to free). */
int ssock__ep_init(ssock__ep *ep, ssock_loop *given, bool inbox_mode, size_t inbox_max,
		   size_t inbox_bytes, int errlog_max, ssock_error_cb on_error, void *user);
void ssock__ep_destroy(ssock__ep *ep);
/* Reports a background error to the log, on_error or the inbox. Loop only. */
void ssock__ep_error(ssock__ep *ep, int code, const char *op, uint64_t conn,
		     const ssock_addr *peer);
/* Runs fn(arg) on the loop to take the endpoint's sockets off it, then
 * makes sure the loop can no longer reach the endpoint (its own thread
 * joined, or a shared loop's current pass over). Then it may be freed. */
void ssock__ep_shutdown(ssock__ep *ep, void (*fn)(ssock__cmd *cmd), void *arg);

/* Freeing a server or client: wakes the program's threads waiting in its
 * blocking calls (they return SSOCK_ESHUTDOWN) and waits until they have
 * left (before), then takes its sockets off the loop (ssock__ep_shutdown()). */
void ssock__stream_ep_shutdown(ssock__stream_ep *ep, void (*fn)(ssock__cmd *cmd), void *arg);

/* As ssock__ep_init(), for a server or client: cfg's defaults filled in and
 * checked, its codec and the default transport. */
int ssock__stream_ep_init(ssock__stream_ep *ep, ssock_loop *given, const ssock__cfg *cfg,
			  size_t inbox_max, size_t inbox_bytes, int errlog_max,
			  ssock_error_cb on_error, void *user, bool is_client);

int ssock__inbox_init(ssock__inbox *ib, size_t max_msgs, size_t max_bytes);
void ssock__inbox_destroy(ssock__inbox *ib);
/* Loop side: appends ev (taking what it owns). Messages are refused (false)
 * when the inbox is full; other events always fit. */
bool ssock__inbox_push(ssock__inbox *ib, const ssock_event *ev, bool ack);
void ssock__inbox_close(ssock__inbox *ib);
/* Loop side: true when no message fits now; the taker that makes room will
 * then call ep->on_room on the loop. */
bool ssock__inbox_blocked(ssock__inbox *ib);
/* Loop side: true when max_msgs connect and disconnect events wait: accept
 * no connection (make no automatic reconnect) until ep->on_room. */
bool ssock__inbox_control_blocked(ssock__inbox *ib);
int ssock__inbox_next(ssock__ep *ep, ssock_event *ev, int timeout_ms);
/* As ssock__inbox_next(), skipping connect events, all within one
 * deadline: what the blocking recv calls wait for. */
int ssock__inbox_recv(ssock__ep *ep, ssock_event *ev, int timeout_ms);
/* Whether the inbox holds an event of connection conn (a scan: for rare
 * questions, such as an idle timeout's). */
bool ssock__inbox_holds(ssock__inbox *ib, uint64_t conn);
/* How many events and payload bytes the inbox holds. */
void ssock__inbox_counts(ssock__inbox *ib, size_t *events, size_t *bytes);
/* The inbox's event fd (see ssock_server_event_fd()). */
int ssock__inbox_fd(ssock__ep *ep);

int ssock__errlog_init(ssock__errlog *log, int cap);
void ssock__errlog_destroy(ssock__errlog *log);
void ssock__errlog_add(ssock__errlog *log, const ssock_error_info *e);
int ssock__errlog_read(ssock__errlog *log, ssock_error_info *out, int max, int clear);

#endif
