/*
 * Resolving host names off the loop thread. getaddrinfo() blocks for as long
 * as the name servers take (seconds, when one stays silent), so a loop never
 * calls it: a lookup runs on a worker thread, and its result comes back to
 * each loop that asked as a posted command. Numeric addresses never come
 * here.
 *
 * Requests and lookups. A request (ssock__resolve) is one caller's wish for
 * one name; a lookup is one getaddrinfo() of a name, shared by every request
 * for that name (and passive flag) made while it is unfinished: a client
 * retrying a name whose server is silent adds requests to the same lookup,
 * never threads.
 *
 * Threads. At most MAX_WORKERS lookups run on threads that hold a slot;
 * further lookups wait in a queue. A running lookup whose requests were all
 * cancelled gives its slot back at once (its thread stays in getaddrinfo()
 * until the resolver gives up, then ends), so names that never answer do
 * not hold back other names; MAX_THREADS bounds the threads in all. A
 * waiting lookup whose requests were all cancelled leaves the queue. Each
 * thread ends when no lookup waits, so an idle process has none.
 *
 * Ownership and locks. pool_mu guards the lookups, the queue, the counts
 * and each request's link to its lookup. A request is the resolver's once
 * it is cancelled (freed with its lookup, or by the worker); until then it
 * is the requester's, and once its result is posted, the posted command's
 * (freed when it runs, or with the loop's unrun commands: the command is
 * the request's first member). A request's own mu decides between posting
 * and cancelling: the worker posts under it only if not cancelled, so after
 * ssock__resolve_cancel() returns nothing is posted to the loop any more
 * (which may then be freed). Lock order: pool_mu, a request's mu, loop->mu.
 */
#include "resolve.h"
#include "addr.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 16  /* lookups running at once */
#define MAX_THREADS 256 /* threads, counting those of abandoned lookups */

typedef struct lookup lookup;

struct ssock__resolve {
	ssock__cmd cmd; /* first: freeing the command frees the request */
	pthread_mutex_t mu;
	bool cancelled; /* under mu (and pool_mu while linked) */
	lookup *lk;     /* its lookup, until the result is handed over */
	ssock__resolve *next_req;
	ssock_loop *loop;
	ssock__resolve_fn done;
	void *arg;
	int rc; /* the count of addresses, or an error */
	ssock_addr addrs[SSOCK__RESOLVE_MAX];
};

