/*
 * A tinyproto-style echo server: per-connection hooks (tinyproto's conn_init,
 * transmission_received, conn_shutdown), a connection limit, and several
 * listen addresses (add_addr), IPv4 and IPv6. It prints the number of active
 * connections as they come and go.
 * Usage: tinyproto_server HOST:PORT [MORE_ADDRESSES...], e.g.
 *        tinyproto_server 127.0.0.1:9000 '[::1]:9000'
 *
 * What changes from the Python:
 *  - No thread per connection polling 33 times a second: the hooks run on one
 *    I/O thread when something happens, so `active` needs no lock.
 *  - Every closed connection's socket is closed (tinyproto leaked them), and
 *    conn_shutdown (on_disconnect) runs for each, so `active` stays right.
 *  - Reaching the limit refuses the extra connection (reported to on_error)
 *    while the server and the others go on; in tinyproto it killed the server.
 *  - A peer announcing a 4 GB message is refused (answered 0x00) before
 *    anything is allocated (max_message, 16 MiB by default); IPv6 listen
 *    addresses work.
 * It speaks the Python tinyproto wire format (SSOCK_FRAMING_TINYPROTO: a
 * handshake byte, then per message a size, an accept byte and the payload),
 * so Python tinyproto clients can connect, and so can
 * `ssock chat --framing tinyproto HOST:PORT`.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>

#define MAX_CONNS 2 /* small, so that the test can reach it */

static int active; /* touched only by the hooks, all on the I/O thread */

static const char *who(const ssock_addr *a, char *buf)
{
	ssock_addr_format(a, buf, SSOCK_ADDRSTRLEN);
	return buf;
}

static void conn_init(ssock_conn *c, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s connected, %d active\n", who(ssock_conn_peer(c), addr), ++active);
}

static void transmission_received(ssock_conn *c, const void *data, size_t len, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s sent %zu bytes\n", who(ssock_conn_peer(c), addr), len);
	int rc = ssock_conn_send(c, data, len);
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", addr, ssock_strerror(rc));
}

static void conn_shutdown(ssock_conn *c, int reason, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s disconnected (%s), %d active\n", who(ssock_conn_peer(c), addr),
	       reason ? ssock_strerror(reason) : "closed by the client", --active);
}

/* Errors not tied to an open connection, e.g. one refused over the limit. */
static void on_error(const ssock_error_info *e, void *user)
{
	char addr[SSOCK_ADDRSTRLEN] = "";
	(void)user;
	printf("%s: %s: %s\n", who(&e->peer, addr), e->op, ssock_strerror(e->code));
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s HOST:PORT [MORE_ADDRESSES...]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	/* Every example server stops on SIGINT/SIGTERM. Blocked before the I/O
	 * thread starts, which inherits the mask, they are taken only by
	 * sigwait() below. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_server_opts o = {.listen = argv[1],
			       .framing = SSOCK_FRAMING_TINYPROTO,
			       .max_conns = MAX_CONNS,
			       .on_connect = conn_init,
			       .on_message = transmission_received,
			       .on_disconnect = conn_shutdown,
			       .on_error = on_error};
	ssock_server *srv = NULL;
	const char *where = argv[1];
	int rc = ssock_server_new(&srv, &o);
	for (int i = 2; rc >= 0 && i < argc; i++) /* tinyproto's add_addr */
		rc = ssock_server_listen(srv, where = argv[i]);
	if (rc < 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], where, ssock_strerror(rc));
		ssock_server_free(srv);
		return 1;
	}
	for (int i = 0; i < argc - 1; i++) {
		ssock_addr bound;
		char text[SSOCK_ADDRSTRLEN];
		ssock_server_addr(srv, i, &bound);
		printf("listening on %s\n", who(&bound, text));
	}

	int sig;
	sigwait(&stop, &sig);
	ssock_server_free(srv);
	return 0;
}
