/*
 * The tutorial's UDP echo client: sends "Hello server, from UDP client!",
 * then for each reply prints "Message from Server: ..." and sends the next
 * line of stdin; it stops after sending `bye` (end of input counts as `bye`).
 *
 * What changes from the Python: its recvfrom() blocked forever when the
 * server was not running (the "[!] Server not running" branch could never
 * run). Here the socket is connected to the server, so the kernel's "port
 * unreachable" comes back as SSOCK_ECONNREFUSED, and a reply that never comes
 * (UDP may lose it) is a timeout, not a hang. Each reply is one datagram,
 * whole, up to 65,507 bytes, not cut at 1024.
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
	ssock_udp_opts o = {.connect = argv[1]}; /* no on_datagram: inbox mode */
	ssock_udp *udp = NULL;
	int rc = ssock_udp_new(&udp, &o);
	const char *out = "Hello server, from UDP client!";
	char *line = NULL;
	size_t cap = 0;
	while (rc == 0) {
		rc = ssock_udp_send(udp, out, strlen(out));
		if (rc != 0 || strcmp(out, "bye") == 0)
			break;
		void *in;
		size_t len;
		rc = ssock_udp_recv(udp, &in, &len, NULL, 5000);
		if (rc != 0)
			break;
		printf("Message from Server: %.*s\n", (int)len, len ? (char *)in : "");
		fflush(stdout);
		ssock_free(in);
		if (getline(&line, &cap, stdin) < 0) {
			out = "bye";
		} else {
			line[strcspn(line, "\r\n")] = '\0';
			out = line;
		}
	}
	if (rc != 0)
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
	free(line);
	ssock_udp_free(udp);
	return rc == 0 ? 0 : 1;
}
