/*
 * The send path: queuing messages (framed by the codec), the send queue and
 * its chunks, the loop's shared output buffer and writing through the
 * transport (sends from other threads: conn_post.c).
 *
 * Owners: a chunk belongs to the queue it is in (c->out_*, c->posted, a
 * codec's turn queue); a closed connection's chunks are freed with it after
 * the pass. The shared output buffer is the loop's; a connection's bytes
 * in it (its flush entry) are written or moved into a chunk of its own
 * before the pass ends.
 */
#include "conn.h"

#define WRITES_PER_WAKEUP 8
#define CHUNK_SIZE        (16u << 10) /* standard send chunk */
#define MAX_FREE_CHUNKS   256         /* spare chunks a loop keeps (4 MiB) */
#define IDLE_FREE_CHUNKS  32          /* and keeps once that many are not in use */
#define MAX_IOV           64
#define OBUF_MIN          (16u << 10)  /* the shared output buffer's first size */
#define OBUF_MAX          (256u << 10) /* and its largest: bigger output uses chunks */
#define SEG_MAX \
	CHUNK_SIZE /* one connection's bytes in it: what the kernel
                                  does not take of them fits a spare chunk */

/* --------------------------------------------------------------- chunks */

/* The iovecs of the bytes still to write of a chunk referring to a
 * payload (at most 2): the header it holds, and the payload. Returns how
 * many. */
__attribute__((noinline)) static int ref_iov(const ssock__chunk *ch, struct iovec *iov)
{
	int n = 0;
	if (ch->off < ch->hlen)
		iov[n++] = (struct iovec){(uint8_t *)ch->data + ch->off, ch->hlen - ch->off};
	size_t done = ch->off > ch->hlen ? ch->off - ch->hlen : 0;
	iov[n++] = (struct iovec){ch->payload + done, ch->len - ch->hlen - done};
	return n;
}

/* Gives a chunk's payload back to its owner. */
static void payload_release(ssock__chunk *ch)
{
	if (ch->release)
		ch->release(ch->payload, ch->release_arg);
	else
		ssock__big_free(ch->payload, ch->cap); /* lent: see send_lent() */
}

void ssock__chunk_destroy(ssock__chunk *ch)
{
	if (ch->payload)
		payload_release(ch);
	free(ch);
}

static ssock__chunk *chunk_new(ssock_loop *l, size_t need)
{
	ssock__chunk *ch;
	if (need <= CHUNK_SIZE && l->free_chunks) {
		ch = l->free_chunks;
		l->free_chunks = ch->next;
		l->nfree_chunks--;
	} else {
		size_t cap = need <= CHUNK_SIZE ? CHUNK_SIZE : need;
		ch = malloc(sizeof *ch + cap);
		if (!ch)
			return NULL;
		ch->cap = cap;
	}
	ch->next = NULL;
	ch->payload = NULL;
	ch->off = ch->len = 0;
	return ch;
}

void ssock__chunk_free(ssock_loop *l, ssock__chunk *ch)
{
	if (ch->payload) {
		if (!ch->release) /* ours: a lent payload; not the program's */
			ssock__loop_released(l, ch->cap);
		ssock__chunk_destroy(ch);
		return;
	}
	if (ch->cap == CHUNK_SIZE && l->nfree_chunks < MAX_FREE_CHUNKS) {
		ch->next = l->free_chunks;
		l->free_chunks = ch;
		if (++l->nfree_chunks > IDLE_FREE_CHUNKS)
			ssock__loop_released(l, 0);
		return;
	}
	ssock__loop_released(l, ch->cap);
	free(ch);
}

void ssock__chunks_trim(ssock_loop *l, bool all)
{
	while (l->nfree_chunks > (all ? 0 : IDLE_FREE_CHUNKS)) {
		ssock__chunk *ch = l->free_chunks;
		l->free_chunks = ch->next;
		l->nfree_chunks--;
		free(ch);
	}
}

