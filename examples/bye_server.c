/*
 * The tutorial's multi-client echo server: echoes every line back to its
 * sender; a client that sends `bye` is disconnected. Line framing, so
 * `nc HOST PORT` works as a client too.
 *
 * What changes from the Python:
 *  - It started a thread per client (ClientThread); here one I/O thread serves
 *    every client, and the callbacks below are all the per-client code.
 *  - It compared each recv(2048) with 'bye', so `bye` arriving together with
 *    another line (or split in two) was missed; here each on_message call is
 *    exactly one line.
 *  - A client that vanishes without `bye` made its thread spin on empty
 *    reads; here it is an on_disconnect call like any other.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>
#include <string.h>

static const char *who(ssock_conn *c, char *buf)
{
	ssock_addr_format(ssock_conn_peer(c), buf, SSOCK_ADDRSTRLEN);
	return buf;
}

static void on_connect(ssock_conn *c, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("New connection added: %s\n", who(c, addr));
}

/* Prints a peer's bytes with each one outside printable ASCII as '?': a
 * peer must not be able to send escape sequences to this terminal. */
static void show(const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
}

static void on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	if (len == 3 && memcmp(data, "bye", 3) == 0) {
		ssock_conn_close(c); /* graceful: on_disconnect follows */
		return;
	}
	printf("From client %s: ", who(c, addr));
	show(data, len);
	putchar('\n');
	int rc = ssock_conn_send(c, data, len);
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", addr, ssock_strerror(rc));
}

/* Called whoever closed: the client with `bye`, or by leaving. */
static void on_disconnect(ssock_conn *c, int reason, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)reason, (void)user;
	printf("Client at %s disconnected...\n", who(c, addr));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
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
			       .framing = SSOCK_FRAMING_LINE,
			       .on_connect = on_connect,
			       .on_message = on_message,
			       .on_disconnect = on_disconnect};
	ssock_server *srv;
	int rc = ssock_server_new(&srv, &o);
	if (rc != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
		return 1;
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_server_addr(srv, 0, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);

	int sig;
	sigwait(&stop, &sig);
	ssock_server_free(srv);
	return 0;
}
