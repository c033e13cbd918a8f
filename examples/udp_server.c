/*
 * The tutorial's UDP echo server: prints each datagram with its sender and
 * sends it back; a client says `bye` when it leaves (no reply to that: its
 * socket is about to go). One socket serves any number of clients.
 *
 * What changes from the Python: recvfrom(1024) silently cut longer datagrams
 * to 1024 bytes. ssock delivers every datagram whole, up to 65,507 bytes (the
 * UDP limit over IPv4); one above max_message would be refused and reported,
 * never delivered cut. Datagrams come to a callback on ssock's I/O thread.
 */
#include <signal.h>
#include <ssock.h>
#include <stdio.h>
#include <string.h>

/* Prints a peer's bytes with each one outside printable ASCII as '?': a
 * peer must not be able to send escape sequences to this terminal. */
static void show(const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
}

static void on_datagram(ssock_udp *udp, const ssock_addr *from, const void *data, size_t len,
			void *user)
{
	char addr[SSOCK_ADDRSTRLEN];
	(void)user;
	ssock_addr_format(from, addr, sizeof addr);
	if (len == 3 && memcmp(data, "bye", 3) == 0) {
		printf("%s said bye\n", addr);
		return;
	}
	printf("Message from %s: ", addr);
	show(data, len);
	putchar('\n');
	int rc = ssock_udp_send_to(udp, from, data, len); /* never blocks, never queues */
	if (rc != 0)
		fprintf(stderr, "send to %s: %s\n", addr, ssock_strerror(rc));
}

static void on_error(const ssock_error_info *e, void *user)
{
	char addr[SSOCK_ADDRSTRLEN] = "";
	(void)user;
	ssock_addr_format(&e->peer, addr, sizeof addr);
	fprintf(stderr, "%s: %s: %s\n", addr, e->op, ssock_strerror(e->code));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each line at once, also into a pipe */
	/* Every example server stops on SIGINT/SIGTERM. Blocked before the I/O
	 * thread starts, which inherits the mask, they are taken only by
	 * sigwait() below. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	ssock_udp_opts o = {.bind = argv[1], .on_datagram = on_datagram, .on_error = on_error};
	ssock_udp *udp;
	int rc = ssock_udp_new(&udp, &o);
	if (rc != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
		return 1;
	}
	ssock_addr bound;
	char text[SSOCK_ADDRSTRLEN];
	ssock_udp_addr(udp, &bound);
	ssock_addr_format(&bound, text, sizeof text);
	printf("listening on %s\n", text);

	int sig;
	sigwait(&stop, &sig);
	ssock_udp_free(udp);
	return 0;
}