struct lookup {
	lookup *next;         /* in `lookups`, every unfinished one */
	lookup *next_waiting; /* in the queue, until a thread takes it */
	ssock__resolve *reqs; /* requests waiting for it */
	int live;             /* of them, not cancelled */
	bool running;         /* a thread resolves it */
	bool has_slot;        /* and counts among MAX_WORKERS */
	int passive;
	char text[];
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static lookup *lookups;
static lookup *waiting_head, *waiting_tail;
static int slots;   /* lookups running with a slot */
static int threads; /* worker threads */

static void req_free(ssock__resolve *r)
{
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* On the loop: hands the result over, unless the requester gave up. */
static void result_cmd(ssock__cmd *cmd)
{
	ssock__resolve *r = (ssock__resolve *)cmd;
	/* The worker posted under r->mu: once it lets go, r is the loop's. */
	pthread_mutex_lock(&r->mu);
	bool cancelled = r->cancelled;
	pthread_mutex_unlock(&r->mu);
	pthread_mutex_destroy(&r->mu);
	if (!cancelled)
		r->done(r->arg, r->rc, r->addrs, r->rc > 0 ? r->rc : 0);
	/* The loop frees cmd, and with it r. */
}

/* Frees an unlinked lookup and its requests (all cancelled: the
 * resolver's). */
static void free_lookup(lookup *lk)
{
	for (ssock__resolve *q = lk->reqs, *nx; q; q = nx) {
		nx = q->next_req;
		req_free(q);
	}
	free(lk);
}

static void unlink_lookup(lookup *lk)
{
	for (lookup **p = &lookups; *p; p = &(*p)->next) {
		if (*p == lk) {
			*p = lk->next;
			return;
		}
	}
}

static void queue_push(lookup *lk, bool front)
{
	lk->next_waiting = NULL;
	if (front) {
		lk->next_waiting = waiting_head;
		waiting_head = lk;
		if (!waiting_tail)
			waiting_tail = lk;
	} else {
		if (waiting_tail)
			waiting_tail->next_waiting = lk;
		else
			waiting_head = lk;
		waiting_tail = lk;
	}
}

static void queue_remove(lookup *lk)
{
	lookup *prev = NULL;
	for (lookup *q = waiting_head; q; prev = q, q = q->next_waiting) {
		if (q != lk)
			continue;
		if (prev)
			prev->next_waiting = q->next_waiting;
		else
			waiting_head = q->next_waiting;
		if (waiting_tail == q)
			waiting_tail = prev;
		return;
	}
}

/* The next lookup for a thread that holds a slot, or NULL (the slot is
 * given back). Under pool_mu. */
static lookup *take_waiting(void)
{
	lookup *lk = waiting_head;
	if (!lk)
		return NULL;
	waiting_head = lk->next_waiting;
	if (!waiting_head)
		waiting_tail = NULL;
	lk->running = true;
	lk->has_slot = true;
	slots++;
	return lk;
}

/* Hands lk's result to its live requests; frees the cancelled ones. */
static void deliver(lookup *lk, int rc, const ssock_addr *addrs)
{
	pthread_mutex_lock(&pool_mu);
	ssock__resolve *r = lk->reqs;
	lk->reqs = NULL;
	for (ssock__resolve *q = r; q; q = q->next_req)
		q->lk = NULL; /* a cancel from now on only marks it */
	pthread_mutex_unlock(&pool_mu);
	while (r) {
		ssock__resolve *next = r->next_req;
		pthread_mutex_lock(&r->mu);
		bool cancelled = r->cancelled;
		if (!cancelled) {
			r->rc = rc;
			if (rc > 0)
				memcpy(r->addrs, addrs, (size_t)rc * sizeof *addrs);
			r->cmd = (ssock__cmd){.fn = result_cmd};
			ssock__post(r->loop, &r->cmd);
		}
		pthread_mutex_unlock(&r->mu);
		if (cancelled)
			req_free(r);
		r = next;
	}
}

static void *worker(void *arg)
{
	lookup *lk = arg;
	while (lk) {
		ssock_addr addrs[SSOCK__RESOLVE_MAX];
		int rc = ssock_addr_resolve(lk->text, lk->passive, addrs, SSOCK__RESOLVE_MAX);
		pthread_mutex_lock(&pool_mu);
		unlink_lookup(lk); /* new requests for the name start a new one */
		if (lk->has_slot)
			slots--;
		lk->has_slot = false;
		pthread_mutex_unlock(&pool_mu);
		deliver(lk, rc, addrs);
		free(lk);
		pthread_mutex_lock(&pool_mu);
		/* The next waiting lookup, while a slot is free. */
		lk = slots < MAX_WORKERS ? take_waiting() : NULL;
		if (!lk)
			threads--;
		pthread_mutex_unlock(&pool_mu);
	}
	return NULL;
}

/* Runs lk on a new thread (the caller counted it with claim_thread()).
 * Returns 0, or a negative errno: then the caller gives the counts back
 * (unclaim()) and lk is still to place. */
static int spawn(lookup *lk)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t th;
	int rc = pthread_create(&th, &attr, worker, lk);
	pthread_attr_destroy(&attr);
	return -rc;
}

/* Under pool_mu: the thread claimed for lk never started. (A cancel
 * meanwhile may have given its slot back already.) */
static void unclaim(lookup *lk)
{
	if (lk->has_slot)
		slots--;
	threads--;
	lk->running = lk->has_slot = false;
}

/* Under pool_mu: counts a slot and a thread for lk when both are free. */
static bool claim_thread(lookup *lk)
{
	if (slots >= MAX_WORKERS || threads >= MAX_THREADS)
		return false;
	slots++;
	threads++;
	lk->running = lk->has_slot = true;
	return true;
}

int ssock__resolve_start(ssock_loop *loop, const char *text, int passive, ssock__resolve_fn done,
			 void *arg, ssock__resolve **out)
{
	ssock__resolve *r = calloc(1, sizeof *r);
	if (!r)
		return SSOCK_ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	r->loop = loop;
	r->done = done;
	r->arg = arg;
	size_t n = strlen(text) + 1;
	pthread_mutex_lock(&pool_mu);
	lookup *lk = lookups;
	while (lk && (lk->passive != passive || strcmp(lk->text, text) != 0))
		lk = lk->next;
	bool fresh = !lk;
	if (fresh) {
		lk = calloc(1, sizeof *lk + n);
		if (!lk) {
			pthread_mutex_unlock(&pool_mu);
			req_free(r);
			return SSOCK_ENOMEM;
		}
		memcpy(lk->text, text, n);
		lk->passive = passive;
		lk->next = lookups;
		lookups = lk;
	}
	r->lk = lk;
	r->next_req = lk->reqs;
	lk->reqs = r;
	lk->live++;
	/* A new name runs at once when a slot is free; one that waits already
	 * (its thread could not start) runs now if it can. */
	bool run = !lk->running && claim_thread(lk);
	if (run && !fresh)
		queue_remove(lk);
	else if (!run && fresh)
		queue_push(lk, false);
	pthread_mutex_unlock(&pool_mu);
	int rc = run ? spawn(lk) : 0;
	if (rc != 0) {
		/* r leaves; the lookup waits for a thread if others want it. */
		pthread_mutex_lock(&pool_mu);
		unclaim(lk);
		ssock__resolve **p = &lk->reqs;
		while (*p != r)
			p = &(*p)->next_req;
		*p = r->next_req;
		bool orphan = --lk->live == 0;
		if (orphan)
			unlink_lookup(lk);
		else
			queue_push(lk, true);
		pthread_mutex_unlock(&pool_mu);
		if (orphan)
			free_lookup(lk); /* with the cancelled requests it still had */
		req_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void ssock__resolve_cancel(ssock__resolve *r)
{
	if (!r)
		return;
	lookup *dropped = NULL, *next = NULL;
	pthread_mutex_lock(&pool_mu);
	pthread_mutex_lock(&r->mu);
	r->cancelled = true;
	/* Read while r->mu is held: once it is let go, a worker that already
	 * took r off its lookup (lk NULL) frees it. lk itself cannot change
	 * while pool_mu is held. */
	lookup *lk = r->lk;
	pthread_mutex_unlock(&r->mu);
	if (lk && --lk->live == 0) {
		if (!lk->running) {
			/* Nobody wants it any more: it leaves the queue, with its
			 * requests (all cancelled, so the resolver's). */
			queue_remove(lk);
			unlink_lookup(lk);
			dropped = lk;
		} else if (lk->has_slot) {
			/* Its thread may be stuck for long: its slot goes to the
			 * next waiting lookup, on a thread of its own. */
			lk->has_slot = false;
			slots--;
			if (waiting_head && threads < MAX_THREADS) {
				next = waiting_head;
				waiting_head = next->next_waiting;
				if (!waiting_head)
					waiting_tail = NULL;
				claim_thread(next);
			}
		}
	}
	pthread_mutex_unlock(&pool_mu);
	if (dropped)
		free_lookup(dropped);
	if (next && spawn(next) != 0) {
		/* No thread now: it waits for the next one free. */
		pthread_mutex_lock(&pool_mu);
		unclaim(next);
		queue_push(next, true);
		pthread_mutex_unlock(&pool_mu);
	}
}
