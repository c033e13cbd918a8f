/*
 * fuzz_addr: address text parsing and formatting, without the resolver
 * (ssock_addr_resolve() would send fuzz input to DNS).
 * The input is used twice: as text for ssock__addr_split(), and as the bytes
 * of a sockaddr for ssock_addr_format().
 * Invariants: split accepts or says SSOCK_EBADADDR; what it accepts has a
 * short host without spaces or control characters, and putting host and
 * port back together splits to the same again; a numeric host formats and
 * splits back to the same address; format writes exactly its length into
 * buffers of every size, NUL-terminated, or says SSOCK_EMSGSIZE, and its
 * text splits back to the sockaddr it came from.
 */
#include <arpa/inet.h>
#include <string.h>

#include "addr.h"
#include "fuzz.h"
#include "ssock.h"

static void check_host_chars(const char *host)
{
	size_t n = strlen(host);
	FUZZ_CHECK(n < SSOCK__HOST_MAX);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)host[i] > ' ' && host[i] != 0x7f);
}

/* Formats a, checking every buffer size, and returns the text in out. */
static void format_all_sizes(const ssock_addr *a, char out[SSOCK_ADDRSTRLEN])
{
	int n = ssock_addr_format(a, out, SSOCK_ADDRSTRLEN);
	FUZZ_CHECK(n > 0 && n < SSOCK_ADDRSTRLEN && strlen(out) == (size_t)n);
	for (size_t size = 0; size <= (size_t)n + 1; size++) {
		char *buf = malloc(size); /* exact: ASan sees over-writes */
		int rc = ssock_addr_format(a, buf, size);
		if (size > (size_t)n) {
			FUZZ_CHECK(rc == n && strcmp(buf, out) == 0);
		} else {
			FUZZ_CHECK(rc == SSOCK_EMSGSIZE);
			if (size > 0)
				FUZZ_CHECK(memchr(buf, '\0', size) != NULL &&
					   strncmp(buf, out, strlen(buf)) == 0);
		}
		free(buf);
	}
}

/* The text of a formats and splits back to a's address, port and scope. */
static void check_format(const ssock_addr *a)
{
	char text[SSOCK_ADDRSTRLEN], host[SSOCK__HOST_MAX];
	uint16_t port;
	format_all_sizes(a, text);
	FUZZ_CHECK(ssock__addr_split(text, host, &port) == 0);
	FUZZ_CHECK(port == ssock_addr_port(a));
	if (a->u.sa.sa_family == AF_INET) {
		struct in_addr ip;
		FUZZ_CHECK(text[0] != '[' && inet_pton(AF_INET, host, &ip) == 1);
		FUZZ_CHECK(ip.s_addr == a->u.in4.sin_addr.s_addr);
		return;
	}
	struct in6_addr ip6;
	char *pct = strchr(host, '%');
	FUZZ_CHECK(text[0] == '[');
	FUZZ_CHECK((pct != NULL) == (a->u.in6.sin6_scope_id != 0));
	if (pct) {
		*pct = '\0';
		FUZZ_CHECK(strtoul(pct + 1, NULL, 10) == a->u.in6.sin6_scope_id);
	}
	FUZZ_CHECK(inet_pton(AF_INET6, host, &ip6) == 1);
	FUZZ_CHECK(memcmp(&ip6, &a->u.in6.sin6_addr, sizeof ip6) == 0);
}

/* A numeric host from split, made into a sockaddr and formatted. */
static void check_literal(const char *host, uint16_t port)
{
	ssock_addr a;
	memset(&a, 0, sizeof a);
	if (inet_pton(AF_INET, host, &a.u.in4.sin_addr) == 1) {
		a.u.in4.sin_family = AF_INET;
		a.u.in4.sin_port = htons(port);
		a.len = sizeof a.u.in4;
	} else if (inet_pton(AF_INET6, host, &a.u.in6.sin6_addr) == 1) {
		a.u.in6.sin6_family = AF_INET6;
		a.u.in6.sin6_port = htons(port);
		a.len = sizeof a.u.in6;
	} else {
		return;
	}
	check_format(&a);
}

static void check_split(const char *text)
{
	char host[SSOCK__HOST_MAX], again[SSOCK__HOST_MAX];
	char rebuilt[SSOCK__HOST_MAX + 16];
	uint16_t port, port2;
	int rc = ssock__addr_split(text, host, &port);
	FUZZ_CHECK(rc == 0 || rc == SSOCK_EBADADDR);
	if (rc != 0)
		return;
	check_host_chars(host);
	int bracketed = text[0] == '[';
	FUZZ_CHECK(bracketed || strchr(host, ':') == NULL);
	FUZZ_CHECK(!bracketed || strchr(host, ':') != NULL);
	snprintf(rebuilt, sizeof rebuilt, bracketed ? "[%s]:%u" : "%s:%u", host, port);
	FUZZ_CHECK(ssock__addr_split(rebuilt, again, &port2) == 0);
	FUZZ_CHECK(port2 == port && strcmp(again, host) == 0);
	check_literal(host, port);
}

/* Fills a sockaddr from raw bytes: family, port, address, scope id. */
static void check_raw(const uint8_t *d, size_t n)
{
	ssock_addr a;
	if (n < 1 + 2 + 16 + 4)
		return;
	memset(&a, 0, sizeof a);
	switch (d[0] % 3) {
	case 0:
		a.u.in4.sin_family = AF_INET;
		memcpy(&a.u.in4.sin_port, d + 1, 2);
		memcpy(&a.u.in4.sin_addr, d + 3, 4);
		a.len = sizeof a.u.in4;
		break;
	case 1:
		a.u.in6.sin6_family = AF_INET6;
		memcpy(&a.u.in6.sin6_port, d + 1, 2);
		memcpy(&a.u.in6.sin6_addr, d + 3, 16);
		/* mostly no scope, as on most sockets */
		if (d[0] & 0x80)
			memcpy(&a.u.in6.sin6_scope_id, d + 19, 4);
		a.len = sizeof a.u.in6;
		break;
	default: {
		char buf[SSOCK_ADDRSTRLEN];
		a.u.sa.sa_family = d[1];
		if (d[1] == AF_INET || d[1] == AF_INET6)
			return;
		FUZZ_CHECK(ssock_addr_format(&a, buf, sizeof buf) == SSOCK_EINVAL);
		FUZZ_CHECK(buf[0] == '\0' && ssock_addr_port(&a) == -1);
		return;
	}
	}
	check_format(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	check_split(text);
	free(text);
	check_raw(data, size);
	return 0;
}
