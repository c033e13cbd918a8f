/*
 * pyssock.h - the internals of the _ssock extension module (the C half of
 * the Python package `ssock`), shared by its source files.
 *
 * The module uses nothing but the public API in include/ssock.h. Its shape:
 *
 *   - Every C handle (server, client, UDP) runs in inbox mode: no C callback
 *     ever runs Python code, and the loop thread never takes the GIL.
 *   - In callback mode (the program gave on_message / on_datagram), one
 *     dispatcher thread per handle waits (GIL released) on the inbox's event
 *     fd, takes every event there is (up to PS_BATCH) without the GIL, then
 *     takes the GIL once and runs the Python callbacks for the whole batch.
 *   - In inbox mode, next_event() takes one event at a time (so the inbox's
 *     fd is readable exactly while an event waits), in order across threads.
 *   - Every call into C on a handle counts as a "user"; close() stops new
 *     users, wakes every wait (an eventfd of ours, polled next to the
 *     inbox's), waits for the users to leave, and only then frees the C
 *     handle, so no call can ever run on freed memory.
 */
#ifndef PYSSOCK_H
#define PYSSOCK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <ssock.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

/* Events taken from an inbox in one go: the dispatcher runs the callbacks of
 * up to this many with one acquisition of the GIL. */
#define PS_BATCH 256

/* Long waits in C are cut into slices this long (ms), so close() never waits
 * for a whole connect or send timeout. */
#define PS_SLICE_MS 200

/* Sends of at least this many bytes copy the data with the GIL released. */
#define PS_NOGIL_BYTES 65536

/* Sends of at least this many bytes of an immutable object (bytes, or a
 * zero_copy payload) are not copied: ssock reads the object's own buffer
 * (ssock_server_send_ref()), and the object is kept until ssock gives it
 * back (see send.c). */
#define PS_REF_BYTES 65536

/* Large bytes payloads are recycled (buffer.c): payloads of at least
 * PS_SPARE_MIN bytes are made in a bytes object the handle keeps, and once
 * the program and ssock have let go of it (the handle's reference is the
 * only one left), the next large payload is copied into it instead of into
 * fresh memory, which costs a page fault per few KiB. Up to PS_SPARE_N
 * objects and PS_SPARE_MAX bytes in all per handle; they go when the
 * handle has made no large payload for PS_SPARE_IDLE_MS, and at close. */
#define PS_SPARE_MIN     65536
#define PS_SPARE_N       8
#define PS_SPARE_MAX     (16u << 20)
#define PS_SPARE_IDLE_MS 1000

typedef struct ps_spare {
	PyObject *bytes; /* strong; NULL: free slot */
	size_t cap;      /* the size it was made with */
} ps_spare;

enum ps_kind { PS_SERVER, PS_CLIENT, PS_UDP };

/* Callback slots. */
enum ps_cb { PS_CB_CONNECT, PS_CB_MESSAGE, PS_CB_DISCONNECT, PS_CB_ERROR, PS_CB_COUNT };

/* A handle's life: OPEN -> CLOSING (one closer at work) -> FREED. */
enum ps_state { PS_OPEN, PS_CLOSING, PS_FREED };

/* What differs between the three kinds of C handle. */
typedef struct ps_ops {
	int (*next_event)(void *h, ssock_event *ev, int timeout_ms);
	int (*event_fd)(void *h);
	int (*errors)(void *h, ssock_error_info *out, int max, int clear);
	int (*free)(void *h);
} ps_ops;

typedef struct ps_handle ps_handle;

struct ps_handle {
	PyObject_HEAD const ps_ops *ops;
	void *h; /* the C handle; NULL before init and once freed */
	int kind;
	PyInterpreterState *interp;

	/* Lifetime (see the top of this file). */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_int users;
	atomic_int closing;
	int state;     /* enum ps_state, under mu */
	int forked;    /* handle inherited across fork(): never touch h */
	int wake_fd;   /* eventfd: readable once closing */
	int event_fd;  /* the inbox's fd, owned by the C handle */
	int user_fd;   /* dup of event_fd handed to fileno(); ours */
	int linger_ms; /* how long close() lets queued data drain */
	int zero_copy; /* payloads as memoryviews of the library's buffers */
	/* Objects sent by reference that ssock gave back (from any thread,
	 * without the GIL): released by the next GIL holder, ps_refs_drain(). */
	_Atomic(struct ps_ref *) refs_done;
	int refs_fd; /* callback mode: eventfd that wakes the dispatcher to
	                release them (written when the list stops being empty) */

	/* Large payloads kept for reuse (buffer.c; GIL-protected). */
	ps_spare spare[PS_SPARE_N];
	size_t spare_bytes;    /* the sum of their cap */
	int64_t spare_used_ms; /* when one was last made or reused */

