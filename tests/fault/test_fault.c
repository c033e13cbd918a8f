/*
 * Hostile peers (issue 5, part 2). Each case runs against the fixture of
 * fault.h and asserts, explicitly:
 *   - the bad connection is closed, with the reason its disconnect event
 *     carries and (where the library reports it) an error-log entry naming
 *     that connection, the code and the operation;
 *   - the server stays up and the other connections keep working: the good
 *     peer, connected through the whole fault, still gets its echo, and a
 *     newcomer is served;
 *   - the server's open fds and heap return to their baseline, and after
 *     ssock_server_free() to what they were before the server existed.
 * Raw peers are plain blocking sockets (net_helpers.h), so what goes on the
 * wire is exactly what the test writes.
 */
#include "fault.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T TEST_TIMEOUT_MS

/* Writes as much of buf as the peer takes, non-blocking, until it is all
 * written, the peer pushes back for push_ms, or the connection breaks.
 * Returns the bytes written. */
static size_t write_until_pushback(int fd, const void *buf, size_t len, int push_ms)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, push_ms) == 1)
				continue;
		}
		break;
	}
	fcntl(fd, F_SETFL, fl);
	return off;
}

/* ------------------------------------------------------------- lengths */

TEST(fault_length_above_max_message)
{
	fx f;
	ssock_server_opts o = {.max_message = 1024};
	CHECK(fx_start(&f, &o));
	static const uint8_t headers[][8] = {
		{0, 0, 0x04, 0x01, 'a', 'b', 'c', 'd'}, /* max + 1 */
		{0x01, 0, 0, 0},                        /* 16 MiB */
		{0x7f, 0xff, 0xff, 0xff},
		{0xff, 0xff, 0xff, 0xff}, /* 4 GiB - 1 */
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		CHECK_INT(np_write(fd, headers[i], i == 0 ? 8 : 4), ==, 0);
		/* closed at once, not after waiting for the payload */
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_EMSGSIZE);
		CHECK(fx_logged(&f, id, SSOCK_EMSGSIZE, "frame"));
		close(fd);
		/* refused before any buffer was sized from it */
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	}
	CHECK(fx_finish(&f));
}

TEST(fault_truncated_header_then_eof)
{
	fx f;
	ssock_server_opts o = {0};
	CHECK(fx_start(&f, &o));
	for (size_t cut = 1; cut < 4; cut++) {
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		int m0 = fx_messages(&f);
		CHECK_INT(np_write(fd, "\0\0\0\5hello", cut), ==, 0);
		shutdown(fd, SHUT_WR);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_ETRUNCATED);
		CHECK(fx_logged(&f, id, SSOCK_ETRUNCATED, "read"));
		CHECK_INT(fx_messages(&f), ==, m0); /* nothing delivered */
		close(fd);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	}
	CHECK(fx_finish(&f));
}

TEST(fault_truncated_payload_then_eof)
{
	/* A small frame cut short (it sits in the connection's stash), and a
	 * big one (it has a buffer of its own) cut short after 300 kB. The
	 * test's own buffers exist before the baseline is taken. */
	size_t big = 1 << 20, sent_big = 4 + 300000;
	uint8_t *bigframe = calloc(1, sent_big);
	CHECK(bigframe);
	fx f;
	ssock_server_opts o = {0};
	CHECK(fx_start(&f, &o));
	uint32_t be = htonl((uint32_t)big);
	memcpy(bigframe, &be, 4);
	const void *bytes[] = {"\0\0\0\x10"
			       "abc",
			       bigframe};
	size_t lens[] = {7, sent_big};
	for (int i = 0; i < 2; i++) {
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		int m0 = fx_messages(&f);
		CHECK_INT(np_write(fd, bytes[i], lens[i]), ==, 0);
		shutdown(fd, SHUT_WR);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_ETRUNCATED);
		CHECK(fx_logged(&f, id, SSOCK_ETRUNCATED, "read"));
		CHECK_INT(fx_messages(&f), ==, m0);
		close(fd);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	}
	free(bigframe);
	CHECK(fx_finish(&f));
}

