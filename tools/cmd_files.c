/*
 * ssock send-file / ssock recv-files: safe file transfer over TCP.
 *
 * The protocol ("ssock file transfer 1"), on top of u32 framing (each
 * message: 4-byte big-endian length, then the payload). The payload's first
 * byte is its type; integers are big-endian.
 *
 *   sender -> receiver
 *     'H' 0x01 size:u64 mode:u32 name...   header: protocol version 1, the
 *                                           file's size and permission bits,
 *                                           its name (1..255 bytes, the rest
 *                                           of the message)
 *     'D' bytes...                          data, at most 256 KiB per message
 *     'E' xxh64:u64                         end: XXH64 (seed 0) of the content
 *   receiver -> sender
 *     'R'                                   header accepted: send the data
 *     'K' name...                           the file landed under its name
 *     'X' reason...                         refused or failed (text)
 *
 * Per file the sender sends H and waits for R or X. After R it sends the
 * data and E, and waits for K or X: exactly one of them comes per accepted
 * file. The receiver may answer X early (a write error, too much data); it
 * then drops data until E, and the sender, seeing X, skips to E. Files go
 * one after another on one connection; the sender exits 0 only when the
 * receiver said K for every one.
 *
 * The receiver writes only inside DIR, through a directory fd (openat and
 * friends): a name that is empty, "." or "..", holds '/', "..", a NUL or a
 * control character, or is longer than 255 bytes is refused. The data goes
 * to a new temporary file in DIR (".ssock-part.PID.N", O_EXCL, mode 0600),
 * is checked (size and XXH64), synced, given its final mode and renamed to
 * the final name only then: without --overwrite with RENAME_NOREPLACE (so
 * even a file that appears meanwhile is never replaced). A broken transfer
 * (peer gone, bad checksum, wrong size, write error) removes the temporary
 * file; nothing ever appears under the final name half written.
 *
 * Memory stays bounded on both sides: the sender reads one chunk at a time
 * and waits for room in a small send queue; the receiver writes each chunk
 * as it arrives.
 */
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#include "cli.h"
#include "xxh64.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK         (256 * 1024)
#define HEADER_MIN    14 /* 'H', version, size, mode */
#define NAME_MAX_LEN  255
#define PROTO_VERSION 1

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ================================================================ receiver */

enum rx_state { RX_IDLE, RX_DATA, RX_DISCARD };

/* One sender's connection. */
struct rx {
	struct rx *prev, *next; /* every open one, for cleanup at exit */
	enum rx_state state;
	char peer[SSOCK_ADDRSTRLEN];
	char name[NAME_MAX_LEN + 1];
	char tmp[64];
	int fd;
	uint64_t size, got;
	uint32_t mode;
	struct xxh64 hash;
	struct progress bar;
	bool failed; /* some file of this connection did not land */
};

struct receiver {
	int dirfd;
	const char *dir;
	bool overwrite, stats, once;
	uint64_t max_size;
	mode_t umask;
	struct rx *open;
	unsigned long long ok, failed, bytes;
	int done_fd; /* --once: written when the first connection ends */
	bool once_failed;
};

/* The temporary files' prefix: no accepted name starts with it, so no
 * sender can name (and so replace) another transfer's temporary file. */
#define TMP_PREFIX ".ssock-part"

/* Decodes the UTF-8 character at p[0..len); returns its length (1..4) and
 * sets *cp, or 0 when it is not valid UTF-8 (overlong, surrogate, above
 * U+10FFFF, cut short). */
