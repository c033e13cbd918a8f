"""Reference and resource leaks: counts stay flat over 100k messages and over
handles opened and closed again."""
import gc
import sys
import unittest

import ssock
from support import TIMEOUT, Collector, open_fds, thread_count, wait_until

N = 100_000


def allocated():
    gc.collect()
    return sys.getallocatedblocks()


class LeakTest(unittest.TestCase):
    def pump(self, cli, n, batch=500):
        """Sends n messages through cli's echo and takes the replies back."""
        for start in range(0, n, batch):
            for i in range(batch):
                cli.send(b"message %d" % i, timeout=TIMEOUT)
            for i in range(batch):
                cli.recv(TIMEOUT)

    def test_callbacks_over_100k_messages(self):
        with ssock.Server("127.0.0.1:0", on_message=lambda c, d: c.send(d)) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            self.pump(cli, 10_000)  # warm up: caches, free lists
            before = allocated()
            self.pump(cli, N)
            grown = allocated() - before
        self.assertLess(grown, 500, f"{grown} blocks more after {N} messages")

    def test_inbox_events_over_100k_messages(self):
        with ssock.Server("127.0.0.1:0") as srv, ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)

            def round_trip(n):
                for start in range(0, n, 500):
                    for i in range(500):
                        cli.send(b"m%d" % i)
                    for i in range(500):
                        ev = srv.next_event(TIMEOUT)
                        ev.conn.send(ev.data)
                    for i in range(500):
                        cli.recv(TIMEOUT)

            round_trip(10_000)
            before = allocated()
            round_trip(N)
            grown = allocated() - before
        self.assertLess(grown, 500, f"{grown} blocks more after {N} messages")

    def test_handles_opened_and_closed(self):
        def cycle():
            got = Collector()
            srv = ssock.Server("127.0.0.1:0", on_message=lambda c, d: got(d))
            cli = ssock.Client(srv.address)
            cli.connect(TIMEOUT)
            cli.send(b"x")
            got.wait(1)
            udp = ssock.UDP("127.0.0.1:0")
            cli.close()
            srv.close()
            udp.close()

        for _ in range(50):  # warm up: free lists, caches, dict sizes
            cycle()
        fds, threads, before = open_fds(), thread_count(), allocated()
        for _ in range(200):
            cycle()
        wait_until(lambda: thread_count() == threads, what="threads to end")
        self.assertEqual(open_fds(), fds)
        grown = allocated() - before
        self.assertLess(grown, 500, f"{grown} blocks more after 200 cycles")


if __name__ == "__main__":
    unittest.main()