TEST(fault_reset_mid_frame)
{
	size_t big = 4 + 200000;
	uint8_t *frame = calloc(1, big);
	CHECK(frame);
	fx f;
	ssock_server_opts o = {0};
	CHECK(fx_start(&f, &o));
	uint32_t be = htonl(1 << 20);
	memcpy(frame, &be, 4);
	const void *bytes[] = {"\0\0",
			       "\0\0\0\x10"
			       "abc",
			       frame};
	size_t lens[] = {2, 7, big};
	for (int i = 0; i < 3; i++) {
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		int m0 = fx_messages(&f);
		CHECK_INT(np_write(fd, bytes[i], lens[i]), ==, 0);
		/* The server has the bytes before the reset comes. */
		CHECK(fx_echo(&f, f.good, "in between"));
		np_reset_close(fd);
		CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_ECONNRESET);
		CHECK_INT(fx_messages(&f), ==, m0 + 1);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	}
	free(frame);
	CHECK(fx_finish(&f));
}

/* ------------------------------------------------------------ half-close */

TEST(fault_half_close_replies_still_delivered)
{
	/* Callback mode: the echoes of what came before the FIN go out. */
	fx f;
	ssock_server_opts o = {0};
	CHECK(fx_start(&f, &o));
	for (int round = 0; round < 20; round++) {
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		uint8_t wire[] = {0, 0, 0, 2, 'q', '1', 0, 0, 0, 2, 'q', '2', 0, 0, 0, 0};
		CHECK_INT(np_write(fd, wire, sizeof wire), ==, 0);
		shutdown(fd, SHUT_WR);
		uint8_t got[sizeof wire];
		CHECK_INT(np_read_exact(fd, got, sizeof got, T), ==, 0);
		CHECK_MEM(got, wire, sizeof wire);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		CHECK_INT(fx_reason(&f, id, T), ==, 0); /* a clean close */
		close(fd);
	}
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	CHECK(fx_finish(&f));

	/* Inbox mode: the program answers from its own thread, before or
	 * after the loop has seen the FIN; the answers still arrive, then EOF. */
	int fds0 = np_count_fds(), port;
	ssock_server *srv = np_server(NULL, &port);
	CHECK(srv);
	for (int round = 0; round < 20; round++) {
		int fd = np_connect(port, false);
		CHECK(fd >= 0);
		CHECK_INT(np_send_u32(fd, "q1", 2), ==, 0);
		CHECK_INT(np_send_u32(fd, "q2", 2), ==, 0);
		shutdown(fd, SHUT_WR);
		for (int i = 0; i < 2; i++) {
			ssock_event ev;
			CHECK_OK(np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T));
			CHECK_OK(ssock_server_send(srv, ev.conn, i ? "a2" : "a1", 2));
			ssock_event_release(&ev);
		}
		ssock_event ev;
		CHECK_OK(np_server_wait(srv, SSOCK_EVENT_DISCONNECT, &ev, T));
		CHECK_INT(ev.code, ==, 0);
		CHECK_INT(ev.unsent, ==, 0);
		ssock_event_release(&ev);
		uint8_t got[12];
		CHECK_INT(np_read_exact(fd, got, sizeof got, T), ==, 0);
		CHECK_MEM(got, "\0\0\0\2a1\0\0\0\2a2", 12);
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		close(fd);
	}
	CHECK_OK(ssock_server_free(srv));
	CHECK_INT(np_count_fds(), ==, fds0);
}

/* -------------------------------------------------------------- stalls */

TEST(fault_stalled_mid_frame_read_timeout)
{
	const ssock_framing framings[] = {SSOCK_FRAMING_U32, SSOCK_FRAMING_LINE};
	const char *partial[] = {"\0\0\0\x10"
				 "half",
				 "no newline yet"};
	for (int k = 0; k < 2; k++) {
		fx f;
		ssock_server_opts o = {.framing = framings[k], .read_timeout_ms = 300};
		CHECK(fx_start(&f, &o));
		uint64_t id;
		int fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		int64_t t0 = test_now_ms();
		CHECK_INT(np_write(fd, partial[k], strlen(partial[k]) + (k == 0 ? 4 : 0)), ==, 0);
		/* served meanwhile, and not closed for being slow between frames */
		for (int i = 0; i < 3; i++)
			CHECK(fx_echo(&f, f.good, "meanwhile"));
		CHECK_INT(np_wait_eof(fd, T), ==, 0);
		CHECK_INT(test_now_ms() - t0, >=, 250);
		CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_ESTALLED);
		CHECK(fx_logged(&f, id, SSOCK_ESTALLED, "read"));
		close(fd);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
		CHECK(fx_finish(&f));
	}
}

