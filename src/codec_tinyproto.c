/*
 * The Python tinyproto 3.0 wire format as a codec: the handshake (a 0xFF
 * each way; messages wait for the peer's), and the turns
 * of its half-duplex messages: a message's size goes out first, its payload
 * only once the peer answered 0xFF, and a new message starts only when this
 * side is not receiving one. What the bytes mean is decided by the pure
 * function in tinyproto.c; this file keeps the state and acts.
 *
 * State (c->extra->codec_state, owned here): the protocol's flags, the
 * messages waiting for their turn, and the one whose size went out and
 * waits for its answer. Each message is one chunk of its own, framed as u32
 * (size + payload), so it can wait as a unit.
 */
#include "conn.h"
#include "frame.h"
#include "tinyproto.h"

#define ANSWERS_MAX (64u << 10) /* status bytes past the queue's bound */

typedef struct tp_state {
	ssock__tp proto;
	ssock__chunk *turns_head, *turns_tail; /* waiting for their turn */
	ssock__chunk *awaiting;                /* its size sent, answer due */
} tp_state;

static tp_state *state_of(ssock_conn *c)
{
	return c->extra ? c->extra->codec_state : NULL;
}

static int tp_open(ssock_conn *c)
{
	ssock__conn_extra *x = ssock__conn_extra_get(c, "handshake");
	if (!x)
		return SSOCK_ENOMEM;
	tp_state *t = calloc(1, sizeof *t);
	if (!t)
		return SSOCK_ENOMEM;
	x->codec_state = t;
	const uint8_t hello = SSOCK__TP_HELLO;
	return ssock__out_bytes(c, &hello, 1); /* messages wait for the peer's */
}

/* Starts the next waiting message (its size only) when it is this side's
 * turn: never while input is being decoded or a frame is half in, which
 * would make both sides talk at once. */
static void kick(ssock_conn *c)
{
	tp_state *t = state_of(c);
	if (!t || c->decoding || c->state == SSOCK__CLOSED || c->state == SSOCK__DRAINING)
		return;
	if (!t->turns_head || t->awaiting ||
	    !ssock__tp_may_send(&t->proto, ssock__conn_mid_frame(c)))
		return;
	ssock__chunk *ch = t->turns_head;
	t->turns_head = ch->next;
	if (!t->turns_head)
		t->turns_tail = NULL;
	ch->next = NULL;
	t->awaiting = ch;
	t->proto.tx_waiting = true;
	t->proto.after_refusal = false;
	/* The size goes out as a copy; the queued count has it already. */
	ssock__queued_sub(c, SSOCK__U32_HEADER);
	ch->off = SSOCK__U32_HEADER;
	ssock__out_bytes(c, ch->data, SSOCK__U32_HEADER);
}

static void tp_send(ssock_conn *c, ssock__chunk *ch)
{
	tp_state *t = state_of(c);
	ch->next = NULL;
	if (t->turns_tail)
		t->turns_tail->next = ch;
	else
		t->turns_head = ch;
	t->turns_tail = ch;
	kick(c);
}

static void tp_input_done(ssock_conn *c)
{
	kick(c);
}

/* Whether a status byte may still be queued. The peer reads each one
 * before it goes on (the payload waits for it), so they pile up only for a
 * peer that never reads: past send_queue_max (our messages' bound) and
 * ANSWERS_MAX more, its connection fails. */
static bool answer_room(const ssock_conn *c)
{
	size_t queued = atomic_load_explicit(&c->queued, memory_order_relaxed);
	return queued < c->ep->cfg.send_queue_max + ANSWERS_MAX;
}

static bool tp_busy(const ssock_conn *c)
{
	const tp_state *t = c->extra ? c->extra->codec_state : NULL;
	return t && (t->awaiting || t->turns_head);
}

static void tp_frame_done(ssock_conn *c)
{
	tp_state *t = state_of(c);
	if (t)
		t->proto.rx_accepted = false;
}

