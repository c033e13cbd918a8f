/*
 * The loop: a poller (poller.h), a timer heap, commands posted from other
 * threads, the table of connections by id, and the buffers every
 * connection of the loop shares. See internal.h for who may touch what.
 */
#ifndef SSOCK_LOOP_H
#define SSOCK_LOOP_H

#include "poller.h"
#include "ssock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	bool sync; /* a thread waits on it: don't free, set done */
	bool done; /* under loop->mu */
};

/* Open-addressing hash table: connection id -> connection. */
struct ssock__slot {
	uint64_t id; /* 0: empty; UINT64_MAX: deleted */
	ssock_conn *conn;
};

typedef struct ssock__table {
	struct ssock__slot *slots;
	size_t cap, count, used;
} ssock__table;

typedef struct ssock__chunk ssock__chunk;

/* A read buffer replaced during a pass (see ssock_loop.retired). */
struct ssock__rbuf_old {
	uint8_t *buf;
	size_t size;
};

/* A connection with output in this pass (see ssock_loop.flush). */
struct ssock__flush {
	ssock_conn *conn;
	uint32_t off, len; /* its bytes in obuf, if any */
};

struct ssock_loop {
	ssock__poller *poller;
	ssock__io wake_io;       /* eventfd */
	atomic_int wake_pending; /* an eventfd write is on its way */
	atomic_bool has_posted;  /* posted != NULL, for a look without mu */
	atomic_int room_waiters; /* threads waiting for send-queue room */

	pthread_mutex_t drive_mu; /* held by whoever runs loop code */
	pthread_mutex_t mu;       /* guards the fields below it */
	pthread_cond_t cv;        /* sync commands done; send-queue room */
	ssock__cmd *cmd_head, *cmd_tail;
	ssock_conn *posted; /* connections with sends from other threads */
	ssock__table conns; /* all connections of this loop, by id */
	int users;          /* servers, clients and UDP handles on it */
	bool has_thread, driving, stopping;
	bool inline_run; /* a thread runs its commands itself (ssock__call()) */
	pthread_t thread;
	bool driven;            /* ssock_loop_run() has been called ... */
	pthread_t driver;       /* ... last by this thread */
	bool joining;           /* a ssock_loop_stop() joins the thread */
	uint64_t pass_done;     /* the last pass that ended */
	ssock_loop *waiting_on; /* the thread running this loop, in a
	                             callback, waits for a command on that loop */
	uint64_t wake_seq;      /* bumped when a loop waiting on this one
	                             was posted to */

	/* Loop thread only: */
	ssock_loop *entered_from; /* while entered: the loop the same thread
	                             entered before it (see enter()) */
	ssock__timer **heap;
	size_t heap_len, heap_cap;
	uint8_t *rbuf; /* the read buffer every connection shares */
	size_t rbuf_size;
	struct ssock__rbuf_old *retired; /* read buffers replaced during this
	                                  pass, kept to its end (a read may
	                                  decode one) */
	size_t nretired, retired_cap;
	/* Output of this pass, written at its end (ssock__flush_all): the
	 * connections with something to write, in order, and the bytes they
	 * queued while nothing else was queued, back to back in one shared
	 * buffer; so replies cost no allocation and no buffer per connection.
	 * What the kernel does not take moves into chunks. */
	struct ssock__flush *flush;
	size_t nflush, flush_cap;
	uint8_t *obuf;
	size_t obuf_len, obuf_cap;
	ssock_conn *pending;    /* bytes held inside their transport, with
	                             no readiness to come for them ... */
	ssock_conn *serving;    /* ... and those of them being served now */
	ssock_conn *zombies;    /* closed, freed at the end of the pass */
	uint8_t *lending;       /* the malloc'd payload a message callback is
	                             looking at, which a send may take */
	const uint8_t *showing; /* a stash whose messages callbacks are
	                           shown (else they are in rbuf, a retired
	                           read buffer or lending): not the program's
	                           to send by reference */
	size_t showing_len;
	/* The large payload being delivered (as lending, but also once a
	 * send took it): not the program's to send by reference either. */
	const uint8_t *lent;
	size_t lent_len;
	ssock__chunk *free_chunks; /* spare standard-size send chunks */
	int nfree_chunks;
	/* Giving memory back once the load that took it is gone: a timer
	 * (armed by ssock__loop_released()) that trims the spare chunks and
	 * malloc's free pages when a second passed with no I/O at all (a trim
	 * of a large fragmented heap takes milliseconds: not while serving). */
	ssock__timer tidy;
	size_t released;                     /* bytes freed since the last tidy-up */
	uint64_t activity, activity_at_tidy; /* I/O events so far */
	int64_t now;                         /* cached monotonic ms of this pass */
	uint64_t pass_begun;                 /* passes so far (the last one may run) */
	atomic_uint_fast64_t passes;         /* waits so far (tests see a spin) */
};

/* The loop the calling thread is running loop code for, if any. (It may
 * have entered others before: a callback's call may run another loop
 * inline; see ssock__call().) */
extern __thread ssock_loop *ssock__current_loop;

