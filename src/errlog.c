/* The error log: the latest background errors of a handle, bounded (the
 * oldest entry makes room for the newest), readable from any thread. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int ssock__errlog_init(ssock__errlog *log, int cap)
{
	memset(log, 0, sizeof *log);
	log->ring = calloc((size_t)cap, sizeof *log->ring);
	if (!log->ring)
		return SSOCK_ENOMEM;
	log->cap = cap;
	pthread_mutex_init(&log->mu, NULL);
	return 0;
}

void ssock__errlog_destroy(ssock__errlog *log)
{
	if (!log->ring)
		return;
	free(log->ring);
	log->ring = NULL;
	pthread_mutex_destroy(&log->mu);
}

void ssock__errlog_add(ssock__errlog *log, const ssock_error_info *e)
{
	pthread_mutex_lock(&log->mu);
	if (log->count == log->cap) {
		log->head = (log->head + 1) % log->cap; /* drop the oldest */
		log->count--;
	}
	log->ring[(log->head + log->count) % log->cap] = *e;
	log->count++;
	pthread_mutex_unlock(&log->mu);
}

int ssock__errlog_read(ssock__errlog *log, ssock_error_info *out, int max, int clear)
{
	pthread_mutex_lock(&log->mu);
	int n = log->count;
	for (int i = 0; i < n && i < max && out; i++)
		out[i] = log->ring[(log->head + i) % log->cap];
	if (clear) {
		log->head = 0;
		log->count = 0;
	}
	pthread_mutex_unlock(&log->mu);
	return n;
}
