/*
 * The simplesockets client, polling-inbox style: connect(), autorecv(),
 * send_data(b'Test'), then `while True: if Client.event.new_data:` done right.
 *  - Receiving runs in the background from the start (no autorecv() toggle);
 *    ssock_client_next_event() sleeps until something arrives or the timeout
 *    passes, where the original busy-waited on a flag.
 *  - Each event is one whole message (u32 framing): the messages below are
 *    sent back to back and come back as that many replies, never merged, and
 *    a long one is not cut at recv_buffer=2048.
 *  - A server that goes away is a DISCONNECT event, not a silent hang.
 * Usage: simplesockets_client_inbox HOST:PORT [MESSAGE...] (default: Test).
 */
#include <ssock.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s HOST:PORT [MESSAGE...]\n", argv[0]);
		return 2;
	}
	char *test[] = {"Test"};
	char **msgs = argc > 2 ? argv + 2 : test;
	int n = argc > 2 ? argc - 2 : 1;

	ssock_client_opts o = {.connect = argv[1]}; /* no on_message: inbox mode */
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, &o);
	if (rc == 0)
		rc = ssock_client_connect(cli, 5000);
	for (int i = 0; rc == 0 && i < n; i++)
		rc = ssock_client_send(cli, msgs[i], strlen(msgs[i]));

	for (int got = 0; rc == 0 && got < n;) {
		ssock_event ev;
		rc = ssock_client_next_event(cli, &ev, 5000); /* SSOCK_ETIMEDOUT after 5 s */
		if (rc != 0)
			break;
		if (ev.type == SSOCK_EVENT_MESSAGE)
			printf("reply %d (%zu bytes): %.*s\n", ++got, ev.len, (int)ev.len,
			       ev.len ? (char *)ev.data : "");
		else if (ev.type == SSOCK_EVENT_DISCONNECT)
			rc = ev.code ? ev.code : SSOCK_ENOTCONN; /* the server left */
		else if (ev.type == SSOCK_EVENT_ERROR)
			rc = ev.code;
		ssock_event_release(&ev); /* CONNECT events need nothing */
	}
	if (rc != 0)
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
	ssock_client_free(cli); /* every reply is in, so nothing queued is lost */
	return rc == 0 ? 0 : 1;
}
