/* A client that sends two messages back to back and prints both replies:
 * TCP merges bytes, ssock keeps the messages apart. */
#include <ssock.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	ssock_client_opts o = {.connect = argc > 1 ? argv[1] : "127.0.0.1:9000"};
	ssock_client *cli;
	int rc = ssock_client_new(&cli, &o);
	if (rc == 0)
		rc = ssock_client_connect(cli, 5000);
	if (rc == 0)
		rc = ssock_client_send(cli, "one", 3);
	if (rc == 0)
		rc = ssock_client_send(cli, "two", 3);
	for (int i = 0; rc == 0 && i < 2; i++) {
		void *msg;
		size_t len;
		rc = ssock_client_recv(cli, &msg, &len, 5000);
		if (rc == 0) {
			printf("reply %d: %.*s\n", i + 1, (int)len, (char *)msg);
			ssock_free(msg);
		}
	}
	if (rc != 0)
		fprintf(stderr, "echo_client: %s\n", ssock_strerror(rc));
	ssock_client_free(cli);
	return rc == 0 ? 0 : 1;
}
