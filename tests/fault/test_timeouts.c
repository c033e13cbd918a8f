/*
 * Timeouts and keepalive, each an option with a test (issue 5, part 5).
 * Already elsewhere: connect_timeout_ms (test_client.connect_timeout), the
 * server's read_timeout_ms on u32 and line frames
 * (test_fault.fault_stalled_mid_frame_read_timeout, and
 * test_regress.regress_tinyproto_stalled_peer_does_not_block_others). Here:
 * idle_timeout_ms on both sides, read_timeout_ms on the client side, and
 * keepalive_s as the sockets themselves report it (found through
 * /proc/self/fd and checked with getsockopt, no API needed).
 */
#include "fault.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

static int port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return -1;
}

/* The fd of this process's TCP socket whose peer is on peer_port (and
 * whose local port is local_port unless that is 0), or -1. */
static int find_socket(int peer_port, int local_port)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int found = -1;
	struct dirent *e;
	while (found < 0 && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		int type = 0;
		socklen_t tl = sizeof type;
		if (e->d_name[0] == '.' || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
		    type != SOCK_STREAM)
			continue;
		struct sockaddr_storage peer, local;
		socklen_t pl = sizeof peer, ll = sizeof local;
		if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
		    getsockname(fd, (struct sockaddr *)&local, &ll) != 0)
			continue;
		if (port_of(&peer) == peer_port &&
		    (local_port == 0 || port_of(&local) == local_port))
			found = fd;
	}
	closedir(d);
	return found;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	return getsockname(fd, (struct sockaddr *)&ss, &l) == 0 ? port_of(&ss) : -1;
}

struct ka {
	int on, idle, intvl, cnt;
};

static struct ka keepalive_of(int fd)
{
	struct ka k = {-1, -1, -1, -1};
	socklen_t l = sizeof(int);
	getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &k.on, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k.idle, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k.intvl, &l);
	l = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k.cnt, &l);
	return k;
}

TEST(keepalive_on_accepted_sockets)
{
	const int settings[] = {0, 7, 30};
	for (int i = 0; i < 3; i++) {
		fx f;
		ssock_server_opts o = {.keepalive_s = settings[i]};
		CHECK(fx_start(&f, &o));
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		/* the server's end of this connection: its peer is our port */
		int srv_fd = find_socket(local_port(fd), f.port);
		CHECK(srv_fd >= 0);
		struct ka k = keepalive_of(srv_fd);
		if (settings[i] == 0) {
			CHECK_INT(k.on, ==, 0);
		} else {
			CHECK_INT(k.on, ==, 1);
			CHECK_INT(k.idle, ==, settings[i]);
			CHECK_INT(k.intvl, ==, settings[i] < 10 ? settings[i] : 10);
			CHECK_INT(k.cnt, ==, 3);
		}
		close(fd);
		CHECK_INT(fx_reason(&f, id, T), ==, 0);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
		CHECK(fx_finish(&f));
	}
}

TEST(keepalive_on_client_socket)
{
	int lport;
	int lfd = np_listen(8, &lport);
	CHECK(lfd >= 0);
	char addr[64];
	np_addr_text(addr, sizeof addr, lport, false);
	const int settings[] = {0, 5};
	for (int i = 0; i < 2; i++) {
		ssock_client_opts co = {.connect = addr, .keepalive_s = settings[i]};
		ssock_client *cli;
		CHECK_OK(ssock_client_new(&cli, &co));
		CHECK_OK(ssock_client_connect(cli, T));
		int acc = accept(lfd, NULL, NULL);
		CHECK(acc >= 0);
		/* the client's socket: its peer is the listener, and it is not
		 * the one we accepted (whose local port is the listener's) */
		int cfd = find_socket(lport, 0);
		CHECK(cfd >= 0 && cfd != acc);
		struct ka k = keepalive_of(cfd);
		CHECK_INT(k.on, ==, settings[i] ? 1 : 0);
		if (settings[i])
			CHECK_INT(k.idle, ==, settings[i]);
		CHECK_OK(ssock_client_free(cli));
		close(acc);
	}
	close(lfd);
}

