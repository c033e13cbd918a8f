/*
 * The simplesockets echo server, polling-inbox style: the seed's
 *     while True:
 *         if Server.event.new_data:
 *             for client_socket, address, data in Server.return_recved_data(): ...
 * done right. What ssock does here that the original did not:
 *  - The loop sleeps in ssock_server_next_event() until an event comes; the
 *    original spun at 100% CPU checking a flag.
 *  - Events are taken one at a time from a bounded, thread-safe inbox, so none
 *    is lost between "copy the list" and "clear the list".
 *  - One event is one whole message (u32 framing): `one` and `two` sent back to
 *    back are two events, never `onetwo`, and nothing is cut at 2048 bytes.
 *  - A client that leaves is noticed: a DISCONNECT event comes (the original's
 *    per-client thread spun on empty reads and never called on_disconnect).
 *  - One I/O thread serves every connection: no thread per client.
 * The seed disconnects each client after one reply; here a client may send as
 * many messages as it likes and leaves when it is done.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	/* Every example server stops on SIGINT/SIGTERM. They are blocked before
	 * the server starts its I/O thread (which inherits the mask), so they wait
	 * pending until this thread takes them: no handler interrupts anything. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_server_opts o = {.listen = argv[1]}; /* no on_message: inbox mode */
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

	const struct timespec no_wait = {0};
	while (sigtimedwait(&stop, NULL, &no_wait) < 0) {
		/* Returns as soon as an event arrives; the 200 ms only bound how
		 * long a Ctrl-C waits to be noticed while nothing happens. */
		ssock_event ev;
		rc = ssock_server_next_event(srv, &ev, 200);
		if (rc == SSOCK_ETIMEDOUT)
			continue;
		if (rc != 0) {
			fprintf(stderr, "%s: %s\n", argv[0], ssock_strerror(rc));
			break;
		}
		char who[SSOCK_ADDRSTRLEN] = "";
		ssock_addr_format(&ev.peer, who, sizeof who);
		if (ev.type == SSOCK_EVENT_CONNECT) {
			printf("%s connected\n", who);
		} else if (ev.type == SSOCK_EVENT_MESSAGE) {
			printf("%s sent %zu bytes\n", who, ev.len);
			/* Any thread may send, by connection id. */
			int err = ssock_server_send(srv, ev.conn, ev.data, ev.len);
			if (err != 0)
				fprintf(stderr, "send to %s: %s\n", who, ssock_strerror(err));
		} else if (ev.type == SSOCK_EVENT_DISCONNECT) {
			printf("%s disconnected (%s)\n", who,
			       ev.code ? ssock_strerror(ev.code) : "closed by the client");
		} else if (ev.type == SSOCK_EVENT_ERROR) {
			fprintf(stderr, "%s: %s: %s\n", who, ev.op, ssock_strerror(ev.code));
		}
		ssock_event_release(&ev); /* frees the message */
	}
	ssock_server_free(srv);
	return rc == 0 || rc == SSOCK_ETIMEDOUT ? 0 : 1;
}
