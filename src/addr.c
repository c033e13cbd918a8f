/*
 * Addresses: the text forms "HOST:PORT", "[IPV6]:PORT" and ":PORT" (see
 * addr.h), resolution into ssock_addr, and formatting back to text.
 *
 * Splitting and formatting are pure (no I/O, no allocation, no locale) so
 * they can be fuzzed; only ssock_addr_resolve() talks to the resolver.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "ssock.h"

/* Port text longer than "65535" is refused, leading zeros included, which
 * keeps the parse free of overflow. */
#define PORT_DIGITS_MAX 5

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Parses the whole of s as a decimal port 0..65535. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;
	for (i = 0; is_digit(s[i]); i++) {
		if (i == PORT_DIGITS_MAX)
			return SSOCK_EBADADDR;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || s[i] != '\0' || v > 65535)
		return SSOCK_EBADADDR;
	*port = (uint16_t)v;
	return 0;
}

/* An interface scope after '%' in "fe80::1%eth0": kept to characters that
 * interface names and numeric scope ids actually use. */
static int valid_scope(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

/* host[0..n) (not NUL-terminated) is IPv6 text, optionally with a %scope. */
static int valid_ipv6(const char *host, size_t n)
{
	char tmp[INET6_ADDRSTRLEN];
	struct in6_addr a;
	const char *pct = memchr(host, '%', n);
	size_t alen = pct ? (size_t)(pct - host) : n;
	if (alen == 0 || alen >= sizeof tmp)
		return 0;
	if (pct && !valid_scope(pct + 1, n - alen - 1))
		return 0;
	memcpy(tmp, host, alen);
	tmp[alen] = '\0';
	return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* No space, control character or bracket in an unbracketed host; ':' is
 * excluded by the caller. */
static int valid_name(const char *host, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c <= ' ' || c == 0x7f || c == '[' || c == ']')
			return 0;
	}
	return 1;
}

static int copy_host(char host[SSOCK__HOST_MAX], const char *s, size_t n)
{
	if (n >= SSOCK__HOST_MAX)
		return SSOCK_EBADADDR;
	memcpy(host, s, n);
	host[n] = '\0';
	return 0;
}

int ssock__addr_split(const char *text, char host[SSOCK__HOST_MAX], uint16_t *port)
{
	const char *h, *colon;
	size_t n;
	if (text == NULL)
		return SSOCK_EBADADDR;
	if (text[0] == '[') {
		h = text + 1;
		const char *close = strchr(h, ']');
		if (close == NULL || close[1] != ':')
			return SSOCK_EBADADDR;
		n = (size_t)(close - h);
		colon = close + 1;
		if (n >= SSOCK__HOST_MAX || !valid_ipv6(h, n))
			return SSOCK_EBADADDR;
	} else {
		h = text;
		colon = strchr(text, ':');
		if (colon == NULL)
			return SSOCK_EBADADDR;
		n = (size_t)(colon - h);
		/* A second ':' means unbracketed IPv6 ("::1:80"): which part
		 * is the port is a guess, so refuse rather than guess. */
		if (strchr(colon + 1, ':') != NULL || !valid_name(h, n))
			return SSOCK_EBADADDR;
	}
	if (parse_port(colon + 1, port) != 0)
		return SSOCK_EBADADDR;
	return copy_host(host, h, n);
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */

int ssock_addr_port(const ssock_addr *addr)
{
	if (addr == NULL)
		return -1;
	switch (addr->u.sa.sa_family) {
	case AF_INET:
		return ntohs(addr->u.in4.sin_port);
	case AF_INET6:
		return ntohs(addr->u.in6.sin6_port);
	default:
		return -1;
	}
}

/*
 * IPv6 is written in brackets. An IPv4-mapped address (a v4 peer on a
 * dual-stack [::] listener) is deliberately left as "[::ffff:1.2.3.4]:80"
 * rather than unmapped: the text then resolves back to the very same
 * sockaddr, and a log shows which socket the peer came in on. A scope id is
 * written as a number ("[fe80::1%2]:80"), which getaddrinfo() accepts back;
 * mapping it to an interface name would cost a system call.
 */
int ssock_addr_format(const ssock_addr *addr, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	int n;
	if (addr == NULL || (buf == NULL && size > 0))
		return SSOCK_EINVAL;
	if (addr->u.sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &addr->u.in4.sin_addr, ip, sizeof ip);
		n = snprintf(buf, size, "%s:%u", ip, ntohs(addr->u.in4.sin_port));
	} else if (addr->u.sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = &addr->u.in6;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		if (s6->sin6_scope_id != 0)
			n = snprintf(buf, size, "[%s%%%u]:%u", ip, (unsigned)s6->sin6_scope_id,
				     ntohs(s6->sin6_port));
		else
			n = snprintf(buf, size, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		if (size > 0)
			buf[0] = '\0';
		return SSOCK_EINVAL;
	}
	if (n < 0 || (size_t)n >= size)
		return SSOCK_EMSGSIZE;
	return n;
}

/* ------------------------------------------------------------------------ */
/* Resolution                                                                */
/* ------------------------------------------------------------------------ */

static void set_in4(ssock_addr *a, uint32_t ip_host_order, uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->u.in4.sin_family = AF_INET;
	a->u.in4.sin_port = htons(port);
	a->u.in4.sin_addr.s_addr = htonl(ip_host_order);
	a->len = sizeof a->u.in4;
}

static void set_in6(ssock_addr *a, const struct in6_addr *ip, uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->u.in6.sin6_family = AF_INET6;
	a->u.in6.sin6_port = htons(port);
	a->u.in6.sin6_addr = *ip;
	a->len = sizeof a->u.in6;
}

/*
 * ":PORT" is answered without the resolver: IPv6 first in both cases, since
 * a [::] listener is dual-stack and serves IPv4 too (the server falls back
 * to 0.0.0.0 where IPv6 is off), and a client tries ::1 and then 127.0.0.1.
 */
static int resolve_any(uint16_t port, int passive, ssock_addr *out, int max)
{
	set_in6(&out[0], passive ? &in6addr_any : &in6addr_loopback, port);
	if (max < 2)
		return 1;
	set_in4(&out[1], passive ? INADDR_ANY : INADDR_LOOPBACK, port);
	return 2;
}

bool ssock__same_addr(const ssock_addr *a, const ssock_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_port == b->u.in4.sin_port &&
		       a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
	if (a->u.sa.sa_family == AF_INET6)
		return a->u.in6.sin6_port == b->u.in6.sin6_port &&
		       a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
		       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(struct in6_addr)) ==
			       0;
	return false;
}