TEST(idle_timeout_server)
{
	fx f;
	ssock_server_opts o = {.idle_timeout_ms = 300};
	CHECK(fx_start(&f, &o));
	/* the good peer talks every 100 ms; a silent one is closed */
	uint64_t id;
	int fd = fx_peer(&f, &id);
	CHECK(fd >= 0);
	/* It talks until the silent one has been closed (as its EOF shows),
	 * which needs the idle timeout to pass for it at least three times
	 * over the good one's pace. */
	int64_t t0 = test_now_ms();
	int eof;
	do
		CHECK(fx_echo(&f, f.good, "busy"));
	while ((eof = np_wait_eof(fd, 100)) != 0 && test_now_ms() - t0 < T);
	CHECK_INT(eof, ==, 0);
	CHECK_INT(test_now_ms() - t0, >=, 250);
	CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_EIDLE);
	CHECK(fx_logged(&f, id, SSOCK_EIDLE, "idle"));
	close(fd);
	/* the good peer was never idle that long: still connected */
	CHECK_INT(fx_reason(&f, f.good_id, 0), ==, 1);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	CHECK(fx_finish(&f));
}

TEST(idle_timeout_client)
{
	int lport;
	int lfd = np_listen(8, &lport);
	CHECK(lfd >= 0);
	char addr[64];
	np_addr_text(addr, sizeof addr, lport, false);
	ssock_client_opts co = {.connect = addr, .idle_timeout_ms = 300};
	ssock_client *cli;
	CHECK_OK(ssock_client_new(&cli, &co));
	int64_t t0 = test_now_ms();
	CHECK_OK(ssock_client_connect(cli, T));
	int acc = accept(lfd, NULL, NULL);
	CHECK(acc >= 0);
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_EIDLE);
	ssock_event_release(&ev);
	CHECK_INT(test_now_ms() - t0, >=, 250);
	CHECK_INT(np_wait_eof(acc, T), ==, 0); /* the server side sees it go */
	CHECK_INT(ssock_client_state_get(cli), ==, SSOCK_STATE_DISCONNECTED);
	CHECK_OK(ssock_client_free(cli));
	close(acc);
	close(lfd);
}

TEST(read_timeout_client)
{
	int lport;
	int lfd = np_listen(8, &lport);
	CHECK(lfd >= 0);
	char addr[64];
	np_addr_text(addr, sizeof addr, lport, false);
	ssock_client_opts co = {.connect = addr, .read_timeout_ms = 300};
	ssock_client *cli;
	CHECK_OK(ssock_client_new(&cli, &co));
	CHECK_OK(ssock_client_connect(cli, T));
	int acc = accept(lfd, NULL, NULL);
	CHECK(acc >= 0);
	/* whole messages, slowly: not a stall */
	for (int i = 0; i < 4; i++) {
		CHECK_INT(np_send_u32(acc, "slow", 4), ==, 0);
		void *data;
		size_t len;
		CHECK_OK(ssock_client_recv(cli, &data, &len, T));
		CHECK(len == 4 && memcmp(data, "slow", 4) == 0);
		ssock_free(data);
		/* 150 ms apart: 600 in all, twice the read timeout. Meanwhile
		 * the client sends nothing. */
		CHECK(np_quiet(acc, 150));
	}
	/* half a message, then nothing */
	int64_t t0 = test_now_ms();
	CHECK_INT(np_write(acc,
			   "\0\0\0\x10"
			   "half",
			   8),
		  ==, 0);
	ssock_event ev;
	CHECK_OK(np_client_wait(cli, SSOCK_EVENT_DISCONNECT, &ev, T));
	CHECK_INT(ev.code, ==, SSOCK_ESTALLED);
	ssock_event_release(&ev);
	CHECK_INT(test_now_ms() - t0, >=, 250);
	ssock_error_info e;
	CHECK_INT(ssock_client_errors(cli, &e, 1, 0), >=, 1);
	CHECK_INT(e.code, ==, SSOCK_ESTALLED);
	CHECK_INT(np_wait_eof(acc, T), ==, 0);
	CHECK_OK(ssock_client_free(cli));
	close(acc);
	close(lfd);
}