TEST(fault_slowloris_1000_connections)
{
	/* 1,000 peers each trickle a frame a byte a second; read_timeout_ms
	 * closes each one 1.5 s after its frame began, while the good peer is
	 * served without delay. Bounded: the trickle stops after 5 s. */
	enum { N = 1000 };
	CHECK_INT(np_raise_nofile(), >=, 2 * N + 100);
	fx f;
	ssock_server_opts o = {.read_timeout_ms = 1500};
	CHECK(fx_start(&f, &o));
	int *fds = malloc(N * sizeof *fds);
	CHECK(fds);
	for (int i = 0; i < N; i++) {
		fds[i] = np_connect(f.port, false);
		CHECK(fds[i] >= 0);
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	CHECK_INT(ssock_server_conns(f.srv, NULL, 0), <=, N + 1);
	static const char frame[] = "\0\0\0\x10"
				    "0123456789abcdef";
	int open_n = N, sec = 0;
	int64_t t0 = test_now_ms(), worst_echo = 0;
	char *eof = calloc(N, 1);
	struct pollfd *pfd = malloc(N * sizeof *pfd);
	CHECK(eof && pfd);
	while (open_n > 0 && test_now_ms() - t0 < 5000) {
		if (test_now_ms() - t0 >= sec * 1000) {
			for (int i = 0; i < N; i++)
				if (!eof[i])
					send(fds[i], frame + sec, 1, MSG_NOSIGNAL);
			sec++;
		}
		int64_t e0 = test_now_ms();
		CHECK(fx_echo(&f, f.good, "not starved"));
		if (test_now_ms() - e0 > worst_echo)
			worst_echo = test_now_ms() - e0;
		for (int i = 0; i < N; i++) {
			if (eof[i])
				continue;
			char b;
			ssize_t n = recv(fds[i], &b, 1, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				eof[i] = 1;
				open_n--;
			}
		}
		/* Wait for the next peers to be closed (or the next byte's time). */
		nfds_t k = 0;
		for (int i = 0; i < N; i++)
			if (!eof[i])
				pfd[k++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		int64_t next_byte = t0 + sec * 1000 - test_now_ms();
		poll(pfd, k, next_byte < 50 ? (next_byte > 0 ? (int)next_byte : 0) : 50);
	}
	free(pfd);
	CHECK_INT(open_n, ==, 0);
	CHECK_INT(worst_echo, <, 1000);
	/* every one closed for stalling, and reported */
	fx_wait_reason(&f, SSOCK_ESTALLED, N, T);
	CHECK_INT(fx_count_reason(&f, SSOCK_ESTALLED), ==, N);
	ssock_error_info e;
	CHECK_INT(ssock_server_errors(f.srv, &e, 1, 1), >=, 1);
	CHECK_INT(e.code, ==, SSOCK_ESTALLED);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	free(fds);
	free(eof);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	fprintf(stderr, "slowloris: %d peers closed, worst echo %lld ms, peak RSS %ld kB\n", N,
		(long long)worst_echo, np_peak_rss_kb());
	CHECK(fx_finish(&f));
}

/* --------------------------------------------------------------- floods */

TEST(fault_flood_beyond_max_connections)
{
	enum { MAX = 20, FLOOD = 500 };
	CHECK_INT(np_raise_nofile(), >=, 2 * (MAX + FLOOD) + 100);
	fx f;
	ssock_server_opts o = {.max_conns = MAX};
	CHECK(fx_start(&f, &o));
	int held[MAX - 1];
	for (int i = 0; i < MAX - 1; i++) {
		held[i] = fx_peer(&f, NULL);
		CHECK(held[i] >= 0);
	}
	pthread_mutex_lock(&f.mu);
	int errors0 = f.errors, connects0 = f.connects;
	pthread_mutex_unlock(&f.mu);
	int *flood = malloc(FLOOD * sizeof *flood);
	CHECK(flood);
	for (int i = 0; i < FLOOD; i++) {
		flood[i] = np_connect(f.port, false);
		CHECK(flood[i] >= 0);
	}
	/* Each one over the limit is closed at once and reported. */
	for (int i = 0; i < FLOOD; i++) {
		CHECK_INT(np_wait_eof(flood[i], T), ==, 0);
		close(flood[i]);
	}
	free(flood);
	fx_wait_errors(&f, errors0 + FLOOD, T);
	pthread_mutex_lock(&f.mu);
	CHECK_INT(f.errors - errors0, ==, FLOOD);
	CHECK_INT(f.connects, ==, connects0); /* never announced as connections */
	pthread_mutex_unlock(&f.mu);
	ssock_error_info e;
	CHECK_INT(ssock_server_errors(f.srv, &e, 1, 1), ==, 64); /* the log is bounded */
	CHECK_INT(e.code, ==, SSOCK_ELIMIT);
	CHECK(strcmp(e.op, "accept") == 0);
	/* The ones inside the limit never noticed. */
	CHECK_INT(ssock_server_conns(f.srv, NULL, 0), ==, MAX);
	for (int i = 0; i < MAX - 1; i++)
		CHECK(fx_echo(&f, held[i], "held"));
	for (int i = 0; i < MAX - 1; i++)
		close(held[i]);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	CHECK(fx_finish(&f));
}

TEST(fault_line_without_newline_past_max)
{
	/* More than loopback's socket buffers can hold on both sides (up to
	 * 4 MiB + 6 MiB with autotuning): under valgrind the server is slow
	 * to close, and 4 MiB once fitted in them all (CI, 62539a5). */
	size_t len = 16 << 20;
	char *junk = malloc(len);
	CHECK(junk);
	fx f;
	ssock_server_opts o = {.framing = SSOCK_FRAMING_LINE, .max_message = 1000};
	CHECK(fx_start(&f, &o));
	memset(junk, 'x', len);
	uint64_t id;
	int fd = fx_peer(&f, &id);
	CHECK(fd >= 0);
	int m0 = fx_messages(&f);
	/* The server closes once max_message + 1 bytes have no '\n': the rest
	 * of the 16 MiB is refused (reset, or pushed back), never buffered. */
	size_t sent = write_until_pushback(fd, junk, len, 2000);
	CHECK_INT(sent, <, len);
	CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_EMSGSIZE);
	CHECK(fx_logged(&f, id, SSOCK_EMSGSIZE, "frame"));
	CHECK_INT(fx_messages(&f), ==, m0);
	close(fd);
	free(junk);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	CHECK(fx_finish(&f));
}

/* ------------------------------------------------------ slow receivers */

TEST(fault_client_never_reads)
{
	enum { QMAX = 256 << 10, MSG = 8 << 10 };
	char *buf = calloc(1, MSG);
	size_t total = 64 << 20;
	uint8_t *stream = calloc(1, total);
	CHECK(buf && stream);
	fx f;
	ssock_server_opts o = {.send_queue_max = QMAX};
	CHECK(fx_start(&f, &o));

	/* 1. The program sends to a peer that never reads: once the kernel's
	 * buffers and the queue are full, the sender gets SSOCK_ESENDQFULL;
	 * the heap holds at most the queue. */
	uint64_t id;
	int fd = fx_peer(&f, &id);
	CHECK(fd >= 0);
	size_t queued = 0;
	int rc = 0;
	int64_t deadline = test_now_ms() + T;
	while (test_now_ms() < deadline) {
		rc = ssock_server_send(f.srv, id, buf, MSG);
		if (rc == SSOCK_ESENDQFULL)
			break;
		CHECK_OK(rc);
		queued += MSG + 4;
	}
	CHECK_INT(rc, ==, SSOCK_ESENDQFULL);
	int64_t heap = np_heap_bytes();
	if (heap >= 0)
		CHECK_INT(heap - f.heap0, <=, QMAX + FX_HEAP_SLACK_CHUNKS);
	ssock_conn_info ci[4];
	int n = ssock_server_conns(f.srv, ci, 4);
	for (int i = 0; i < n && i < 4; i++)
		if (ci[i].id == id)
			CHECK_INT(ci[i].queued, <=, QMAX);
	/* A timed send waits, then gives up (the kernel may still take a
	 * little more meanwhile: its buffers grow on their own). */
	for (int i = 0; i < 1000 && rc != SSOCK_ETIMEDOUT; i++) {
		rc = ssock_server_send_timeout(f.srv, id, buf, MSG, 100);
		CHECK(rc == 0 || rc == SSOCK_ETIMEDOUT);
	}
	CHECK_INT(rc, ==, SSOCK_ETIMEDOUT);
	CHECK(fx_echo(&f, f.good, "unaffected"));
	np_reset_close(fd); /* leaves with its queue full */
	int reason = fx_reason(&f, id, T);
	CHECK(reason == SSOCK_ECONNRESET || reason == SSOCK_EPIPE);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK_CHUNKS));

	/* 2. A peer that sends echo requests and never reads the echoes: the
	 * server stops reading from it (TCP pushes back on the peer) instead of
	 * queueing without bound. */
	fd = fx_peer(&f, &id);
	CHECK(fd >= 0);
	for (size_t off = 0; off + 4 + MSG <= total; off += 4 + MSG) {
		uint32_t be = htonl(MSG);
		memcpy(stream + off, &be, 4);
		memset(stream + off + 4, 'e', MSG);
	}
	size_t sent = write_until_pushback(fd, stream, total, 500);
	CHECK_INT(sent, <, total);
	heap = np_heap_bytes();
	if (heap >= 0)
		CHECK_INT(heap - f.heap0, <=, QMAX + FX_HEAP_SLACK_CHUNKS);
	CHECK(fx_echo(&f, f.good, "unaffected"));
	np_reset_close(fd);
	reason = fx_reason(&f, id, T);
	CHECK(reason == SSOCK_ECONNRESET || reason == SSOCK_EPIPE);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK_CHUNKS));
	free(stream);
	free(buf);
	fprintf(stderr,
		"never reads: %zu bytes queued before SSOCK_ESENDQFULL, %zu sent before pushback\n",
		queued, sent);
	CHECK(fx_finish(&f));
}

