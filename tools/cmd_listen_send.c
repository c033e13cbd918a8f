/*
 * ssock listen: serve and print every message received, one per line.
 * ssock send: send each argument as one message, optionally print replies.
 *
 * One message is always exactly one line of output: printable ASCII as is,
 * a backslash as "\\", every other byte as "\xNN" (or, with --hex, the whole
 * message as lowercase hex). So a line never hides a message boundary, and
 * the bytes can be recovered from the line.
 */
#include "cli.h"

#include <string.h>

/* Writes one message as one line (see above, and text.c) and flushes, so a
 * reader of stdout sees each message as it arrives. */
static void print_message(const void *data, size_t len, bool hex)
{
	cli_print_escaped(stdout, data, len, hex ? ESC_HEX : 0);
	putchar('\n');
	fflush(stdout);
}

/* -------------------------------------------------------------- listen */

static void listen_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c;
	print_message(data, len, *(bool *)user);
}

static void listen_datagram(ssock_udp *u, const ssock_addr *from, const void *data, size_t len,
			    void *user)
{
	(void)u;
	(void)from;
	print_message(data, len, *(bool *)user);
}

static void listen_error(const ssock_error_info *e, void *user)
{
	(void)user;
	char peer[SSOCK_ADDRSTRLEN] = "-";
	if (e->peer.len)
		ssock_addr_format(&e->peer, peer, sizeof peer);
	cli_log("%s (%s): %s", e->op, peer, ssock_strerror(e->code));
}

static void print_listening(const ssock_addr *bound)
{
	char text[SSOCK_ADDRSTRLEN];
	ssock_addr_format(bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);
}

static int listen_udp(struct opts *o, const sigset_t *stop)
{
	ssock_udp_opts uo = {
		.bind = o->addr,
		.max_message = o->max_msg,
		.on_datagram = listen_datagram,
		.on_error = listen_error,
		.user = &o->hex,
	};
	ssock_udp *u;
	int rc = ssock_udp_new(&u, &uo);
	if (rc != 0) {
		cli_fail("cannot listen on %s (udp): %s", o->addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_listen, rc);
	}
	ssock_addr bound;
	ssock_udp_addr(u, &bound);
	print_listening(&bound);
	cli_wait_stop(stop);
	ssock_udp_free(u);
	return 0;
}

static int run_listen(struct opts *o)
{
	if (o->nargs < 1)
		return cli_usage_error(&cmd_listen, "listen needs ADDR");
	if (o->nargs > 1)
		return cli_usage_error(&cmd_listen, "unexpected argument '%s'", o->args[1]);
	o->addr = o->args[0];
	if (o->udp && o->framing != SSOCK_FRAMING_U32)
		return cli_usage_error(&cmd_listen,
				       "--framing is for TCP (with --udp a datagram is a message)");
	if (o->udp && o->max_msg > SSOCK_UDP_MAX_MESSAGE)
		return cli_usage_error(&cmd_listen, "--max-msg with --udp is at most 65507 bytes");
	cli_raise_fd_limit();
	sigset_t stop;
	cli_block_stop(&stop); /* before the loop thread starts: it inherits the mask */
	if (o->udp)
		return listen_udp(o, &stop);
	ssock_server_opts so = {
		.listen = o->addr,
		.framing = o->framing,
		.max_message = o->max_msg,
		.on_message = listen_message,
		.on_error = listen_error,
		.user = &o->hex,
	};
	ssock_server *srv;
	int rc = ssock_server_new(&srv, &so);
	if (rc != 0) {
		cli_fail("cannot listen on %s: %s", o->addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_listen, rc);
	}
	ssock_addr bound;
	ssock_server_addr(srv, 0, &bound);
	print_listening(&bound);
	cli_wait_stop(&stop);
	ssock_server_free(srv);
	return 0;
}

