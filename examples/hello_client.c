/*
 * The annotated tutorial console client (tclient.py): reads lines from stdin,
 * sends each to the server, prints the reply; leaves at end of input.
 *
 * What changes from the Python: c.recv(2048) returned whatever bytes had
 * arrived (part of a reply, or two replies run together); ssock_client_recv()
 * returns exactly one reply line, and waits for it with a timeout instead of
 * hanging forever on a server that never answers.
 */
#include <ssock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	if (rc != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
		ssock_client_free(cli);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	printf("Connected to %s\n", argv[1]);

	int prompt = isatty(STDIN_FILENO); /* no prompts when input is a file */
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	for (;;) {
		if (prompt)
			printf("Enter some data: "), fflush(stdout);
		if ((n = getline(&line, &cap, stdin)) < 0) {
			printf("Okay. Leaving. Bye\n");
			break;
		}
		line[strcspn(line, "\r\n")] = '\0'; /* one line framing sends one line */
		if (line[0] == '\0') {
			printf("Can't send empty string!\nCtrl-D to exit\n");
			continue;
		}
		void *reply;
		size_t len;
		rc = ssock_client_send(cli, line, strlen(line));
		if (rc == 0)
			rc = ssock_client_recv(cli, &reply, &len, 5000);
		if (rc == SSOCK_ENOTCONN) {
			printf("Server abended. Exiting\n");
			break;
		}
		if (rc != 0) {
			fprintf(stderr, "%s: %s\n", argv[0], ssock_strerror(rc));
			break;
		}
		printf("Got this string from server:\n%.*s\n\n", (int)len,
		       len ? (char *)reply : "");
		ssock_free(reply);
	}
	free(line);
	ssock_client_free(cli);
	return rc == 0 ? 0 : 1;
}
