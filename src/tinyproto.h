/*
 * The Python tinyproto 3.0 wire format as a pure decision function (no I/O,
 * no allocation), so it can be tested byte by byte and fuzzed; conn.c does
 * what it decides.
 *
 * The format: each side sends 0xFF on connect and waits for the peer's. A
 * message is a 4-byte big-endian size; the receiver answers 0xFF (accept)
 * or 0x00 (refuse); on accept the sender sends the payload. It is
 * half-duplex, and 0x00 is also the first byte of every size under 16 MiB,
 * so when both sides start a message at once the header can look like a
 * refusal. ssock starts a message only when it is not receiving one, and
 * treats a 0x00 status followed by more bytes (before it has sent anything
 * else) as that collision: an error, never a misread.
 */
#ifndef SSOCK_TINYPROTO_H
#define SSOCK_TINYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SSOCK__TP_HELLO  0xFF
#define SSOCK__TP_ACCEPT 0xFF
#define SSOCK__TP_REFUSE 0x00

/* One side's protocol state, as conn.c keeps it. */
typedef struct ssock__tp {
	bool hello_in;      /* the peer's 0xFF handshake has arrived */
	bool rx_accepted;   /* we accepted an incoming size; its payload follows */
	bool tx_waiting;    /* we sent a size and wait for the status byte */
	bool after_refusal; /* the peer refused; nothing sent since */
} ssock__tp;

/* What the next bytes mean. */
typedef enum ssock__tp_act {
	SSOCK__TP_NEED,      /* not enough bytes yet */
	SSOCK__TP_GOT_HELLO, /* 1 byte consumed: the handshake */
	SSOCK__TP_ACCEPTED,  /* 1 byte consumed: send the waiting payload */
	SSOCK__TP_REFUSED,   /* 1 byte consumed: drop the waiting message */
	SSOCK__TP_ANSWER_OK, /* a size we take (nothing consumed): answer 0xFF,
	                        then decode the frame (size + payload) as u32 */
	SSOCK__TP_ANSWER_NO, /* 4 bytes consumed: a size above max: answer 0x00 */
	SSOCK__TP_FRAME,     /* decode the accepted frame as u32 */
} ssock__tp_act;

/*
 * Decides what buf[0..len) starts with, given state st and the largest
 * size this side accepts. Returns the bytes consumed (0, 1 or 4) and sets
 * *act, or returns SSOCK_EPROTO (a bad handshake byte) or SSOCK_ECOLLISION
 * (a size where a status byte belongs). Does not change st: the caller
 * updates it once it has acted.
 */
ssize_t ssock__tp_step(const ssock__tp *st, const uint8_t *buf, size_t len, uint32_t max,
		       ssock__tp_act *act);

/* True when this side may start sending a message now: the handshake is
 * done, no message of ours awaits its status, and nothing is being received
 * (`receiving`: the caller holds a partial frame). */
bool ssock__tp_may_send(const ssock__tp *st, bool receiving);

#endif