static void free_list(ssock_loop *l, ssock__chunk *ch)
{
	for (ssock__chunk *next; ch; ch = next) {
		next = ch->next;
		ssock__chunk_free(l, ch);
	}
}

/* ------------------------------------------------ the shared output buffer */

static void set_want_write(ssock_conn *c, bool on)
{
	if (c->want_write == on)
		return;
	c->want_write = on;
	ssock__conn_interest(c);
}

/* Adds c to the list of connections written at the end of this pass;
 * returns its entry, or NULL when writability will write it instead (it
 * waits for room already, or the list could not grow). */
static struct ssock__flush *flush_add(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	if (c->want_write)
		return NULL;
	if (l->nflush == l->flush_cap) {
		size_t cap = l->flush_cap ? l->flush_cap * 2 : 64;
		struct ssock__flush *f =
			cap <= UINT32_MAX ? realloc(l->flush, cap * sizeof *f) : NULL;
		if (!f) {
			set_want_write(c, true);
			return NULL;
		}
		l->flush = f;
		l->flush_cap = cap;
	}
	l->flush[l->nflush] = (struct ssock__flush){.conn = c};
	c->flush_idx = (uint32_t)++l->nflush;
	return &l->flush[l->nflush - 1];
}

/* c's entry in the list of connections written at the end of this pass,
 * added if need be (see flush_add()). */
static struct ssock__flush *mark_flush(ssock_conn *c)
{
	if (c->flush_idx)
		return &ssock__loop_of(c)->flush[c->flush_idx - 1];
	return flush_add(c);
}

/* c's bytes in the shared output buffer, or NULL. */
static struct ssock__flush *out_seg(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	struct ssock__flush *f = c->flush_idx ? &l->flush[c->flush_idx - 1] : NULL;
	return f && f->len > 0 ? f : NULL;
}

/* Grows the shared output buffer to hold need bytes, up to OBUF_MAX. */
static bool obuf_grow(ssock_loop *l, size_t need)
{
	if (need > OBUF_MAX)
		return false;
	size_t cap = l->obuf_cap ? l->obuf_cap * 2 : OBUF_MIN;
	while (cap < need)
		cap *= 2;
	uint8_t *b = realloc(l->obuf, cap);
	if (!b)
		return false;
	l->obuf = b;
	l->obuf_cap = cap;
	return true;
}

/* Room for n bytes of c's output in the loop's shared output buffer, or
 * NULL when they go into a chunk instead: c has chunks queued (its bytes in
 * the shared buffer always come first; a connection waiting for
 * writability always has some), another connection has added bytes after
 * c's, c would have more than SEG_MAX bytes there, or the buffer is full. */
__attribute__((noinline)) static uint8_t *out_room_slow(ssock_conn *c, size_t n)
{
	ssock_loop *l = ssock__loop_of(c);
	if (c->out_head)
		return NULL;
	struct ssock__flush *f = c->flush_idx ? &l->flush[c->flush_idx - 1] : NULL;
	size_t have = f ? f->len : 0;
	if ((have > 0 && f->off + have != l->obuf_len) || n > SEG_MAX - have)
		return NULL;
	if (l->obuf_len + n > l->obuf_cap && !obuf_grow(l, l->obuf_len + n))
		return NULL;
	if (!f && !(f = flush_add(c)))
		return NULL;
	if (have == 0)
		f->off = (uint32_t)l->obuf_len;
	f->len = (uint32_t)(have + n);
	uint8_t *p = l->obuf + l->obuf_len;
	l->obuf_len += n;
	return p;
}

/* As out_room_slow(), which it calls for all but the usual case of a
 * message after the first in a pass: c's bytes are last, and there is room. */
static inline uint8_t *out_room(ssock_conn *c, size_t n)
{
	ssock_loop *l = ssock__loop_of(c);
	if (c->flush_idx && !c->out_head) {
		struct ssock__flush *f = &l->flush[c->flush_idx - 1];
		if (f->len > 0 && f->off + f->len == l->obuf_len && n <= SEG_MAX - f->len &&
		    n <= l->obuf_cap - l->obuf_len) {
			uint8_t *p = l->obuf + l->obuf_len;
			f->len += (uint32_t)n;
			l->obuf_len += n;
			return p;
		}
	}
	return out_room_slow(c, n);
}

