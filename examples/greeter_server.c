/*
 * The tutorial greeter: to each new connection it sends
 *     Thank you for connecting
 * and closes it. Line framing, so `nc HOST PORT` shows the greeting.
 *
 * What changes from the Python: it called clientsocket.close() right after
 * building the message (never sending it), and a close() with the message
 * still in flight can turn into a reset that loses it. ssock_conn_close() is
 * graceful: the queued greeting is sent in full, then the write side is shut,
 * and the socket is closed once the client has seen it. A client that never
 * reads cannot hold the server up: one I/O thread handles every connection.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>
#include <string.h>

static void on_connect(ssock_conn *c, void *user)
{
	static const char greeting[] = "Thank you for connecting"; /* line framing adds \n */
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	ssock_addr_format(ssock_conn_peer(c), addr, sizeof addr);
	printf("Got a connection from %s\n", addr);
	int rc = ssock_conn_send(c, greeting, strlen(greeting));
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", addr, ssock_strerror(rc));
	ssock_conn_close(c); /* after the greeting, not instead of it */
}

/* Callback mode needs on_message; the greeter has nothing to say to replies. */
static void on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)c, (void)data, (void)len, (void)user;
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
			       .on_message = on_message};
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
