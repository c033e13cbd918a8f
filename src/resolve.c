/*
 * Resolving host names off the loop thread. getaddrinfo() blocks for as long
 * as the name servers take (seconds, when one stays silent), so a loop never
 * calls it: a request goes to a worker thread, and the result comes back to
 * the loop as a posted command. Numeric addresses never come here.
 *
 * Ownership of a request: the worker's while it resolves; then the posted
 * command's (freed when it runs, or with the loop's unrun commands: the
 * command is the request's first member). Cancelling (on the loop) only
 * marks it, under its lock, which the worker takes to decide whether to
 * post: a cancelled request is never posted, and the worker frees it.
 *
 * At most MAX_WORKERS threads resolve at once (each ends with its last
 * request, so an idle process has none); further requests wait in a queue.
 * A worker stuck on a silent name server holds its thread until the
 * resolver gives up; the requester does not wait for it (its own deadline
 * fails the attempt and cancels the request).
 */
#include "addr.h"
#include "internal.h"
#include "resolve.h"

#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 16

struct ssock__resolve {
	ssock__cmd cmd; /* first: freeing the command frees the request */
	pthread_mutex_t mu;
	bool cancelled;
	ssock_loop *loop;
	ssock__resolve_fn done;
	void *arg;
	int passive;
	int rc; /* the count of addresses, or an error */
	ssock_addr addrs[SSOCK__RESOLVE_MAX];
	ssock__resolve *next_waiting;
	char text[];
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static ssock__resolve *waiting_head, *waiting_tail;
static int workers;

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

static void finish(ssock__resolve *r)
{
	pthread_mutex_lock(&r->mu);
	bool cancelled = r->cancelled;
	if (!cancelled) {
		r->cmd = (ssock__cmd){.fn = result_cmd};
		ssock__post(r->loop, &r->cmd);
	}
	pthread_mutex_unlock(&r->mu);
	if (cancelled) {
		pthread_mutex_destroy(&r->mu);
		free(r);
	}
}

static ssock__resolve *next_waiting(void)
{
	pthread_mutex_lock(&pool_mu);
	ssock__resolve *r = waiting_head;
	if (r) {
		waiting_head = r->next_waiting;
		if (!waiting_head)
			waiting_tail = NULL;
	} else {
		workers--;
	}
	pthread_mutex_unlock(&pool_mu);
	return r;
}

static void *worker(void *arg)
{
	for (ssock__resolve *r = arg; r; r = next_waiting()) {
		pthread_mutex_lock(&r->mu);
		bool cancelled = r->cancelled;
		pthread_mutex_unlock(&r->mu);
		if (!cancelled)
			r->rc = ssock_addr_resolve(r->text, r->passive, r->addrs, SSOCK__RESOLVE_MAX);
		finish(r);
	}
	return NULL;
}

/* Runs r on a new worker, or queues it when MAX_WORKERS are busy. */
static int dispatch(ssock__resolve *r)
{
	pthread_mutex_lock(&pool_mu);
	if (workers >= MAX_WORKERS) {
		if (waiting_tail)
			waiting_tail->next_waiting = r;
		else
			waiting_head = r;
		waiting_tail = r;
		pthread_mutex_unlock(&pool_mu);
		return 0;
	}
	workers++;
	pthread_mutex_unlock(&pool_mu);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t th;
	int rc = pthread_create(&th, &attr, worker, r);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&pool_mu);
		workers--;
		pthread_mutex_unlock(&pool_mu);
		return -rc;
	}
	return 0;
}

int ssock__resolve_start(ssock_loop *loop, const char *text, int passive, ssock__resolve_fn done,
			 void *arg, ssock__resolve **out)
{
	size_t n = strlen(text) + 1;
	ssock__resolve *r = malloc(sizeof *r + n);
	if (!r)
		return SSOCK_ENOMEM;
	memset(r, 0, sizeof *r);
	memcpy(r->text, text, n);
	pthread_mutex_init(&r->mu, NULL);
	r->loop = loop;
	r->done = done;
	r->arg = arg;
	r->passive = passive;
	int rc = dispatch(r);
	if (rc != 0) {
		pthread_mutex_destroy(&r->mu);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void ssock__resolve_cancel(ssock__resolve *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->cancelled = true;
	pthread_mutex_unlock(&r->mu);
}
