/*
 * Frame codecs, byte by byte: every split of a stream across reads, the
 * limits at their exact boundaries, zero-length messages, the `need` and
 * `scanned` hints. No sockets.
 */
#include <sys/types.h>

#include "frame.h"
#include "ssock.h"
#include "test.h"

#define MiB      (1024u * 1024u)
#define RX_CAP   8192
#define MSGS_MAX 64

/* ------------------------------------------------------------------------ */
/* A receiver that works like a connection's read buffer                    */
/* ------------------------------------------------------------------------ */

struct msg {
	size_t len;
	uint8_t data[512];
};

/* Bytes arrive by feed(); whole frames are decoded out of the front at once,
 * as the connection code does after each read(). */
struct rx {
	uint8_t buf[RX_CAP];
	size_t len;
	size_t need;    /* u32: last `need` reported */
	size_t scanned; /* line: the hint kept between reads */
	uint32_t max;
	int error; /* first negative code seen, else 0 */
	int bad;   /* a hint invariant failed */
	int nmsgs;
	struct msg msgs[MSGS_MAX];
};

static void rx_init(struct rx *r, uint32_t max)
{
	memset(r, 0, sizeof *r);
	r->max = max;
}

static void rx_take(struct rx *r, const uint8_t *msg, size_t msg_len, ssize_t used)
{
	if (r->nmsgs == MSGS_MAX || msg_len > sizeof r->msgs[0].data) {
		r->bad = 1;
		return;
	}
	memcpy(r->msgs[r->nmsgs].data, msg, msg_len);
	r->msgs[r->nmsgs++].len = msg_len;
	memmove(r->buf, r->buf + used, r->len - (size_t)used);
	r->len -= (size_t)used;
}

static void rx_feed_u32(struct rx *r, const uint8_t *p, size_t n)
{
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	while (!r->error) {
		const uint8_t *msg = NULL;
		size_t msg_len = 0, need = 0;
		ssize_t rc = ssock__u32_decode(r->buf, r->len, r->max, &msg, &msg_len, &need);
		if (rc < 0) {
			r->error = (int)rc;
			return;
		}
		if (rc == 0) {
			/* "need more" must ask for more than is there, and a need
			 * reached must never be answered with "need more" again,
			 * except to turn the header need (4) into the frame's. */
			if (need <= r->len || (r->need > SSOCK__U32_HEADER && r->len >= r->need))
				r->bad = 1;
			r->need = need;
			return;
		}
		if (msg != r->buf + SSOCK__U32_HEADER ||
		    (size_t)rc != msg_len + SSOCK__U32_HEADER || msg_len > r->max)
			r->bad = 1;
		rx_take(r, msg, msg_len, rc);
		r->need = 0;
	}
}

static void rx_feed_line(struct rx *r, const uint8_t *p, size_t n)
{
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	while (!r->error) {
		const uint8_t *msg = NULL;
		size_t msg_len = 0;
		ssize_t rc =
			ssock__line_decode(r->buf, r->len, r->max, &r->scanned, &msg, &msg_len);
		if (rc < 0) {
			r->error = (int)rc;
			return;
		}
		if (rc == 0) {
			if (r->scanned != r->len || memchr(r->buf, '\n', r->len) != NULL)
				r->bad = 1;
			return;
		}
		if (msg != r->buf || r->scanned != 0 || msg_len > r->max ||
		    r->buf[rc - 1] != '\n' || memchr(msg, '\n', msg_len) != NULL)
			r->bad = 1;
		rx_take(r, msg, msg_len, rc);
	}
}

typedef void (*feed_fn)(struct rx *r, const uint8_t *p, size_t n);

/* The messages a stream must yield, as NUL-free strings (zero-length "" too). */
struct expect {
	const char *const *msgs;
	int n;
};

static int rx_matches(const struct rx *r, const struct expect *e)
{
	if (r->bad || r->error || r->nmsgs != e->n || r->len != 0)
		return 0;
	for (int i = 0; i < e->n; i++) {
		size_t len = strlen(e->msgs[i]);
		if (r->msgs[i].len != len || memcmp(r->msgs[i].data, e->msgs[i], len) != 0)
			return 0;
	}
	return 1;
}

