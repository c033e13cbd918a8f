/* Error codes and their messages, version, framing names, small helpers. */
#include "codec.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Codes above -4096 are -errno (the kernel's own bound); below, never
 * negate INT_MIN. */
#define SSOCK__MAX_ERRNO 4096

const char *ssock_version(void)
{
	return SSOCK_VERSION_STRING;
}

const char *ssock_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define SSOCK__ERR_MSG(name, value, msg) \
	case name:                       \
		return msg;
		SSOCK_ERRORS(SSOCK__ERR_MSG)
#undef SSOCK__ERR_MSG
	default:
		break;
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	if (code < 0 && code > -SSOCK__MAX_ERRNO) {
		const char *s = strerrordesc_np(-code);
		if (s)
			return s;
	}
#endif
	return "unknown error";
}

const char *ssock_errname(int code)
{
	switch (code) {
	case 0:
		return "OK";
#define SSOCK__ERR_NAME(name, value, msg) \
	case name:                        \
		return #name;
		SSOCK_ERRORS(SSOCK__ERR_NAME)
#undef SSOCK__ERR_NAME
	default:
		break;
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	if (code < 0 && code > -SSOCK__MAX_ERRNO) {
		const char *s = strerrorname_np(-code);
		if (s)
			return s;
	}
#endif
	return "UNKNOWN";
}

static const char *const framing_names[] = {
	[SSOCK_FRAMING_U32] = "u32",
	[SSOCK_FRAMING_LINE] = "line",
	[SSOCK_FRAMING_RAW] = "raw",
	[SSOCK_FRAMING_TINYPROTO] = "tinyproto",
};

int ssock_framing_parse(const char *name, ssock_framing *out)
{
	if (!name || !out)
		return SSOCK_EINVAL;
	for (size_t i = 0; i < sizeof framing_names / sizeof framing_names[0]; i++) {
		if (strcmp(name, framing_names[i]) == 0) {
			*out = (ssock_framing)i;
			return 0;
		}
	}
	return SSOCK_EINVAL;
}

const ssock__codec *ssock__codec_of(ssock_framing f)
{
	switch (f) {
	case SSOCK_FRAMING_U32:
		return &ssock__codec_u32;
	case SSOCK_FRAMING_LINE:
		return &ssock__codec_line;
	case SSOCK_FRAMING_RAW:
		return &ssock__codec_raw;
	case SSOCK_FRAMING_TINYPROTO:
		return &ssock__codec_tinyproto;
	}
	return NULL;
}

const char *ssock_framing_name(ssock_framing f)
{
	if ((unsigned)f < sizeof framing_names / sizeof framing_names[0])
		return framing_names[f];
	return "?";
}

void ssock_free(void *p)
{
	free(p);
}

void ssock_event_release(ssock_event *ev)
{
	if (!ev)
		return;
	/* A message's data is a block of at least len bytes: kept for the next
	 * large payload (memory.c). */
	ssock__big_free(ev->data, ev->type == SSOCK_EVENT_MESSAGE ? ev->len : 0);
	memset(ev, 0, sizeof *ev);
}

int64_t ssock__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ssock__wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ssock__abstime(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int ssock__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int timeout_ms,
		     const struct timespec *deadline)
{
	if (timeout_ms < 0) {
		pthread_cond_wait(cv, mu);
		return 0;
	}
	return pthread_cond_timedwait(cv, mu, deadline) == 0 ? 0 : SSOCK_ETIMEDOUT;
}

int ssock__errno(void)
{
	return errno > 0 ? -errno : SSOCK_EINVAL;
}

uint64_t ssock__next_id(void)
{
	static atomic_uint_fast64_t next = 1;
	return atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
}
