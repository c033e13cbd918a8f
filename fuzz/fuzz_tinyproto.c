/*
 * fuzz_tinyproto: the tinyproto decision function (ssock__tp_step) driven as
 * a connection drives it, over arbitrary bytes and arbitrary turns.
 *
 * Input: byte 0 picks max, byte 1 seeds the extra bytes of the stability
 * check, the rest is a script of records. Each record starts with an op byte:
 *   op % 4 == 0, 1: the peer's next (op >> 2) + 1 bytes arrive (taken from
 *                   the script right after the op byte);
 *   op % 4 == 2:    this side's program sends a message: it is started (the
 *                   size goes out) only when ssock__tp_may_send() says so,
 *                   exactly as conn.c's tp_kick() does;
 *   op % 4 == 3:    a random state: the next byte's low 4 bits become the
 *                   four flags (also combinations conn.c never makes), so
 *                   the function is checked for every state, not only the
 *                   reachable ones.
 * After every arrival the buffered bytes are decoded as conn.c does: the
 * step decides, control bytes are consumed and acted on, accepted frames are
 * decoded as u32 and delivered.
 *
 * Invariants, each from docs/DESIGN.md's tinyproto paragraph or tinyproto.h:
 *   - a step consumes 0, 1 or 4 bytes, never more than it was given, and
 *     nothing when it says it needs more (and then it really lacks bytes);
 *   - each action happens only in its state: the handshake only before the
 *     peer's, a status byte only while a size of ours waits, an answer only
 *     when idle, and an answer-no only for a size above max;
 *   - SSOCK_EPROTO only for a first byte other than 0xFF; SSOCK_ECOLLISION
 *     only for a size where a status belongs (0x00 followed by more bytes,
 *     or any byte but 0x00/0xFF) or bytes right after a refusal;
 *   - a decision does not change when more bytes arrive behind it (except
 *     the one the spec names: a lone 0x00 is a refusal, 0x00 + more is a
 *     collision);
 *   - a delivered message is never larger than max and lies inside what
 *     arrived; this side starts a message only when idle and not receiving;
 *   - every call sees its bytes in a buffer of their exact size (ASan sees
 *     any read past the end).
 */
#include <string.h>
#include <sys/types.h>

#include "frame.h"
#include "fuzz.h"
#include "ssock.h"
#include "tinyproto.h"

struct side {
	ssock__tp st;
	uint32_t max;
	uint8_t *buf; /* bytes that arrived and are not yet consumed */
	size_t len, cap;
	uint32_t seed;
	bool checked; /* the frame being received had its size checked */
	bool dead;    /* the connection was closed by an error */
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One step on a copy of the bytes in a buffer of their exact size. */
static ssize_t step_exact(const ssock__tp *st, const uint8_t *b, size_t len, uint32_t max,
			  ssock__tp_act *act)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (len)
		memcpy(copy, b, len);
	ssize_t r = ssock__tp_step(st, copy, len, max, act);
	free(copy);
	return r;
}

/* What the step may decide in state st for bytes b[0..len), per the spec. */
static void check_step(const ssock__tp *st, const uint8_t *b, size_t len, uint32_t max, ssize_t r,
		       ssock__tp_act act)
{
	if (r >= 0)
		FUZZ_CHECK((size_t)r <= len && (r == 0 || r == 1 || r == 4));
	if (r == SSOCK_EPROTO) {
		FUZZ_CHECK(!st->hello_in && len > 0 && b[0] != SSOCK__TP_HELLO);
		return;
	}
	if (r == SSOCK_ECOLLISION) {
		FUZZ_CHECK(st->hello_in && len > 0);
		if (st->tx_waiting)
			FUZZ_CHECK(b[0] != SSOCK__TP_ACCEPT &&
				   !(b[0] == SSOCK__TP_REFUSE && len == 1));
		else
			FUZZ_CHECK(st->after_refusal);
		return;
	}
	FUZZ_CHECK(r >= 0);
	switch (act) {
	case SSOCK__TP_NEED:
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(len == 0 || (st->hello_in && !st->tx_waiting && !st->after_refusal &&
					!st->rx_accepted && len < 4));
		break;
	case SSOCK__TP_GOT_HELLO:
		FUZZ_CHECK(r == 1 && !st->hello_in && b[0] == SSOCK__TP_HELLO);
		break;
	case SSOCK__TP_ACCEPTED:
		FUZZ_CHECK(r == 1 && st->hello_in && st->tx_waiting && b[0] == SSOCK__TP_ACCEPT);
		break;
	case SSOCK__TP_REFUSED:
		FUZZ_CHECK(r == 1 && st->hello_in && st->tx_waiting && b[0] == SSOCK__TP_REFUSE &&
			   len == 1);
		break;
	case SSOCK__TP_ANSWER_OK:
		FUZZ_CHECK(r == 0 && st->hello_in && !st->tx_waiting && !st->after_refusal &&
			   !st->rx_accepted && len >= 4 && be32(b) <= max);
		break;
	case SSOCK__TP_ANSWER_NO:
		FUZZ_CHECK(r == 4 && st->hello_in && !st->tx_waiting && !st->after_refusal &&
			   !st->rx_accepted && len >= 4 && be32(b) > max);
		break;
	case SSOCK__TP_FRAME:
		FUZZ_CHECK(r == 0 && st->hello_in && !st->tx_waiting && !st->after_refusal &&
			   st->rx_accepted && len > 0);
		break;
	default:
		FUZZ_CHECK(!"unknown action");
	}
}

