"""Ending things: Server.flush/Conn.flush, the linger of close() and of
interpreter exit, closes from callbacks of other handles, and Ctrl-C during
waits without a limit (found by a review: each case failed before its fix)."""
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import unittest

import ssock
from support import TIMEOUT, python_env, recv_exact, run_python, wait_until

BIG = 16 << 20  # more than loopback's socket buffers hold


def never_reading_peer(srv):
    """A raw peer of srv that reads nothing yet, and its Conn."""
    s = socket.create_connection(srv.address, timeout=TIMEOUT)
    ev = srv.next_event(TIMEOUT)
    assert ev is not None and ev.type is ssock.CONNECT, ev
    return s, ev.conn


def read_message(s, size):
    """One u32-framed message of `size` bytes from s."""
    head = recv_exact(s, 4)
    assert struct.unpack(">I", head)[0] == size, head
    return recv_exact(s, size)


class FlushTest(unittest.TestCase):
    def test_server_flush_waits_until_every_queue_is_written(self):
        with ssock.Server("127.0.0.1:0", send_queue_max=2 * BIG) as srv:
            peers = [never_reading_peer(srv) for _ in range(2)]
            for i, (_, conn) in enumerate(peers):
                srv.send(conn, bytes([i]) * BIG)
            with self.assertRaises(TimeoutError):
                srv.flush(timeout=0)  # nobody reads: only looks
            got = [None, None]

            def read(i):
                got[i] = read_message(peers[i][0], BIG)
            readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
            for t in readers:
                t.start()
            srv.flush(timeout=TIMEOUT)
            for t in readers:
                t.join(TIMEOUT)
            for i in range(2):
                self.assertEqual(got[i], bytes([i]) * BIG)
                peers[i][0].close()

    def test_conn_flush_waits_for_its_own_queue_only(self):
        with ssock.Server("127.0.0.1:0", send_queue_max=2 * BIG) as srv:
            stuck, stuck_conn = never_reading_peer(srv)
            live, live_conn = never_reading_peer(srv)
            stuck_conn.send(b"s" * BIG)
            live_conn.send(b"l" * BIG)
            got = []
            reader = threading.Thread(target=lambda: got.append(read_message(live, BIG)))
            reader.start()
            live_conn.flush(TIMEOUT)
            reader.join(TIMEOUT)
            self.assertEqual(got, [b"l" * BIG])
            with self.assertRaises(TimeoutError):
                stuck_conn.flush(0.2)
            with self.assertRaises(TimeoutError):
                srv.flush(timeout=0.2)
            stuck.close()
            live.close()

    def test_flush_of_a_clients_old_connection_raises(self):
        # After a reconnect the old Conn's queue is gone; it must not wait
        # for the new connection's.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        with ls, ssock.Client("127.0.0.1:%d" % ls.getsockname()[1],
                              send_queue_max=2 * BIG) as cli:
            cli.connect(TIMEOUT)
            first = ls.accept()[0]
            self.assertIs(cli.next_event(TIMEOUT).type, ssock.CONNECT)
            old = cli.conn
            first.close()
            self.assertIs(cli.next_event(TIMEOUT).type, ssock.DISCONNECT)
            cli.connect(TIMEOUT)
            second = ls.accept()[0]  # never reads
            self.assertIs(cli.next_event(TIMEOUT).type, ssock.CONNECT)
            cli.send(b"x" * BIG)
            with self.assertRaises(ssock.NoConnectionError):
                old.flush(TIMEOUT)
            with self.assertRaises(TimeoutError):
                cli.conn.flush(0.1)
            second.close()

    def test_flush_of_a_gone_connection_raises(self):
        with ssock.Server("127.0.0.1:0") as srv:
            s, conn = never_reading_peer(srv)
            s.close()
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.DISCONNECT)
            with self.assertRaises(ssock.NoConnectionError):
                conn.flush(TIMEOUT)
            srv.flush(timeout=TIMEOUT)  # nothing queued anywhere


