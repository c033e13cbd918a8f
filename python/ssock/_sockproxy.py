"""A stand-in for the socket object that simplesockets and tinyproto handed to
their users (``client_socket``, ``conn.socket_o``), for what programs call on
it: getpeername(), settimeout()/gettimeout(), fileno(), close(), shutdown(),
and, where the connection carries raw bytes, send()/sendall().

ssock owns the real socket on its loop thread; reading from it or writing to
it behind ssock's back would break the framing, so what would do that either
goes through ssock (send on a raw connection) or raises OSError saying so.
"""
import errno
import socket


class SocketProxy:
    """The socket-like face of one ssock connection."""

    __slots__ = ("_conn", "_handle", "_timeout", "_raw", "_fileno", "_closed", "__weakref__")

    def __init__(self, conn=None, handle=None, *, raw=False, timeout=None, fileno=None):
        self._conn = conn  # ssock.Conn, or None until connected (a client's)
        self._handle = handle  # the ssock.Client of a client connection
        self._timeout = timeout
        self._raw = raw  # bytes pass straight through: send() is allowed
        self._fileno = fileno  # callable giving a pollable fd, or None
        self._closed = False

    # -- what programs call -------------------------------------------------

    def getpeername(self):
        conn = self._current()
        if conn is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return conn.peer

    def getsockname(self):
        # libssock has no call for a connection's local address (yet).
        raise OSError(errno.EOPNOTSUPP, "ssock does not expose the local address")

    def settimeout(self, value):
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = None if value is None else float(value)

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    def setsockopt(self, *args):
        """Accepted and ignored: ssock sets its sockets up itself (TCP_NODELAY,
        keepalive as configured); changing them behind its back is not offered."""

    def fileno(self):
        if self._fileno is None:
            raise OSError(errno.EOPNOTSUPP, "ssock owns this socket; no fd to hand out")
        return self._fileno()

    @property
    def family(self):
        conn = self._current()
        peer = conn.peer if conn is not None else None
        return socket.AF_INET6 if peer is not None and len(peer) == 4 else socket.AF_INET

    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def send(self, data, flags=0):
        self._send(data)
        return len(data)

    def sendall(self, data, flags=0):
        self._send(data)

    def recv(self, *args):
        raise OSError(errno.EOPNOTSUPP, "ssock delivers what arrives as messages; "
                      "take them from the library, not from the socket")

    recv_into = recvfrom = recv

    def shutdown(self, how):
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self.close()

    def close(self):
        """Closes the connection gracefully (what is queued is sent first)."""
        if self._closed:
            return
        self._closed = True
        conn = self._current()
        try:
            if conn is not None:
                conn.close()
            elif self._handle is not None:
                self._handle.disconnect()
        except Exception:  # already gone: closing is idempotent
            pass

    def detach(self):
        raise OSError(errno.EOPNOTSUPP, "ssock owns this socket")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        conn = self._current()
        peer = conn.peer if conn is not None else None
        state = "closed" if self._closed else "open"
        return f"<ssock socket proxy {state}, raddr={peer}>"

    # -- internal -----------------------------------------------------------

    def _current(self):
        if self._conn is not None:
            return self._conn
        h = self._handle
        if h is not None and not h.closed and h.connected:
            return _ClientConn(h)
        return None

    def _send(self, data):
        if not self._raw:
            raise OSError(errno.EOPNOTSUPP, "this connection is framed by ssock: "
                          "send through the library (transmit/send_data), not the socket")
        conn = self._current()
        if conn is None:
            raise OSError(errno.ENOTCONN, "not connected")
        try:
            conn.send(data, timeout=self._timeout)
        except Exception as e:
            raise OSError(getattr(e, "errno", None) or errno.EPIPE, str(e)) from e


class _ClientConn:
    """A client handle seen as its current connection."""

    __slots__ = ("_h",)

    def __init__(self, h):
        self._h = h

    @property
    def peer(self):
        return self._h.peer

    def send(self, data, timeout=0):
        self._h.send(data, timeout=timeout)

    def close(self):
        self._h.disconnect()
