/*
 * The simplesockets echo server, callback style: setup(on_connect=...,
 * on_receive=..., on_disconnect=...). What ssock does that the original did not:
 *  - on_message gets one whole message (u32 framing): `one` and `two` sent back
 *    to back are two calls, never `onetwo`, and nothing is cut at 2048 bytes.
 *  - on_disconnect is really called when a client leaves (the original's
 *    thread spun on empty reads forever and its client table never shrank).
 *  - All callbacks run on one I/O thread, however many clients: no thread per
 *    client, no locks needed for state only the callbacks touch.
 * Callbacks must not block; ssock_conn_send() only queues the reply.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>

static const char *who(ssock_conn *c, char *buf)
{
	ssock_addr_format(ssock_conn_peer(c), buf, SSOCK_ADDRSTRLEN);
	return buf;
}

static void on_connect(ssock_conn *c, void *user)
{
	char buf[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s connected\n", who(c, buf));
}

static void on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	char buf[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s sent %zu bytes\n", who(c, buf), len);
	int rc = ssock_conn_send(c, data, len);
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", buf, ssock_strerror(rc));
}

static void on_disconnect(ssock_conn *c, int reason, void *user)
{
	char buf[SSOCK_ADDRSTRLEN];
	(void)user;
	printf("%s disconnected (%s)\n", who(c, buf),
	       reason ? ssock_strerror(reason) : "closed by the client");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	/* Every example server stops on SIGINT/SIGTERM. They are blocked before
	 * the server starts its I/O thread (which inherits the mask), so only
	 * sigwait() below takes them: no handler interrupts anything. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_server_opts o = {.listen = argv[1],
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
	sigwait(&stop, &sig); /* the I/O thread does all the work meanwhile */
	ssock_server_free(srv);
	return 0;
}
