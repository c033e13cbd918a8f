/*
 * Address text: what ssock__addr_split accepts and refuses, resolution of
 * literals, ":PORT", localhost and a name that cannot exist, and formatting
 * back to text. The only resolver traffic is /etc/hosts and the reserved
 * .invalid TLD (RFC 6761), which never resolves.
 */
#include <arpa/inet.h>
#include <pthread.h>

#include "addr.h"
#include "ssock.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* split                                                                     */
/* ------------------------------------------------------------------------ */

struct split_ok {
	const char *text;
	const char *host;
	int port;
};

static const struct split_ok accepted[] = {
	{"1.2.3.4:80", "1.2.3.4", 80},
	{"127.0.0.1:0", "127.0.0.1", 0},
	{"[::1]:0", "::1", 0},
	{"[::]:65535", "::", 65535},
	{":9000", "", 9000},
	{":0", "", 0},
	{"localhost:80", "localhost", 80},
	{"example.com:00080", "example.com", 80},
	{"[::ffff:1.2.3.4]:1", "::ffff:1.2.3.4", 1},
	{"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
	{"[fe80::1%2]:80", "fe80::1%2", 80},
	{"[2001:db8:0:0:0:0:0:1]:443", "2001:db8:0:0:0:0:0:1", 443},
	{"my-host_1.example:1", "my-host_1.example", 1},
};

static const char *const refused[] = {
	"",                             /* nothing */
	":",                            /* no port */
	"1.2.3.4",                      /* no port */
	"1.2.3.4:",                     /* empty port */
	"1.2.3.4:65536",                /* port too big */
	"1.2.3.4:99999999999999999999", /* port overflow */
	"h:000080",                     /* port text longer than 5 digits */
	"1.2.3.4:-1",
	"1.2.3.4:+80",
	"1.2.3.4: 80",
	"1.2.3.4:80 ",
	"1.2.3.4:80x",
	"1.2.3.4:0x50",
	"::1:80", /* unbracketed IPv6 */
	"::1",
	"a:b:80",
	"[::1]80", /* no ':' after ']' */
	"[::1]",
	"[::1:80", /* unclosed */
	"[::1]:",
	"[::1]:80:",
	"[]:80",        /* brackets around nothing */
	"[1.2.3.4]:80", /* brackets around IPv4 */
	"[localhost]:80",
	"[::1%]:80",    /* empty scope */
	"[::1%a/b]:80", /* odd scope */
	"[::1]]:80",
	"[[::1]]:80",
	"a]:80",
	"a[:80",
	"host name:80", /* space */
	"host\t:80",    /* control */
	"\x7f:80",
	" :80",
};

TEST(split_accepts)
{
	for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
		char host[SSOCK__HOST_MAX];
		uint16_t port = 1234;
		memset(host, 'Z', sizeof host);
		int rc = ssock__addr_split(accepted[i].text, host, &port);
		if (rc != 0)
			TEST__FAIL("split(\"%s\") = %d", accepted[i].text, rc);
		if (strcmp(host, accepted[i].host) != 0 || port != accepted[i].port)
			TEST__FAIL("split(\"%s\") gave \"%s\" %u", accepted[i].text, host, port);
	}
}

TEST(split_refuses)
{
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char host[SSOCK__HOST_MAX];
		uint16_t port;
		int rc = ssock__addr_split(refused[i], host, &port);
		if (rc != SSOCK_EBADADDR)
			TEST__FAIL("split(\"%s\") = %d, want SSOCK_EBADADDR", refused[i], rc);
	}
	char host[SSOCK__HOST_MAX];
	uint16_t port;
	CHECK_INT(ssock__addr_split(NULL, host, &port), ==, SSOCK_EBADADDR);
}

TEST(split_host_length_limit)
{
	char text[SSOCK__HOST_MAX + 16], host[SSOCK__HOST_MAX];
	uint16_t port = 0;
	/* the longest host that fits, with its NUL, in SSOCK__HOST_MAX */
	memset(text, 'a', SSOCK__HOST_MAX - 1);
	strcpy(text + SSOCK__HOST_MAX - 1, ":7");
	CHECK_INT(ssock__addr_split(text, host, &port), ==, 0);
	CHECK_INT(strlen(host), ==, SSOCK__HOST_MAX - 1);
	CHECK_INT(port, ==, 7);
	memset(text, 'a', SSOCK__HOST_MAX);
	strcpy(text + SSOCK__HOST_MAX, ":7");
	CHECK_INT(ssock__addr_split(text, host, &port), ==, SSOCK_EBADADDR);
}

/* ------------------------------------------------------------------------ */
/* resolve                                                                   */
/* ------------------------------------------------------------------------ */

static int is_v4(const ssock_addr *a, const char *ip, int port)
{
	struct in_addr want;
	inet_pton(AF_INET, ip, &want);
	return a->u.sa.sa_family == AF_INET && a->len == sizeof(struct sockaddr_in) &&
	       a->u.in4.sin_addr.s_addr == want.s_addr && ssock_addr_port(a) == port;
}

