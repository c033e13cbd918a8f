/*
 * The simplesockets client, callback style: setup(on_receive=...,
 * on_disconnect=...). The callbacks run on the client's I/O thread; the main
 * thread waits on a condition variable, not on a flag in a busy loop.
 *  - on_message gets one whole message (u32 framing): the messages below are
 *    sent back to back and come back as that many calls, never merged.
 *  - on_disconnect really runs when the server goes away.
 * Usage: simplesockets_client_callbacks HOST:PORT [MESSAGE...] (default: Test).
 */
#include <pthread.h>
#include <ssock.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct replies {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int got;  /* replies printed so far */
	int lost; /* why the connection ended, 0 while it is up */
};

static void on_message(ssock_conn *c, const void *data, size_t len, void *user)
{
	struct replies *r = user;
	(void)c;
	pthread_mutex_lock(&r->mu);
	printf("reply %d (%zu bytes): %.*s\n", ++r->got, len, (int)len,
	       len ? (const char *)data : "");
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void on_disconnect(ssock_conn *c, int reason, void *user)
{
	struct replies *r = user;
	(void)c;
	pthread_mutex_lock(&r->mu);
	r->lost = reason ? reason : SSOCK_ENOTCONN;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s HOST:PORT [MESSAGE...]\n", argv[0]);
		return 2;
	}
	char *test[] = {"Test"};
	char **msgs = argc > 2 ? argv + 2 : test;
	int n = argc > 2 ? argc - 2 : 1;

	struct replies r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	ssock_client_opts o = {.connect = argv[1],
			       .on_message = on_message,
			       .on_disconnect = on_disconnect,
			       .user = &r};
	ssock_client *cli = NULL;
	int rc = ssock_client_new(&cli, &o);
	if (rc == 0)
		rc = ssock_client_connect(cli, 5000);
	for (int i = 0; rc == 0 && i < n; i++)
		rc = ssock_client_send(cli, msgs[i], strlen(msgs[i]));

	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&r.mu);
	while (rc == 0 && r.got < n && !r.lost)
		if (pthread_cond_timedwait(&r.cv, &r.mu, &deadline) != 0)
			rc = SSOCK_ETIMEDOUT;
	if (rc == 0 && r.got < n)
		rc = r.lost; /* the server left before answering everything */
	pthread_mutex_unlock(&r.mu);

	if (rc != 0)
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], ssock_strerror(rc));
	ssock_client_free(cli); /* joins the I/O thread: no callback runs after */
	return rc == 0 ? 0 : 1;
}