/* ----------------------------------------------------------- queuing */

static void out_append(ssock_conn *c, ssock__chunk *ch)
{
	if (c->out_tail)
		c->out_tail->next = ch;
	else
		c->out_head = ch;
	c->out_tail = ch;
}

void ssock__out_chunk(ssock_conn *c, ssock__chunk *ch)
{
	ch->next = NULL;
	if (!ssock__chunk_merge(c->ep, c->out_tail, ch, false))
		out_append(c, ch);
	mark_flush(c);
}

/* Room for n bytes at the end of c's queue: the shared buffer, the tail
 * chunk, or a new chunk. NULL when memory ran out. */
static uint8_t *tail_room(ssock_conn *c, size_t n)
{
	uint8_t *dst = out_room(c, n);
	if (dst)
		return dst;
	ssock__chunk *tail = c->out_tail;
	if (!tail || tail->payload || tail->cap - tail->len < n) {
		tail = chunk_new(ssock__loop_of(c), n);
		if (!tail)
			return NULL;
		out_append(c, tail);
	}
	dst = tail->data + tail->len;
	tail->len += n;
	mark_flush(c);
	return dst;
}

int ssock__out_bytes(ssock_conn *c, const uint8_t *bytes, size_t n)
{
	uint8_t *dst = tail_room(c, n);
	if (!dst) {
		ssock__conn_report(c, SSOCK_ENOMEM, "write");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return SSOCK_ENOMEM;
	}
	memcpy(dst, bytes, n);
	ssock__queued_add(c, n);
	return 0;
}

/* Queues a chunk referring to a payload (ssock__ref_chunk()), whose room
 * is reserved, after what c has queued. */
static void out_ref(ssock_conn *c, ssock__chunk *ch)
{
	ch->next = NULL;
	out_append(c, ch);
	mark_flush(c);
}

/* Echo fast path: the payload buffer being delivered to a callback is
 * queued as it is, after its header, instead of being copied. Room is
 * reserved. Out of line: inlined, it costs ssock__conn_send() 4
 * instructions per message (bench/callgrind.sh, pipeline). */
__attribute__((noinline)) static bool send_lent(ssock_conn *c, size_t len)
{
	ssock_loop *l = ssock__loop_of(c);
	ssock__chunk *ch = ssock__ref_chunk(c->ep->codec, l->lending, len, NULL, NULL);
	if (!ch)
		return false;
	l->lending = NULL;
	out_ref(c, ch);
	return true;
}

/* Whether c takes a message now, and if so reserves its room. Returns its
 * size on the wire (> 0), 0 when it puts nothing on the wire (an empty raw
 * message), or a negative code. */
static inline ssize_t admit(ssock_conn *c, const void *data, size_t len)
{
	if (c->state >= SSOCK__CLOSING || c->state == SSOCK__HANDSHAKE)
		return SSOCK_ECLOSED;
	ssize_t total = ssock__wire_size(c->ep->codec, data, len);
	if (total <= 0)
		return total;
	if ((size_t)total > c->ep->cfg.send_queue_max)
		return SSOCK_EMSGSIZE;
	if (!ssock__reserve(c, (size_t)total))
		return SSOCK_ESENDQFULL;
	return total;
}

