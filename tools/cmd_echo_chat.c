/*
 * ssock echo and ssock chat, over TCP (any framing) and UDP. Their output
 * and exit codes are docs/DESIGN.md's fixed contract: tests and benchmarks
 * depend on them, so change nothing observable here lightly.
 */
#include "cli.h"
#include "echo_guard.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

/* ---------------------------------------------------------------- echo */

static void echo_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	int rc = ssock_conn_send(c, data, len);
	if (rc != 0) {
		/* A peer that never reads: drop it rather than its messages. */
		char peer[SSOCK_ADDRSTRLEN];
		ssock_addr_format(ssock_conn_peer(c), peer, sizeof peer);
		cli_log("echo to %s failed: %s; closing it", peer, ssock_strerror(rc));
		ssock_conn_close(c);
	}
}

static void echo_error(const ssock_error_info *e, void *user)
{
	(void)user;
	char peer[SSOCK_ADDRSTRLEN] = "-";
	if (e->peer.len)
		ssock_addr_format(&e->peer, peer, sizeof peer);
	cli_log("%s (%s): %s", e->op, peer, ssock_strerror(e->code));
}

/* ------------------------------------------------------------ echo --udp */

/* Why a datagram is not answered, for the log (once per source per 10 s). */
#define BACK_RATE STR(ECHO_GUARD_BACK_RATE)
static const char *const refusal[] = {
	[ECHO_SELF] = "it comes from this server's own address (forged)",
	[ECHO_RATE] = "above " STR(ECHO_GUARD_RATE) " datagrams a second from it",
	[ECHO_BOUNCED] =
		"it sends this server's replies back (another echo service?), above " BACK_RATE
		" a second",
};

static void udp_echo_datagram(ssock_udp *u, const ssock_addr *from, const void *data, size_t len,
			      void *user)
{
	struct echo_guard *g = user;
	bool first = false;
	/* Until main() has set the bound port the self check can't work: drop
	 * (nobody knows a port 0 server's port before its listening line). */
	echo_verdict v = __atomic_load_n(&g->port, __ATOMIC_ACQUIRE) < 0
				 ? ECHO_SELF
				 : echo_guard_check(g, from, data, len, cli_now_ms(), &first);
	char peer[SSOCK_ADDRSTRLEN];
	if (v != ECHO_ANSWER) {
		if (first) {
			ssock_addr_format(from, peer, sizeof peer);
			cli_log("echo --udp: not answering %s: %s", peer, refusal[v]);
		}
		return;
	}
	int rc = ssock_udp_send_to(u, from, data, len);
	/* A full send buffer loses this reply, as UDP may: no line per loss. */
	if (rc != 0 && rc != SSOCK_ESENDQFULL) {
		ssock_addr_format(from, peer, sizeof peer);
		cli_log("echo to %s failed: %s", peer, ssock_strerror(rc));
	}
}

static int udp_echo(const struct opts *o)
{
	if (o->max_msg > SSOCK_UDP_MAX_MESSAGE)
		return cli_usage_error(&cmd_echo, "--max-msg with --udp is at most 65507 bytes");
	/* As for TCP: only sigwait() below takes the stop signals. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	struct echo_guard *g = malloc(sizeof *g);
	if (!g)
		return cli_fail("out of memory");
	ssock_addr none = {0};
	echo_guard_init(g, &none);
	g->port = -1; /* set below, once the port is known */
	ssock_udp_opts uo = {
		.bind = o->addr,
		.max_message = o->max_msg,
		.on_datagram = udp_echo_datagram,
		.on_error = echo_error,
		.user = g,
	};
	ssock_udp *u;
	int rc = ssock_udp_new(&u, &uo);
	if (rc != 0) {
		free(g);
		cli_fail("cannot listen on %s (udp): %s", o->addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_echo, rc);
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_udp_addr(u, &bound);
	__atomic_store_n(&g->port, ssock_addr_port(&bound), __ATOMIC_RELEASE);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);
	ssock_udp_free(u);
	free(g);
	return 0;
}