static size_t utf8_next(const unsigned char *p, size_t len, uint32_t *cp)
{
	static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
	size_t n = p[0] < 0x80             ? 1
		   : (p[0] & 0xe0) == 0xc0 ? 2
		   : (p[0] & 0xf0) == 0xe0 ? 3
		   : (p[0] & 0xf8) == 0xf0 ? 4
					   : 0;
	if (n == 0 || n > len)
		return 0;
	uint32_t c = n == 1 ? p[0] : p[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Why a character is not allowed in a name although it is valid UTF-8, or
 * NULL: controls (C0, DEL, and C1: a terminal acts on U+009B as on ESC '['),
 * and those that make a printed name read as another one (bidirectional
 * overrides and marks, line and paragraph separators). */
static const char *unsafe_char(uint32_t c)
{
	if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
		return "name contains a control character";
	if (c == 0x200e || c == 0x200f || (c >= 0x2028 && c <= 0x202e) ||
	    (c >= 0x2066 && c <= 0x2069))
		return "name contains a bidirectional formatting or separator character";
	return NULL;
}

/* Why a name is refused, or NULL when it is safe to create inside DIR and
 * to print as it is: 1..255 bytes of valid UTF-8 without the characters
 * above, no '/', not "." and no "..", not in the temporary namespace. */
static const char *bad_name(const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;
	if (len == 0)
		return "empty name";
	if (len > NAME_MAX_LEN)
		return "name longer than 255 bytes";
	if (memchr(name, '\0', len))
		return "name contains a NUL byte";
	if (name[0] == '/')
		return "absolute path";
	if (memchr(name, '/', len))
		return "name contains '/'";
	if ((len == 1 && name[0] == '.') || (len >= 2 && memmem(name, len, "..", 2)))
		return "name is '.' or contains '..'";
	if (len >= sizeof TMP_PREFIX - 1 && memcmp(name, TMP_PREFIX, sizeof TMP_PREFIX - 1) == 0)
		return "name starts with '" TMP_PREFIX "' (the receiver's temporary files)";
	for (size_t i = 0, n; i < len; i += n) {
		uint32_t c;
		n = utf8_next(p + i, len - i, &c);
		if (n == 0)
			return "name is not valid UTF-8";
		const char *why = unsafe_char(c);
		if (why)
			return why;
	}
	return NULL;
}

/* Sends 'X' + reason and logs it. */
static void rx_refuse(struct receiver *r, struct rx *x, ssock_conn *c, const char *what,
		      const char *reason)
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, "X%s", reason);
	ssock_conn_send(c, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
	cli_log("refused %s from %s: %s", what, x->peer, reason);
	r->failed++;
	x->failed = true;
}

/* Drops the temporary file of a transfer that did not complete. */
static void rx_abort(struct receiver *r, struct rx *x)
{
	if (x->fd >= 0) {
		close(x->fd);
		unlinkat(r->dirfd, x->tmp, 0);
		x->fd = -1;
		progress_end(&x->bar, false);
	}
}

/* Creates a new temporary file in DIR, never one that exists. */
static int rx_create_tmp(struct receiver *r, struct rx *x)
{
	static unsigned long seq;
	for (int tries = 0; tries < 100; tries++) {
		snprintf(x->tmp, sizeof x->tmp, ".ssock-part.%ld.%lu", (long)getpid(), ++seq);
		int fd = openat(r->dirfd, x->tmp,
				O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

static void rx_header(struct receiver *r, struct rx *x, ssock_conn *c, const unsigned char *p,
		      size_t len)
{
	size_t nlen = len - HEADER_MIN;
	const char *name = (const char *)p + HEADER_MIN;
	/* The name as logged: escaped, so a hostile one can't write to the terminal. */
	char shown[NAME_MAX_LEN * 4 + 8];
	shown[0] = '\'';
	size_t o = 1 + cli_escape(shown + 1, sizeof shown - 2, name, nlen);
	snprintf(shown + o, sizeof shown - o, "'");
	x->size = get_be64(p + 2);
	x->mode = get_be32(p + 10) & 0777;
	const char *why =
		p[1] != PROTO_VERSION ? "unsupported protocol version" : bad_name(name, nlen);
	char reason[160];
	struct stat st;
	if (!why) { /* the name in the message has no NUL after it: use a copy */
		memcpy(x->name, name, nlen);
		x->name[nlen] = '\0';
	}
	if (!why && x->size > r->max_size) {
		snprintf(reason, sizeof reason,
			 "file of %llu bytes is over the limit of %llu (--max-size)",
			 (unsigned long long)x->size, (unsigned long long)r->max_size);
		why = reason;
	} else if (!why && !r->overwrite &&
		   fstatat(r->dirfd, x->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		why = "a file of that name exists (the receiver may allow --overwrite)";
	}
	if (why) {
		rx_refuse(r, x, c, shown, why);
		return;
	}
	x->fd = rx_create_tmp(r, x);
	if (x->fd < 0) {
		snprintf(reason, sizeof reason, "cannot create a file in %s: %s", r->dir,
			 strerror(-x->fd));
		x->fd = -1;
		rx_refuse(r, x, c, shown, reason);
		return;
	}
	x->got = 0;
	xxh64_init(&x->hash);
	printf("receiving %s (%llu bytes) from %s\n", x->name, (unsigned long long)x->size,
	       x->peer);
	fflush(stdout);
	progress_start(&x->bar, x->name, x->size);
	x->state = RX_DATA;
	ssock_conn_send(c, "R", 1);
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Fails the current file: its temp file goes, the sender hears X, and
 * data is dropped until its E. */
static void rx_fail(struct receiver *r, struct rx *x, ssock_conn *c, const char *reason)
{
	char what[NAME_MAX_LEN + 3];
	snprintf(what, sizeof what, "'%s'", x->name);
	rx_abort(r, x);
	rx_refuse(r, x, c, what, reason);
}

static void rx_data(struct receiver *r, struct rx *x, ssock_conn *c, const unsigned char *p,
		    size_t len)
{
	if (x->got + len > x->size) {
		rx_fail(r, x, c, "more data than the announced size");
		x->state = RX_DISCARD;
		return;
	}
	int rc = write_all(x->fd, p, len);
	if (rc != 0) {
		char reason[160];
		snprintf(reason, sizeof reason, "cannot write in %s: %s", r->dir, strerror(-rc));
		rx_fail(r, x, c, reason);
		x->state = RX_DISCARD;
		return;
	}
	xxh64_update(&x->hash, p, len);
	x->got += len;
	progress_add(&x->bar, len);
}

/* Syncs, sets the mode and moves the temp file to its final name. */
static int rx_land(struct receiver *r, struct rx *x)
{
	if (fdatasync(x->fd) != 0 || fchmod(x->fd, (mode_t)x->mode & ~r->umask) != 0)
		return -errno;
	if (r->overwrite) {
		if (renameat(r->dirfd, x->tmp, r->dirfd, x->name) != 0)
			return -errno;
	} else if (renameat2(r->dirfd, x->tmp, r->dirfd, x->name, RENAME_NOREPLACE) != 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* A filesystem without RENAME_NOREPLACE: link() never replaces either. */
		if (linkat(r->dirfd, x->tmp, r->dirfd, x->name, 0) != 0)
			return -errno;
		unlinkat(r->dirfd, x->tmp, 0);
	}
	fsync(r->dirfd); /* the new name itself survives a crash */
	return 0;
}

static void rx_end(struct receiver *r, struct rx *x, ssock_conn *c, const unsigned char *p)
{
	uint64_t want = get_be64(p + 1), have = xxh64_digest(&x->hash);
	char reason[200];
	if (x->got != x->size) {
		snprintf(reason, sizeof reason,
			 "size mismatch: %llu bytes announced, %llu received",
			 (unsigned long long)x->size, (unsigned long long)x->got);
		rx_fail(r, x, c, reason);
		return;
	}
	if (want != have) {
		snprintf(reason, sizeof reason,
			 "checksum mismatch (xxh64 %016llx announced, %016llx received)",
			 (unsigned long long)want, (unsigned long long)have);
		rx_fail(r, x, c, reason);
		return;
	}
	int rc = rx_land(r, x);
	if (rc != 0) {
		snprintf(reason, sizeof reason,
			 rc == -EEXIST
				 ? "a file of that name exists (the receiver may allow --overwrite)"
				 : "cannot store it in %s: %s",
			 r->dir, strerror(-rc));
		rx_fail(r, x, c, reason);
		return;
	}
	close(x->fd);
	x->fd = -1;
	progress_end(&x->bar, true);
	char ok[NAME_MAX_LEN + 2];
	int n = snprintf(ok, sizeof ok, "K%s", x->name);
	ssock_conn_send(c, ok, (size_t)n);
	r->ok++;
	r->bytes += x->size;
	printf("received %s (%llu bytes, xxh64 %016llx) from %s", x->name,
	       (unsigned long long)x->size, (unsigned long long)have, x->peer);
	if (r->stats)
		printf(", peak RSS %ld KiB", cli_peak_rss_kib());
	putchar('\n');
	fflush(stdout);
}

static void rx_protocol_error(struct receiver *r, struct rx *x, ssock_conn *c, const char *what)
{
	rx_abort(r, x);
	rx_refuse(r, x, c, "a transfer", what);
	ssock_conn_close(c);
	x->state = RX_DISCARD;
}

static void rx_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct receiver *r = user;
	struct rx *x = ssock_conn_user(c);
	const unsigned char *p = data;
	char type = len ? (char)p[0] : '\0';
	if (!x)
		return;
	if (x->state == RX_IDLE && type == 'H' && len >= HEADER_MIN)
		rx_header(r, x, c, p, len);
	else if (x->state == RX_DATA && type == 'D')
		rx_data(r, x, c, p + 1, len - 1);
	else if (x->state == RX_DATA && type == 'E' && len == 9) {
		rx_end(r, x, c, p);
		x->state = RX_IDLE;
	} else if (x->state == RX_DISCARD && type == 'D')
		return;
	else if (x->state == RX_DISCARD && type == 'E' && len == 9)
		x->state = RX_IDLE;
	else
		rx_protocol_error(r, x, c, "protocol error (unexpected message)");
}

static void rx_connect(ssock_conn *c, void *user)
{
	struct receiver *r = user;
	struct rx *x = calloc(1, sizeof *x);
	if (!x) {
		ssock_conn_close(c);
		return;
	}
	x->fd = -1;
	ssock_addr_format(ssock_conn_peer(c), x->peer, sizeof x->peer);
	x->next = r->open;
	if (r->open)
		r->open->prev = x;
	r->open = x;
	ssock_conn_set_user(c, x);
}

static void rx_free(struct receiver *r, struct rx *x)
{
	if (x->fd >= 0) {
		cli_log("transfer of '%s' from %s broken after %llu of %llu bytes; nothing kept",
			x->name, x->peer, (unsigned long long)x->got, (unsigned long long)x->size);
		r->failed++;
		x->failed = true;
	}
	rx_abort(r, x);
	if (x->prev)
		x->prev->next = x->next;
	else
		r->open = x->next;
	if (x->next)
		x->next->prev = x->prev;
	free(x);
}

static void rx_disconnect(ssock_conn *c, int reason, void *user)
{
	(void)reason;
	struct receiver *r = user;
	struct rx *x = ssock_conn_user(c);
	if (!x)
		return;
	ssock_conn_set_user(c, NULL);
	bool failed = x->failed || x->fd >= 0;
	rx_free(r, x);
	if (r->once && r->done_fd >= 0) {
		r->once_failed = failed;
		char b = 1;
		if (write(r->done_fd, &b, 1) < 0) {
			/* the pipe has room for one byte; nothing else to do */
		}
		r->done_fd = -1;
	}
}

static void rx_error(const ssock_error_info *e, void *user)
{
	(void)user;
	char peer[SSOCK_ADDRSTRLEN] = "-";
	if (e->peer.len)
		ssock_addr_format(&e->peer, peer, sizeof peer);
	cli_log("%s (%s): %s", e->op, peer, ssock_strerror(e->code));
}

/* Waits for SIGINT/SIGTERM, or (with --once) for the first sender to be done. */
static void rx_wait(const sigset_t *stop, int done_fd)
{
	int sfd = signalfd(-1, stop, SFD_CLOEXEC);
	if (sfd < 0) {
		cli_wait_stop(stop);
		return;
	}
	struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = done_fd, .events = POLLIN}};
	while (poll(p, done_fd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR) {
	}
	close(sfd);
}

static int rx_serve(struct receiver *r, struct opts *o, const sigset_t *stop)
{
	int pipefd[2] = {-1, -1};
	if (o->once && pipe2(pipefd, O_CLOEXEC) != 0)
		return cli_fail("cannot make a pipe: %s", strerror(errno));
	r->done_fd = pipefd[1];
	ssock_server_opts so = {
		.listen = o->addr,
		.max_message = CHUNK + 64,
		.on_connect = rx_connect,
		.on_message = rx_message,
		.on_disconnect = rx_disconnect,
		.on_error = rx_error,
		.user = r,
	};
	ssock_server *srv;
	int rc = ssock_server_new(&srv, &so);
	if (rc != 0) {
		cli_fail("cannot listen on %s: %s", o->addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_recv_files, rc);
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_server_addr(srv, 0, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);
	rx_wait(stop, pipefd[0]);
	ssock_server_free(srv);
	while (r->open) /* transfers cut by the stop: no partial file stays */
		rx_free(r, r->open);
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	char bytes[32];
	cli_fmt_bytes(bytes, sizeof bytes, (double)r->bytes);
	printf("recv-files: %llu file(s) received (%s), %llu failed; peak RSS %ld KiB\n", r->ok,
	       bytes, r->failed, cli_peak_rss_kib());
	fflush(stdout);
	if (o->once)
		return r->once_failed || r->failed ? EXIT_RUNTIME : 0;
	return 0;
}

static int run_recv_files(struct opts *o)
{
	if (!o->addr)
		return cli_usage_error(&cmd_recv_files, "recv-files needs --listen ADDR");
	if (!o->dir)
		return cli_usage_error(&cmd_recv_files, "recv-files needs --dir DIR");
	if (o->nargs > 0)
		return cli_usage_error(&cmd_recv_files, "unexpected argument '%s'", o->args[0]);
	struct receiver r = {
		.dir = o->dir,
		.overwrite = o->overwrite,
		.stats = o->stats,
		.once = o->once,
		.max_size = o->max_size ? o->max_size : UINT64_MAX,
		.done_fd = -1,
	};
	r.umask = umask(0);
	umask(r.umask);
	r.dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.dirfd < 0)
		return cli_fail("cannot open directory %s: %s", o->dir, strerror(errno));
	sigset_t stop;
	cli_block_stop(&stop); /* before the loop thread starts: it inherits the mask */
	int code = rx_serve(&r, o, &stop);
	close(r.dirfd);
	return code;
}

const struct command cmd_recv_files = {
	.name = "recv-files",
	.allowed = O_LISTEN | O_DIR | O_OVERWRITE | O_MAX_SIZE | O_STATS | O_ONCE,
	.synopsis = "recv-files --listen ADDR --dir DIR [--overwrite] [--max-size BYTES] [--once] "
		    "[--stats]",
	.help = "Receives files sent with 'ssock send-file' into DIR. Prints 'listening on\n"
		"HOST:PORT' first, a line 'receiving NAME ...' when a file starts and 'received\n"
		"NAME ...' when it landed, and a summary with the peak memory use (VmHWM) when\n"
		"it stops (SIGINT or SIGTERM: exit 0). Refusals and failures go to stderr.\n"
		"A name must be 1 to 255 bytes of valid UTF-8 without '/', '..', control\n"
		"characters (C0, DEL, C1) or bidirectional formatting characters, not '.' and\n"
		"not starting with '.ssock-part'; anything else is refused. Data goes to a\n"
		"temporary file in DIR and gets its name only when its size and XXH64\n"
		"checksum match: a broken transfer leaves nothing under the name. A progress\n"
		"bar shows on stderr when it is a terminal.\n"
		"\n"
		"  --listen ADDR      where to listen: HOST:PORT, [IPV6]:PORT or :PORT\n"
		"  --dir DIR          where files are written (must exist)\n"
		"  --overwrite        replace existing files (default: refuse them)\n"
		"  --max-size BYTES   refuse larger files (default: no limit)\n"
		"  --once             stop after the first sender has disconnected; exit 1 if any\n"
		"                     of its files failed\n"
		"  --stats            add the peak memory use to each file's line\n",
	.run = run_recv_files,
};

/* ================================================================== sender */

struct sender {
	ssock_client *cli;
	const char *addr;
	int wait_ms;
	unsigned char *buf; /* one chunk, with its type byte */
	bool lost;
};

/* Takes the receiver's next message: 0 and *msg (free with ssock_free), or
 * SSOCK_ETIMEDOUT / SSOCK_ENOTCONN / an error code. */
static int tx_reply(struct sender *s, int timeout_ms, char **msg, size_t *len)
{
	int rc = ssock_client_recv(s->cli, (void **)msg, len, timeout_ms);
	if (rc == 0 && *len == 0)
		rc = SSOCK_EPROTO;
	if (rc != 0 && rc != SSOCK_ETIMEDOUT)
		s->lost = true;
	return rc;
}

/* Prints why the receiver refused FILE (its 'X' text). */
static int tx_refused(const char *file, const char *msg, size_t len)
{
	char reason[1024];
	cli_escape(reason, sizeof reason, msg + 1, len - 1); /* the peer's text */
	return cli_fail("%s was not stored by the receiver: %s", file, reason);
}

static int tx_lost(struct sender *s, const char *file, int rc)
{
	s->lost = true;
	if (rc == SSOCK_ETIMEDOUT)
		return cli_fail("no answer from %s about %s within %d ms", s->addr, file,
				s->wait_ms);
	return cli_fail("connection to %s lost while sending %s: %s", s->addr, file,
			rc == SSOCK_ENOTCONN ? "closed by the receiver" : ssock_strerror(rc));
}

/* Sends the header; returns 0 once the receiver said R, else the exit code. */
static int tx_header(struct sender *s, const char *file, const char *name, const struct stat *st)
{
	size_t nlen = strlen(name);
	unsigned char *h = s->buf;
	h[0] = 'H';
	h[1] = PROTO_VERSION;
	put_be64(h + 2, (uint64_t)st->st_size);
	put_be32(h + 10, (uint32_t)st->st_mode & 0777);
	memcpy(h + HEADER_MIN, name, nlen);
	int rc = ssock_client_send_timeout(s->cli, h, HEADER_MIN + nlen, s->wait_ms);
	if (rc != 0)
		return tx_lost(s, file, rc);
	char *msg;
	size_t len;
	rc = tx_reply(s, s->wait_ms, &msg, &len);
	if (rc != 0)
		return tx_lost(s, file, rc);
	int code = msg[0] == 'R' ? 0 : msg[0] == 'X' ? tx_refused(file, msg, len) : EXIT_RUNTIME;
	if (msg[0] != 'R' && msg[0] != 'X') {
		s->lost = true;
		cli_fail("%s does not speak the file protocol (unexpected answer)", s->addr);
	}
	ssock_free(msg);
	return code;
}

/* Streams the content and E; returns 0 once the receiver said K. */
static int tx_body(struct sender *s, const char *file, int fd, uint64_t size, struct progress *bar)
{
	struct xxh64 hash;
	xxh64_init(&hash);
	uint64_t sent = 0;
	char *msg = NULL;
	size_t len = 0;
	int code = 0;
	while (sent < size && !msg) {
		size_t want = size - sent < CHUNK ? (size_t)(size - sent) : CHUNK;
		ssize_t n = read(fd, s->buf + 1, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			code = cli_fail("cannot read %s: %s", file,
					n < 0 ? strerror(errno) : "it shrank while being sent");
			break; /* E follows: the receiver sees the wrong size and drops it */
		}
		s->buf[0] = 'D';
		xxh64_update(&hash, s->buf + 1, (size_t)n);
		int rc = ssock_client_send_timeout(s->cli, s->buf, (size_t)n + 1, s->wait_ms);
		if (rc != 0)
			return tx_lost(s, file, rc);
		sent += (size_t)n;
		progress_add(bar, (uint64_t)n);
		/* An early X (write error at the receiver): stop sending data. */
		int r = tx_reply(s, 0, &msg, &len);
		if (r != 0 && r != SSOCK_ETIMEDOUT)
			return tx_lost(s, file, r);
	}
	unsigned char end[9] = {'E'};
	put_be64(end + 1, xxh64_digest(&hash));
	int rc = ssock_client_send_timeout(s->cli, end, sizeof end, s->wait_ms);
	if (rc != 0) {
		ssock_free(msg);
		return tx_lost(s, file, rc);
	}
	if (!msg && (rc = tx_reply(s, s->wait_ms, &msg, &len)) != 0)
		return tx_lost(s, file, rc);
	/* A read error above was reported already; the X it caused is not news. */
	if (msg[0] == 'X' && code == 0)
		code = tx_refused(file, msg, len);
	else if (msg[0] != 'K' && msg[0] != 'X')
		code = cli_fail("%s does not speak the file protocol (unexpected answer)", s->addr);
	ssock_free(msg);
	return code;
}

static int tx_file(struct sender *s, const char *file)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return cli_fail("cannot open %s: %s", file, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cli_fail("%s is not a regular file", file);
	}
	const char *slash = strrchr(file, '/');
	const char *name = slash ? slash + 1 : file;
	if (strlen(name) > NAME_MAX_LEN) {
		close(fd);
		return cli_fail("%s: name longer than 255 bytes", file);
	}
	int64_t t0 = cli_now_ms();
	int code = tx_header(s, file, name, &st);
	if (code == 0) {
		struct progress bar;
		progress_start(&bar, name, (uint64_t)st.st_size);
		code = tx_body(s, file, fd, (uint64_t)st.st_size, &bar);
		progress_end(&bar, code == 0);
	}
	close(fd);
	if (code == 0) {
		double secs = (double)(cli_now_ms() - t0) / 1000.0;
		char rate[32];
		cli_fmt_bytes(rate, sizeof rate, secs > 0 ? (double)st.st_size / secs : 0);
		printf("sent %s (%llu bytes) in %.2f s, %s/s\n", name,
		       (unsigned long long)st.st_size, secs, rate);
		fflush(stdout);
	}
	return code;
}

static int run_send_file(struct opts *o)
{
	if (o->nargs < 2)
		return cli_usage_error(&cmd_send_file,
				       "send-file needs ADDR and at least one FILE");
	struct sender s = {.addr = o->args[0], .wait_ms = o->wait_ms < 0 ? 30000 : o->wait_ms};
	s.buf = malloc(CHUNK + 1 > HEADER_MIN + NAME_MAX_LEN ? CHUNK + 1
							     : HEADER_MIN + NAME_MAX_LEN);
	if (!s.buf)
		return cli_fail("out of memory");
	/* A small send queue: memory stays a few chunks whatever the file size,
	 * and send_timeout() waits for the receiver to catch up. */
	ssock_client_opts co = {
		.connect = s.addr, .max_message = 64 * 1024, .send_queue_max = 8 * CHUNK};
	int rc = ssock_client_new(&s.cli, &co);
	if (rc == 0)
		rc = ssock_client_connect(s.cli, -1);
	if (rc != 0) {
		cli_fail("cannot connect to %s: %s", s.addr, ssock_strerror(rc));
		ssock_client_free(s.cli);
		free(s.buf);
		return cli_addr_exit(&cmd_send_file, rc);
	}
	int ok = 0, failed = 0;
	for (int i = 1; i < o->nargs && !s.lost; i++)
		tx_file(&s, o->args[i]) == 0 ? ok++ : failed++;
	int skipped = o->nargs - 1 - ok - failed;
	ssock_client_free(s.cli);
	free(s.buf);
	if (failed || skipped)
		return cli_fail("%d of %d file(s) not stored at %s", failed + skipped, o->nargs - 1,
				s.addr);
	return 0;
}

const struct command cmd_send_file = {
	.name = "send-file",
	.allowed = O_WAIT,
	.synopsis = "send-file ADDR FILE... [--wait MS]",
	.help = "Sends each FILE (under its base name) to 'ssock recv-files' at ADDR, one after\n"
		"another, with its size and XXH64 checksum. Prints one line per file stored and\n"
		"exits 0 only when the receiver confirmed every file; a file it refused (bad\n"
		"name, exists, too large, checksum) is reported and the next one is sent.\n"
		"A progress bar shows on stderr when it is a terminal.\n"
		"\n"
		"  --wait MS          the longest to wait for the receiver: for an answer, or for\n"
		"                     room to send more (default 30000)\n",
	.run = run_send_file,
};
