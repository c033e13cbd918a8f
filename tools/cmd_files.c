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
 * The receiver (cmd_recv_files.c) writes only inside DIR, and only names
 * that are safe there and safe to print; each file appears under its name
 * whole, checked and synced, or not at all. Its comment says how.
 *
 * Memory stays bounded on both sides: the sender reads one chunk at a time
 * and waits for room in a small send queue; the receiver takes one message
 * at a time from its server's bounded inbox and writes it.
 */
#include "cli.h"
#include "files.h"
#include "xxh64.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
