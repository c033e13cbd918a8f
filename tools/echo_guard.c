/*
 * Which datagrams `ssock echo --udp` answers: see echo_guard.h.
 */
#include "echo_guard.h"
#include "xxh64.h"

#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

/* An address as 18 bytes: port, then the IPv6 address (IPv4 as
 * ::ffff:a.b.c.d), so the same peer has one form on every socket. */
static void canon(const ssock_addr *a, unsigned char out[18])
{
	memset(out, 0, 18);
	if (a->u.sa.sa_family == AF_INET) {
		memcpy(out, &a->u.in4.sin_port, 2);
		out[12] = out[13] = 0xff;
		memcpy(out + 14, &a->u.in4.sin_addr, 4);
	} else if (a->u.sa.sa_family == AF_INET6) {
		memcpy(out, &a->u.in6.sin6_port, 2);
		memcpy(out + 2, &a->u.in6.sin6_addr, 16);
	}
}

void echo_guard_init(struct echo_guard *g, const ssock_addr *bound)
{
	memset(g, 0, sizeof *g);
	g->port = ssock_addr_port(bound);
}

bool echo_guard_is_local(const ssock_addr *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof ss);
	if (addr->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&addr->u.in6.sin6_addr)) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, addr->u.in6.sin6_addr.s6_addr + 12, 4);
		len = sizeof *in;
	} else if (addr->u.sa.sa_family == AF_INET || addr->u.sa.sa_family == AF_INET6) {
		len = addr->len;
		memcpy(&ss, &addr->u, len);
		((struct sockaddr_in *)&ss)->sin_port = 0; /* same offset in both */
	} else {
		return false;
	}
	/* Only a local address can be bound (without IP_FREEBIND): the kernel
	 * knows every one, 127.0.0.0/8 and addresses added later included. */
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool local = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return local;
}

static void refill(struct echo_guard_source *s, int64_t now)
{
	double secs = (double)(now - s->ms) / 1000.0;
	s->ms = now;
	s->tokens += secs * ECHO_GUARD_RATE;
	if (s->tokens > ECHO_GUARD_BURST)
		s->tokens = ECHO_GUARD_BURST;
	s->back_tokens += secs * ECHO_GUARD_BACK_RATE;
	if (s->back_tokens > ECHO_GUARD_BACK_RATE)
		s->back_tokens = ECHO_GUARD_BACK_RATE;
}

echo_verdict echo_guard_check(struct echo_guard *g, const ssock_addr *from, const void *data,
			      size_t len, int64_t now_ms, bool *first)
{
	*first = false;
	unsigned char key[18];
	canon(from, key);
	struct xxh64 h;
	xxh64_init(&h);
	xxh64_update(&h, key, sizeof key);
	struct echo_guard_source *s = &g->src[xxh64_digest(&h) % ECHO_GUARD_SOURCES];
	unsigned char have[18];
	canon(&s->addr, have);
	if (s->ms == 0 || memcmp(have, key, sizeof key) != 0) {
		s->addr = *from;
		s->tokens = ECHO_GUARD_BURST;
		s->back_tokens = ECHO_GUARD_BACK_RATE;
		s->ms = now_ms ? now_ms : 1;
		s->logged_ms = 0;
	}
	refill(s, now_ms);
	xxh64_update(&h, data, len); /* this reply: the source and the bytes */
	uint64_t reply = xxh64_digest(&h);
	size_t slot = reply % ECHO_GUARD_RECENT;
	bool back = g->recent[slot].key == reply && g->recent[slot].ms != 0 &&
		    now_ms - g->recent[slot].ms <= ECHO_GUARD_RECENT_MS;
	echo_verdict v = ECHO_ANSWER;
	if (ssock_addr_port(from) == g->port && echo_guard_is_local(from))
		v = ECHO_SELF;
	else if (s->tokens < 1)
		v = ECHO_RATE;
	else if (back && s->back_tokens < 1)
		v = ECHO_BOUNCED;
	if (v != ECHO_ANSWER) {
		if (s->logged_ms == 0 || now_ms - s->logged_ms >= ECHO_GUARD_LOG_MS) {
			*first = true;
			s->logged_ms = now_ms ? now_ms : 1;
		}
		return v;
	}
	s->tokens -= 1;
	if (back)
		s->back_tokens -= 1;
	g->recent[slot].key = reply;
	g->recent[slot].ms = now_ms ? now_ms : 1;
	return ECHO_ANSWER;
}
