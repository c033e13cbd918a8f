/*
 * ssock recv-files: receives the files `ssock send-file` sends (the protocol
 * is described at the top of cmd_files.c) into a directory.
 *
 * Where the work happens. The server runs in inbox mode: its loop thread
 * only reads and queues messages. This program's main thread takes them,
 * waiting on the inbox's event fd and a signalfd together with poll(), and
 * does every file operation: write, fdatasync, link, rename. A slow disk
 * then slows the senders through TCP backpressure (the inbox is bounded;
 * reading stops while it is full) instead of stalling the loop that serves
 * them all, and a stop signal is seen between two messages.
 *
 * Names. Files are written only inside DIR, through a directory fd (openat
 * and friends), and only under names bad_name() accepts: 1..255 bytes of
 * valid UTF-8 without '/', "..", controls or bidirectional formatting, so an
 * accepted name is also safe to print as it is. Names starting with
 * ".ssock-part" are refused: that is the temporary files' namespace, so no
 * sender can name, and so replace, another transfer's temporary file.
 *
 * Temporary files. The data goes to an unnamed file (O_TMPFILE) in DIR that
 * nothing can reach by name. Once its size and XXH64 match, it is synced,
 * given its mode (the sender's bits minus the umask) and linked under its
 * name: link never replaces, so without --overwrite a name that exists, or
 * appeared meanwhile, is refused; with --overwrite it is linked under a
 * temporary name and renamed over the old file. Where the filesystem has no
 * O_TMPFILE (or linking one is not possible), the temporary file is named
 * ".ssock-part.PID.N" (O_EXCL, mode 0600) and renamed (RENAME_NOREPLACE
 * without --overwrite) once the name is checked to still hold this file.
 * Every temporary file is locked (flock) while in use: a receiver killed by
 * force leaves its named ones behind, and the next receiver on DIR removes
 * those nobody holds locked, and says so. A broken transfer (peer gone or
 * idle, bad checksum, wrong size, write error, stop signal) removes its
 * temporary file; nothing ever appears under a name half written.
 *
 * Limits. At most --max-conns senders at once (default 64), each closed
 * after --idle-timeout ms without sending anything (default 60 s). The replies are
 * tiny: a connection may queue 64 KiB of them (and all together 2 MiB), and
 * a sender that does not read them is closed; the inbox holds at most 1 MiB.
 */
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH, renameat2, RENAME_NOREPLACE */
#include "cli.h"
#include "files.h"
#include "xxh64.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX        ".ssock-part" /* no accepted name starts with it */
#define DEFAULT_MAX_CONNS 64
#define DEFAULT_IDLE_MS   60000
#define REPLY_QUEUE       (64 * 1024)       /* replies queued per connection */
#define REPLY_BUDGET      (2 * 1024 * 1024) /* ...and for all of them */
#define INBOX_BYTES       (1024 * 1024)     /* data waiting for the main thread */
#define EVENTS_PER_ROUND  64                /* then the stop signal is looked at again */
#define RX_BUCKETS        256

enum rx_state { RX_IDLE, RX_DATA, RX_DISCARD, RX_CLOSING };

/* One sender's connection. */
struct rx {
	struct rx *prev, *next; /* every open one, for cleanup at exit */
	struct rx *hnext;       /* the next in its hash bucket */
	uint64_t id;
	enum rx_state state;
	char peer[SSOCK_ADDRSTRLEN];
	char name[NAME_MAX_LEN + 1];
	char tmp[64]; /* the temporary file's name; "" while it has none */
	int fd;       /* the temporary file, or -1 */
	uint64_t size, got;
	uint32_t mode;
	struct xxh64 hash;
	struct progress bar;
	int64_t last_ms; /* when it last sent a message (or connected) */
	bool started;    /* it sent a header: a sender, not a port probe */
	bool failed;     /* some file of this connection did not land */
};

struct receiver {
	ssock_server *srv;
	int dirfd;
	const char *dir;
	bool overwrite, stats, once;
	bool tmpfile; /* O_TMPFILE works in DIR, and linking it too */
	int idle_ms;  /* --idle-timeout; 0: off */
	uint64_t max_size;
	mode_t umask;
	unsigned long seq; /* for temporary names */
	struct rx *open;
	struct rx *bucket[RX_BUCKETS];
	unsigned long long ok, failed, bytes;
	bool done; /* --once: the first sender is done */
	bool once_failed;
};