int ssock__conn_send(ssock_conn *c, const void *data, size_t len)
{
	const ssock__codec *codec = c->ep->codec;
	ssize_t total = admit(c, data, len);
	if (total <= 0)
		return (int)total;
	if (data == ssock__loop_of(c)->lending && len > 0 && ssock__refs_payload(codec) &&
	    send_lent(c, len))
		return 0;
	if (codec->send) {
		/* A protocol queues each message as a unit of its own. */
		ssock__chunk *ch;
		int rc = ssock__frame_chunk(c->ep, data, len, NULL, NULL, &ch);
		if (rc != 0) {
			ssock__queued_sub(c, (size_t)total);
			return rc;
		}
		codec->send(c, ch);
		return 0;
	}
	uint8_t *dst = out_room(c, (size_t)total);
	if (!dst && !(dst = tail_room(c, (size_t)total))) {
		ssock__queued_sub(c, (size_t)total);
		return SSOCK_ENOMEM;
	}
	codec->encode(dst, data, len);
	return 0;
}

int ssock__conn_send_ref(ssock_conn *c, const void *data, size_t len, ssock_release_fn release,
			 void *arg)
{
	const ssock__codec *codec = c->ep->codec;
	if (!ssock__ref_worth(codec, len) || ssock__shown_to_callbacks(data, len)) {
		int rc = ssock__conn_send(c, data, len);
		if (rc == 0)
			release(data, arg);
		return rc;
	}
	ssize_t total = admit(c, data, len); /* never 0: len >= SSOCK__REF_MIN */
	if (total <= 0)
		return (int)total;
	ssock__chunk *ch = ssock__ref_chunk(codec, data, len, release, arg);
	if (!ch) {
		ssock__queued_sub(c, (size_t)total);
		return SSOCK_ENOMEM;
	}
	out_ref(c, ch);
	return 0;
}

/* ----------------------------------------------------------- writing */

/* Moves what is left of c's bytes in the shared output buffer, which is
 * reused after this pass, into a chunk at the head of its queue. */
static bool out_keep(ssock_conn *c)
{
	struct ssock__flush *f = out_seg(c);
	if (!f)
		return true;
	ssock_loop *l = ssock__loop_of(c);
	ssock__chunk *ch = chunk_new(l, f->len);
	if (!ch) {
		ssock__conn_report(c, SSOCK_ENOMEM, "write");
		ssock__conn_fail(c, SSOCK_ENOMEM);
		return false;
	}
	memcpy(ch->data, l->obuf + f->off, f->len);
	ch->len = f->len;
	f->len = 0;
	ch->next = c->out_head;
	c->out_head = ch;
	if (!c->out_tail)
		c->out_tail = ch;
	return true;
}

/* Drops written bytes from the head of the queue. */
static void consume(ssock_conn *c, size_t n)
{
	ssock_loop *l = ssock__loop_of(c);
	ssock__queued_sub(c, n);
	struct ssock__flush *f = out_seg(c);
	if (f) {
		uint32_t k = n < f->len ? (uint32_t)n : f->len;
		f->off += k;
		f->len -= k;
		n -= k;
	}
	/* Every chunk written to its end leaves the queue, also one that had
	 * nothing in it: a chunk that stayed would keep write interest on and
	 * the loop spinning. */
	while (c->out_head) {
		ssock__chunk *ch = c->out_head;
		size_t left = ch->len - ch->off;
		if (n < left) {
			ch->off += n;
			break;
		}
		n -= left;
		c->out_head = ch->next;
		if (!c->out_head)
			c->out_tail = NULL;
		ssock__chunk_free(l, ch);
	}
	if (c->wpaused && atomic_load(&c->queued) <= ssock__read_limit(c) / 4) {
		c->wpaused = false;
		ssock__conn_interest(c);
		ssock__keep_pending(c);
	}
	/* Pairs with ssock__room_wait_begin(): either a waiter counted itself
	 * before this reads the count, or it sees the room made above. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&l->room_waiters, memory_order_relaxed) > 0) {
		pthread_mutex_lock(&l->mu);
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
	}
}

/* One write of iov[0..n), want bytes in all. Returns true when all of them
 * went out (more may be written now). */
static bool write_some(ssock_conn *c, const struct iovec *iov, int n, size_t want)
{
	ssize_t w = c->ep->transport->write(c, iov, n);
	if (w == SSOCK__WANT_WRITE)
		return false;
	if (w == SSOCK__WANT_READ) {
		c->write_wants_read = true;
		ssock__conn_interest(c);
		return false;
	}
	if (w < 0) {
		if (w != -EPIPE && w != -ECONNRESET)
			ssock__conn_report(c, (int)w, "write");
		ssock__conn_fail(c, (int)w);
		return false;
	}
	ssock__conn_touch(c);
	consume(c, (size_t)w);
	return (size_t)w == want; /* else the socket buffer is full */
}

/* Writes c's bytes in the shared buffer and its chunks, in rounds of up to
 * MAX_IOV pieces. */
__attribute__((noinline)) static void write_queue(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	for (int round = 0; round < WRITES_PER_WAKEUP; round++) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		size_t want = 0;
		const struct ssock__flush *f = out_seg(c);
		if (f) {
			iov[n].iov_base = l->obuf + f->off;
			iov[n].iov_len = f->len;
			want += iov[n++].iov_len;
		}
		for (ssock__chunk *ch = c->out_head; ch && n < MAX_IOV - 1; ch = ch->next) {
			if (ch->payload) {
				int k = ref_iov(ch, iov + n);
				want += iov[n].iov_len + (k > 1 ? iov[n + 1].iov_len : 0);
				n += k;
				continue;
			}
			iov[n].iov_base = ch->data + ch->off;
			iov[n].iov_len = ch->len - ch->off;
			want += iov[n++].iov_len;
		}
		if (n == 0 || !write_some(c, iov, n, want))
			break;
	}
}

