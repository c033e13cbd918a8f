"""Threads and the GIL: callbacks that raise, sends and closes from callbacks and
from other threads, many threads at once, exit and fork with handles open."""
import os
import signal
import sys
import threading
import time
import unittest

import ssock
from support import TIMEOUT, Collector, raw_client, recv_exact, run_python, u32, wait_until


def echo(conn, data):
    conn.send(data)


class CallbackErrorsTest(unittest.TestCase):
    def test_a_raising_callback_goes_to_on_error_and_the_rest_goes_on(self):
        errors = Collector()

        def on_message(conn, data):
            if data == b"boom":
                raise ValueError("boom")
            conn.send(data)

        with ssock.Server("127.0.0.1:0", on_message=on_message, on_error=errors) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"boom")
            cli.send(b"after")
            self.assertEqual(cli.recv(TIMEOUT), b"after")
            err = errors.wait(1)[0]
            self.assertIsInstance(err, ValueError)
            self.assertIsNotNone(err.__traceback__)

    def test_without_on_error_it_is_unraisable(self):
        seen = Collector()
        old = sys.unraisablehook
        sys.unraisablehook = lambda u: seen(u.exc_type, u.object)
        try:
            def on_connect(conn):
                raise KeyError("in on_connect")

            with ssock.Server("127.0.0.1:0", on_message=echo, on_connect=on_connect) as srv, \
                    ssock.Client(srv.address) as cli:
                cli.connect(TIMEOUT)
                cli.send(b"still echoed")
                self.assertEqual(cli.recv(TIMEOUT), b"still echoed")
                exc_type, obj = seen.wait(1)[0]
                self.assertIs(exc_type, KeyError)
                self.assertIs(obj, on_connect)
        finally:
            sys.unraisablehook = old

    def test_an_on_error_that_raises_is_unraisable_too(self):
        seen = Collector()
        old = sys.unraisablehook
        sys.unraisablehook = lambda u: seen(u.exc_type)
        try:
            def bad(*_):
                raise RuntimeError("bad")

            with ssock.Server("127.0.0.1:0", on_message=bad, on_error=bad) as srv, \
                    ssock.Client(srv.address) as cli:
                cli.connect(TIMEOUT)
                cli.send(b"x")
                self.assertIs(seen.wait(1)[0], RuntimeError)
        finally:
            sys.unraisablehook = old


class CloseTest(unittest.TestCase):
    def test_close_from_inside_its_own_callback(self):
        done = threading.Event()

        def on_message(conn, data):
            conn.send(b"bye")
            conn.server.close()  # must not wait for the dispatcher: it is this thread
            done.set()

        srv = ssock.Server("127.0.0.1:0", on_message=on_message)
        addr = srv.address
        s = raw_client(addr)
        s.sendall(u32(b"close please"))
        self.assertTrue(done.wait(TIMEOUT))
        srv.close()  # from here: waits until the dispatcher has freed it
        self.assertTrue(srv.closed)
        ssock.Server(addr).close()  # the port was released
        s.close()

    def test_close_from_another_thread_waits_for_the_running_callback(self):
        inside, release = threading.Event(), threading.Event()
        finished = []

        def on_message(conn, data):
            inside.set()
            release.wait(TIMEOUT)
            finished.append(data)

        srv = ssock.Server("127.0.0.1:0", on_message=on_message)
        s = raw_client(srv.address)
        s.sendall(u32(b"slow"))
        self.assertTrue(inside.wait(TIMEOUT))
        closer = threading.Thread(target=srv.close)
        closer.start()
        closer.join(0.1)
        self.assertTrue(closer.is_alive())  # waiting for the callback
        release.set()
        closer.join(TIMEOUT)
        self.assertFalse(closer.is_alive())
        self.assertEqual(finished, [b"slow"])
        s.close()

    def test_close_during_a_flood(self):
        for _ in range(5):
            srv = ssock.Server("127.0.0.1:0", on_message=echo)
            clients = [ssock.Client(srv.address) for _ in range(4)]
            for c in clients:
                c.connect(TIMEOUT)
                for i in range(200):
                    c.send(b"%d" % i)
            srv.close()
            for c in clients:
                c.close()

    def test_calls_after_close_raise_closed_error(self):
        srv = ssock.Server("127.0.0.1:0")
        srv.close()
        for call in (lambda: srv.next_event(0), srv.stats, srv.conns, srv.pause,
                     lambda: srv.broadcast(b"x"), lambda: srv.send(1, b"x")):
            with self.assertRaises(ssock.ClosedError):
                call()

    def test_a_waiting_next_event_wakes_at_close(self):
        srv = ssock.Server("127.0.0.1:0")
        result = []

        def wait():
            try:
                srv.next_event(None)
            except ssock.ClosedError as e:
                result.append(e)

        t = threading.Thread(target=wait)
        t.start()
        t.join(0.05)
        srv.close()
        t.join(TIMEOUT)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(result), 1)