static int run_echo(struct opts *op)
{
	struct opts o = *op;
	int rc;
	if (!o.addr)
		return cli_usage_error(&cmd_echo, "echo needs --listen ADDR");
	if (o.nargs > 0)
		return cli_usage_error(&cmd_echo, "unexpected argument '%s'", o.args[0]);
	if (o.udp && o.framing == SSOCK_FRAMING_TINYPROTO)
		return cli_usage_error(&cmd_echo,
				       "--framing tinyproto is a TCP framing (not with --udp)");
	if (o.udp && o.max_conns > 0)
		return cli_usage_error(&cmd_echo,
				       "--max-conns counts TCP connections (not with --udp)");
	if (o.udp)
		return udp_echo(&o);
	cli_raise_fd_limit();

	/* Block the stop signals before the loop thread starts, so it inherits
	 * the mask and only sigwait() below ever takes them. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_server_opts so = {
		.listen = o.addr,
		.framing = o.framing,
		.max_conns = o.max_conns,
		.max_message = o.max_msg,
		.on_message = echo_message,
		.on_error = echo_error,
	};
	ssock_server *srv;
	rc = ssock_server_new(&srv, &so);
	if (rc != 0) {
		cli_fail("cannot listen on %s: %s", o.addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_echo, rc);
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_server_addr(srv, 0, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);
	ssock_server_free(srv);
	return 0;
}

/* ---------------------------------------------------------------- chat */

struct chat {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ssock_framing framing;
	unsigned long long replies, reply_bytes;
	bool lost;
	int lost_reason;
	int wake_fd; /* written when the connection is lost */
};

static void chat_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	struct chat *ch = user;
	/* One message, one line, escaped as 'ssock listen' prints it; raw is a
	 * byte stream, not messages: its newlines stay, the rest is escaped. */
	bool raw = ch->framing == SSOCK_FRAMING_RAW;
	cli_print_escaped(stdout, data, len, raw ? ESC_KEEP_NL : 0);
	if (!raw)
		fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_lock(&ch->mu);
	ch->replies++;
	ch->reply_bytes += len;
	pthread_cond_broadcast(&ch->cv);
	pthread_mutex_unlock(&ch->mu);
}

static void chat_disconnect(ssock_conn *c, int reason, void *user)
{
	(void)c;
	struct chat *ch = user;
	pthread_mutex_lock(&ch->mu);
	ch->lost = true;
	ch->lost_reason = reason;
	pthread_cond_broadcast(&ch->cv);
	pthread_mutex_unlock(&ch->mu);
	char b = 1;
	if (write(ch->wake_fd, &b, 1) < 0) {
		/* the main thread also sees `lost` under the mutex */
	}
}

/* stdin read by hand, not through stdio, so poll() can watch it and the
 * "connection lost" pipe together without stdio holding lines back. */
struct line_reader {
	char *buf;
	size_t len, cap;
	size_t skip; /* bytes of the line returned last time */
	bool eof;
};

/* Returns the next line (NUL-terminated, without "\r\n") and its length
 * via *n, or NULL at EOF or when lost_fd becomes readable. */