const struct command cmd_listen = {
	.name = "listen",
	.allowed = O_FRAMING | O_UDP | O_HEX | O_MAX_MSG,
	.synopsis =
		"listen ADDR [--framing u32|line|raw|tinyproto] [--udp] [--hex] [--max-msg BYTES]",
	.help = "Serves on ADDR and prints every message received as one line: printable ASCII\n"
		"as is, '\\' as '\\\\', any other byte as \\xNN (so a line is always one "
		"message).\n"
		"Prints 'listening on HOST:PORT' first; SIGINT or SIGTERM stop it with exit 0.\n"
		"Nothing is sent back.\n"
		"\n"
		"  --framing NAME     u32 (default), line, raw (each read is a message) or "
		"tinyproto\n"
		"  --udp              UDP: each datagram is a message\n"
		"  --hex              print each message as lowercase hex instead\n"
		"  --max-msg BYTES    largest message accepted (default 16 MiB; UDP: 65507)\n",
	.run = run_listen,
};

/* ---------------------------------------------------------------- send */

/* After a failure with tinyproto framing: whether it is because the peer
 * never sent its handshake. tinyproto sends nothing before it, so a send or
 * a reply may time out first: the connection's fate is awaited up to the
 * handshake's deadline. */
static bool no_handshake(ssock_client *cli, const struct opts *o, int rc)
{
	if (rc == SSOCK_EHANDSHAKE)
		return true;
	if (o->framing != SSOCK_FRAMING_TINYPROTO)
		return false;
	int64_t end = cli_now_ms() + CLI_HANDSHAKE_MS + 1000;
	for (;;) {
		int64_t left = end - cli_now_ms();
		ssock_event ev;
		if (left <= 0 || ssock_client_next_event(cli, &ev, (int)left) != 0)
			return false;
		ssock_event_type t = ev.type;
		int code = t == SSOCK_EVENT_ERROR || t == SSOCK_EVENT_DISCONNECT ? ev.code : 0;
		ssock_event_release(&ev);
		if (code == SSOCK_EHANDSHAKE)
			return true;
		if (t == SSOCK_EVENT_DISCONNECT)
			return false;
	}
}

/* Sends every argument over TCP, each followed by reading its reply when
 * asked (one at a time, so the half-duplex tinyproto framing works too). */
static int send_tcp_all(ssock_client *cli, const struct opts *o, const char *addr)
{
	for (int i = 1; i < o->nargs; i++) {
		int rc = ssock_client_send_timeout(cli, o->args[i], strlen(o->args[i]), o->wait_ms);
		if (rc != 0 && no_handshake(cli, o, rc))
			return cli_handshake_fail(addr);
		if (rc != 0)
			return cli_fail("cannot send message %d to %s: %s", i, addr,
					ssock_strerror(rc));
		if (!o->reply)
			continue;
		void *data;
		size_t len;
		rc = ssock_client_recv(cli, &data, &len, o->wait_ms);
		if (rc != 0 && rc != SSOCK_ENOTCONN && no_handshake(cli, o, rc))
			return cli_handshake_fail(addr);
		if (rc == SSOCK_ETIMEDOUT)
			return cli_fail("no reply from %s to message %d within %d ms", addr, i,
					o->wait_ms);
		if (rc == SSOCK_ENOTCONN)
			return cli_fail("connection to %s lost before the reply to message %d",
					addr, i);
		if (rc != 0)
			return cli_fail("no reply from %s to message %d: %s", addr, i,
					ssock_strerror(rc));
		print_message(data, len, o->hex);
		ssock_free(data);
	}
	int rc = ssock_client_flush(cli, o->wait_ms);
	if (rc != 0 && no_handshake(cli, o, rc))
		return cli_handshake_fail(addr);
	if (rc != 0)
		return cli_fail("cannot send to %s: %s", addr, ssock_strerror(rc));
	return 0;
}

/* Ends the connection gracefully: our FIN goes out after the data, and
 * we wait (bounded) for the peer's, so nothing sent is cut by a reset. */
static void close_gracefully(ssock_client *cli, int wait_ms)
{
	if (ssock_client_disconnect(cli) != 0)
		return;
	int64_t deadline = cli_now_ms() + wait_ms;
	for (;;) {
		int64_t left = deadline - cli_now_ms();
		ssock_event ev;
		if (left <= 0 || ssock_client_next_event(cli, &ev, (int)left) != 0)
			return;
		ssock_event_type t = ev.type;
		ssock_event_release(&ev);
		if (t == SSOCK_EVENT_DISCONNECT)
			return;
	}
}