def _wchan(thread):
    """What the kernel says the thread sleeps in ("" when it does not say)."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/wchan") as f:
            text = f.read().strip()
    except OSError:
        return ""
    return "" if text == "0" else text


class _Interrupted(Exception):
    pass


class SignalTest(unittest.TestCase):
    def test_ctrl_c_interrupts_a_wait_while_another_thread_waits_too(self):
        # The second waiter on a handle waits for the lock the first holds in
        # poll(): the wait must still come back to run signal handlers.
        srv = ssock.Server("127.0.0.1:0")
        other = threading.Thread(target=self._wait_closed, args=(srv,))
        other.start()
        main = threading.main_thread()
        try:
            wait_until(lambda: "poll" in _wchan(other), what="the other thread in poll()")
        except AssertionError:
            srv.close()
            other.join(TIMEOUT)
            self.skipTest("/proc does not show where threads wait")
        calling = threading.Event()
        done = threading.Event()
        interrupted = False

        def interrupt():
            # Once the main thread sleeps in the lock's futex inside
            # next_event(), SIGINT it until the handler has run; if it never
            # runs, close the handle so the test ends (and fails).
            wait_until(lambda: calling.is_set() and "futex" in _wchan(main),
                       what="the main thread waiting for the lock")
            deadline = time.monotonic() + TIMEOUT
            while not done.wait(0.05):
                if time.monotonic() > deadline:
                    calling.clear()
                    srv.close()
                    return
                signal.pthread_kill(main.ident, signal.SIGINT)

        def handler(signum, frame):
            if calling.is_set():
                raise _Interrupted

        old = signal.signal(signal.SIGINT, handler)
        killer = threading.Thread(target=interrupt)
        try:
            killer.start()
            calling.set()
            try:
                srv.next_event(None)
            except _Interrupted:
                interrupted = True
            except ssock.ClosedError:
                pass  # closed by interrupt(): the handler never ran
        finally:
            calling.clear()
            done.set()
            killer.join(TIMEOUT)
            signal.signal(signal.SIGINT, old)
            srv.close()
            other.join(TIMEOUT)
        self.assertTrue(interrupted, "SIGINT did not interrupt next_event(None)")
        self.assertFalse(other.is_alive())

    @staticmethod
    def _wait_closed(srv):
        try:
            srv.next_event(None)
        except ssock.ClosedError:
            pass


class ConcurrencyTest(unittest.TestCase):
    def test_eight_threads_sending(self):
        n = 2000
        got = Collector()
        with ssock.Server("127.0.0.1:0", on_message=lambda c, d: got(d)) as srv, \
                ssock.Client(srv.address, send_queue_max=1 << 24) as cli:
            cli.connect(TIMEOUT)

            def sender(k):
                for i in range(n):
                    cli.send(b"%d:%d" % (k, i), timeout=TIMEOUT)

            threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT * 3)
            items = got.wait(8 * n, TIMEOUT * 3)
        last = {}
        for item in items:  # each thread's messages arrive whole and in order
            k, i = map(int, item.split(b":"))
            self.assertEqual(i, last.get(k, -1) + 1)
            last[k] = i
        self.assertEqual(last, {k: n - 1 for k in range(8)})

    def test_blocking_calls_release_the_gil(self):
        with ssock.Server("127.0.0.1:0") as srv:
            count = [0]
            stop = threading.Event()

            def spin():
                while not stop.is_set():
                    count[0] += 1

            t = threading.Thread(target=spin)
            t.start()
            self.assertIsNone(srv.next_event(0.3))
            stop.set()
            t.join()
            # The other thread ran the whole time next_event() waited.
            self.assertGreater(count[0], 1000)

    def test_send_from_callbacks_of_many_connections(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv:
            socks = [raw_client(srv.address) for _ in range(20)]
            for i, s in enumerate(socks):
                s.sendall(u32(b"%d" % i) * 50)
            for i, s in enumerate(socks):
                self.assertEqual(recv_exact(s, 50 * len(u32(b"%d" % i))), u32(b"%d" % i) * 50)
                s.close()


EXIT_CASES = {
    "open handles": """
