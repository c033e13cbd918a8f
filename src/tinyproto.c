/* The tinyproto wire format's decisions; see tinyproto.h. */
#include "tinyproto.h"

#include "ssock.h"

static ssize_t status_byte(const ssock__tp *st, const uint8_t *buf, size_t len, ssock__tp_act *act)
{
	(void)st;
	if (buf[0] == SSOCK__TP_ACCEPT) {
		*act = SSOCK__TP_ACCEPTED;
		return 1;
	}
	/* 0x00 with more bytes right behind it is the peer's own size header
	 * (under 16 MiB), sent at the same moment as ours. Any other value is
	 * a size header too (16 MiB or more). Neither is a status byte. */
	if (buf[0] == SSOCK__TP_REFUSE && len == 1) {
		*act = SSOCK__TP_REFUSED;
		return 1;
	}
	return SSOCK_ECOLLISION;
}

ssize_t ssock__tp_step(const ssock__tp *st, const uint8_t *buf, size_t len, uint32_t max,
		       ssock__tp_act *act)
{
	*act = SSOCK__TP_NEED;
	if (len == 0)
		return 0;
	if (!st->hello_in) {
		if (buf[0] != SSOCK__TP_HELLO)
			return SSOCK_EPROTO;
		*act = SSOCK__TP_GOT_HELLO;
		return 1;
	}
	if (st->tx_waiting)
		return status_byte(st, buf, len, act);
	if (st->after_refusal)
		return SSOCK_ECOLLISION; /* the rest of a header we took for 0x00 */
	if (st->rx_accepted) {
		*act = SSOCK__TP_FRAME;
		return 0;
	}
	if (len < 4)
		return 0;
	uint32_t size =
		(uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (size > max) {
		*act = SSOCK__TP_ANSWER_NO;
		return 4;
	}
	*act = SSOCK__TP_ANSWER_OK;
	return 0;
}

bool ssock__tp_may_send(const ssock__tp *st, bool receiving)
{
	return st->hello_in && !st->tx_waiting && !st->rx_accepted && !receiving;
}
