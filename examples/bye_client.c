/*
 * The tutorial's echo client: sends "This is from Client", then for each
 * reply prints "From Server : ..." and sends the next line of stdin; after
 * sending `bye` it waits for the server to close the connection. End of input
 * counts as `bye`, so the server always hears that the client is leaving.
 *
 * What changes from the Python: recv(1024) could return half a reply or two
 * replies run together; ssock_client_recv() returns one whole line, with a
 * timeout, and SSOCK_ENOTCONN when the server has closed.
 */
#include <ssock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	ssock_client_opts o = {.connect = argv[1], .framing = SSOCK_FRAMING_LINE};
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, &o);
	if (rc == 0)
		rc = ssock_client_connect(cli, 5000);
	const char *out = "This is from Client";
	char *line = NULL;
	size_t cap = 0;
	while (rc == 0) {
		rc = ssock_client_send(cli, out, strlen(out));
		if (rc != 0 || strcmp(out, "bye") == 0)
			break;
		void *in;
		size_t len;
		rc = ssock_client_recv(cli, &in, &len, 5000);
		if (rc != 0)
			break;
		printf("From Server : %.*s\n", (int)len, len ? (char *)in : "");
		fflush(stdout);
		ssock_free(in);
		if (getline(&line, &cap, stdin) < 0) {
			out = "bye";
		} else {
			line[strcspn(line, "\r\n")] = '\0';
			out = line;
		}
	}
	/* After `bye` the server closes: wait for that (SSOCK_ENOTCONN). */
	if (rc == 0) {
		void *in;
		size_t len;
		while ((rc = ssock_client_recv(cli, &in, &len, 5000)) == 0)
			ssock_free(in); /* nothing more is expected */
		if (rc == SSOCK_ENOTCONN)
			rc = 0;
	}
	if (rc != 0)
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
	free(line);
	ssock_client_free(cli);
	return rc == 0 ? 0 : 1;
}