static int is_v6(const ssock_addr *a, const char *ip, int port)
{
	struct in6_addr want;
	inet_pton(AF_INET6, ip, &want);
	return a->u.sa.sa_family == AF_INET6 && a->len == sizeof(struct sockaddr_in6) &&
	       memcmp(&a->u.in6.sin6_addr, &want, sizeof want) == 0 && ssock_addr_port(a) == port;
}

TEST(resolve_ipv4_literal)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve("127.0.0.1:0", 0, a, 4), ==, 1);
	CHECK(is_v4(&a[0], "127.0.0.1", 0));
	CHECK_INT(ssock_addr_resolve("127.0.0.1:8080", 1, a, 4), ==, 1);
	CHECK(is_v4(&a[0], "127.0.0.1", 8080));
}

TEST(resolve_ipv6_literal)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve("[::1]:0", 0, a, 4), ==, 1);
	CHECK(is_v6(&a[0], "::1", 0));
	CHECK_INT(ssock_addr_resolve("[::ffff:10.0.0.1]:5", 1, a, 4), ==, 1);
	CHECK(is_v6(&a[0], "::ffff:10.0.0.1", 5));
}

TEST(resolve_any_passive)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve(":0", 1, a, 4), ==, 2);
	CHECK(is_v6(&a[0], "::", 0));
	CHECK(is_v4(&a[1], "0.0.0.0", 0));
	/* max is respected: IPv6 first, as the server binds it dual-stack */
	CHECK_INT(ssock_addr_resolve(":9", 1, a, 1), ==, 1);
	CHECK(is_v6(&a[0], "::", 9));
}

TEST(resolve_any_active_is_loopback)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve(":80", 0, a, 4), ==, 2);
	CHECK(is_v6(&a[0], "::1", 80));
	CHECK(is_v4(&a[1], "127.0.0.1", 80));
}

TEST(resolve_localhost)
{
	ssock_addr a[16];
	int n = ssock_addr_resolve("localhost:80", 0, a, 16);
	CHECK_INT(n, >=, 1);
	for (int i = 0; i < n; i++) {
		int loop4 = a[i].u.sa.sa_family == AF_INET &&
			    (ntohl(a[i].u.in4.sin_addr.s_addr) >> 24) == 127;
		int loop6 = is_v6(&a[i], "::1", 80);
		CHECK(loop4 || loop6);
		CHECK_INT(ssock_addr_port(&a[i]), ==, 80);
		/* no address twice, however often /etc/hosts lists it */
		for (int j = 0; j < i; j++)
			CHECK(a[j].len != a[i].len || memcmp(&a[j].u, &a[i].u, a[i].len) != 0);
	}
	CHECK_INT(ssock_addr_resolve("localhost:80", 1, a, 16), >=, 1);
}

TEST(resolve_bad_name)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve("no-such-host.invalid:80", 0, a, 4), ==, SSOCK_ERESOLVE);
	CHECK_INT(ssock_addr_resolve("no-such-host.invalid:80", 1, a, 4), ==, SSOCK_ERESOLVE);
}