	/* Inbox mode: take_mu orders the takes of threads (inbox.c), which
	 * take one event at a time: none waits on the Python side, where the
	 * event fd could not tell of it. */
	pthread_mutex_t take_mu;

	/* Connections by id (dict int -> Conn), and the last one looked up. */
	PyObject *conns;
	PyObject *last_conn;

	/* Callback mode. */
	PyObject *cb[PS_CB_COUNT];
	int callback_mode;
	int disp_started;
	pthread_t disp;
	int close_in_disp; /* close() was called by a callback */

	PyObject *loop;   /* the Loop object given as loop=, kept alive */
	PyObject *target; /* client: the address text it connects to */
	PyObject *dict;
	PyObject *weakrefs;

	/* Registry of open handles, closed at interpreter exit (GIL-protected). */
	ps_handle *reg_prev, *reg_next;
};

/* A connection of a server or client, as the program sees it. */
typedef struct ps_conn {
	PyObject_HEAD uint64_t id;
	ps_handle *owner; /* strong */
	ssock_addr peer;
	PyObject *peer_obj; /* tuple, made on first use */
	int open;           /* 0 once its disconnect event was handed out */
	Py_ssize_t queued;  /* bytes in its send queue at the last conns() */
	PyObject *dict;
	PyObject *weakrefs;
} ps_conn;

/* One inbox event, as next_event() returns it. */
typedef struct ps_event {
	PyObject_HEAD PyObject *type; /* an EventType member */
	PyObject *conn;               /* Conn or None */
	PyObject *data;               /* bytes or None */
	PyObject *peer;               /* tuple or None */
	PyObject *error;              /* ssock.Error or None */
	Py_ssize_t unsent;
} ps_event;

/* A shared event loop. */
typedef struct ps_loop {
	PyObject_HEAD ssock_loop *loop;
	int started;
	pid_t pid; /* the process that created it: only that one may free it */
	PyObject *weakrefs;
} ps_loop;

/* Module state: everything is process-wide (one interpreter). */
extern PyTypeObject *ps_HandleType, *ps_ServerType, *ps_ClientType, *ps_UDPType;
extern PyTypeObject *ps_ConnType, *ps_EventType, *ps_LoopType;
extern PyObject *ps_Error, *ps_ClosedError;
extern PyObject *ps_ev_type[5];      /* EventType members, index = ssock_event_type */
extern PyObject *ps_client_state[3]; /* ClientState members */
extern PyTypeObject *ps_StatsType;   /* ServerStats struct sequence */

/* errors.c */
int ps_errors_init(PyObject *m);
PyObject *ps_error_new(int code, const char *op, uint64_t conn, const ssock_addr *peer,
		       int64_t time_ms);
PyObject *ps_raise(int code); /* sets the exception, returns NULL */
PyObject *ps_error_list(ps_handle *self, int clear);

/* util.c */
PyObject *ps_addr_to_tuple(const ssock_addr *a);
int ps_addr_from_obj(PyObject *obj, ssock_addr *out, int passive);
PyObject *ps_addr_text(PyObject *obj);      /* str "HOST:PORT" from str or tuple */
int ps_timeout_ms(PyObject *obj, int *out); /* None -> -1, seconds -> ms */
/* A method's one optional argument `timeout` (fmt "|O:name"), as ms. */
int ps_timeout_arg(PyObject *args, PyObject *kw, const char *fmt, int *ms);
int ps_opt_ms(PyObject *obj, const char *name, int *out);      /* None/0 -> 0 */
int ps_opt_size(PyObject *obj, const char *name, size_t *out); /* None -> 0 */
int ps_opt_int(PyObject *obj, const char *name, int *out);
int ps_framing(PyObject *obj, ssock_framing *out);
/* No GIL: waits for one of three fds (-1: none) to be readable; 1 ready, 0
 * timeout, < 0 a -errno. */
int ps_wait_fds(int fd1, int fd2, int fd3, int timeout_ms);
int64_t ps_now_ms(void);
int ps_fast_args(const char *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
		 const char *const *names, int n, int required, PyObject **out);
int ps_send_timeout(PyObject *obj, int *out);                          /* absent: 0 */
int ps_optional_attr(PyObject *obj, const char *name, PyObject **out); /* 0 absent, 1, -1 */

/* dispatch.c: whether the calling thread is a dispatcher (of any handle). */
extern __thread int ps_in_dispatcher;

/* handle.c */
void ps_registry_add(ps_handle *self);
void ps_free_c_handle(ps_handle *self); /* no GIL: waits for the users, frees */
/* No GIL: gives queued data up to `linger` to go out, in one wait (on the
 * dispatcher, whose signals are blocked, before it frees its handle). */