static inline bool ssock__on_loop(const ssock_loop *loop)
{
	return ssock__current_loop == loop;
}
/* Whether the calling thread runs loop code (callbacks) of any loop. */
bool ssock__on_any_loop(void);
/* Whether data[0..len) is (in) memory that a loop this thread runs may have
 * shown a message callback (its read buffers, a stash, a large payload):
 * ssock's, for the callback only, so never to be sent by reference. Off
 * the delivery path: it costs nothing per message. */
bool ssock__shown_to_callbacks(const void *data, size_t len);
/* Whether the calling thread may block until the loop does something: not
 * the loop's thread, nor the thread that drives a loop that has no thread
 * of its own (it would wait for itself). */
bool ssock__may_wait(ssock_loop *loop);
int ssock__loop_acquire(ssock_loop **loopp, ssock_loop *given, bool *owned);
void ssock__loop_release(ssock_loop *loop, bool owned);

/* Sets what io is watched for (SSOCK__IN | SSOCK__OUT; 0: nothing). Returns
 * 0 or -errno. Loop only. */
int ssock__io_set(ssock_loop *loop, ssock__io *io, unsigned interest);
/* Stops watching io; call before closing its fd. Loop only. */
void ssock__io_remove(ssock_loop *loop, ssock__io *io);

void ssock__timer_init(ssock__timer *t, void (*fn)(ssock__timer *t));
/* Arms (or moves) t to fire at `due`. Returns 0, or SSOCK_ENOMEM when the
 * heap could not grow (t is then not armed). Loop only. */
int ssock__timer_start(ssock_loop *loop, ssock__timer *t, int64_t due);
void ssock__timer_stop(ssock_loop *loop, ssock__timer *t);

void ssock__wake(ssock_loop *loop);
/* Posts cmd (heap-allocated, freed by the loop after fn) to run on the loop. */
void ssock__post(ssock_loop *loop, ssock__cmd *cmd);
/* Posts a command that runs fn(arg) on the loop. Returns false when memory
 * ran out (nothing posted). */
bool ssock__post_fn(ssock_loop *loop, void (*fn)(ssock__cmd *cmd), void *arg, uint64_t id);
/* Runs the commands posted to the loop so far, as the loop's code. The
 * caller holds drive_mu. */
void ssock__run_commands(ssock_loop *loop);
/* loop_call.c. A pass of loop code on loop begins on this thread (drive_mu
 * held); returns the loop the thread ran before, to hand to leave. */
ssock_loop *ssock__loop_enter(ssock_loop *loop);
void ssock__loop_leave(ssock_loop *loop, ssock_loop *before);
/* Runs fn(cmd) on the loop and waits for it; inline when already on it, or
 * when nobody runs the loop. A callback of another loop that calls it
 * serves its own loop's commands while it waits, so two loops whose
 * callbacks call each other cannot wait for each other for ever. */
int ssock__call(ssock_loop *loop, void (*fn)(ssock__cmd *cmd), void *arg, uint64_t id);
/* Waits until the loop's pass number `pass` has ended (or nobody runs the
 * loop any more): then nothing fetched in that pass can still run. */
void ssock__wait_pass_end(ssock_loop *l, uint64_t pass);
/* Frees the read buffers replaced during the pass that ends. */
void ssock__rbuf_retired_free(ssock_loop *l);
/* Grows the shared read buffer to at least size. */
int ssock__loop_rbuf(ssock_loop *loop, size_t size);
/* memory.c. Notes that bytes of memory went back to malloc (0: the spare
 * chunks grew, or a large buffer was taken), so that a tidy-up follows
 * once the loop is quiet. Loop only. */
void ssock__loop_released(ssock_loop *l, size_t bytes);
/* The tidy-up's timer function; and its end when the loop is freed. */
void ssock__loop_tidy(ssock__timer *t);
void ssock__loop_tidy_cancel(ssock_loop *l);
/* Large payload buffers, kept for reuse while some loop is busy (any
 * thread). big_alloc is malloc(len), or a kept block of exactly len
 * bytes; big_free frees p, a block of at least size bytes, or keeps it. */
void *ssock__big_alloc(size_t len);
void ssock__big_free(void *p, size_t size);
void ssock__big_trim(void);
/* For the tests: whether blocks are kept at all (not under ASan or
 * valgrind), and how many are (their bytes in *bytes). */
bool ssock__big_enabled(void);
int ssock__big_kept(size_t *bytes);

int ssock__table_put(ssock__table *t, uint64_t id, ssock_conn *conn);
ssock_conn *ssock__table_get(const ssock__table *t, uint64_t id);
void ssock__table_del(ssock__table *t, uint64_t id);
void ssock__table_free(ssock__table *t);

/* What the loop's pass asks of the connection code (conn_read.c and
 * conn_write.c): moving cross-thread sends into their queues; serving
 * connections whose transport holds bytes; writing what this pass queued
 * and freeing the connections it closed; trimming the spare chunks to
 * what an idle loop keeps (or all of them). */
void ssock__take_posted(ssock_loop *l);
void ssock__serve_pending(ssock_loop *l);
void ssock__flush_all(ssock_loop *l);
void ssock__chunks_trim(ssock_loop *l, bool all);

#endif