TEST(resolve_bad_text)
{
	ssock_addr a[4];
	CHECK_INT(ssock_addr_resolve("localhost", 0, a, 4), ==, SSOCK_EBADADDR);
	CHECK_INT(ssock_addr_resolve("[::1]:99999", 0, a, 4), ==, SSOCK_EBADADDR);
	CHECK_INT(ssock_addr_resolve("::1:80", 0, a, 4), ==, SSOCK_EBADADDR);
	CHECK_INT(ssock_addr_resolve("[127.0.0.1]:80", 0, a, 4), ==, SSOCK_EBADADDR);
	CHECK_INT(ssock_addr_resolve(NULL, 0, a, 4), ==, SSOCK_EINVAL);
	CHECK_INT(ssock_addr_resolve("127.0.0.1:1", 0, NULL, 4), ==, SSOCK_EINVAL);
	CHECK_INT(ssock_addr_resolve("127.0.0.1:1", 0, a, 0), ==, SSOCK_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* format                                                                    */
/* ------------------------------------------------------------------------ */

/* Resolves a literal and formats it back; returns the format result. */
static int round_trip(const char *text, char *out, size_t size)
{
	ssock_addr a;
	int rc = ssock_addr_resolve(text, 0, &a, 1);
	return rc == 1 ? ssock_addr_format(&a, out, size) : rc;
}

TEST(format_round_trips)
{
	static const char
		*const same[] =
			{
				"1.2.3.4:80",
				"0.0.0.0:0",
				"255.255.255.255:65535",
				"[::1]:80",
				"[::]:0",
				"[2001:db8::1]:443",
				"[::ffff:1.2.3.4]:80", /* mapped stays mapped */
				"[fe80::1%1]:22",      /* scope id as a number */
			};
	char buf[SSOCK_ADDRSTRLEN];
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		int n = round_trip(same[i], buf, sizeof buf);
		if (n != (int)strlen(same[i]) || strcmp(buf, same[i]) != 0)
			TEST__FAIL("\"%s\" came back as \"%s\" (%d)", same[i], buf, n);
	}
	/* non-canonical text comes back canonical */
	CHECK_INT(round_trip("[2001:DB8:0:0:0:0:0:1]:00443", buf, sizeof buf), >, 0);
	CHECK(strcmp(buf, "[2001:db8::1]:443") == 0);
}

TEST(format_resolve_format_is_stable)
{
	/* format(resolve(format(a))) == format(a) and the sockaddr is equal */
	ssock_addr a, b;
	char t1[SSOCK_ADDRSTRLEN], t2[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_resolve(":4242", 1, &a, 1), ==, 1);
	CHECK_INT(ssock_addr_format(&a, t1, sizeof t1), >, 0);
	CHECK(strcmp(t1, "[::]:4242") == 0);
	CHECK_INT(ssock_addr_resolve(t1, 1, &b, 1), ==, 1);
	CHECK_INT(ssock_addr_format(&b, t2, sizeof t2), >, 0);
	CHECK(strcmp(t1, t2) == 0);
	CHECK(a.len == b.len && memcmp(&a.u, &b.u, a.len) == 0);
}

TEST(format_buffer_sizes)
{
	ssock_addr a;
	char buf[SSOCK_ADDRSTRLEN];
	CHECK_INT(ssock_addr_resolve("[::1]:80", 0, &a, 1), ==, 1);
	/* "[::1]:80" is 8 characters: needs 9 bytes */
	CHECK_INT(ssock_addr_format(&a, buf, 9), ==, 8);
	memset(buf, 'Z', sizeof buf);
	CHECK_INT(ssock_addr_format(&a, buf, 8), ==, SSOCK_EMSGSIZE);
	CHECK(memchr(buf, '\0', 8) != NULL);
	memset(buf, 'Z', sizeof buf);
	CHECK_INT(ssock_addr_format(&a, buf, 1), ==, SSOCK_EMSGSIZE);
	CHECK_INT(buf[0], ==, '\0');
	CHECK_INT(buf[1], ==, 'Z');
	CHECK_INT(ssock_addr_format(&a, NULL, 0), ==, SSOCK_EMSGSIZE);
}

TEST(format_longest_fits)
{
	/* the longest text format can write must fit SSOCK_ADDRSTRLEN */
	ssock_addr a;
	char buf[SSOCK_ADDRSTRLEN];
	memset(&a, 0, sizeof a);
	a.u.in6.sin6_family = AF_INET6;
	memset(&a.u.in6.sin6_addr, 0xee, sizeof a.u.in6.sin6_addr);
	a.u.in6.sin6_port = htons(65535);
	a.u.in6.sin6_scope_id = UINT32_MAX;
	a.len = sizeof a.u.in6;
	int n = ssock_addr_format(&a, buf, sizeof buf);
	CHECK_INT(n, >, 0);
	CHECK(strcmp(buf, "[eeee:eeee:eeee:eeee:eeee:eeee:eeee:eeee%4294967295]:65535") == 0);
}

TEST(format_unset_address)
{
	ssock_addr a;
	char buf[SSOCK_ADDRSTRLEN];
	memset(&a, 0, sizeof a);
	CHECK_INT(ssock_addr_format(&a, buf, sizeof buf), ==, SSOCK_EINVAL);
	CHECK_INT(buf[0], ==, '\0');
	CHECK_INT(ssock_addr_format(NULL, buf, sizeof buf), ==, SSOCK_EINVAL);
}

TEST(addr_port)
{
	ssock_addr a;
	memset(&a, 0, sizeof a);
	CHECK_INT(ssock_addr_port(&a), ==, -1);
	CHECK_INT(ssock_addr_port(NULL), ==, -1);
	CHECK_INT(ssock_addr_resolve("10.1.2.3:65535", 0, &a, 1), ==, 1);
	CHECK_INT(ssock_addr_port(&a), ==, 65535);
	CHECK_INT(ssock_addr_resolve("[::1]:1", 0, &a, 1), ==, 1);
	CHECK_INT(ssock_addr_port(&a), ==, 1);
}

/* ------------------------------------------------------------------------ */
/* threads                                                                   */
/* ------------------------------------------------------------------------ */

static void *resolve_many(void *arg)
{
	static const char *const texts[] = {"127.0.0.1:1", "[::1]:2", ":3", "localhost:4"};
	long bad = 0;
	(void)arg;
	for (int i = 0; i < 200; i++) {
		const char *t = texts[i % 4];
		ssock_addr a[8];
		char buf[SSOCK_ADDRSTRLEN];
		int n = ssock_addr_resolve(t, i & 1, a, 8);
		if (n < 1 || ssock_addr_port(&a[0]) != i % 4 + 1 ||
		    ssock_addr_format(&a[0], buf, sizeof buf) <= 0)
			bad++;
	}
	return (void *)bad;
}

TEST(resolve_from_many_threads)
{
	/* no static state anywhere: every thread gets its own right answers */
	pthread_t th[8];
	for (int i = 0; i < 8; i++)
		CHECK_INT(pthread_create(&th[i], NULL, resolve_many, NULL), ==, 0);
	long bad = 0;
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(th[i], &r);
		bad += (long)r;
	}
	CHECK_INT(bad, ==, 0);
}