class LingerTest(unittest.TestCase):
    def test_linger_must_be_seconds(self):
        for bad in (float("nan"), -1, "1"):
            for make in (lambda lg: ssock.Server("127.0.0.1:0", linger=lg),
                         lambda lg: ssock.Client("127.0.0.1:1", linger=lg)):
                with self.subTest(linger=bad), self.assertRaises((ValueError, TypeError)):
                    make(bad)
        ssock.Server("127.0.0.1:0", linger=None).close()  # the default
        ssock.Client("127.0.0.1:1", linger=float("inf")).close()  # no limit

    def test_a_signal_handler_that_closes_during_the_linger(self):
        # The handler's close() ends the linger; the outer close() must
        # return as closes do, not raise ClosedError.
        code = textwrap.dedent(f"""
            import os, signal, socket, threading, ssock
            T = {TIMEOUT}
            srv = ssock.Server("127.0.0.1:0", linger=T, send_queue_max=64 << 20)
            s = socket.create_connection(srv.address)  # never reads
            srv.send(srv.next_event(T).conn, b"x" * (32 << 20))
            signal.signal(signal.SIGINT, lambda *a: srv.close())
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            srv.close()
            assert srv.closed
            print("ok", flush=True)
        """)
        r = run_python(code, timeout=TIMEOUT * 2)
        self.assertEqual(r.stdout, "ok\n", r.stderr)

    def test_close_from_its_own_callback_lets_the_queue_drain(self):
        # The dispatcher frees the handle after the callback: it lingers
        # there, as close() from any other thread does.
        closed = threading.Event()

        def on_message(conn, data):
            conn.send(b"r" * BIG)
            conn.server.close()
            closed.set()
        srv = ssock.Server("127.0.0.1:0", linger=TIMEOUT, send_queue_max=2 * BIG,
                           on_message=on_message)
        with socket.create_connection(srv.address, timeout=TIMEOUT) as s:
            s.sendall(struct.pack(">I", 2) + b"go")
            self.assertTrue(closed.wait(TIMEOUT))
            self.assertEqual(read_message(s, BIG), b"r" * BIG)
        wait_until(lambda: srv.closed, what="the server closed")

    def exits_after_sending(self, role):
        """A child program that sends BIG bytes as `role` (server or client)
        and ends at once, while this side reads only after the child said it
        is done: everything must arrive (the queue lingers at exit)."""
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        code = textwrap.dedent(f"""
            import socket, sys, ssock
            BIG = {BIG}
            if {role!r} == "server":
                srv = ssock.Server("127.0.0.1:0", linger={TIMEOUT}, send_queue_max=2 * BIG)
                print(srv.address[1], flush=True)
                conn = srv.next_event({TIMEOUT}).conn
                srv.send(conn, b"s" * BIG)
            else:
                cli = ssock.Client("127.0.0.1:{ls.getsockname()[1]}", linger={TIMEOUT},
                                   send_queue_max=2 * BIG)
                cli.connect({TIMEOUT})
                print(0, flush=True)
                cli.send(b"c" * BIG)
            print("sent", flush=True)
        """)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=python_env())
        try:
            port = int(child.stdout.readline())
            if role == "server":
                s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            else:
                s = ls.accept()[0]
                s.settimeout(TIMEOUT)
            self.assertEqual(child.stdout.readline(), "sent\n")
            data = read_message(s, BIG)
            self.assertEqual(data, (b"s" if role == "server" else b"c") * BIG)
            self.assertEqual(child.wait(TIMEOUT), 0, child.stderr.read())
            s.close()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
            ls.close()

    def test_server_queue_drains_at_exit(self):
        self.exits_after_sending("server")

    def test_client_queue_drains_at_exit(self):
        self.exits_after_sending("client")

    def test_handle_freed_on_another_thread_while_the_interpreter_exits(self):
        # The last reference goes on a daemon thread: its dealloc lingers
        # without the GIL while atexit closes the open handles. It used to be
        # taken up again there and freed twice (a crash at exit).
        r = run_python(textwrap.dedent(f"""
            import socket, threading, weakref, ssock
            ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
            cli = ssock.Client("127.0.0.1:%d" % ls.getsockname()[1], linger={TIMEOUT},
                               send_queue_max=16 << 20)
            cli.connect({TIMEOUT})
            peer = ls.accept()[0]  # never reads
            for i in range(120):
                cli.send(b"x" * 65536)
            in_dealloc = threading.Event()
            ref = weakref.ref(cli, lambda r: in_dealloc.set())
            box = [cli]
            del cli
            threading.Thread(target=box.clear, daemon=True).start()
            assert in_dealloc.wait({TIMEOUT})
            print("ok")
        """), timeout=TIMEOUT * 3)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "ok\n")