/* Feeds stream[0..n) split in two at every point, then byte at a time; each
 * way must give exactly the expected messages, once each, in order. Returns
 * the failing split (0..n), n + 1 for byte at a time, or -1 when all pass. */
static long every_split(feed_fn feed, const uint8_t *stream, size_t n, uint32_t max,
			const struct expect *e)
{
	static struct rx r;
	for (size_t cut = 0; cut <= n; cut++) {
		rx_init(&r, max);
		feed(&r, stream, cut);
		feed(&r, stream + cut, n - cut);
		if (!rx_matches(&r, e))
			return (long)cut;
	}
	rx_init(&r, max);
	for (size_t i = 0; i < n; i++)
		feed(&r, stream + i, 1);
	return rx_matches(&r, e) ? -1 : (long)n + 1;
}

/* Encodes each message as a u32 frame into out; returns the stream length. */
static size_t u32_encode(const struct expect *e, uint8_t *out)
{
	size_t n = 0;
	for (int i = 0; i < e->n; i++) {
		size_t len = strlen(e->msgs[i]);
		ssock__u32_header(out + n, (uint32_t)len);
		memcpy(out + n + SSOCK__U32_HEADER, e->msgs[i], len);
		n += SSOCK__U32_HEADER + len;
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* u32                                                                       */
/* ------------------------------------------------------------------------ */

TEST(u32_header_is_big_endian)
{
	uint8_t h[4];
	ssock__u32_header(h, 0x01020304u);
	CHECK_MEM(h, "\x01\x02\x03\x04", 4);
	ssock__u32_header(h, 0);
	CHECK_MEM(h, "\0\0\0\0", 4);
	ssock__u32_header(h, UINT32_MAX);
	CHECK_MEM(h, "\xff\xff\xff\xff", 4);
}

TEST(u32_one_frame)
{
	const uint8_t f[] = "\0\0\0\3abcXYZ";
	const uint8_t *msg = NULL;
	size_t len = 0, need = 0;
	ssize_t rc = ssock__u32_decode(f, 10, 16 * MiB, &msg, &len, &need);
	CHECK_INT(rc, ==, 7);
	CHECK(msg == f + 4);
	CHECK_INT(len, ==, 3);
	CHECK_MEM(msg, "abc", 3);
}

TEST(u32_zero_length)
{
	const uint8_t f[] = "\0\0\0\0\0\0\0\0";
	const uint8_t *msg = NULL;
	size_t len = 99, need = 0;
	CHECK_INT(ssock__u32_decode(f, 8, 16 * MiB, &msg, &len, &need), ==, 4);
	CHECK_INT(len, ==, 0);
	CHECK(msg == f + 4);
	/* max 0 still admits empty messages */
	CHECK_INT(ssock__u32_decode(f, 4, 0, &msg, &len, &need), ==, 4);
	static const char *const three_empty[] = {"", "", ""};
	struct expect e = {three_empty, 3};
	CHECK_INT(every_split(rx_feed_u32, f, 8, 0, &(struct expect){three_empty, 2}), ==, -1);
	uint8_t s[12];
	CHECK_INT(u32_encode(&e, s), ==, 12);
	CHECK_INT(every_split(rx_feed_u32, s, 12, 16 * MiB, &e), ==, -1);
}

TEST(u32_need)
{
	const uint8_t f[] = "\0\0\0\5hello";
	const uint8_t *msg = NULL;
	size_t len = 0, need = 0;
	for (size_t n = 0; n < 4; n++) {
		need = 0;
		CHECK_INT(ssock__u32_decode(f, n, 16 * MiB, &msg, &len, &need), ==, 0);
		CHECK_INT(need, ==, 4);
	}
	for (size_t n = 4; n < 9; n++) {
		need = 0;
		CHECK_INT(ssock__u32_decode(f, n, 16 * MiB, &msg, &len, &need), ==, 0);
		CHECK_INT(need, ==, 9);
	}
	CHECK_INT(ssock__u32_decode(f, 9, 16 * MiB, &msg, &len, &need), ==, 9);
	/* a big announced length is reported as need before its payload */
	uint8_t h[4];
	ssock__u32_header(h, 16 * MiB);
	CHECK_INT(ssock__u32_decode(h, 4, 16 * MiB, &msg, &len, &need), ==, 0);
	CHECK_INT(need, ==, 16 * MiB + 4);
}

TEST(u32_max_exact_ok_max_plus_one_refused)
{
	uint8_t f[4 + 100];
	const uint8_t *msg = NULL;
	size_t len = 0, need = 0;
	memset(f, 'x', sizeof f);
	ssock__u32_header(f, 100);
	CHECK_INT(ssock__u32_decode(f, sizeof f, 100, &msg, &len, &need), ==, 104);
	CHECK_INT(len, ==, 100);
	/* one over: refused with only the header in, and not before it is */
	ssock__u32_header(f, 101);
	for (size_t n = 0; n < 4; n++)
		CHECK_INT(ssock__u32_decode(f, n, 100, &msg, &len, &need), ==, 0);
	CHECK_INT(ssock__u32_decode(f, 4, 100, &msg, &len, &need), ==, SSOCK_EMSGSIZE);
	CHECK_INT(ssock__u32_decode(f, sizeof f, 100, &msg, &len, &need), ==, SSOCK_EMSGSIZE);
	ssock__u32_header(f, 16 * MiB + 1);
	CHECK_INT(ssock__u32_decode(f, 4, 16 * MiB, &msg, &len, &need), ==, SSOCK_EMSGSIZE);
}

TEST(u32_ffffffff_refused)
{
	const uint8_t f[] = "\xff\xff\xff\xff";
	const uint8_t *msg = NULL;
	size_t len = 0, need = 0;
	CHECK_INT(ssock__u32_decode(f, 4, 16 * MiB, &msg, &len, &need), ==, SSOCK_EMSGSIZE);
	CHECK_INT(ssock__u32_decode(f, 4, UINT32_MAX - 1, &msg, &len, &need), ==, SSOCK_EMSGSIZE);
	/* where the limit is 4 GiB - 1 the length is legal: need, not error */
	if (sizeof(size_t) > 4) {
		CHECK_INT(ssock__u32_decode(f, 4, UINT32_MAX, &msg, &len, &need), ==, 0);
		CHECK(need == (size_t)UINT32_MAX + 4);
	}
}

TEST(u32_every_split_one_frame)
{
	static const char *const one[] = {"hello, world"};
	struct expect e = {one, 1};
	uint8_t s[64];
	size_t n = u32_encode(&e, s);
	CHECK_INT(every_split(rx_feed_u32, s, n, 16 * MiB, &e), ==, -1);
	CHECK_INT(every_split(rx_feed_u32, s, n, 12, &e), ==, -1);
}

TEST(u32_every_split_several_frames)
{
	static const char *const several[] = {
		"one", "", "two", "x", "", "", "a somewhat longer third message", "\xff\xff"};
	struct expect e = {several, 8};
	uint8_t s[256];
	size_t n = u32_encode(&e, s);
	CHECK_INT(every_split(rx_feed_u32, s, n, 16 * MiB, &e), ==, -1);
	CHECK_INT(every_split(rx_feed_u32, s, n, 31, &e), ==, -1);
}

TEST(u32_every_split_stops_at_oversize)
{
	/* two good frames, then one above max: the receiver gets exactly the
	 * two and then the error, however the bytes are cut */
	static const char *const msgs[] = {"ab", "cd", "too long!"};
	struct expect all = {msgs, 3};
	uint8_t s[64];
	size_t n = u32_encode(&all, s);
	static struct rx r;
	for (size_t cut = 0; cut <= n; cut++) {
		rx_init(&r, 8);
		rx_feed_u32(&r, s, cut);
		/* refused as soon as its header is complete, not later */
		CHECK_INT(r.error, ==, cut >= 12 + 4 ? SSOCK_EMSGSIZE : 0);
		rx_feed_u32(&r, s + cut, n - cut);
		CHECK_INT(r.error, ==, SSOCK_EMSGSIZE);
		CHECK_INT(r.nmsgs, ==, 2);
		CHECK(!r.bad);
	}
}

/* ------------------------------------------------------------------------ */
/* line                                                                      */
/* ------------------------------------------------------------------------ */

static ssize_t line1(const char *s, uint32_t max, const uint8_t **msg, size_t *msg_len)
{
	size_t scanned = 0;
	return ssock__line_decode((const uint8_t *)s, strlen(s), max, &scanned, msg, msg_len);
}

TEST(line_crlf_and_lf)
{
	const uint8_t *msg = NULL;
	size_t len = 0;
	CHECK_INT(line1("abc\r\nrest", 100, &msg, &len), ==, 5);
	CHECK_INT(len, ==, 3);
	CHECK_MEM(msg, "abc", 3);
	CHECK_INT(line1("abc\nrest", 100, &msg, &len), ==, 4);
	CHECK_INT(len, ==, 3);
}

TEST(line_lone_cr_is_payload)
{
	const uint8_t *msg = NULL;
	size_t len = 0;
	CHECK_INT(line1("a\rb\n", 100, &msg, &len), ==, 4);
	CHECK_INT(len, ==, 3);
	CHECK_MEM(msg, "a\rb", 3);
	/* only the one '\r' right before '\n' is stripped */
	CHECK_INT(line1("a\r\r\n", 100, &msg, &len), ==, 4);
	CHECK_INT(len, ==, 2);
	CHECK_MEM(msg, "a\r", 2);
	CHECK_INT(line1("\r\r\n", 100, &msg, &len), ==, 3);
	CHECK_INT(len, ==, 1);
	CHECK_INT(line1("\ra\n", 100, &msg, &len), ==, 3);
	CHECK_INT(len, ==, 2);
}

TEST(line_empty_lines)
{
	const uint8_t *msg = NULL;
	size_t len = 99;
	CHECK_INT(line1("\n", 100, &msg, &len), ==, 1);
	CHECK_INT(len, ==, 0);
	len = 99;
	CHECK_INT(line1("\r\n", 100, &msg, &len), ==, 2);
	CHECK_INT(len, ==, 0);
	CHECK_INT(line1("\n", 0, &msg, &len), ==, 1);
	CHECK_INT(line1("\r\n", 0, &msg, &len), ==, 2);
	size_t scanned = 0;
	CHECK_INT(ssock__line_decode(NULL, 0, 100, &scanned, &msg, &len), ==, 0);
	CHECK_INT(scanned, ==, 0);
}

TEST(line_partial_is_never_delivered)
{
	const uint8_t *msg = NULL;
	size_t len = 0;
	CHECK_INT(line1("abc", 100, &msg, &len), ==, 0);
	CHECK_INT(line1("abc\r", 100, &msg, &len), ==, 0);
	CHECK_INT(line1("\r", 100, &msg, &len), ==, 0);
}

TEST(line_max_boundary)
{
	const uint8_t *msg = NULL;
	size_t len = 0;
	/* exactly max: fine with and without '\r' */
	CHECK_INT(line1("abc\n", 3, &msg, &len), ==, 4);
	CHECK_INT(line1("abc\r\n", 3, &msg, &len), ==, 5);
	CHECK_INT(len, ==, 3);
	/* max + 1: refused with and without '\r' */
	CHECK_INT(line1("abcd\n", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("abcd\r\n", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("ab\r\r\n", 3, &msg, &len), ==, 5);
	CHECK_INT(line1("abc\r\r\n", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	/* before the newline: an error only once it is certain */
	CHECK_INT(line1("abc", 3, &msg, &len), ==, 0);
	CHECK_INT(line1("abc\r", 3, &msg, &len), ==, 0); /* "\n" may follow */
	CHECK_INT(line1("abcd", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("abc\r\r", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("abc\rx", 3, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("\r", 0, &msg, &len), ==, 0);
	CHECK_INT(line1("a", 0, &msg, &len), ==, SSOCK_EMSGSIZE);
	CHECK_INT(line1("\r\r", 0, &msg, &len), ==, SSOCK_EMSGSIZE);
}

TEST(line_max_limit_applies_to_first_line_only)
{
	/* a later long line is the next call's business */
	const uint8_t *msg = NULL;
	size_t len = 0;
	CHECK_INT(line1("ab\nlonger than max", 3, &msg, &len), ==, 3);
	CHECK_INT(len, ==, 2);
}

TEST(line_scanned_hint)
{
	const uint8_t s[] = "abcdefgh\r\nxy\n";
	const uint8_t *msg = NULL;
	size_t len = 0, scanned = 0;
	for (size_t n = 0; n <= 9; n++) {
		size_t before = scanned;
		CHECK_INT(ssock__line_decode(s, n, 100, &scanned, &msg, &len), ==, 0);
		CHECK_INT(scanned, ==, n);
		CHECK(scanned >= before);
	}
	CHECK_INT(ssock__line_decode(s, 13, 100, &scanned, &msg, &len), ==, 10);
	CHECK_INT(scanned, ==, 0);
	CHECK_INT(len, ==, 8);
	CHECK_INT(ssock__line_decode(s + 10, 3, 100, &scanned, &msg, &len), ==, 3);
	CHECK_INT(len, ==, 2);
}

TEST(line_scanned_bytes_are_not_rescanned)
{
	/* the hint is trusted: bytes it covers are not searched again (that is
	 * what keeps a long partial line linear), so a caller that lies about
	 * them gets what it asked for */
	const uint8_t s[] = "ab\ncd";
	const uint8_t *msg = NULL;
	size_t len = 0, scanned = 3;
	CHECK_INT(ssock__line_decode(s, 5, 100, &scanned, &msg, &len), ==, 0);
	CHECK_INT(scanned, ==, 5);
	/* a hint past the end cannot be right: the buffer is scanned afresh */
	scanned = 50;
	CHECK_INT(ssock__line_decode(s, 5, 100, &scanned, &msg, &len), ==, 3);
	CHECK_INT(len, ==, 2);
}

TEST(line_every_split)
{
	static const char *const msgs[] = {"one", "two", "", "", "three\rx", "\r", "last"};
	struct expect e = {msgs, 7};
	const char *s = "one\r\ntwo\n\n\r\nthree\rx\n\r\r\nlast\n";
	size_t n = strlen(s);
	CHECK_INT(every_split(rx_feed_line, (const uint8_t *)s, n, 100, &e), ==, -1);
	CHECK_INT(every_split(rx_feed_line, (const uint8_t *)s, n, 7, &e), ==, -1);
}

TEST(line_every_split_stops_at_oversize)
{
	/* "toolong" (7 > 5) must be refused once its 6th byte is in, whatever
	 * the cuts, after the two good lines and nothing else */
	const char *s = "ab\r\ncd\ntoolong\r\nnever\n";
	size_t n = strlen(s);
	static struct rx r;
	for (size_t cut = 0; cut <= n; cut++) {
		rx_init(&r, 5);
		rx_feed_line(&r, (const uint8_t *)s, cut);
		if (cut >= 7 + 6)
			CHECK_INT(r.error, ==, SSOCK_EMSGSIZE);
		else if (cut >= 7)
			CHECK_INT(r.error, ==, 0);
		rx_feed_line(&r, (const uint8_t *)s + cut, n - cut);
		CHECK_INT(r.error, ==, SSOCK_EMSGSIZE);
		CHECK_INT(r.nmsgs, ==, 2);
		CHECK(!r.bad);
	}
	/* byte at a time: refused exactly when the 6th byte arrives */
	rx_init(&r, 5);
	for (size_t i = 0; i < n && !r.error; i++) {
		rx_feed_line(&r, (const uint8_t *)s + i, 1);
		if (r.error)
			CHECK_INT(i, ==, 7 + 5);
	}
	CHECK_INT(r.error, ==, SSOCK_EMSGSIZE);
}

TEST(line_check)
{
	CHECK_INT(ssock__line_check("abc", 3), ==, 0);
	CHECK_INT(ssock__line_check("", 0), ==, 0);
	CHECK_INT(ssock__line_check(NULL, 0), ==, 0);
	CHECK_INT(ssock__line_check("a\rb", 3), ==, 0);
	CHECK_INT(ssock__line_check("a\nb", 3), ==, SSOCK_EFRAMING);
	CHECK_INT(ssock__line_check("\n", 1), ==, SSOCK_EFRAMING);
	CHECK_INT(ssock__line_check("ab\n", 2), ==, 0); /* only len bytes count */
	if (sizeof(size_t) > 4) /* refused on length alone, nothing is read */
		CHECK_INT(ssock__line_check("x", (size_t)UINT32_MAX + 1), ==, SSOCK_EFRAMING);
}
