"""tinyproto 3.0's wire, byte by byte, on a plain socket: the stand-in for the
real tinyproto library (which can't be installed here) in both roles.

    handshake: each side sends 0xFF and reads one byte (0xFF, else an error);
    a message: the sender sends a 4-byte big-endian size; the receiver answers
    0xFF (accept) or 0x00 (refuse: size above its limit); then the payload.
"""
import socket

from support import TIMEOUT, recv_exact

SC_OK = b"\xff"
SC_REFUSE = b"\x00"
MSG_MAX_SIZE = 0xF0FFFFFF


class Rejected(Exception):
    pass


class Peer:
    def __init__(self, sock, limit=MSG_MAX_SIZE):
        sock.settimeout(TIMEOUT)
        self.sock = sock
        self.limit = limit

    @classmethod
    def connect(cls, addr, **kw):
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(addr[:2])
        return cls(s, **kw)

    def handshake(self):
        self.sock.sendall(SC_OK)
        got = recv_exact(self.sock, 1)
        if got != SC_OK:
            raise Rejected(f"handshake answered {got!r}")
        return self

    def transmit(self, payload):
        self.sock.sendall(len(payload).to_bytes(4, "big"))
        status = recv_exact(self.sock, 1)
        if status != SC_OK:
            raise Rejected(f"status {status!r}")
        self.sock.sendall(payload)

    def receive(self):
        """The next message; None if its size was refused."""
        size = int.from_bytes(recv_exact(self.sock, 4), "big")
        if size > self.limit:
            self.sock.sendall(SC_REFUSE)
            return None
        self.sock.sendall(SC_OK)
        return recv_exact(self.sock, size)

    def at_eof(self):
        """True when the other side closed (nothing more arrives)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


class Listener:
    """A plain listening socket that hands out Peers (the server role)."""

    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, 0), family=family)
        self.sock.settimeout(TIMEOUT)
        self.addr = self.sock.getsockname()

    def accept(self, **kw):
        s, _ = self.sock.accept()
        return Peer(s, **kw)

    def close(self):
        self.sock.close()