STUCK_AFTER_A_DEFERRED_CLOSE = """
import threading, ssock
T = {T}
stuck = threading.Event()
box = {{}}

def y_on_message(conn, data):
    if {own!r}:
        box["y"].close()  # from its own callback: left to its dispatcher
    stuck.set()
    threading.Event().wait(600)  # a callback that never returns

y = ssock.Server("127.0.0.1:0", on_message=y_on_message)
box["y"] = y
peer = ssock.Client(y.address)
peer.connect(T)
peer.send(b"go")
assert stuck.wait(T)
if not {own!r}:
    closed = threading.Event()
    def x_on_message(conn, data):
        box["y"].close()  # from another handle's callback: left to y's dispatcher
        closed.set()
    x = ssock.Server("127.0.0.1:0", on_message=x_on_message)
    c2 = ssock.Client(x.address)
    c2.connect(T)
    c2.send(b"go")
    assert closed.wait(T)
print("ok", flush=True)
"""


class CallbackCloseTest(unittest.TestCase):
    def test_exit_does_not_wait_for_ever_on_a_close_left_to_a_stuck_dispatcher(self):
        # The close was claimed from a callback; the dispatcher that is to
        # do it never returns. Exit used to wait for it without a limit.
        for own in (True, False):
            with self.subTest(own=own):
                r = run_python(STUCK_AFTER_A_DEFERRED_CLOSE.format(T=TIMEOUT, own=own),
                               timeout=TIMEOUT * 2)
                self.assertEqual(r.stdout, "ok\n", r.stderr)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_two_callbacks_closing_each_others_handles(self):
        # Each callback closes the other handle, whose dispatcher is in the
        # other callback: both used to wait for each other for ever.
        box = {}
        both_inside = threading.Barrier(2, timeout=TIMEOUT)
        returned = []

        def close_other(name):
            def cb(conn, data):
                both_inside.wait()
                box[name].close()
                returned.append(name)
            return cb
        srv = ssock.Server("127.0.0.1:0", on_message=close_other("cli"),
                           on_connect=lambda c: c.send(b"hello"))
        cli = ssock.Client(srv.address, on_message=close_other("srv"))
        box["srv"], box["cli"] = srv, cli
        cli.connect(TIMEOUT)
        cli.send(b"hi")
        wait_until(lambda: len(returned) == 2, what="both close() calls to return")
        wait_until(lambda: srv.closed and cli.closed, what="both handles closed")
        srv.close()  # and closing them again from here returns too
        cli.close()


BLOCKED = {
    "Client.send": """
        c = ssock.Client(addr, send_queue_max=1 << 20); c.connect(T)
        peer = ls.accept()[0]
        ARM
        while True:
            c.send(b"x" * 65536, timeout=None)
    """,
    "Client.flush": """
        c = ssock.Client(addr, send_queue_max=64 << 20); c.connect(T)
        peer = ls.accept()[0]
        c.send(b"x" * (32 << 20))
        ARM
        c.flush(None)
    """,
    "Client.connect with auto_reconnect": """
        ls.close()
        c = ssock.Client(addr, auto_reconnect=True, reconnect_min=0.05, reconnect_max=0.1)
        ARM
        c.connect(None)
    """,
    "Server.flush": """
        srv = ssock.Server("127.0.0.1:0", send_queue_max=64 << 20)
        s = socket.create_connection(srv.address)
        conn = srv.next_event(T).conn
        srv.send(conn, b"x" * (32 << 20))
        ARM
        srv.flush(timeout=None)
    """,
}


# In each case, just before the call that waits: SIGINT a moment later.
ARM = "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()"


class SignalTest(unittest.TestCase):
    def test_ctrl_c_ends_waits_without_a_limit(self):
        for name, body in BLOCKED.items():
            code = textwrap.dedent(f"""
                import os, signal, socket, threading, ssock
                T = {TIMEOUT}
                ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
                addr = "127.0.0.1:%d" % ls.getsockname()[1]
                try:
            """) + textwrap.indent(textwrap.dedent(body).replace("ARM", ARM), "    ") + textwrap.dedent("""
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
                    os._exit(0)
            """)
            with self.subTest(name):
                r = run_python(code, timeout=TIMEOUT * 2)
                self.assertEqual(r.stdout, "interrupted\n", r.stderr)


if __name__ == "__main__":
    unittest.main()
