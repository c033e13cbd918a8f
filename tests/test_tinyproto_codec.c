/* The tinyproto decision function, byte by byte. */
#include "ssock.h"
#include "test.h"
#include "tinyproto.h"

static const ssock__tp ready = {.hello_in = true};

TEST(hello_must_be_0xff)
{
	ssock__tp st = {0};
	ssock__tp_act act;
	CHECK_INT(ssock__tp_step(&st, (const uint8_t *)"", 0, 100, &act), ==, 0);
	CHECK_INT(act, ==, SSOCK__TP_NEED);
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0xFF, 0, 0}, 3, 100, &act), ==, 1);
	CHECK_INT(act, ==, SSOCK__TP_GOT_HELLO);
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0x00}, 1, 100, &act), ==, SSOCK_EPROTO);
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){'G'}, 1, 100, &act), ==, SSOCK_EPROTO);
}

TEST(size_header_needs_four_bytes)
{
	const uint8_t h[] = {0, 0, 0, 5};
	ssock__tp_act act;
	for (size_t n = 1; n < 4; n++) {
		CHECK_INT(ssock__tp_step(&ready, h, n, 100, &act), ==, 0);
		CHECK_INT(act, ==, SSOCK__TP_NEED);
	}
	CHECK_INT(ssock__tp_step(&ready, h, 4, 100, &act), ==, 0);
	CHECK_INT(act, ==, SSOCK__TP_ANSWER_OK);
}

TEST(size_above_max_refused_and_consumed)
{
	ssock__tp_act act;
	const uint8_t at[] = {0, 0, 0, 100}, over[] = {0, 0, 0, 101};
	CHECK_INT(ssock__tp_step(&ready, at, 4, 100, &act), ==, 0);
	CHECK_INT(act, ==, SSOCK__TP_ANSWER_OK);
	CHECK_INT(ssock__tp_step(&ready, over, 4, 100, &act), ==, 4);
	CHECK_INT(act, ==, SSOCK__TP_ANSWER_NO);
	const uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0xFF};
	CHECK_INT(ssock__tp_step(&ready, huge, 4, 0xF0FFFFFF, &act), ==, 4);
	CHECK_INT(act, ==, SSOCK__TP_ANSWER_NO);
}

TEST(accepted_frame_decodes_as_u32)
{
	ssock__tp st = ready;
	st.rx_accepted = true;
	ssock__tp_act act;
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0, 0, 0, 1, 'x'}, 5, 100, &act), ==, 0);
	CHECK_INT(act, ==, SSOCK__TP_FRAME);
}

TEST(status_bytes)
{
	ssock__tp st = ready;
	st.tx_waiting = true;
	ssock__tp_act act;
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0xFF}, 1, 100, &act), ==, 1);
	CHECK_INT(act, ==, SSOCK__TP_ACCEPTED);
	/* accept followed by the peer's next header: only the status is taken */
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0xFF, 0, 0, 0, 1}, 5, 100, &act), ==, 1);
	CHECK_INT(act, ==, SSOCK__TP_ACCEPTED);
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0x00}, 1, 100, &act), ==, 1);
	CHECK_INT(act, ==, SSOCK__TP_REFUSED);
}

TEST(collision_is_an_error_never_a_misread)
{
	ssock__tp st = ready;
	st.tx_waiting = true;
	ssock__tp_act act;
	/* the peer's own header under 16 MiB, where our status byte belongs */
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0, 0, 0, 7}, 4, 100, &act), ==,
		  SSOCK_ECOLLISION);
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0, 0}, 2, 100, &act), ==, SSOCK_ECOLLISION);
	/* a header of 16 MiB or more starts with a byte that is no status */
	CHECK_INT(ssock__tp_step(&st, (const uint8_t[]){0x01}, 1, 100, &act), ==, SSOCK_ECOLLISION);
	/* 0x00 alone, then more bytes before we sent anything: the rest of it */
	ssock__tp after = ready;
	after.after_refusal = true;
	CHECK_INT(ssock__tp_step(&after, (const uint8_t[]){0, 0, 7}, 3, 100, &act), ==,
		  SSOCK_ECOLLISION);
}

TEST(may_send_only_when_idle)
{
	ssock__tp st = {0};
	CHECK(!ssock__tp_may_send(&st, false)); /* no handshake yet */
	st.hello_in = true;
	CHECK(ssock__tp_may_send(&st, false));
	CHECK(!ssock__tp_may_send(&st, true)); /* a partial frame is arriving */
	st.rx_accepted = true;
	CHECK(!ssock__tp_may_send(&st, false));
	st.rx_accepted = false;
	st.tx_waiting = true;
	CHECK(!ssock__tp_may_send(&st, false));
}