void ps_linger_nogil(ps_handle *self);
void ps_after_free(ps_handle *self); /* GIL: drops what could form cycles */
PyObject *ps_disconnect_error(ssock_event *ev);
extern PyMethodDef ps_handle_methods[];
extern PyGetSetDef ps_handle_getset[];
int ps_handle_traverse(ps_handle *self, visitproc visit, void *arg);
int ps_handle_clear(ps_handle *self);
int ps_handle_enter(ps_handle *self); /* 0, or -1 with ClosedError set */
void ps_handle_leave(ps_handle *self);
int ps_handle_setup(ps_handle *self, PyObject *kwcb[PS_CB_COUNT], const char *msg_name,
		    PyObject *loop);
int ps_handle_start(ps_handle *self);
int ps_take(ps_handle *self, ssock_event *evs, int max, int timeout_ms);
PyObject *ps_handle_close_impl(ps_handle *self);
PyObject *ps_next_event(ps_handle *self, int timeout_ms); /* Event, None (timeout) or NULL */
int ps_pop_raw(ps_handle *self, ssock_event *ev, int timeout_ms); /* 1, 0, -1, -2 */
int ps_signal_pause(ps_handle *self);

/* wait.c. GIL held, the caller a user of self. Runs attempt(self, slice,
 * arg) without the GIL again and again, slices of at most PS_SLICE_MS ms,
 * while it returns SSOCK_ETIMEDOUT: until timeout_ms (-1: no limit; 0: one
 * try that does not wait) has passed (SSOCK_ETIMEDOUT) or the handle closes
 * (SSOCK_ECLOSED). Python's signal handlers run between slices: when one
 * raises (or closed the handle), returns PS_RAISED with the exception set
 * and the caller NO LONGER a user. Else attempt's result, the caller still
 * a user. */
#define PS_RAISED 1
typedef int (*ps_attempt_fn)(ps_handle *self, int slice_ms, void *arg);
int ps_wait(ps_handle *self, int timeout_ms, ps_attempt_fn attempt, void *arg);
/* A method that only waits: enters, ps_wait(), leaves; None or raises. */
PyObject *ps_wait_method(ps_handle *self, int timeout_ms, ps_attempt_fn attempt, void *arg);
/* The linger option: seconds >= 0 (absent or None: 1 s) as ms, huge ones
 * capped. */
int ps_linger_ms(PyObject *obj, int *out);
int ps_left_ms(int64_t deadline);
PyObject *ps_conn_for(ps_handle *self, uint64_t id, const ssock_addr *peer, int create);
PyObject *ps_take_conn(ps_handle *self, uint64_t id, const ssock_addr *peer);

int ps_module_handles_init(PyObject *m);
int ps_handle_types_init(PyObject *m);

/* conn.c */
int ps_conn_types_init(PyObject *m);
PyObject *ps_conn_new(ps_handle *owner, uint64_t id, const ssock_addr *peer);
PyObject *ps_event_new(PyObject *type, PyObject *conn, PyObject *data, PyObject *peer,
		       PyObject *error, Py_ssize_t unsent);
uint64_t ps_conn_id_arg(PyObject *obj, int *ok); /* Conn or int */

/* server.c, client.c, udp.c, loop.c */
int ps_server_type_init(PyObject *m);
int ps_client_type_init(PyObject *m);
int ps_udp_type_init(PyObject *m);
int ps_loop_type_init(PyObject *m);
ssock_loop *ps_loop_get(PyObject *obj); /* NULL with an error set */

/* buffer.c */
int ps_buffer_type_init(PyObject *m);
PyObject *ps_event_data(ps_handle *self, ssock_event *ev); /* bytes or memoryview (buffer.c) */

int ps_is_payload(PyObject *obj); /* a zero_copy payload's memoryview */
/* GIL: drops the kept payloads (all, or with idle_only those unused for
 * PS_SPARE_IDLE_MS). Returns whether any are still kept. */
int ps_spare_drop(ps_handle *self, int idle_only);

/* send.c: sends with the buffer protocol, the GIL and timeouts handled. A
 * send function copies data, or with release given (never for UDP) sends it
 * by reference (ssock_server_send_ref()). */
typedef int (*ps_send_fn)(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
			  int timeout_ms, ssock_release_fn release, void *arg);
PyObject *ps_send(ps_handle *self, ps_send_fn fn, uint64_t id, const ssock_addr *to, PyObject *data,
		  int timeout_ms);
int ps_server_send_fn(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
		      int timeout_ms, ssock_release_fn release, void *arg);
/* Flush methods (server.c, client.c): None, or raise. */
PyObject *ps_server_flush(ps_handle *self, uint64_t id, int timeout_ms);
PyObject *ps_client_flush(ps_handle *self, int timeout_ms);
/* GIL: releases the objects ssock gave back (any time the GIL is held). */
void ps_refs_drain(ps_handle *self);

/* module.c */
PyMODINIT_FUNC PyInit__ssock(void);

#endif /* PYSSOCK_H */
