/*
 * The tutorial greeter's client: connects, prints what the server says, and
 * exits when the server closes the connection.
 *
 * What changes from the Python: sock.recv(1024) returned whatever had arrived
 * so far, which may be part of the greeting. ssock_client_recv() returns one
 * whole line, and SSOCK_ENOTCONN once the server has closed, so "the server
 * is done" is an answer, not a guess; a silent server is a timeout, not a
 * hang.
 */
#include <ssock.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	ssock_client_opts o = {.connect = argv[1], .framing = SSOCK_FRAMING_LINE};
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, &o);
	/* Start connecting without waiting: the greeting (or why the connection
	 * failed) is what ssock_client_recv() waits for below. */
	if (rc == 0)
		rc = ssock_client_connect(cli, 0);
	int got = 0;
	while (rc == 0) {
		void *msg;
		size_t len;
		rc = ssock_client_recv(cli, &msg, &len, 5000);
		if (rc == 0) {
			printf("%.*s\n", (int)len, len ? (char *)msg : "");
			ssock_free(msg);
			got++;
		}
	}
	if (rc == SSOCK_ENOTCONN && got > 0) /* the server closed after greeting: done */
		rc = 0;
	else
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
	ssock_client_free(cli);
	return rc == 0 ? 0 : 1;
}
