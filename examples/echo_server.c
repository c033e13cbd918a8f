/* An echo server in callback style: every message comes back whole.
 * It prints the address it listens on and stops on Ctrl-C or SIGTERM. */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>

static void echo(ssock_conn *c, const void *data, size_t len, void *user)
{
	(void)user;
	ssock_conn_send(c, data, len); /* one message in, the same one out */
}

int main(int argc, char **argv)
{
	/* Blocked before the I/O thread starts (it inherits the mask), so
	 * only sigwait() below takes them. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_server_opts o = {.listen = argc > 1 ? argv[1] : "127.0.0.1:9000", .on_message = echo};
	ssock_server *srv;
	int rc = ssock_server_new(&srv, &o);
	if (rc != 0) {
		fprintf(stderr, "echo_server: %s\n", ssock_strerror(rc));
		return 1;
	}
	ssock_addr bound; /* the real port, when port 0 was asked for */
	char text[SSOCK_ADDRSTRLEN];
	ssock_server_addr(srv, 0, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);
	return ssock_server_free(srv);
}