/* ------------------------------------------------------------ tinyproto */

TEST(fault_tinyproto_garbage)
{
	size_t len = 256 << 10;
	uint8_t *junk = malloc(len);
	CHECK(junk);
	fx f;
	ssock_server_opts o = {.framing = SSOCK_FRAMING_TINYPROTO, .max_message = 1024};
	CHECK(fx_start(&f, &o));

	/* 1. Not tinyproto at all: an HTTP request where 0xFF belongs. */
	uint64_t id;
	int fd = fx_peer_raw(&f, &id);
	CHECK(fd >= 0);
	const char *http = "GET / HTTP/1.0\r\n\r\n";
	CHECK_INT(np_write(fd, http, strlen(http)), ==, 0);
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_EPROTO);
	CHECK(fx_logged(&f, id, SSOCK_EPROTO, "frame"));
	close(fd);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));

	/* 2. A garbage byte where the status of our message belongs. */
	fd = fx_peer(&f, &id);
	CHECK(fd >= 0);
	CHECK_OK(ssock_server_send(f.srv, id, "to you", 6));
	uint8_t hdr[4];
	CHECK_INT(np_read_exact(fd, hdr, 4, T), ==, 0);
	CHECK_MEM(hdr, "\0\0\0\6", 4);
	CHECK_INT(np_write(fd, "\x42", 1), ==, 0);
	CHECK_INT(np_wait_eof(fd, T), ==, 0);
	CHECK_INT(fx_reason(&f, id, T), ==, SSOCK_ECOLLISION);
	CHECK(fx_logged(&f, id, SSOCK_ECOLLISION, "frame"));
	close(fd);
	CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));

	/* 3. 256 kB of random bytes after a good handshake: sizes above the
	 * limit are refused (0x00, reported), the rest decodes as whatever it
	 * is; the connection ends with a clear reason when the peer goes, and
	 * nothing bigger than max_message is ever delivered. */
	for (uint64_t seed = 1; seed <= 4; seed++) {
		fd = fx_peer(&f, &id);
		CHECK(fd >= 0);
		uint64_t st = seed;
		for (size_t i = 0; i < len; i += 8) {
			uint64_t r = np_rand(&st);
			memcpy(junk + i, &r, 8);
		}
		write_until_pushback(fd, junk, len, 500);
		np_reset_close(fd);
		int reason = fx_reason(&f, id, T);
		CHECK(reason == SSOCK_ECONNRESET || reason == SSOCK_ETRUNCATED ||
		      reason == SSOCK_ECOLLISION || reason == 0);
		CHECK(fx_healthy(&f, 0, FX_HEAP_SLACK));
	}
	free(junk);
	CHECK(fx_finish(&f));
}