static char *read_line(struct line_reader *r, int lost_fd, size_t *n)
{
	if (r->skip) {
		memmove(r->buf, r->buf + r->skip, r->len - r->skip);
		r->len -= r->skip;
		r->skip = 0;
	}
	for (;;) {
		char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
		if (nl || (r->eof && r->len > 0)) {
			size_t end = nl ? (size_t)(nl - r->buf) : r->len;
			r->skip = nl ? end + 1 : end;
			if (end > 0 && r->buf[end - 1] == '\r')
				end--;
			r->buf[end] = '\0';
			*n = end;
			return r->buf;
		}
		if (r->eof)
			return NULL;
		if (r->cap - r->len < 4096) {
			size_t cap = r->cap ? r->cap * 2 : 8192;
			char *b = realloc(r->buf, cap + 1);
			if (!b)
				return NULL;
			r->buf = b;
			r->cap = cap;
		}
		struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
				      {.fd = lost_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		ssize_t got = read(STDIN_FILENO, r->buf + r->len, r->cap - r->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			r->eof = true;
		else
			r->len += (size_t)got;
	}
}

/* Sets *ts to wait_ms from now on CLOCK_MONOTONIC (the clock of ch->cv). */
static void deadline_in(struct timespec *ts, int wait_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += wait_ms / 1000;
	ts->tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits up to wait_ms for as many replies as messages sent (for raw: as
 * many bytes). Returns how many are still missing (0 once the connection
 * is lost: that is reported on its own). */
static unsigned long long wait_replies(struct chat *ch, unsigned long long sent,
				       unsigned long long sent_bytes, int wait_ms)
{
	struct timespec deadline;
	deadline_in(&deadline, wait_ms);
	bool raw = ch->framing == SSOCK_FRAMING_RAW;
	unsigned long long want = raw ? sent_bytes : sent, missing;
	pthread_mutex_lock(&ch->mu);
	for (;;) {
		unsigned long long got = raw ? ch->reply_bytes : ch->replies;
		missing = got >= want || ch->lost ? 0 : want - got;
		if (missing == 0)
			break;
		if (pthread_cond_timedwait(&ch->cv, &ch->mu, &deadline) != 0) {
			got = raw ? ch->reply_bytes : ch->replies;
			missing = got >= want || ch->lost ? 0 : want - got;
			break;
		}
	}
	pthread_mutex_unlock(&ch->mu);
	return missing;
}

/* Waits up to wait_ms for the connection-lost callback to have run. */
static void wait_lost(struct chat *ch, int wait_ms)
{
	struct timespec deadline;
	deadline_in(&deadline, wait_ms);
	pthread_mutex_lock(&ch->mu);
	while (!ch->lost && pthread_cond_timedwait(&ch->cv, &ch->mu, &deadline) == 0) {
	}
	pthread_mutex_unlock(&ch->mu);
}

/* A silent server is often one that speaks another framing (a u32 message
 * is never a whole line to a line server): say so, once, at the end. The
 * exit code stays 0 (docs/DESIGN.md: chat exits 0 at the end of its input): the
 * connection is fine, and a server that never answers ('ssock listen') is a
 * legitimate peer. `what` names what was counted ("replies", "reply bytes"),
 * `hint` the likely cause. */
static void report_missing(unsigned long long missing, unsigned long long want, const char *what,
			   int wait_ms, const char *hint)
{
	if (missing > 0)
		fprintf(stderr, "%s: %llu of %llu %s missing after %d ms (%s)\n", prog, missing,
			want, what, wait_ms, hint);
}

static int chat_session(ssock_client *cli, struct chat *ch, int lost_fd, int wait_ms,
			const char *addr)
{
	struct line_reader r = {0};
	unsigned long long sent = 0, sent_bytes = 0;
	bool bye = false;
	int rc = 0;
	for (;;) {
		size_t n;
		char *line = read_line(&r, lost_fd, &n);
		if (!line)
			break;
		bye = strcmp(line, "bye") == 0;
		if (ch->framing == SSOCK_FRAMING_RAW)
			line[n++] = '\n'; /* raw peers (nc) see the line as typed */
		rc = ssock_client_send_timeout(cli, line, n, -1);
		if (rc != 0)
			break;
		sent++;
		sent_bytes += n;
		if (bye)
			break;
		/* tinyproto is half-duplex: the next line waits for this reply,
		 * so the two sides never start a message at the same moment. */
		if (ch->framing == SSOCK_FRAMING_TINYPROTO)
			wait_replies(ch, sent, sent_bytes, wait_ms);
	}
	free(r.buf);
	unsigned long long missing = 0, want = 0;
	if (rc == 0) {
		want = ch->framing == SSOCK_FRAMING_RAW ? sent_bytes : sent;
		missing = wait_replies(ch, sent, sent_bytes, wait_ms);
		/* tinyproto sends nothing before the peer's handshake: replies
		 * missing may mean our messages never left. Wait for them, up to
		 * the handshake's deadline, to tell a peer that never shook
		 * hands from one that does not answer. */
		if (missing && ch->framing == SSOCK_FRAMING_TINYPROTO &&
		    ssock_client_flush(cli, CLI_HANDSHAKE_MS + 1000) == SSOCK_ENOTCONN)
			wait_lost(ch, 1000); /* the disconnect callback may still be on its way */
	}
	pthread_mutex_lock(&ch->mu);
	bool lost = ch->lost;
	int reason = ch->lost_reason;
	bool answered = ch->replies > 0 || ch->reply_bytes > 0;
	pthread_mutex_unlock(&ch->mu);
	if (reason == SSOCK_EHANDSHAKE)
		return cli_handshake_fail(addr);
	if (rc == 0 && !bye) { /* after 'bye' a server may close without answering */
		/* Nothing back at all is most often another framing; some back,
		 * a server that answers only some messages, or slowly. */
		char hint[SSOCK_ADDRSTRLEN + 128];
		if (answered)
			snprintf(hint, sizeof hint,
				 "the server at %s answered the others: slow? try a longer --wait",
				 addr);
		else
			snprintf(hint, sizeof hint, "does the server at %s speak %s?", addr,
				 ssock_framing_name(ch->framing));
		report_missing(missing, want,
			       ch->framing == SSOCK_FRAMING_RAW ? "reply bytes" : "replies",
			       wait_ms, hint);
	}
	if (rc != 0 && rc != SSOCK_ENOTCONN && rc != SSOCK_ECLOSED) {
		fprintf(stderr, "%s: send to %s failed: %s\n", prog, addr, ssock_strerror(rc));
		return EXIT_RUNTIME;
	}
	/* After 'bye' the server hanging up is the expected end. */
	if ((lost || rc != 0) && !bye) {
		fprintf(stderr, "%s: connection to %s lost: %s\n", prog, addr,
			reason ? ssock_strerror(reason) : "closed by peer");
		return EXIT_RUNTIME;
	}
	return 0;
}

/* ------------------------------------------------------------ chat --udp */

static void udp_chat_datagram(ssock_udp *u, const ssock_addr *from, const void *data, size_t len,
			      void *user)
{
	(void)u;
	(void)from; /* a connected socket only hears its peer */
	struct chat *ch = user;
	cli_print_escaped(stdout, data, len, 0);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_lock(&ch->mu);
	ch->replies++;
	pthread_cond_broadcast(&ch->cv);
	pthread_mutex_unlock(&ch->mu);
}

static void udp_chat_error(const ssock_error_info *e, void *user)
{
	struct chat *ch = user;
	/* ICMP "port unreachable": nobody listens there. Anything else (an
	 * oversized reply) costs one datagram, not the session. */
	if (e->code != SSOCK_ECONNREFUSED) {
		cli_log("%s: %s", e->op, ssock_strerror(e->code));
		return;
	}
	pthread_mutex_lock(&ch->mu);
	ch->lost = true;
	ch->lost_reason = e->code;
	pthread_cond_broadcast(&ch->cv);
	pthread_mutex_unlock(&ch->mu);
	char b = 1;
	if (write(ch->wake_fd, &b, 1) < 0) {
		/* the main thread also sees `lost` under the mutex */
	}
}

static int udp_chat_session(ssock_udp *u, struct chat *ch, int lost_fd, int wait_ms,
			    const char *addr)
{
	/* Allocated up front: read_line() memmoves from r.buf before it ever
	 * allocates, and memmove(NULL, NULL, 0) is undefined (UBSan stops). */
	struct line_reader r = {.buf = malloc(8192 + 1), .cap = 8192};
	if (!r.buf) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return EXIT_RUNTIME;
	}
	unsigned long long sent = 0;
	bool bye = false;
	int rc = 0;
	for (;;) {
		size_t n;
		char *line = read_line(&r, lost_fd, &n);
		if (!line)
			break;
		bye = strcmp(line, "bye") == 0;
		rc = ssock_udp_send_to_timeout(u, NULL, line, n, -1);
		if (rc != 0)
			break;
		sent++;
		if (bye)
			break;
	}
	free(r.buf);
	if (rc == 0) {
		unsigned long long missing = wait_replies(ch, sent, 0, wait_ms);
		char hint[SSOCK_ADDRSTRLEN + 64];
		snprintf(hint, sizeof hint, "datagrams lost, or nothing answers at %s", addr);
		if (!bye)
			report_missing(missing, sent, "replies", wait_ms, hint);
	}
	pthread_mutex_lock(&ch->mu);
	bool lost = ch->lost;
	pthread_mutex_unlock(&ch->mu);
	if (lost || rc == SSOCK_ECONNREFUSED) {
		fprintf(stderr, "%s: %s refused the datagrams (nobody listening?)\n", prog, addr);
		return EXIT_RUNTIME;
	}
	if (rc != 0) {
		fprintf(stderr, "%s: send to %s failed: %s\n", prog, addr, ssock_strerror(rc));
		return EXIT_RUNTIME;
	}
	return 0;
}

static int udp_chat(const struct opts *o)
{
	if (o->max_msg > SSOCK_UDP_MAX_MESSAGE)
		return cli_usage_error(&cmd_chat, "--max-msg with --udp is at most 65507 bytes");
	int pipefd[2];
	if (pipe(pipefd) != 0) {
		perror(prog);
		return EXIT_RUNTIME;
	}
	/* Counted as messages (not raw bytes) by wait_replies(). */
	struct chat ch = {.framing = SSOCK_FRAMING_U32, .wake_fd = pipefd[1]};
	pthread_mutex_init(&ch.mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ch.cv, &ca);
	ssock_udp_opts uo = {
		.connect = o->addr,
		.max_message = o->max_msg,
		.on_datagram = udp_chat_datagram,
		.on_error = udp_chat_error,
		.user = &ch,
	};
	ssock_udp *u;
	int rc = ssock_udp_new(&u, &uo);
	int code;
	if (rc != 0) {
		cli_fail("cannot connect to %s (udp): %s", o->addr, ssock_strerror(rc));
		code = cli_addr_exit(&cmd_chat, rc);
	} else {
		code = udp_chat_session(u, &ch, pipefd[0], o->wait_ms, o->addr);
		ssock_udp_free(u);
	}
	close(pipefd[0]);
	close(pipefd[1]);
	return code;
}

static int run_chat(struct opts *op)
{
	struct opts o = *op;
	int rc;
	if (o.wait_ms < 0)
		o.wait_ms = 1000;
	if (o.nargs < 1)
		return cli_usage_error(&cmd_chat, "chat needs ADDR");
	if (o.nargs > 1)
		return cli_usage_error(&cmd_chat, "unexpected argument '%s'", o.args[1]);
	o.addr = o.args[0];
	if (o.udp && o.framing == SSOCK_FRAMING_TINYPROTO)
		return cli_usage_error(&cmd_chat,
				       "--framing tinyproto is a TCP framing (not with --udp)");
	if (o.udp)
		return udp_chat(&o);
	int pipefd[2];
	if (pipe(pipefd) != 0) {
		perror(prog);
		return EXIT_RUNTIME;
	}
	struct chat ch = {.framing = o.framing, .wake_fd = pipefd[1]};
	pthread_mutex_init(&ch.mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ch.cv, &ca);
	ssock_client_opts co = {
		.connect = o.addr,
		.framing = o.framing,
		.max_message = o.max_msg,
		.connect_timeout_ms = CLI_HANDSHAKE_MS, /* also the handshake's deadline */
		.on_message = chat_message,
		.on_disconnect = chat_disconnect,
		.user = &ch,
	};
	ssock_client *cli = NULL;
	rc = ssock_client_new(&cli, &co);
	if (rc == 0)
		rc = ssock_client_connect(cli, -1);
	if (rc != 0) {
		ssock_client_free(cli);
		close(pipefd[0]);
		close(pipefd[1]);
		if (rc == SSOCK_EHANDSHAKE)
			return cli_handshake_fail(o.addr);
		cli_fail("cannot connect to %s: %s", o.addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_chat, rc);
	}
	int code = chat_session(cli, &ch, pipefd[0], o.wait_ms, o.addr);
	ssock_client_free(cli);
	close(pipefd[0]);
	close(pipefd[1]);
	return code;
}

const struct command cmd_echo = {
	.name = "echo",
	.allowed = O_LISTEN | O_FRAMING | O_UDP | O_MAX_CONNS | O_MAX_MSG,
	.synopsis = "echo --listen ADDR [--framing u32|line|raw|tinyproto] [--udp] [--max-conns N] "
		    "[--max-msg BYTES]",
	.help = "Serves an echo of every message. Prints 'listening on HOST:PORT' first (the real\n"
		"port when ADDR asks for port 0); SIGINT or SIGTERM stop it with exit code 0.\n"
		"\n"
		"  --listen ADDR      where to listen: HOST:PORT, [IPV6]:PORT or :PORT\n"
		"  --framing NAME     u32 (default: 4-byte length, payload), line, raw, tinyproto\n"
		"  --udp              UDP: every datagram comes back to its sender, except\n"
		"                     to the server's own address (a forged source), above\n"
		"                     50000 a second to one sender, or above 1000 a second\n"
		"                     when a sender sends the server's replies back to it\n"
		"                     (two echo services answering each other)\n"
		"  --max-conns N      at most N connections at once (default: the fd limit)\n"
		"  --max-msg BYTES    largest message accepted (default 16 MiB; UDP: 65507)\n",
	.run = run_echo,
};

const struct command cmd_chat = {
	.name = "chat",
	.allowed = O_FRAMING | O_UDP | O_MAX_MSG | O_WAIT,
	.synopsis = "chat ADDR [--framing u32|line|raw|tinyproto] [--udp] [--wait MS] [--max-msg "
		    "BYTES]",
	.help = "Connects to ADDR, sends each line of stdin as one message and prints each\n"
		"message received as one line, escaped as 'ssock listen' prints it (with raw\n"
		"framing the bytes as a stream: newlines kept, other control bytes escaped).\n"
		"At end of input (or after a line 'bye') it waits for the outstanding replies,\n"
		"then exits 0; replies still missing then are reported in one line on stderr\n"
		"(a server that speaks another framing never answers). A refused or lost\n"
		"connection: exit 1.\n"
		"\n"
		"  --framing NAME     u32 (default), line, raw or tinyproto (which sends a line\n"
		"                     only after the reply to the previous one, or --wait)\n"
		"  --udp              UDP: each line is one datagram\n"
		"  --wait MS          how long to wait for replies at the end (default 1000)\n"
		"  --max-msg BYTES    largest message accepted (default 16 MiB; UDP: 65507)\n",
	.run = run_chat,
};
