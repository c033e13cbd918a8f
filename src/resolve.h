/* Resolving host names off the loop thread (resolve.c). */
#ifndef SSOCK_RESOLVE_H
#define SSOCK_RESOLVE_H

#include "loop.h"

#define SSOCK__RESOLVE_MAX 8 /* addresses kept per name */

typedef struct ssock__resolve ssock__resolve;

/* Called on the loop with rc (the number of addresses, or SSOCK_ERESOLVE,
 * SSOCK_EBADADDR, ...) and the addresses. */
typedef void (*ssock__resolve_fn)(void *arg, int rc, const ssock_addr *addrs, int n);

/* Starts resolving text ("HOST:PORT") on a worker thread; done(arg, ...)
 * runs later on loop, unless cancelled first. Returns 0 with *out, or a
 * negative code (nothing started). Loop only. */
int ssock__resolve_start(ssock_loop *loop, const char *text, int passive, ssock__resolve_fn done,
			 void *arg, ssock__resolve **out);

/* done will not run; r is not the caller's any more. Loop only. */
void ssock__resolve_cancel(ssock__resolve *r);

#endif
