/* Reference server (d): a u32-framed echo on libevent, written the idiomatic way: a
 * bufferevent per connection, each frame's header peeked with evbuffer_copyout(), the
 * frame made contiguous in place with evbuffer_pullup() (a no-op when it already is), the
 * reply (fresh header plus payload) appended with bufferevent_write() and the input drained.
 * Reading pauses while more than OUTPUT_HIGH bytes wait to be sent, so memory stays bounded.
 *
 * usage: bench_libevent --listen HOST:PORT     (prints "listening on HOST:PORT")
 */
#include "common.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>

/* bufferevent writes happen on the next loop turn, so some output is always waiting after a
 * read; pause reading only well above one read's worth. */
#define OUTPUT_HIGH (4 * BENCH_READ_SIZE)

/* Echoes every complete frame in the input. Returns 0, or -1 on an oversized length. */
static int echo_frames(struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hdr[4];
        uint32_t len;
        unsigned char *frame;

        if (avail < 4)
            return 0;
        evbuffer_copyout(in, hdr, 4);
        len = bench_get_be32(hdr);
        if (len > BENCH_MAX_MESSAGE)
            return -1;
        if (avail - 4 < len)
            return 0;
        frame = evbuffer_pullup(in, 4 + (ev_ssize_t)len);
        if (!frame)
            return -1;
        /* The reply is a new message: its own header, then the payload. */
        bufferevent_write(bev, hdr, 4);
        bufferevent_write(bev, frame + 4, len);
        evbuffer_drain(in, 4 + (size_t)len);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (echo_frames(bev) < 0) {
        fprintf(stderr, "bench_libevent: frame above %u bytes, closing\n", BENCH_MAX_MESSAGE);
        bufferevent_free(bev);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev)) > OUTPUT_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* Called when the output has drained to the low watermark (0). */
static void on_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct event_base *base = arg;
    struct bufferevent *bev;
    int one = 1;

    (void)l;
    (void)sa;
    (void)salen;
    /* Echo replies are small writes; Nagle would hold them back behind delayed ACKs. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        fprintf(stderr, "bench_libevent: bufferevent_socket_new failed\n");
        evutil_closesocket(fd);
        return;
    }
    /* libevent reads at most 16 KiB at a time by default; use the same read size as the
     * other references so the comparison is about the library, not this knob. */
    bufferevent_set_max_single_read(bev, BENCH_READ_SIZE);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

int main(int argc, char **argv)
{
    struct bench_addr addr;
    struct event_base *base;
    struct evconnlistener *listener;

    bench_server_args(argc, argv, NULL, NULL, &addr);
    bench_raise_nofile();
    base = event_base_new();
    if (!base)
        bench_die("event_base_new failed");
    listener = evconnlistener_new_bind(base, on_accept, base,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, SOMAXCONN,
                                       (struct sockaddr *)&addr.ss, (int)addr.len);
    if (!listener)
        bench_die("listen:");
    bench_print_listening(evconnlistener_get_fd(listener));
    return event_base_dispatch(base) < 0 ? 1 : 0;
}