import ssock
srv = ssock.Server("127.0.0.1:0", on_message=lambda c, d: c.send(d))
cli = ssock.Client(srv.address); cli.connect(5); cli.send(b"x"); cli.recv(5)
udp = ssock.UDP("127.0.0.1:0", on_datagram=lambda u, d, a: None)
inbox = ssock.Server("127.0.0.1:0")
loop = ssock.Loop(); shared = ssock.Client(srv.address, loop=loop); shared.connect(5)
print("ok")
""",
    "callback still running": """
import threading, ssock
inside = threading.Event()
def on_message(conn, data):
    inside.set()
    threading.Event().wait(60)
srv = ssock.Server("127.0.0.1:0", on_message=on_message)
cli = ssock.Client(srv.address); cli.connect(5); cli.send(b"x")
inside.wait(5)
print("ok")
""",
    "thread waiting in next_event": """
import threading, ssock
srv = ssock.Server("127.0.0.1:0")
threading.Thread(target=lambda: srv.next_event(None), daemon=True).start()
cli = ssock.Client(srv.address); cli.connect(5)
print("ok")
""",
    "sys.exit inside a callback": """
import sys, threading, ssock
done = threading.Event()
def on_message(conn, data):
    done.set()
    sys.exit(3)
srv = ssock.Server("127.0.0.1:0", on_message=on_message)
cli = ssock.Client(srv.address); cli.connect(5); cli.send(b"x")
done.wait(5)
print("ok")
""",
}


EXIT_CASES["simplesockets, autorecv on"] = """
from ssock.simplesockets import TCPServer, TCPClient
server = TCPServer(); server.setup(ip="127.0.0.1", port=0)
client = TCPClient(); client.setup("127.0.0.1", server.socket.getsockname()[1])
assert client.connect(); client.autorecv(); client.send_data(b"x")
server.await_event(5000)
print("ok")
"""
EXIT_CASES["tinyproto, connections open"] = """
import threading
from ssock.tinyproto import TinyProtoServer, TinyProtoClient, TinyProtoConnectionDetails
ready = threading.Event()
class Server(TinyProtoServer):
    def pre_loop(self):
        ready.set()
server = Server([TinyProtoConnectionDetails("127.0.0.1", 0)])
threading.Thread(target=server.start, daemon=True).start()
ready.wait(5)
client = TinyProtoClient()
conn = client.active_connections[client.connect_to(server.listen_socks[0].getsockname())]
conn.transmit(b"x")
print("ok")
"""


class ExitTest(unittest.TestCase):
    def test_exit_with_handles_open_neither_hangs_nor_crashes(self):
        for name, code in EXIT_CASES.items():
            with self.subTest(name):
                start = time.monotonic()
                r = run_python(code, timeout=TIMEOUT * 2)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, "ok\n")
                self.assertLess(time.monotonic() - start, TIMEOUT)

    def test_fork_child_cannot_use_the_parents_handles(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: must not touch the parent's threads
                code = 0
                try:
                    cli.send(b"from the child")
                    code = 1
                except ssock.ClosedError:
                    pass
                try:
                    srv.close()
                    cli.close()
                except Exception:
                    code = 2
                os.write(w, b"%d" % code)
                os._exit(code)
            os.close(w)
            self.assertEqual(os.read(r, 8), b"0")
            os.close(r)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            cli.send(b"parent still fine")
            self.assertEqual(cli.recv(TIMEOUT), b"parent still fine")


if __name__ == "__main__":
    unittest.main()