void ssock__conn_write(ssock_conn *c)
{
	ssock_loop *l = ssock__loop_of(c);
	if (c->out_head) {
		write_queue(c);
	} else {
		/* The usual case: a reply in the shared buffer, nothing else. */
		const struct ssock__flush *f = out_seg(c);
		struct iovec iov = {f ? l->obuf + f->off : NULL, f ? f->len : 0};
		if (f)
			write_some(c, &iov, 1, iov.iov_len);
	}
	if (c->state == SSOCK__CLOSED || !out_keep(c))
		return;
	set_want_write(c, c->out_head != NULL && !c->write_wants_read);
	if (c->state == SSOCK__CLOSING && !c->out_head && atomic_load(&c->queued) == 0)
		ssock__conn_write_done(c);
}

void ssock__flush_all(ssock_loop *l)
{
	/* Writing may run callbacks (a disconnect) that queue more: the list
	 * and the buffer may grow, and are read by index, to the end. */
	for (size_t i = 0; i < l->nflush; i++) {
		ssock_conn *c = l->flush[i].conn;
		if (c->state != SSOCK__CLOSED && !c->want_write && !c->write_wants_read)
			ssock__conn_write(c);
		c->flush_idx = 0;
	}
	l->nflush = 0;
	l->obuf_len = 0;
	ssock__rbuf_retired_free(l);
	while (l->zombies) {
		ssock_conn *c = l->zombies;
		l->zombies = c->zombie_next;
		ssock__conn_free(c);
	}
}

/* -------------------------------------------------- a connection's end */

size_t ssock__sendq_close(ssock_conn *c)
{
	/* Unlinked already, so no other thread reaches c->posted: its chunks
	 * join the queue (newest first there: the order no longer matters). */
	ssock__chunk *posted = c->posted;
	c->posted = NULL;
	while (posted) {
		ssock__chunk *next = posted->next;
		posted->next = NULL;
		out_append(c, posted);
		posted = next;
	}
	size_t unsent = 0;
	for (ssock__chunk *ch = c->out_head; ch; ch = ch->next)
		unsent += ch->len - ch->off;
	struct ssock__flush *seg = out_seg(c);
	if (seg) {
		unsent += seg->len;
		seg->len = 0;
	}
	return unsent;
}

void ssock__sendq_free(ssock_conn *c)
{
	free_list(ssock__loop_of(c), c->out_head);
	c->out_head = c->out_tail = NULL;
}