/* ------------------------------------------------------------- names */

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

/* --------------------------------------------------- temporary files */

/* Gives the unnamed file fd the name `name` in DIR; never replaces one.
 * AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd does not. */
static int link_tmpfile(struct receiver *r, int fd, const char *name)
{
	if (linkat(fd, "", r->dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, path, r->dirfd, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
}

/* Whether DIR takes unnamed temporary files that can be linked later.
 * SSOCK_TEST_NO_TMPFILE=1 says no, so the tests reach the named ones. */
static bool tmpfile_usable(struct receiver *r)
{
	const char *no = getenv("SSOCK_TEST_NO_TMPFILE");
	if (no && *no && strcmp(no, "0") != 0)
		return false;
	int fd = openat(r->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	char name[64];
	snprintf(name, sizeof name, TMP_PREFIX ".%ld.probe", (long)getpid());
	bool ok = link_tmpfile(r, fd, name) == 0;
	if (ok)
		unlinkat(r->dirfd, name, 0);
	close(fd);
	return ok;
}

/* Creates a new named temporary file, locked; its name goes to name[].
 * Returns the fd or -errno. */
static int create_named(struct receiver *r, char *name, size_t size)
{
	for (int tries = 0; tries < 100; tries++) {
		snprintf(name, size, TMP_PREFIX ".%ld.%lu", (long)getpid(), ++r->seq);
		int fd = openat(r->dirfd, name,
				O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0) {
			name[0] = '\0';
			return -errno;
		}
		/* A receiver starting on DIR between the create and the lock may
		 * have taken it for a stale one: it is gone or going, take another. */
		struct stat st;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && st.st_nlink > 0)
			return fd;
		close(fd);
	}
	name[0] = '\0';
	return -EEXIST;
}

/* Creates the temporary file of a transfer. Returns the fd or -errno. */
static int rx_create_tmp(struct receiver *r, struct rx *x)
{
	x->tmp[0] = '\0';
	if (!r->tmpfile)
		return create_named(r, x->tmp, sizeof x->tmp);
	int fd = openat(r->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	flock(fd, LOCK_EX | LOCK_NB); /* it may get a temporary name (--overwrite) */
	return fd;
}

/* Names an unnamed temporary file, for a rename over an existing file. */
static int name_tmpfile(struct receiver *r, struct rx *x)
{
	for (int tries = 0; tries < 100; tries++) {
		snprintf(x->tmp, sizeof x->tmp, TMP_PREFIX ".%ld.%lu", (long)getpid(), ++r->seq);
		int rc = link_tmpfile(r, x->fd, x->tmp);
		if (rc != -EEXIST) {
			if (rc != 0)
				x->tmp[0] = '\0';
			return rc;
		}
	}
	x->tmp[0] = '\0';
	return -EEXIST;
}

/* Renames the named temporary file to the final name. No sender can name a
 * temporary file, but the directory is shared with local users: the name
 * must still hold this file (same inode) before it becomes the final one. */
static int rename_tmp(struct receiver *r, struct rx *x)
{
	struct stat mine, named;
	if (fstat(x->fd, &mine) != 0 || fstatat(r->dirfd, x->tmp, &named, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (mine.st_dev != named.st_dev || mine.st_ino != named.st_ino)
		return -ESTALE;
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
	x->tmp[0] = '\0'; /* it has its final name now */
	return 0;
}

/* Syncs the file, sets its mode and gives it its final name. */
static int rx_land(struct receiver *r, struct rx *x)
{
	if (fdatasync(x->fd) != 0 || fchmod(x->fd, (mode_t)x->mode & ~r->umask) != 0)
		return -errno;
	int rc;
	if (!x->tmp[0] && !r->overwrite)
		rc = link_tmpfile(r, x->fd, x->name); /* link never replaces */
	else if (!x->tmp[0] && (rc = name_tmpfile(r, x)) != 0)
		return rc;
	else
		rc = rename_tmp(r, x);
	if (rc == 0)
		fsync(r->dirfd); /* the new name itself survives a crash */
	return rc;
}

/* Drops the temporary file of a transfer that did not complete. */
static void rx_abort(struct receiver *r, struct rx *x)
{
	if (x->fd < 0)
		return;
	if (x->tmp[0]) /* removed before the lock goes with the fd */
		unlinkat(r->dirfd, x->tmp, 0);
	x->tmp[0] = '\0';
	close(x->fd);
	x->fd = -1;
	progress_end(&x->bar, false);
}

/* Removes the named temporary files a receiver killed by force left in DIR:
 * those nobody holds locked. Says what it removed and what it left. */
static void clean_stale(struct receiver *r)
{
	int fd = openat(r->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1) != 0)
			continue;
		char shown[NAME_MAX_LEN * 4 + 8];
		cli_escape(shown, sizeof shown, e->d_name, strlen(e->d_name));
		int f = openat(r->dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st, again;
		if (f < 0 || fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
			cli_log("left %s in %s: not a temporary file of ours (not a regular file)",
				shown, r->dir);
		} else if (flock(f, LOCK_EX | LOCK_NB) != 0) {
			cli_log("left %s in %s: in use (another receiver is writing it)", shown,
				r->dir);
		} else if (fstatat(r->dirfd, e->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0 &&
			   again.st_ino == st.st_ino && again.st_dev == st.st_dev &&
			   unlinkat(r->dirfd, e->d_name, 0) == 0) {
			cli_log("removed %s from %s: a temporary file left by a receiver that did "
				"not stop cleanly (%lld bytes)",
				shown, r->dir, (long long)st.st_size);
		}
		if (f >= 0)
			close(f);
	}
	closedir(d);
}

/* ------------------------------------------------------------ senders */

static struct rx *rx_find(struct receiver *r, uint64_t id)
{
	struct rx *x = r->bucket[id % RX_BUCKETS];
	while (x && x->id != id)
		x = x->hnext;
	return x;
}

/* Closes the connection (a sender that broke the protocol, or does not read
 * the answers); its disconnect event follows. */
static void rx_close(struct receiver *r, struct rx *x)
{
	if (x->fd >= 0) {
		r->failed++;
		x->failed = true;
	}
	rx_abort(r, x);
	x->state = RX_CLOSING;
	ssock_server_disconnect(r->srv, x->id);
}

/* Queues a reply. A sender that lets 64 KiB of them pile up unread is
 * closed: its replies would otherwise be the receiver's memory. */
static void rx_send(struct receiver *r, struct rx *x, const void *data, size_t len)
{
	if (x->state == RX_CLOSING)
		return;
	int rc = ssock_server_send(r->srv, x->id, data, len);
	if (rc == 0 || rc == SSOCK_ENOCONN || rc == SSOCK_ECLOSED)
		return; /* sent, or the connection is ending: its event follows */
	cli_log("closing the connection from %s: %s (it does not read the answers)", x->peer,
		ssock_strerror(rc));
	rx_close(r, x);
}

/* Sends 'X' + reason and logs it. */
static void rx_refuse(struct receiver *r, struct rx *x, const char *what, const char *reason)
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, "X%s", reason);
	cli_log("refused %s from %s: %s", what, x->peer, reason);
	r->failed++;
	x->failed = true;
	rx_send(r, x, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static void rx_header(struct receiver *r, struct rx *x, const unsigned char *p, size_t len)
{
	size_t nlen = len - HEADER_MIN;
	const char *name = (const char *)p + HEADER_MIN;
	/* The name as logged: escaped, so a hostile one can't write to the terminal. */
	char shown[NAME_MAX_LEN * 4 + 8];
	shown[0] = '\'';
	size_t o = 1 + cli_escape(shown + 1, sizeof shown - 2, name, nlen);
	snprintf(shown + o, sizeof shown - o, "'");
	x->started = true;
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
		rx_refuse(r, x, shown, why);
		return;
	}
	x->fd = rx_create_tmp(r, x);
	if (x->fd < 0) {
		snprintf(reason, sizeof reason, "cannot create a file in %s: %s", r->dir,
			 strerror(-x->fd));
		x->fd = -1;
		rx_refuse(r, x, shown, reason);
		return;
	}
	x->got = 0;
	xxh64_init(&x->hash);
	printf("receiving %s (%llu bytes) from %s\n", x->name, (unsigned long long)x->size,
	       x->peer);
	fflush(stdout);
	progress_start(&x->bar, x->name, x->size);
	x->state = RX_DATA;
	rx_send(r, x, "R", 1);
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
static void rx_fail(struct receiver *r, struct rx *x, const char *reason)
{
	char what[NAME_MAX_LEN + 3];
	snprintf(what, sizeof what, "'%s'", x->name);
	rx_abort(r, x);
	rx_refuse(r, x, what, reason);
}

static void rx_data(struct receiver *r, struct rx *x, const unsigned char *p, size_t len)
{
	if (x->got + len > x->size) {
		rx_fail(r, x, "more data than the announced size");
		x->state = RX_DISCARD;
		return;
	}
	int rc = write_all(x->fd, p, len);
	if (rc != 0) {
		char reason[160];
		snprintf(reason, sizeof reason, "cannot write in %s: %s", r->dir, strerror(-rc));
		rx_fail(r, x, reason);
		x->state = RX_DISCARD;
		return;
	}
	xxh64_update(&x->hash, p, len);
	x->got += len;
	progress_add(&x->bar, len);
}

static void rx_end(struct receiver *r, struct rx *x, const unsigned char *p)
{
	uint64_t want = get_be64(p + 1), have = xxh64_digest(&x->hash);
	char reason[200];
	if (x->got != x->size) {
		snprintf(reason, sizeof reason,
			 "size mismatch: %llu bytes announced, %llu received",
			 (unsigned long long)x->size, (unsigned long long)x->got);
		rx_fail(r, x, reason);
		return;
	}
	if (want != have) {
		snprintf(reason, sizeof reason,
			 "checksum mismatch (xxh64 %016llx announced, %016llx received)",
			 (unsigned long long)want, (unsigned long long)have);
		rx_fail(r, x, reason);
		return;
	}
	int rc = rx_land(r, x);
	if (rc != 0) {
		snprintf(reason, sizeof reason,
			 rc == -EEXIST
				 ? "a file of that name exists (the receiver may allow --overwrite)"
				 : "cannot store it in %s: %s",
			 r->dir, strerror(-rc));
		rx_fail(r, x, reason);
		return;
	}
	close(x->fd);
	x->fd = -1;
	progress_end(&x->bar, true);
	char ok[NAME_MAX_LEN + 2];
	int n = snprintf(ok, sizeof ok, "K%s", x->name);
	rx_send(r, x, ok, (size_t)n);
	r->ok++;
	r->bytes += x->size;
	printf("received %s (%llu bytes, xxh64 %016llx) from %s", x->name,
	       (unsigned long long)x->size, (unsigned long long)have, x->peer);
	if (r->stats)
		printf(", peak RSS %ld KiB", cli_peak_rss_kib());
	putchar('\n');
	fflush(stdout);
}

static void rx_message(struct receiver *r, struct rx *x, const unsigned char *p, size_t len)
{
	char type = len ? (char)p[0] : '\0';
	if (x->state == RX_CLOSING)
		return;
	if (x->state == RX_IDLE && type == 'H' && len >= HEADER_MIN)
		rx_header(r, x, p, len);
	else if (x->state == RX_DATA && type == 'D')
		rx_data(r, x, p + 1, len - 1);
	else if (x->state == RX_DATA && type == 'E' && len == 9) {
		rx_end(r, x, p);
		if (x->state != RX_CLOSING)
			x->state = RX_IDLE;
	} else if (x->state == RX_DISCARD && type == 'D')
		return;
	else if (x->state == RX_DISCARD && type == 'E' && len == 9)
		x->state = RX_IDLE;
	else {
		rx_abort(r, x);
		rx_refuse(r, x, "a transfer", "protocol error (unexpected message)");
		rx_close(r, x);
	}
}

static void rx_connect(struct receiver *r, const ssock_event *ev)
{
	struct rx *x = calloc(1, sizeof *x);
	if (!x) {
		ssock_server_disconnect(r->srv, ev->conn);
		return;
	}
	x->id = ev->conn;
	x->fd = -1;
	x->last_ms = cli_now_ms();
	ssock_addr_format(&ev->peer, x->peer, sizeof x->peer);
	x->next = r->open;
	if (r->open)
		r->open->prev = x;
	r->open = x;
	x->hnext = r->bucket[x->id % RX_BUCKETS];
	r->bucket[x->id % RX_BUCKETS] = x;
}

/* Forgets a connection; a transfer it cut is reported (`why`: how it ended). */
static void rx_free(struct receiver *r, struct rx *x, const char *why)
{
	if (x->fd >= 0) {
		cli_log("transfer of '%s' from %s broken after %llu of %llu bytes; nothing kept "
			"(%s)",
			x->name, x->peer, (unsigned long long)x->got, (unsigned long long)x->size,
			why);
		r->failed++;
		x->failed = true;
	}
	rx_abort(r, x);
	struct rx **b = &r->bucket[x->id % RX_BUCKETS];
	while (*b != x)
		b = &(*b)->hnext;
	*b = x->hnext;
	if (x->prev)
		x->prev->next = x->next;
	else
		r->open = x->next;
	if (x->next)
		x->next->prev = x->prev;
	free(x);
}

static void rx_disconnect(struct receiver *r, struct rx *x, int reason)
{
	bool sender = x->started;
	bool failed = x->failed || x->fd >= 0;
	char why[128];
	snprintf(why, sizeof why, "%s",
		 reason == 0             ? "the sender closed the connection"
		 : reason == SSOCK_EIDLE ? "idle for longer than --idle-timeout"
					 : ssock_strerror(reason));
	rx_free(r, x, why);
	/* --once: the first connection that sent a header, not a port probe. */
	if (r->once && sender && !r->done) {
		r->done = true;
		r->once_failed = failed;
	}
}

static void rx_event(struct receiver *r, const ssock_event *ev)
{
	struct rx *x = ev->type == SSOCK_EVENT_CONNECT ? NULL : rx_find(r, ev->conn);
	char peer[SSOCK_ADDRSTRLEN] = "-";
	switch (ev->type) {
	case SSOCK_EVENT_CONNECT:
		rx_connect(r, ev);
		break;
	case SSOCK_EVENT_MESSAGE:
		if (x) {
			x->last_ms = cli_now_ms();
			rx_message(r, x, ev->data, ev->len);
		}
		break;
	case SSOCK_EVENT_DISCONNECT:
		if (x)
			rx_disconnect(r, x, ev->code);
		break;
	case SSOCK_EVENT_ERROR:
		if (ev->peer.len)
			ssock_addr_format(&ev->peer, peer, sizeof peer);
		cli_log("%s (%s): %s", ev->op, peer, ssock_strerror(ev->code));
		break;
	default:
		break;
	}
}

/* Closes the senders silent for longer than --idle-timeout. Called with the
 * inbox empty, so no message of theirs waits here: the wait is theirs. (The
 * library's idle timeout would also count the time this thread was busy,
 * e.g. on a slow disk, and close senders that wait for an answer.) */
static void rx_close_idle(struct receiver *r, int64_t now)
{
	for (struct rx *x = r->open; x; x = x->next) {
		if (x->state == RX_CLOSING || now - x->last_ms < r->idle_ms)
			continue;
		if (x->fd >= 0)
			cli_log("transfer of '%s' from %s broken after %llu of %llu bytes; nothing "
				"kept (idle for longer than --idle-timeout)",
				x->name, x->peer, (unsigned long long)x->got,
				(unsigned long long)x->size);
		else
			cli_log("closing the connection from %s: idle for longer than "
				"--idle-timeout",
				x->peer);
		rx_close(r, x);
	}
}

/* Takes events until a stop signal, or (--once) the first sender is done. */
static int rx_loop(struct receiver *r, const sigset_t *stop)
{
	int sfd = signalfd(-1, stop, SFD_CLOEXEC);
	if (sfd < 0)
		return cli_fail("cannot make a signalfd: %s", strerror(errno));
	int efd = ssock_server_event_fd(r->srv);
	if (efd < 0) {
		close(sfd);
		return cli_fail("cannot wait for the server's events: %s", ssock_strerror(efd));
	}
	/* Idle senders are looked for a few times per timeout (at most every
	 * second), only while some are connected. */
	int tick = r->idle_ms / 4 < 50 ? 50 : r->idle_ms / 4 > 1000 ? 1000 : r->idle_ms / 4;
	int64_t next_tick = cli_now_ms() + tick;
	while (!r->done) {
		int timeout = -1;
		if (r->idle_ms > 0 && r->open) {
			int64_t left = next_tick - cli_now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		ssock_event ev;
		int i = 0, rc = 0;
		while (i++ < EVENTS_PER_ROUND && !r->done &&
		       (rc = ssock_server_next_event(r->srv, &ev, 0)) == 0) {
			rx_event(r, &ev);
			ssock_event_release(&ev);
		}
		int64_t now = cli_now_ms();
		if (r->idle_ms > 0 && rc == SSOCK_ETIMEDOUT && now >= next_tick) {
			rx_close_idle(r, now);
			next_tick = now + tick;
		}
	}
	close(sfd);
	return 0;
}

static int rx_serve(struct receiver *r, const struct opts *o, const sigset_t *stop)
{
	ssock_server_opts so = {
		.listen = o->addr,
		.max_message = CHUNK + 64,
		.max_conns = o->max_conns ? o->max_conns : DEFAULT_MAX_CONNS,
		.send_queue_max = REPLY_QUEUE,
		.send_budget = REPLY_BUDGET,
		.inbox_max_bytes = INBOX_BYTES,
	};
	int rc = ssock_server_new(&r->srv, &so);
	if (rc != 0) {
		cli_fail("cannot listen on %s: %s", o->addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_recv_files, rc);
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_server_addr(r->srv, 0, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);
	int code = rx_loop(r, stop);
	ssock_server_free(r->srv);
	while (r->open) /* transfers cut by the stop: no partial file stays */
		rx_free(r, r->open, "the receiver stopped");
	char bytes[32];
	cli_fmt_bytes(bytes, sizeof bytes, (double)r->bytes);
	printf("recv-files: %llu file(s) received (%s), %llu failed; peak RSS %ld KiB\n", r->ok,
	       bytes, r->failed, cli_peak_rss_kib());
	fflush(stdout);
	if (code != 0)
		return code;
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
		.idle_ms = o->idle_timeout_ms < 0 ? DEFAULT_IDLE_MS : o->idle_timeout_ms,
	};
	r.umask = umask(0);
	umask(r.umask);
	r.dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.dirfd < 0)
		return cli_fail("cannot open directory %s: %s", o->dir, strerror(errno));
	clean_stale(&r);
	r.tmpfile = tmpfile_usable(&r);
	/* Blocked before the loop thread starts (it inherits the mask): only
	 * the signalfd takes them. SIGHUP too: a closed terminal is a stop,
	 * with the temporary files removed. */
	sigset_t stop;
	cli_block_stop(&stop);
	sigaddset(&stop, SIGHUP);
	/* A stdout nobody reads any more costs the lines, not the files: a
	 * write fails with EPIPE instead of killing the process mid-transfer. */
	signal(SIGPIPE, SIG_IGN);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	int code = rx_serve(&r, o, &stop);
	close(r.dirfd);
	return code;
}

const struct command cmd_recv_files = {
	.name = "recv-files",
	.allowed = O_LISTEN | O_DIR | O_OVERWRITE | O_MAX_SIZE | O_STATS | O_ONCE | O_MAX_CONNS |
		   O_IDLE_TIMEOUT,
	.synopsis = "recv-files --listen ADDR --dir DIR [--overwrite] [--max-size BYTES] [--once] "
		    "[--stats] [--max-conns N] [--idle-timeout MS]",
	.help = "Receives files sent with 'ssock send-file' into DIR. Prints 'listening on\n"
		"HOST:PORT' first, a line 'receiving NAME ...' when a file starts and 'received\n"
		"NAME ...' when it landed, and a summary with the peak memory use (VmHWM) when\n"
		"it stops (SIGINT, SIGTERM or SIGHUP: exit 0). Refusals and failures go to\n"
		"stderr. A name must be 1 to 255 bytes of valid UTF-8 without '/', '..',\n"
		"control characters (C0, DEL, C1) or bidirectional formatting characters, not\n"
		"'.' and not starting with '.ssock-part'; anything else is refused. Data goes\n"
		"to a temporary file in DIR that gets its name only when its size and XXH64\n"
		"checksum match: a broken transfer leaves nothing under the name, and\n"
		"temporary files a receiver killed by force left are removed at start.\n"
		"A progress bar shows on stderr when it is a terminal.\n"
		"\n"
		"  --listen ADDR      where to listen: HOST:PORT, [IPV6]:PORT or :PORT\n"
		"  --dir DIR          where files are written (must exist)\n"
		"  --overwrite        replace existing files (default: refuse them)\n"
		"  --max-size BYTES   refuse larger files (default: no limit)\n"
		"  --once             stop after the first sender (a connection that sent a\n"
		"                     file header) has disconnected; exit 1 if any of its\n"
		"                     files failed\n"
		"  --stats            add the peak memory use to each file's line\n"
		"  --max-conns N      at most N senders at once (default 64)\n"
		"  --idle-timeout MS  close a sender silent for MS ms, removing its partial\n"
		"                     file (default 60000; 0: never)\n",
	.run = run_recv_files,
};
