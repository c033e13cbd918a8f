/*
 * The guard of `ssock echo --udp` (tools/echo_guard.c): it never answers its
 * own address, and it rate-limits per source, strictly for its own replies
 * coming back. Time is passed in, so the rates are checked exactly.
 */
#include "echo_guard.h"
#include "test.h"

#include "ssock.h"

static struct echo_guard *guard_on(const char *bound)
{
	static struct echo_guard g;
	ssock_addr a;
	if (ssock_addr_resolve(bound, 0, &a, 1) != 1)
		return NULL;
	echo_guard_init(&g, &a);
	return &g;
}

static ssock_addr addr(const char *text)
{
	ssock_addr a = {0};
	ssock_addr_resolve(text, 0, &a, 1);
	return a;
}

static echo_verdict check(struct echo_guard *g, const char *from, const char *data, int64_t ms)
{
	ssock_addr a = addr(from);
	bool first;
	return echo_guard_check(g, &a, data, strlen(data), ms, &first);
}

static bool has_ipv6_loopback(void)
{
	ssock_addr a = addr("[::1]:1");
	return echo_guard_is_local(&a);
}

TEST(own_address_is_never_answered)
{
	struct echo_guard *g = guard_on("0.0.0.0:5353");
	CHECK(g);
	CHECK_INT(check(g, "127.0.0.1:5353", "x", 1000), ==, ECHO_SELF);
	CHECK_INT(check(g, "127.0.0.5:5353", "x", 1000), ==, ECHO_SELF); /* all of 127/8 */
	CHECK_INT(check(g, "[::ffff:127.0.0.1]:5353", "x", 1000), ==, ECHO_SELF);
	if (has_ipv6_loopback())
		CHECK_INT(check(g, "[::1]:5353", "x", 1000), ==, ECHO_SELF);
	/* Another port of this host, or this port elsewhere: a peer. */
	CHECK_INT(check(g, "127.0.0.1:5354", "x", 1000), ==, ECHO_ANSWER);
	CHECK_INT(check(g, "192.0.2.1:5353", "x", 1000), ==, ECHO_ANSWER); /* TEST-NET-1 */
}

TEST(is_local)
{
	ssock_addr a = addr("127.0.0.1:9");
	CHECK(echo_guard_is_local(&a));
	a = addr("192.0.2.7:9");
	CHECK(!echo_guard_is_local(&a));
}

/* Distinct payloads: a burst, then the rate. */
TEST(rate_per_source)
{
	struct echo_guard *g = guard_on("127.0.0.1:7000");
	char msg[32];
	int answered = 0;
	for (int i = 0; i < ECHO_GUARD_BURST + 10; i++) {
		snprintf(msg, sizeof msg, "request %d", i);
		answered += check(g, "127.0.0.1:40000", msg, 1000) == ECHO_ANSWER;
	}
	CHECK_INT(answered, ==, ECHO_GUARD_BURST);
	snprintf(msg, sizeof msg, "one more");
	CHECK_INT(check(g, "127.0.0.1:40000", msg, 1000), ==, ECHO_RATE);
	/* Another source has its own bucket. */
	CHECK_INT(check(g, "127.0.0.1:40001", msg, 1000), ==, ECHO_ANSWER);
	/* 10 ms later: 10 ms worth of the rate. */
	answered = 0;
	for (int i = 0; i < ECHO_GUARD_RATE / 50; i++) {
		snprintf(msg, sizeof msg, "later %d", i);
		answered += check(g, "127.0.0.1:40000", msg, 1010) == ECHO_ANSWER;
	}
	CHECK_INT(answered, ==, ECHO_GUARD_RATE / 100);
}

/* The same payload again and again is our own reply coming back: at most
 * ECHO_GUARD_BACK_RATE a second (bursts of as many). */
TEST(replies_coming_back)
{
	struct echo_guard *g = guard_on("127.0.0.1:7000");
	int answered = 0;
	for (int i = 0; i < 3 * ECHO_GUARD_BACK_RATE; i++)
		answered += check(g, "127.0.0.1:40000", "ping", 1000) == ECHO_ANSWER;
	CHECK_INT(answered, ==, 1 + ECHO_GUARD_BACK_RATE); /* the first is not a reply */
	CHECK_INT(check(g, "127.0.0.1:40000", "ping", 1000), ==, ECHO_BOUNCED);
	CHECK_INT(check(g, "127.0.0.1:40000", "pong", 1000), ==, ECHO_ANSWER); /* new bytes */
	/* Half a second later, half the rate; after a quiet second no longer a
	 * reply coming back at all. */
	answered = 0;
	for (int i = 0; i < ECHO_GUARD_BACK_RATE; i++)
		answered += check(g, "127.0.0.1:40000", "ping", 1500) == ECHO_ANSWER;
	CHECK_INT(answered, ==, ECHO_GUARD_BACK_RATE / 2);
	CHECK_INT(check(g, "127.0.0.1:40000", "ping", 1500 + ECHO_GUARD_RECENT_MS + 1), ==,
		  ECHO_ANSWER);
}

/* Two guarded echo services and datagrams forged to start a game between
 * them: each bounce takes 50 us; the game ends in well under a second. */
TEST(two_echo_services_stop)
{
	static struct echo_guard a, b;
	ssock_addr pa = addr("127.0.0.1:7001"), pb = addr("127.0.0.1:7002");
	echo_guard_init(&a, &pa);
	echo_guard_init(&b, &pb);
	const char *forged[] = {"one", "two", "three", "four", "five"};
	int alive = 5, bounces = 0;
	bool up[5] = {true, true, true, true, true}, first;
	int64_t us = 1000000;
	for (int round = 0; alive > 0 && round < 100000; round++) {
		for (int i = 0; i < 5; i++) {
			if (!up[i])
				continue;
			/* At A from B, then (if answered) at B from A. */
			struct echo_guard *to = round % 2 ? &b : &a;
			const ssock_addr *from = round % 2 ? &pa : &pb;
			us += 50;
			if (echo_guard_check(to, from, forged[i], strlen(forged[i]), us / 1000,
					     &first) != ECHO_ANSWER) {
				up[i] = false;
				alive--;
			}
			bounces++;
		}
	}
	CHECK_INT(alive, ==, 0);
	CHECK_INT(us - 1000000, <, 1000000);
	CHECK_INT(bounces, <, 4 * ECHO_GUARD_BACK_RATE);
}

TEST(refusals_reported_once_per_period)
{
	struct echo_guard *g = guard_on("127.0.0.1:7000");
	ssock_addr self = addr("127.0.0.1:7000");
	bool first;
	CHECK_INT(echo_guard_check(g, &self, "x", 1, 1000, &first), ==, ECHO_SELF);
	CHECK(first);
	CHECK_INT(echo_guard_check(g, &self, "x", 1, 2000, &first), ==, ECHO_SELF);
	CHECK(!first);
	CHECK_INT(echo_guard_check(g, &self, "x", 1, 1000 + ECHO_GUARD_LOG_MS, &first), ==,
		  ECHO_SELF);
	CHECK(first);
}