/* Copies the IPv4/IPv6 results, in resolver order, skipping duplicates
 * (/etc/hosts often lists a name twice). */
static int collect(const struct addrinfo *res, ssock_addr *out, int max)
{
	int n = 0;
	for (const struct addrinfo *ai = res; ai != NULL && n < max; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof out[n].u)
			continue;
		memset(&out[n], 0, sizeof out[n]);
		memcpy(&out[n].u, ai->ai_addr, ai->ai_addrlen);
		out[n].len = ai->ai_addrlen;
		int dup = 0;
		for (int i = 0; i < n && !dup; i++)
			dup = ssock__same_addr(&out[i], &out[n]);
		if (!dup)
			n++;
	}
	return n;
}

/* A literal needs no resolver: the ':' test works because split only lets a
 * ':' into host inside brackets. */
static int is_literal(const char *host)
{
	struct in_addr a;
	return strchr(host, ':') != NULL || inet_pton(AF_INET, host, &a) == 1;
}

bool ssock__addr_numeric(const char *text)
{
	char host[SSOCK__HOST_MAX];
	uint16_t port;
	if (ssock__addr_split(text, host, &port) != 0)
		return true; /* malformed: resolving it fails at once, no resolver needed */
	return host[0] == '\0' || is_literal(host);
}

static int map_gai_error(int rc)
{
	return rc == EAI_MEMORY ? SSOCK_ENOMEM : SSOCK_ERESOLVE;
}

int ssock_addr_resolve(const char *text, int passive, ssock_addr *out, int max)
{
	char host[SSOCK__HOST_MAX], service[8];
	uint16_t port;
	if (text == NULL || out == NULL || max < 1)
		return SSOCK_EINVAL;
	if (ssock__addr_split(text, host, &port) != 0)
		return SSOCK_EBADADDR;
	if (host[0] == '\0')
		return resolve_any(port, passive, out, max);

	/*
	 * AI_ADDRCONFIG only for names: it drops a family the host has no
	 * (non-loopback) address in, which is right for "localhost" on an
	 * IPv4-only machine, but it must not make a literal the user typed
	 * (127.0.0.1, [::1]) fail in a namespace that has only loopback.
	 * SOCK_STREAM keeps getaddrinfo() from listing each address once per
	 * socket type; the addresses are the same for UDP.
	 */
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) |
			    (is_literal(host) ? AI_NUMERICHOST : AI_ADDRCONFIG),
	};
	struct addrinfo *res = NULL;
	snprintf(service, sizeof service, "%u", (unsigned)port);
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0)
		return map_gai_error(rc);
	int n = collect(res, out, max);
	freeaddrinfo(res);
	return n > 0 ? n : SSOCK_ERESOLVE;
}