static int send_tcp(const struct opts *o, const char *addr)
{
	ssock_client_opts co = {
		.connect = addr,
		.framing = o->framing,
		.max_message = o->max_msg,
		.connect_timeout_ms = CLI_HANDSHAKE_MS, /* also the handshake's deadline */
	};
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, &co);
	if (rc == 0)
		rc = ssock_client_connect(cli, -1);
	if (rc != 0) {
		ssock_client_free(cli);
		if (rc == SSOCK_EHANDSHAKE)
			return cli_handshake_fail(addr);
		cli_fail("cannot connect to %s: %s", addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_send, rc);
	}
	int code = send_tcp_all(cli, o, addr);
	if (code == 0)
		close_gracefully(cli, o->wait_ms);
	ssock_client_free(cli);
	return code;
}

static int send_udp_all(ssock_udp *u, const struct opts *o, const char *addr)
{
	for (int i = 1; i < o->nargs; i++) {
		int rc = ssock_udp_send_to_timeout(u, NULL, o->args[i], strlen(o->args[i]),
						   o->wait_ms);
		if (rc == SSOCK_ECONNREFUSED)
			return cli_fail("%s refused the datagrams (nobody listening?)", addr);
		if (rc != 0)
			return cli_fail("cannot send message %d to %s (udp): %s", i, addr,
					ssock_strerror(rc));
		if (!o->reply)
			continue;
		void *data;
		size_t len;
		rc = ssock_udp_recv(u, &data, &len, NULL, o->wait_ms);
		if (rc == SSOCK_ETIMEDOUT)
			return cli_fail("no reply from %s to message %d within %d ms", addr, i,
					o->wait_ms);
		if (rc == SSOCK_ECONNREFUSED)
			return cli_fail("%s refused the datagrams (nobody listening?)", addr);
		if (rc != 0)
			return cli_fail("no reply from %s to message %d: %s", addr, i,
					ssock_strerror(rc));
		print_message(data, len, o->hex);
		ssock_free(data);
	}
	return 0;
}

static int send_udp(const struct opts *o, const char *addr)
{
	ssock_udp_opts uo = {.connect = addr, .max_message = o->max_msg};
	ssock_udp *u;
	int rc = ssock_udp_new(&u, &uo);
	if (rc != 0) {
		cli_fail("cannot connect to %s (udp): %s", addr, ssock_strerror(rc));
		return cli_addr_exit(&cmd_send, rc);
	}
	int code = send_udp_all(u, o, addr);
	ssock_udp_free(u);
	return code;
}

static int run_send(struct opts *o)
{
	if (o->nargs < 2)
		return cli_usage_error(&cmd_send, "send needs ADDR and at least one MSG");
	if (o->wait_ms < 0)
		o->wait_ms = 1000;
	if (o->udp && o->framing != SSOCK_FRAMING_U32)
		return cli_usage_error(&cmd_send,
				       "--framing is for TCP (with --udp a datagram is a message)");
	if (o->udp && o->max_msg > SSOCK_UDP_MAX_MESSAGE)
		return cli_usage_error(&cmd_send, "--max-msg with --udp is at most 65507 bytes");
	return o->udp ? send_udp(o, o->args[0]) : send_tcp(o, o->args[0]);
}

const struct command cmd_send = {
	.name = "send",
	.allowed = O_FRAMING | O_UDP | O_REPLY | O_WAIT | O_HEX | O_MAX_MSG,
	.synopsis =
		"send ADDR MSG... [--framing u32|line|raw|tinyproto] [--udp] [--reply] [--wait MS] "
		"[--hex]",
	.help = "Connects to ADDR and sends each MSG argument as one message, in order. Exits 0\n"
		"once everything is sent (and, with --reply, every reply printed).\n"
		"\n"
		"  --framing NAME     u32 (default), line, raw (the bytes as given) or tinyproto\n"
		"  --udp              UDP: each MSG is one datagram\n"
		"  --reply            after each message wait for one reply and print it as one\n"
		"                     line (escaped as 'ssock listen' does); a missing reply is\n"
		"                     an error (exit 1)\n"
		"  --wait MS          how long to wait for each reply, or to get the data out\n"
		"                     (default 1000)\n"
		"  --hex              print replies as lowercase hex\n"
		"  --max-msg BYTES    largest reply accepted (default 16 MiB; UDP: 65507)\n",
	.run = run_send,
};
