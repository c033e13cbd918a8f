/* An echo server in callback style: every message comes back whole. */
#include <ssock.h>
#include <stdio.h>

static void echo(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len); /* one message in, the same one out */
}

int main(int argc, char **argv)
{
	ssock_server_opts o = {.listen = argc > 1 ? argv[1] : "127.0.0.1:9000", .on_message = echo};
	ssock_server *srv;
	int rc = ssock_server_new(&srv, &o);
	if (rc != 0) {
		fprintf(stderr, "echo_server: %s\n", ssock_strerror(rc));
		return 1;
	}
	puts("serving; press Enter to stop");
	getchar();
	return ssock_server_close(srv);
}
