/*
 * The annotated tutorial server (tserver.py): for each message it answers
 *     Hello, ADDR. I got this from you: '...'
 * Line framing, so `nc HOST PORT` is a fine client, as is hello_client.
 *
 * What changes from the Python:
 *  - Its author served one connection at a time "for clarity", and warned
 *    that a real server must handle many and mind message boundaries. Both
 *    are done here at no cost in clarity: one I/O thread serves every
 *    connection at once (a second client is not left waiting in the backlog
 *    until the first leaves), and each on_message call is one whole line,
 *    however TCP split or merged the bytes. No need to serialize anything.
 *  - socket(), setsockopt(SO_REUSEADDR), bind(), listen() and the accept loop
 *    are ssock_server_new(); recv() == b"" is the on_disconnect callback.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>

static void on_connect(ssock_conn *c, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	ssock_addr_format(ssock_conn_peer(c), addr, sizeof addr);
	printf("Connection received from %s\n", addr);
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
	char addr[SSOCK_ADDRSTRLEN], reply[1024];
	(void)user;
	ssock_addr_format(ssock_conn_peer(c), addr, sizeof addr);
	printf("Received '");
	show(data, len);
	printf("' from %s\n", addr);
	/* snprintf cuts a very long line short rather than overflow. */
	int n = snprintf(reply, sizeof reply, "Hello, %s. I got this from you: '%.*s'", addr,
			 (int)len, len ? (const char *)data : "");
	int rc = ssock_conn_send(c, reply, n < (int)sizeof reply ? (size_t)n : sizeof reply - 1);
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", addr, ssock_strerror(rc));
}

static void on_disconnect(ssock_conn *c, int reason, void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	ssock_addr_format(ssock_conn_peer(c), addr, sizeof addr);
	if (reason == 0)
		printf("End of file from %s\n", addr);
	else
		printf("Lost %s: %s\n", addr, ssock_strerror(reason));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	/* Every example server stops on SIGINT/SIGTERM (Ctrl-C, as the Python
	 * says). Blocked before the I/O thread starts, which inherits the mask,
	 * they are taken only by sigwait() below. */
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
