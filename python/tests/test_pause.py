"""Conn.pause_reading() / resume_reading(): one connection waits, the others
go on, nothing is lost or reordered."""
import socket
import struct
import unittest

import ssock
from support import TIMEOUT


def u32(payload):
    return struct.pack(">I", len(payload)) + payload


class PauseReadingTest(unittest.TestCase):
    def test_a_paused_connection_waits_while_the_others_go_on(self):
        with ssock.Server("127.0.0.1:0") as srv:
            a = socket.create_connection(srv.address, timeout=TIMEOUT)
            conn_a = srv.next_event(TIMEOUT).conn
            b = socket.create_connection(srv.address, timeout=TIMEOUT)
            conn_b = srv.next_event(TIMEOUT).conn
            conn_a.pause_reading()
            conn_a.pause_reading()  # twice is fine
            a.sendall(b"".join(u32(b"a%d" % i) for i in range(100)))
            b.sendall(u32(b"b"))
            ev = srv.next_event(TIMEOUT)
            self.assertEqual((ev.conn, ev.data), (conn_b, b"b"))
            self.assertIsNone(srv.next_event(0.2))  # nothing of a's
            conn_a.resume_reading()
            for i in range(100):
                ev = srv.next_event(TIMEOUT)
                self.assertEqual((ev.conn, ev.data), (conn_a, b"a%d" % i))
            a.close()
            b.close()

    def test_a_client_pauses_too_and_gone_connections_raise(self):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with ls, ssock.Client("127.0.0.1:%d" % ls.getsockname()[1]) as cli:
            cli.connect(TIMEOUT)
            peer = ls.accept()[0]
            conn = cli.next_event(TIMEOUT).conn
            conn.pause_reading()
            peer.sendall(u32(b"x") * 3)
            self.assertIsNone(cli.next_event(0.2))
            conn.resume_reading()
            self.assertEqual([cli.recv(TIMEOUT) for _ in range(3)], [b"x"] * 3)
            peer.close()
            self.assertIs(cli.next_event(TIMEOUT).type, ssock.DISCONNECT)
            with self.assertRaises(ssock.NoConnectionError):
                conn.pause_reading()


if __name__ == "__main__":
    unittest.main()