/* A decision, once made, holds whatever byte arrives behind it. */
static void check_stable(struct side *s, ssize_t r, ssock__tp_act act)
{
	if (r == 0 && act == SSOCK__TP_NEED)
		return; /* undecided: more bytes may decide it */
	if (s->st.tx_waiting && s->len == 1 && s->buf[0] == SSOCK__TP_REFUSE)
		return; /* the spec's one exception: lone 0x00 vs 0x00 + more */
	uint8_t *more = malloc(s->len + 1);
	memcpy(more, s->buf, s->len);
	more[s->len] = (uint8_t)fuzz_next(&s->seed);
	ssock__tp_act act2;
	ssize_t r2 = ssock__tp_step(&s->st, more, s->len + 1, s->max, &act2);
	free(more);
	FUZZ_CHECK(r2 == r);
	FUZZ_CHECK(r < 0 || act2 == act);
}

static void consume(struct side *s, size_t n)
{
	memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
}

/* An accepted frame (size + payload) decoded as u32, as conn.c does. */
static bool take_frame(struct side *s)
{
	const uint8_t *msg = NULL;
	size_t mlen = 0, need = 0;
	uint8_t *copy = malloc(s->len);
	memcpy(copy, s->buf, s->len);
	ssize_t n = ssock__u32_decode(copy, s->len, UINT32_MAX, &msg, &mlen, &need);
	if (n > 0) {
		if (s->checked) /* never more than this side accepts */
			FUZZ_CHECK(mlen <= s->max);
		FUZZ_CHECK(msg == copy + SSOCK__U32_HEADER && (size_t)n == mlen + 4);
		FUZZ_CHECK((size_t)n <= s->len);
	} else {
		FUZZ_CHECK(n == 0 && need > s->len);
	}
	free(copy);
	if (n <= 0)
		return false;
	s->st.rx_accepted = false;
	s->checked = false;
	consume(s, (size_t)n);
	return true;
}

/* Decodes what has arrived, acting on each decision as conn.c does. */
static void process(struct side *s)
{
	while (!s->dead) {
		ssock__tp_act act;
		ssize_t r = step_exact(&s->st, s->buf, s->len, s->max, &act);
		check_step(&s->st, s->buf, s->len, s->max, r, act);
		check_stable(s, r, act);
		if (r < 0) {
			s->dead = true; /* reported and closed */
			return;
		}
		switch (act) {
		case SSOCK__TP_NEED:
			return;
		case SSOCK__TP_GOT_HELLO:
			s->st.hello_in = true;
			break;
		case SSOCK__TP_ACCEPTED:
			s->st.tx_waiting = false;
			break;
		case SSOCK__TP_REFUSED:
			s->st.tx_waiting = false;
			s->st.after_refusal = true;
			break;
		case SSOCK__TP_ANSWER_NO:
			break;
		case SSOCK__TP_ANSWER_OK:
			s->st.rx_accepted = true;
			s->checked = true;
			/* fall through */
		case SSOCK__TP_FRAME:
			if (!take_frame(s))
				return;
			break;
		}
		if (r > 0)
			consume(s, (size_t)r);
	}
}

/* The program sends: the message starts only when it is this side's turn. */
static void try_send(struct side *s)
{
	bool receiving = s->len > 0;
	bool may = ssock__tp_may_send(&s->st, receiving);
	FUZZ_CHECK(may ==
		   (s->st.hello_in && !s->st.tx_waiting && !s->st.rx_accepted && !receiving));
	if (!may)
		return;
	s->st.tx_waiting = true;
	s->st.after_refusal = false;
}

static void arrive(struct side *s, const uint8_t *b, size_t n)
{
	if (n == 0)
		return;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, b, n);
	s->len += n;
	process(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct side s = {.max = fuzz_pick_max(data[0]), .seed = data[1]};
	size_t i = 2;
	while (i < size && !s.dead) {
		uint8_t op = data[i++];
		switch (op % 4) {
		case 0:
		case 1: {
			size_t n = (size_t)(op >> 2) + 1;
			if (n > size - i)
				n = size - i;
			arrive(&s, data + i, n);
			i += n;
			break;
		}
		case 2:
			try_send(&s);
			break;
		case 3:
			if (i < size) {
				uint8_t f = data[i++];
				s.st = (ssock__tp){.hello_in = f & 1,
						   .rx_accepted = f & 2,
						   .tx_waiting = f & 4,
						   .after_refusal = f & 8};
				s.checked = false; /* a frame no answer was given for */
				process(&s);
			}
			break;
		}
	}
	free(s.buf);
	return 0;
}
