/*
 * Framings as units. Each framing is one file (codec_u32.c, codec_line.c,
 * codec_raw.c, codec_tinyproto.c) that fills in one ssock__codec; the
 * connection code asks the codec and never looks at which framing it is.
 *
 * A plain framing only encodes and decodes (its decoder is a pure function
 * over a buffer: see frame.h). A protocol (tinyproto) also has state of its
 * own (c->extra->codec_state), a handshake, and a say in when a message may
 * go out (turns); it answers through the hooks below and calls back into
 * the connection for bytes to write and for "the handshake is done".
 */
#ifndef SSOCK_CODEC_H
#define SSOCK_CODEC_H

#include "ssock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ssock__chunk ssock__chunk;

/* What decode() found at the start of a buffer. */
typedef struct ssock__frame {
	const uint8_t *msg; /* a message: its payload, inside the buffer */
	size_t len;
	bool is_msg; /* the bytes consumed were a message (not protocol) */
	/* On "need more": the whole frame's size once its header said it
	 * (0: not known yet), and how many of its bytes come before the
	 * payload, so a payload too large for the shared read buffer can be
	 * read into a buffer of its own. */
	size_t need;
	size_t header;
	/* In and out: leading bytes of the buffer already known not to hold the
	 * end of the frame (line framing's scan, kept across reads). */
	size_t scanned;
} ssock__frame;

typedef struct ssock__codec {
	const char *name;
	/* The most bytes framing adds to a message. */
	uint32_t overhead;
	/* The largest message it can frame. */
	size_t max_payload;
	/* Checks a message against the framing; returns its size on the wire
	 * (0: nothing to send), or SSOCK_EMSGSIZE / SSOCK_EFRAMING. NULL when
	 * every message up to max_payload takes len + overhead bytes. */
	ssize_t (*wire_size)(const void *data, size_t len);
	/* Writes the message's wire form, wire_size() bytes, at dst. */
	void (*encode)(uint8_t *dst, const void *data, size_t len);
	/* Writes only what comes before a payload that follows as it is, for
	 * the echo fast path (the payload buffer is queued, not copied), and
	 * returns its length; NULL when the wire form is not header + payload. */
	size_t (*header)(uint8_t *dst, size_t len);
	/* Decodes what buf[0..len) starts with. Returns the bytes consumed
	 * (> 0: *f says whether they were a message), 0 for "need more", or a
	 * negative code (the connection is then failed with it). Protocol
	 * codecs act on control bytes themselves. */
	ssize_t (*decode)(ssock_conn *c, const uint8_t *buf, size_t len, ssock__frame *f);

	/* A protocol's own hooks; NULL for plain framings. */

	/* The connection is up (the transport's handshake done, its connect
	 * event about to come): start this codec's handshake. Messages the
	 * program sends meanwhile wait for it (see send). Returns 0, or a
	 * negative code. The codec calls ssock__conn_codec_ready() once the
	 * peer's side is in; if that does not happen within the handshake
	 * timeout, the connection ends with SSOCK_EHANDSHAKE. */
	int (*open)(ssock_conn *c);
	/* Takes one framed message (room for it is reserved) and queues it
	 * when the protocol allows. */
	void (*send)(ssock_conn *c, ssock__chunk *ch);
	/* A pass over input has ended (nothing half-decoded is pending in
	 * the caller): a good moment to start the next message. */
	void (*input_done)(ssock_conn *c);
	/* Whether it holds messages still waiting for the peer: a closing
	 * connection then goes on reading (only for the peer's answers; new
	 * messages from it are refused or dropped) until they are out. */
	bool (*busy)(const ssock_conn *c);
	/* A frame whose payload was read into a buffer of its own (it did not
	 * fit the shared one; see ssock__frame.need) was delivered whole:
	 * decode() never saw its end. */
	void (*frame_done)(ssock_conn *c);
	/* The connection ends: drops what the codec holds. Returns the
	 * message bytes it still held (never to be sent). Its state (one
	 * malloc'd block) is freed with the connection, after the pass. */
	size_t (*close)(ssock_conn *c);
} ssock__codec;

extern const ssock__codec ssock__codec_u32, ssock__codec_line, ssock__codec_raw,
	ssock__codec_tinyproto;

/* u32's encoding, which tinyproto's messages share. */
void ssock__codec_u32_encode(uint8_t *dst, const void *data, size_t len);

/* A message's size on the wire (see wire_size). */
static inline ssize_t ssock__wire_size(const ssock__codec *codec, const void *data, size_t len)
{
	if (codec->wire_size)
		return codec->wire_size(data, len);
	return len > codec->max_payload ? SSOCK_EMSGSIZE : (ssize_t)(len + codec->overhead);
}

/* The most bytes header() writes. */
#define SSOCK__HEADER_MAX 16
/* Messages sent by reference (ssock_server_send_ref()) are queued as they
 * are from this size on; below it a copy costs less than a chunk of their
 * own. */
#define SSOCK__REF_MIN    4096

/* Whether the codec's messages can go out as a header plus the payload as
 * it is: the echo fast path and sends by reference. */
static inline bool ssock__refs_payload(const ssock__codec *codec)
{
	return codec->header && !codec->send;
}

/* Whether a message of len bytes sent by reference is queued as it is
 * (else it is copied, and given back at once). */
static inline bool ssock__ref_worth(const ssock__codec *codec, size_t len)
{
	return len >= SSOCK__REF_MIN && ssock__refs_payload(codec);
}

/* The codec of a framing, or NULL for an unknown one. */
const ssock__codec *ssock__codec_of(ssock_framing f);

#endif
