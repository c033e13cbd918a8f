"""Large bytes and zero_copy payloads are sent without a copy: ssock reads the
object itself while the message waits, and lets go of it once it is written,
dropped, or the handle is closed. Mutable buffers are always copied."""
import socket
import struct
import sys
import unittest

import ssock
from support import TIMEOUT, Collector, recv_exact, wait_until

BIG = 1 << 20  # well over the size sent by reference (64 KiB)


def read_u32(sock):
    (n,) = struct.unpack(">I", recv_exact(sock, 4))
    return recv_exact(sock, n)


class SendByReferenceTest(unittest.TestCase):
    def peer(self, srv, rcvbuf=0):
        """A plain socket connected to srv (an inbox server), and its Conn."""
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(TIMEOUT)
        s.connect(srv.address[:2])
        self.addCleanup(s.close)
        ev = srv.next_event(TIMEOUT)
        self.assertIs(ev.type, ssock.CONNECT)
        return s, ev.conn

    def test_bytes_are_held_until_written_then_let_go(self):
        with ssock.Server("127.0.0.1:0") as srv:
            s, conn = self.peer(srv, rcvbuf=16384)
            data = bytes(range(256)) * (BIG // 256)
            base = sys.getrefcount(data)
            conn.send(data)
            # Not yet written (the peer reads nothing): ssock holds it.
            self.assertEqual(sys.getrefcount(data), base + 1)
            self.assertEqual(read_u32(s), data)
            # Given back once written; in inbox mode let go at the next
            # send, event or close.
            srv.next_event(0.05)
            wait_until(lambda: srv.next_event(0.01) is None and sys.getrefcount(data) == base,
                       what="the sent bytes to be let go")

    def test_callback_mode_lets_go_without_further_traffic(self):
        data = b"c" * (8 << 20)
        base = sys.getrefcount(data)
        sent = Collector()

        def on_connect(conn):
            conn.send(data)
            sent(True)

        with ssock.Server("127.0.0.1:0", on_connect=on_connect,
                          on_message=lambda c, d: None) as srv:
            s = socket.socket()
            self.addCleanup(s.close)
            s.settimeout(TIMEOUT)
            s.connect(srv.address[:2])
            sent.wait(1)
            self.assertEqual(read_u32(s), data)
            # No send, no event after it: the dispatcher is woken to let go.
            wait_until(lambda: sys.getrefcount(data) == base,
                       what="the dispatcher to let the sent bytes go")

    def test_callback_mode_lets_go_of_a_send_from_another_thread(self):
        # The dispatcher sleeps with no limit when it knows of no object out;
        # one sent since by another thread must still be let go.
        data = b"t" * (8 << 20)
        base = sys.getrefcount(data)
        conns = Collector()
        with ssock.Server("127.0.0.1:0", on_connect=conns,
                          on_message=lambda c, d: None) as srv:
            s = socket.socket()
            self.addCleanup(s.close)
            s.settimeout(TIMEOUT)
            s.connect(srv.address[:2])
            (conn,) = conns.wait(1)
            conn.send(data)  # from this thread, not a callback
            self.assertEqual(read_u32(s), data)
            wait_until(lambda: sys.getrefcount(data) == base,
                       what="the dispatcher to let another thread's send go")

    def test_callback_mode_echo_by_reference_lets_every_payload_go(self):
        # Replies sent by reference from callbacks, released as events come
        # or after a lag: all of them, in the end, with no traffic after.
        sent = []

        def on_message(conn, data):
            sent.append(data)
            if data[0] != 6:  # the last one is kept, not sent: the control
                conn.send(data)

        with ssock.Server("127.0.0.1:0", on_message=on_message) as srv:
            s = socket.socket()
            self.addCleanup(s.close)
            s.settimeout(TIMEOUT)
            s.connect(srv.address[:2])
            for i in range(7):
                s.sendall(struct.pack(">I", BIG) + bytes([i]) * BIG)
            for i in range(6):
                self.assertEqual(read_u32(s), bytes([i]) * BIG)
            # Each held as the control is (the list, the handle's recycling).
            def all_let_go():
                counts = [sys.getrefcount(d) for d in sent]
                return len(counts) == 7 and len(set(counts)) == 1

            wait_until(all_let_go, what="every echoed payload to be let go")

    def test_bytes_queued_to_a_peer_that_never_reads_are_let_go_on_close(self):
        data = b"x" * BIG
        base = sys.getrefcount(data)
        srv = ssock.Server("127.0.0.1:0", send_queue_max=64 << 20)
        s, conn = self.peer(srv, rcvbuf=16384)
        for _ in range(8):
            conn.send(data)
        self.assertGreater(sys.getrefcount(data), base)  # not all can be written
        srv.close()
        self.assertEqual(sys.getrefcount(data), base)

    def test_a_bytearray_changed_after_send_arrives_as_it_was(self):
        with ssock.Server("127.0.0.1:0") as srv:
            s, conn = self.peer(srv, rcvbuf=16384)
            data = bytearray(b"a" * BIG)
            conn.send(data)
            data[:] = b"b" * BIG  # copied: the change does not reach the wire
            self.assertEqual(read_u32(s), b"a" * BIG)

    def test_zero_copy_payload_echoed_by_reference(self):
        got = Collector()
        with ssock.Server("127.0.0.1:0", zero_copy=True,
                          on_message=lambda c, d: c.send(d)) as srv, \
                ssock.Client(srv.address, on_message=lambda c, d: got(bytes(d))) as cli:
            cli.connect(TIMEOUT)
            msgs = [bytes([i]) * (BIG + i) for i in range(5)]
            for m in msgs:
                cli.send(m, timeout=TIMEOUT)
            self.assertEqual(got.wait(5), msgs)

    def test_client_sends_by_reference_offline_and_connected(self):
        got = Collector()
        with ssock.Server("127.0.0.1:0", on_message=lambda c, d: got(d)) as srv:
            cli = ssock.Client(srv.address, queue_while_offline=True)
            data = b"q" * BIG
            base = sys.getrefcount(data)
            cli.send(data)  # offline: held until the connection comes
            self.assertEqual(sys.getrefcount(data), base + 1)
            cli.connect(TIMEOUT)
            cli.send(data, timeout=TIMEOUT)
            self.assertEqual(got.wait(2), [data, data])
            cli.close()
            self.assertEqual(sys.getrefcount(data), base)

    def test_many_sends_by_reference_do_not_leak(self):
        data = b"z" * (256 << 10)
        got = Collector()
        with ssock.Server("127.0.0.1:0", on_message=lambda c, d: got(len(d))) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            base = sys.getrefcount(data)
            for i in range(400):
                cli.send(data, timeout=TIMEOUT)
            got.wait(400)
            cli.flush(TIMEOUT)  # all written: every one given back
            cli.send(b"last")  # a send lets go of what was given back
            got.wait(401)
            self.assertEqual(sys.getrefcount(data), base)


if __name__ == "__main__":
    unittest.main()