/* The peer took our size: the payload goes out (an empty one is done). */
static void accepted(ssock_conn *c, tp_state *t)
{
	ssock__chunk *ch = t->awaiting;
	t->awaiting = NULL;
	t->proto.tx_waiting = false;
	if (ch->off == ch->len) {
		ssock__chunk_free(ssock__loop_of(c), ch);
		return;
	}
	ssock__out_chunk(c, ch);
}

static void refused(ssock_conn *c, tp_state *t)
{
	ssock__chunk *ch = t->awaiting;
	t->awaiting = NULL;
	t->proto.tx_waiting = false;
	t->proto.after_refusal = true;
	ssock__queued_sub(c, ch->len - ch->off);
	ssock__chunk_free(ssock__loop_of(c), ch);
	ssock__conn_report(c, SSOCK_EREFUSED, "send");
}

static ssize_t tp_decode(ssock_conn *c, const uint8_t *buf, size_t len, ssock__frame *f)
{
	tp_state *t = state_of(c);
	ssock__tp *st = &t->proto;
	ssock__tp_act act;
	f->is_msg = false;
	f->header = SSOCK__U32_HEADER;
	ssize_t n = ssock__tp_step(st, buf, len, c->ep->cfg.max_message, &act);
	if (n < 0)
		return n;
	uint8_t answer;
	if ((act == SSOCK__TP_ANSWER_NO || act == SSOCK__TP_ANSWER_OK) && !answer_room(c))
		return SSOCK_ESENDQFULL;
	switch (act) {
	case SSOCK__TP_NEED:
		f->need = st->hello_in && !st->tx_waiting ? SSOCK__U32_HEADER : 1;
		return 0;
	case SSOCK__TP_GOT_HELLO:
		st->hello_in = true;
		ssock__conn_codec_ready(c);
		return n;
	case SSOCK__TP_ACCEPTED:
		accepted(c, t);
		return n;
	case SSOCK__TP_REFUSED:
		refused(c, t);
		return n;
	case SSOCK__TP_ANSWER_NO:
		/* Refused, not fatal: the peer sends no payload after 0x00. */
		answer = SSOCK__TP_REFUSE;
		ssock__out_bytes(c, &answer, 1);
		ssock__conn_report(c, SSOCK_EMSGSIZE, "frame");
		return n;
	case SSOCK__TP_ANSWER_OK:
		if (c->state >= SSOCK__CLOSING) {
			/* Closing: the program takes no more messages. */
			answer = SSOCK__TP_REFUSE;
			ssock__out_bytes(c, &answer, 1);
			return SSOCK__U32_HEADER;
		}
		answer = SSOCK__TP_ACCEPT;
		ssock__out_bytes(c, &answer, 1);
		st->rx_accepted = true;
		break;
	case SSOCK__TP_FRAME:
		break;
	}
	/* The size was checked against max_message before it was accepted. */
	n = ssock__u32_decode(buf, len, UINT32_MAX, &f->msg, &f->len, &f->need);
	if (n > 0) {
		st->rx_accepted = false;
		f->is_msg = true;
	}
	return n;
}

static size_t free_list(ssock_conn *c, ssock__chunk *ch)
{
	size_t unsent = 0;
	for (ssock__chunk *next; ch; ch = next) {
		next = ch->next;
		unsent += ch->len - ch->off;
		ssock__chunk_free(ssock__loop_of(c), ch);
	}
	return unsent;
}

/* Drops the waiting messages. The state itself stays until the
 * connection is freed (after the pass): a decode may be up the stack. */
static size_t tp_close(ssock_conn *c)
{
	tp_state *t = state_of(c);
	if (!t)
		return 0;
	/* The message whose size went out never got its answer. */
	size_t unsent = free_list(c, t->awaiting) + free_list(c, t->turns_head);
	t->awaiting = t->turns_head = t->turns_tail = NULL;
	return unsent;
}

const ssock__codec ssock__codec_tinyproto = {
	.name = "tinyproto",
	.overhead = SSOCK__U32_HEADER,
	.max_payload = UINT32_MAX,
	.encode = ssock__codec_u32_encode,
	.decode = tp_decode,
	.open = tp_open,
	.send = tp_send,
	.input_done = tp_input_done,
	.busy = tp_busy,
	.frame_done = tp_frame_done,
	.close = tp_close,
};
