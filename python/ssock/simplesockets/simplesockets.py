"""TCPServer and TCPClient with simplesockets 0.0.8's API, on ssock.

The shape of the original is kept: setup() with the same parameters and
defaults, the callbacks with the same arguments, the polling inbox
(``event.new_data`` and ``return_recved_data()``), the ``event`` flags, the
caught-exception list, ``await_event`` and its constants, ``clients``,
``start/stop/restart/exit_accept/killed``, and the client's
``connect/reconnect/autorecv/disconnect/shutdown/Address``.

What differs, because it was a bug:

* a closed peer is noticed: ``on_disconnect`` runs, the entry leaves
  ``clients``, nothing spins at 100% CPU;
* ``max_connections`` holds: one more is accepted and closed at once (the
  refusal is in ``event.exception.list``), also when the program lowers it
  after ``setup()``;
* ``close()`` (which 0.0.8 lacked) runs ``on_disconnect`` for every client
  and empties ``clients``;
* the inbox is swapped under a lock, so no message is lost between the thread
  that receives and the one that calls ``return_recved_data()``;
* memory is bounded: when ``recved_data`` holds ``MAX_HELD`` entries (or
  ``MAX_HELD_BYTES``), reading stops until the program takes them (TCP
  backpressure) with ``return_recved_data()`` or by itself (assigning
  ``recved_data``, or emptying it in place: that is noticed within 0.1 s).
  Only a program that has an ``on_receive`` and has never taken data from
  ``recved_data`` (``return_recved_data()``, ``recv_data()``, ``await_event()``
  returning data, reading or assigning ``recved_data``) keeps the newest
  entries there instead, so that memory stays bounded: the first time
  ``recved_data`` is full, reading waits ``DROP_GRACE`` (1 s) for the program
  to take data (a polling loop that starts late loses nothing); after that
  the oldest entries are dropped, and one ``OverflowError`` in
  ``event.exception.list`` says so. ``event.exception.list`` keeps the
  newest ``MAX_EXCEPTIONS``. A server's ``recv_data(client)`` takes only that
  client's data: while the others' unread entries fill ``recved_data``,
  reading stops for all, and it waits until the program takes those too
  (the price of the bound). ``recved_data`` takes a list (kept as is) or
  another iterable (copied into a list); None, a string or bytes raise
  TypeError and change nothing (they used to be stored, and receiving then
  failed on every message); whatever goes wrong handling one event on a
  client's autorecv thread is recorded in ``event.exception.list`` and the
  thread goes on;
* what ``send_data`` queued still goes out when the program ends (or calls
  ``close()``, ``disconnect()``, ``shutdown()``) right after it, for up to
  ``send_timeout`` seconds while the peer is slow to read: 0.0.8's
  ``send_data`` returned once the data was in the kernel;
* ``send_data`` waits up to ``send_timeout`` (10 s) for room in a full send
  queue (32 MiB a connection), except inside a callback: the callbacks share
  one thread (a server's, for all its clients; a client's autorecv thread),
  so there a full queue fails at once (``send_data`` returns False, the
  ``SendQueueFullError`` is in ``event.exception.list``) instead of holding
  up every other client while one does not read (and a server's
  ``recv_data`` there returns b'' instead of waiting for what only that
  thread could deliver);
* with ``framing="raw"`` (the default) ``send_data`` takes any size, as
  0.0.8's ``sendall`` did: a payload above ``PIECE`` (8 MiB) is queued in
  pieces, each waiting as above. Should one fail (a full queue inside a
  callback, where a payload larger than the free room fails at once, or
  ``send_timeout`` passing), what was queued before it goes out, the rest
  does not: ``send_data`` returns False and the error, its ``sent`` attribute
  the bytes that went, is in ``event.exception.list`` (as a failed
  ``sendall``, the stream is then cut). With ``"u32"``/``"line"`` one message
  must fit the send queue (above 32 MiB ``send_data`` fails with
  ``MessageTooLargeError``) and the receiver's ``max_message`` (16 MiB by
  default: above it the receiver ends the connection);
* ``await_event`` waits on a condition instead of spinning, and reading
  ``event.new_data`` (or ``new_data_recved``) in a tight loop sleeps a few ms
  per read while nothing arrives, so a ``while True: if new_data`` loop no
  longer burns a CPU (it still sees new data at once);
* a client lets go of its threads and descriptors at ``disconnect()`` and
  ``shutdown()`` (what it queued goes out first); a later ``connect()`` or
  ``reconnect()`` starts a new connection, and autorecv with it if it was on;
  ``reconnect()`` while connected reports no end of the connection it
  replaces; ``connect()`` while connected fails (returns False, EISCONN in
  ``event.exception.list``) as 0.0.8's did, and of two ``connect()`` calls
  at once one connects and the other fails so; connect, reconnect,
  disconnect, shutdown, close and autorecv are serialised, also when a
  callback calls them (``reconnect()`` in ``on_disconnect`` while the
  program calls ``connect()``: one connection, nothing raised);
  ``disconnect()`` after the peer closed returns False (ENOTCONN recorded)
  and still lets go of everything;
* IPv6 works (``ip="::1"``), and ``ip=""`` means every address, v4 and v6;
* a 2048-byte message is not held back, and 2 sends are 2 messages with
  ``framing="u32"`` (the default ``"raw"`` keeps simplesockets' wire, where
  TCP may merge or split them, so real simplesockets peers still talk to it).
"""
import collections.abc
import errno
import os
import select
import socket
import threading
import time
import traceback

import ssock

from .._sockproxy import SocketProxy
from ._support_files.error import SetupError

__all__ = ["TCPServer", "TCPClient", "SetupError"]

MAX_HELD = 1024  # entries recved_data holds before reading stops
MAX_HELD_BYTES = 64 << 20  # ... or payload bytes
DROP_GRACE = 1.0  # seconds a full recved_data waits before it drops (see put)
MAX_EXCEPTIONS = 256  # newest entries event.exception.list keeps
PIECE = 8 << 20  # raw framing: a larger payload goes out in pieces of this size
READ_SIZE = 65536  # raw framing: bytes per read (at least recv_buffer)
SPIN_WINDOW = 0.002  # reads of a False new_data this close together are a spin...
SPIN_PAUSE = 0.005  # ... and wait this long (or until data comes) before answering


def _addr(host, port):
    host = "" if host is None else str(host)
    if ":" in host:
        return f"[{host}]:{int(port)}"
    return f"{host}:{int(port)}"


def _send(owner, send, data, timeout):
    """send(data, timeout=timeout), the native send of a connection. With raw
    framing (no message boundaries on the wire) a payload above PIECE goes
    in pieces (memoryview slices: no copy here), each with the same timeout,
    so that one above the send queue (32 MiB) goes out as 0.0.8's sendall
    sent it. A failed piece raises its error, with ``sent``: the payload's
    bytes queued before it (the rest is not sent)."""
    if owner._framing == "raw":
        try:
            view = memoryview(data)
        except TypeError:
            view = None
        if view is not None and view.nbytes > PIECE:
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            sent = 0
            try:
                while sent < len(view):
                    piece = view[sent:sent + PIECE]
                    send(piece, timeout=timeout)
                    sent += len(piece)
            except ssock.Error as e:
                e.sent = sent
                raise
            return
    send(data, timeout=timeout)


def _record(owner, exc):
    """Adds (traceback text, exception) to the owner's exception list."""
    if isinstance(exc, BaseException) and exc.__traceback__ is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        text = "".join(traceback.format_exception_only(type(exc), exc))
    with owner._cond:
        lst = owner.event.exception.list
        lst.append((text, exc))
        if len(lst) > MAX_EXCEPTIONS:
            del lst[: len(lst) - MAX_EXCEPTIONS]
        owner.event.exception.occurred = True
        owner._cond.notify_all()


class _Exceptions:
    def __init__(self):
        self.occurred = False
        self.list = []


class _NewDataFlag:
    """event.new_data: a flag whose False reads, when they come in a tight
    loop, wait a little for data instead of answering at once."""

    def __init__(self, owner):
        self._owner = owner
        self._value = False
        self._last_miss = 0.0

    def get(self):
        if self._value:
            return True
        now = time.monotonic()
        if now - self._last_miss < SPIN_WINDOW:
            with self._owner._cond:
                if not self._value:
                    self._owner._cond.wait(SPIN_PAUSE)
            now = time.monotonic()
        self._last_miss = now
        return self._value


class _Accept:
    """event.accepting_thread: ``run`` pauses or resumes accepting."""

    def __init__(self, server):
        self._server = server

    @property
    def run(self):
        return self._server._run

    @run.setter
    def run(self, value):
        self._server._run = bool(value)
        self._server._apply_accepting()


class _ServerEvent:
    def __init__(self, server):
        self.exception = _Exceptions()
        self.accepting_thread = _Accept(server)
        self._new_data = _NewDataFlag(server)

    @property
    def new_data(self):
        return self._new_data.get()

    @new_data.setter
    def new_data(self, value):
        self._new_data._value = bool(value)


class _ClientEvent:
    def __init__(self, client):
        self._client = client
        self.exception = _Exceptions()
        self._new_data = _NewDataFlag(client)
        self.disconnected = False
        self.connected = False
        self._is_connected = False

    @property
    def new_data(self):
        return self._new_data.get()

    @new_data.setter
    def new_data(self, value):
        self._new_data._value = bool(value)

    @property
    def is_connected(self):
        """True while connected (read live: a lost connection shows at once)."""
        native = self._client._native
        return self._is_connected and native is not None and native.connected

    @is_connected.setter
    def is_connected(self, value):
        self._is_connected = bool(value)


class _ClientThread:
    """What clients[address][0] was (the client's thread): is_alive() and
    join() follow the connection."""

    def __init__(self, conn):
        self._conn = conn

    def is_alive(self):
        return self._conn.open

    def join(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._conn.server_cond:
            while self._conn.open:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._conn.server_cond.wait(left)


class _ListenerProxy:
    """Server.socket: the listening socket, for what programs ask of it."""

    def __init__(self, server):
        self._server = server

    def getsockname(self):
        if self._server._native is None:
            raise OSError(errno.EINVAL, "not bound: call setup() first")
        return self._server._native.address

    def fileno(self):
        raise OSError(errno.EOPNOTSUPP, "ssock owns the listening socket")

    def close(self):
        self._server.close()

    def __repr__(self):
        native = self._server._native
        return f"<ssock listening socket {native.address if native else 'unbound'}>"


def _size(entry):
    """The payload bytes of a recved_data entry (a server's (socket, address,
    data), a client's data); 0 for what a program put there itself."""
    try:
        return len(entry[-1]) if isinstance(entry, tuple) else len(entry)
    except TypeError:
        return 0


class _Holder:
    """The bounded recved_data of a server or client (the owner's _cond held).

    The program may take entries itself: assign recved_data (the owner's
    setter recounts and notifies) or change the list in place (clear(), pop(),
    del: nobody is told, so the count is redone whenever the list's length is
    not what it was, and a full list is looked at again every RECHECK s)."""

    RECHECK = 0.1

    @staticmethod
    def recount(owner):
        lst = owner._recved
        owner._held = sum(_size(e) for e in lst)
        owner._held_len = len(lst)

    @staticmethod
    def full(owner, size):
        if len(owner._recved) != owner._held_len:
            _Holder.recount(owner)
        lst = owner._recved
        return bool(lst) and (len(lst) >= MAX_HELD or owner._held + size > MAX_HELD_BYTES)

    @staticmethod
    def put(owner, entry, size, stop=None):
        while not owner._closing and not (stop and stop()) and _Holder.full(owner, size):
            if callable(owner.on_receive) and not owner._taken:
                # The program has taken nothing from recved_data (yet): it may
                # use on_receive only, or be about to start polling. It gets
                # DROP_GRACE s to take; then the oldest entries are dropped
                # (memory stays bounded), and that is recorded once.
                if not owner._dropped:
                    now = time.monotonic()
                    if owner._full_since is None:
                        owner._full_since = now
                    left = owner._full_since + DROP_GRACE - now
                    if left > 0:
                        owner._cond.wait(min(left, _Holder.RECHECK))
                        continue
                    owner._dropped = True
                    _record(owner, OverflowError(
                        f"recved_data is full ({MAX_HELD} entries or {MAX_HELD_BYTES} bytes) "
                        "and the program takes data through on_receive only: its oldest "
                        "entries are dropped from now on (once it takes data from "
                        "recved_data, none are)"))
                owner._held -= _size(owner._recved.pop(0))
                owner._held_len -= 1
                continue
            owner._cond.wait(_Holder.RECHECK)  # backpressure: reading stops until taken
        owner._recved.append(entry)
        owner._held += size
        owner._held_len = len(owner._recved)
        owner.event._new_data._value = True
        owner._cond.notify_all()

    @staticmethod
    def set(owner, value):
        owner._recved = value
        _Holder.recount(owner)
        owner._cond.notify_all()

    @staticmethod
    def take(owner):
        owner._taken = True
        data = owner._recved
        _Holder.set(owner, [])
        owner.event._new_data._value = False
        return data


class _RecvedData:
    """recved_data, for TCPServer and TCPClient: the list of what came (a
    property, so that a program that assigns it lets reading go on)."""

    @property
    def recved_data(self):
        self._taken = True  # the program looks at it: it may take from it
        return self._recved

    @recved_data.setter
    def recved_data(self, value):
        """A list (kept as is: the program may go on changing it in place), or
        any other iterable but a string or a mapping (copied into a new list);
        anything else raises TypeError and changes nothing."""
        if not isinstance(value, list):
            if value is None or isinstance(value, (str, bytes, bytearray, memoryview,
                                                   collections.abc.Mapping)):
                raise TypeError(f"recved_data must be a list, not {type(value).__name__}")
            try:
                value = list(value)
            except TypeError:
                raise TypeError(
                    f"recved_data must be a list, not {type(value).__name__}") from None
        with self._cond:
            self._taken = True
            _Holder.set(self, value)


class TCPServer(_RecvedData):
    """A TCP server with simplesockets 0.0.8's API (see the module docstring)."""

    EVENT_EXCEPTION = "--EXCEPTION--"
    EVENT_RECEIVED = "--RECEIVED--"
    EVENT_TIMEOUT = "--TIMEOUT--"

    send_timeout = 10.0  # seconds send_data() waits for room in a full queue

    def __init__(self, max_connections=None):
        self._cond = threading.Condition()
        self._native = None
        self._dispatcher = None  # threading.get_ident() of the native callbacks' thread
        self._kill = False
        self._run = True
        self._closing = False
        self._held = 0  # payload bytes in recved_data
        self._held_len = 0  # its length when _held was counted
        self._taken = False  # the program took data from recved_data (then none is dropped)
        self._dropped = False  # entries were dropped (recorded once)
        self._full_since = None  # when a full recved_data first waited for that
        self._framing = "raw"
        self.__IP = None
        self.__PORT = None
        self.__recv_buffer = 2048
        self.socket = _ListenerProxy(self)
        self.clients = {}  # address -> [connection stand-in, client socket]
        self._recved = []  # recved_data
        self.event = _ServerEvent(self)
        self._max_connections = max_connections
        self.on_connect = None
        self.on_disconnect = None
        self.on_receive = None

    def __str__(self):
        return (f"[socket : {self.socket}, address : ({self.__IP},{self.__PORT}), "
                f"receive buffer: {self.__recv_buffer}]")

    def __repr__(self):
        return f"[{self.socket},({self.__IP},{self.__PORT}),{self.__recv_buffer}]"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- set-up and accepting ----------------------------------------------

    def setup(self, ip: str = socket.gethostname(), port: int = 25567, listen: int = 5,
              recv_buffer: int = 2048, handle_client=None, on_connect=None,
              on_disconnect=None, on_receive=None, *, framing: str = "raw",
              max_message: int = None):
        """Binds, listens and starts accepting. framing: "raw" (simplesockets'
        wire, the default) or "u32"/"line" for whole messages when the program
        controls both ends; max_message bounds one message (default 16 MiB)."""
        if handle_client is not None:
            raise NotImplementedError(
                "handle_client: ssock reads the sockets itself; use on_receive or "
                "return_recved_data() (the original recommended leaving it None)")
        if self._native is not None:
            raise SetupError("setup() was called already")
        self.__IP, self.__PORT, self.__recv_buffer = ip, port, recv_buffer
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_receive = on_receive
        self._framing = framing
        self._native = ssock.Server(
            _addr(ip, port), framing=framing, backlog=listen,
            max_conns=self.max_connections or 0, max_message=max_message,
            read_size=max(int(recv_buffer), READ_SIZE) if framing == "raw" else None,
            linger=self.send_timeout,
            on_connect=self._on_connect, on_message=self._on_message,
            on_disconnect=self._on_disconnect, on_error=self._on_error)
        self._apply_accepting()

    def _apply_accepting(self):
        native = self._native
        if native is None or native.closed:
            return
        if self._run and not self._kill:
            native.resume()
        else:
            native.pause()

    def start(self):
        """Starts (or resumes) accepting."""
        if self._native is None:
            raise SetupError("Server isn't setup")
        self.event.accepting_thread.run = True

    def stop(self):
        """Pauses accepting (listeners stay bound; the backlog fills)."""
        self.event.accepting_thread.run = False

    def exit_accept(self):
        """Stops accepting until restart()."""
        self._kill = True
        self.event.accepting_thread.run = False

    def restart(self):
        """After exit_accept(): accepting resumes once event.accepting_thread.run
        is True again (start())."""
        if not self._kill:
            raise Exception("Can't restart stopped or running thread")
        self._kill = False
        self._apply_accepting()

    @property
    def killed(self) -> bool:
        return self._kill

    @property
    def max_connections(self):
        """The most connections at once (None or 0: no limit). Read at every
        accept, as 0.0.8 did: what setup() saw is enforced by ssock itself, a
        lower value set later here (a higher one cannot lift that)."""
        return self._max_connections

    @max_connections.setter
    def max_connections(self, value):
        self._max_connections = value

    def close(self):
        """Closes the server and every connection (not in simplesockets 0.0.8,
        which never let go of its sockets); on_disconnect runs for each client,
        and clients empties."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._native is not None:
            self._native.close()
        with self._cond:
            gone = []
            for address, (thread, proxy) in self.clients.items():
                conn = proxy._conn
                if not conn.notified:
                    conn.notified = True
                    gone.append(address)
            self.clients.clear()
            self._cond.notify_all()
        for address in gone:
            if callable(self.on_disconnect):
                self.on_disconnect(address)

    # -- the native callbacks (ssock's dispatcher thread) ------------------

    def _on_connect(self, conn):
        self._dispatcher = threading.get_ident()
        address = conn.peer
        conn.address = address
        conn.proxy = SocketProxy(conn, raw=self._framing == "raw")
        conn.server_cond = self._cond
        conn.notified = False
        conn.refused = False
        limit = self._max_connections
        with self._cond:
            if limit and len(self.clients) >= limit:
                # Lowered after setup(): refused here as ssock refuses over the
                # limit it was given (closed at once, a LimitError recorded).
                conn.refused = conn.notified = True
            else:
                self.clients[address] = [_ClientThread(conn), conn.proxy]
            self._cond.notify_all()
        if conn.refused:
            conn.close()
            err = ssock._ssock._make_error(ssock.ELIMIT, "accept")
            err.peer, err.conn_id = address, conn.id
            err.args = (f"accept {_addr(*address[:2])}: {ssock.strerror(ssock.ELIMIT)}",)
            _record(self, err)
            return
        if callable(self.on_connect):
            self.on_connect(address)

    def _on_message(self, conn, data):
        self._dispatcher = threading.get_ident()
        if getattr(conn, "refused", False):
            return
        with self._cond:
            _Holder.put(self, (conn.proxy, conn.address, data), len(data))
        if callable(self.on_receive):
            self.on_receive(conn.proxy, conn.address, data)

    def _on_disconnect(self, conn, err):
        self._dispatcher = threading.get_ident()
        if getattr(conn, "refused", False):
            return
        with self._cond:
            entry = self.clients.get(conn.address)
            if entry is not None and entry[1] is conn.proxy:
                del self.clients[conn.address]
            notify = not conn.notified
            conn.notified = True
            self._cond.notify_all()
        if err is not None and err.code != ssock.ELOCAL:
            _record(self, err)
        if notify and callable(self.on_disconnect):
            self.on_disconnect(conn.address)

    def _on_error(self, err):
        self._dispatcher = threading.get_ident()
        _record(self, err)

    def _in_callback(self):
        """True on the thread that runs every callback of this server."""
        return threading.get_ident() == self._dispatcher

    # -- the program's calls -----------------------------------------------

    def _conn_of(self, client):
        """The ssock Conn of a client socket, Conn or address."""
        if isinstance(client, SocketProxy):
            return client._conn
        if isinstance(client, ssock.Conn):
            return client
        with self._cond:
            entry = self.clients.get(tuple(client) if isinstance(client, list) else client)
        return entry[1]._conn if entry else None

    def send_data(self, data: bytes, client_socket) -> bool:
        """Sends data to a client (its socket, as recved_data hands it over, or
        its address). Returns False (the error in event.exception.list) when it
        could not be queued: after send_timeout seconds of a full queue, or at
        once when called from a callback (which must not hold up the others).
        With raw framing any size goes (in pieces of PIECE bytes, each waiting
        so); should a piece fail, the error (its ``sent``: the bytes that went)
        is recorded and the rest is not sent. With u32/line framing one
        message must fit the send queue (32 MiB; else MessageTooLargeError)
        and the peer's max_message (16 MiB by default; else the peer ends the
        connection)."""
        conn = self._conn_of(client_socket)
        if conn is None:
            _record(self, KeyError(f"no such client: {client_socket!r}"))
            return False
        try:
            _send(self, conn.send, data, 0 if self._in_callback() else self.send_timeout)
            return True
        except ssock.Error as e:
            _record(self, e)
            return False

    def recv_data(self, client_socket) -> bytes:
        """The next data that client sent (taken out of recved_data); b'' once
        it is gone. Not needed with return_recved_data().

        It takes only that client's data: what the others send stays in
        recved_data, and once that holds MAX_HELD entries (or MAX_HELD_BYTES)
        reading stops for every client, this one too, so recv_data waits until
        the program takes the others' data as well (return_recved_data(), or
        recv_data for each of them). The bound on memory makes this so."""
        conn = self._conn_of(client_socket)
        if conn is None:
            return b""
        with self._cond:
            self._taken = True
            while True:
                for i, entry in enumerate(self._recved):
                    if isinstance(entry, tuple) and entry[0] is conn.proxy:
                        del self._recved[i]
                        _Holder.recount(self)
                        self._cond.notify_all()
                        return entry[2]
                if not conn.open or self._closing or self._in_callback():
                    return b""  # (in a callback: what it waits for comes after it)
                self._cond.wait()

    def return_recved_data(self):
        """Every (client_socket, address, data) received since the last call."""
        with self._cond:
            return _Holder.take(self)

    @property
    def new_data_recved(self):
        """The name older simplesockets docs use for event.new_data."""
        return self.event.new_data

    def disconnect(self, address):
        """Disconnects a client, by address or by its client socket. What was
        sent to it before still goes out."""
        conn = self._conn_of(address)
        if conn is None:
            _record(self, KeyError(f"no such client: {address!r}"))
            return
        with self._cond:
            entry = self.clients.get(conn.address)
            if entry is not None and entry[1] is conn.proxy:
                del self.clients[conn.address]
            notify = not conn.notified
            conn.notified = True
        try:
            conn.close()
        except ssock.Error as e:
            _record(self, e)
        if notify and callable(self.on_disconnect):
            self.on_disconnect(conn.address)

    def return_exceptions(self, delete: bool = True, reset_exception: bool = True) -> list:
        with self._cond:
            exceptions = list(self.event.exception.list)
            if delete:
                self.event.exception.list = []
            if reset_exception:
                self.event.exception.occurred = False
        return exceptions

    def await_event(self, timeout: int = 0):
        """Waits (no spinning) for an exception or data; timeout in ms, 0: none.
        Returns (EVENT_EXCEPTION, exceptions), (EVENT_RECEIVED, data list) or
        (EVENT_TIMEOUT, None)."""
        deadline = None if timeout <= 0 else time.monotonic() + timeout / 1000
        with self._cond:
            while True:
                if self.event.exception.occurred:
                    return self.EVENT_EXCEPTION, self.return_exceptions()
                if self.event._new_data._value:
                    return self.EVENT_RECEIVED, self.return_recved_data()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self.EVENT_TIMEOUT, None
                self._cond.wait(left)


_local = threading.local()  # .client: the TCPClient whose autorecv thread this is


class _Receiver:
    """One autorecv thread's state, swapped as a whole (TCPClient._rx)."""

    def __init__(self, native, prev):
        self.native = native
        self.prev = prev  # the receiver before: this one waits for it to drain
        self.stop = threading.Event()  # set (under the client's _cond): end
        self.drain = False  # the handle was let go of: what arrived goes to recved_data
        self.drained = False  # ended (under the client's _cond)
        self.close_after = None  # a handle let go of from its own callback
        self.thread = None
        self._lock = threading.Lock()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def wake(self):
        with self._lock:
            if self.wake_fd is not None:
                os.eventfd_write(self.wake_fd, 1)

    def close_fd(self):
        with self._lock:
            if self.wake_fd is not None:
                os.close(self.wake_fd)
                self.wake_fd = None


class TCPClient(_RecvedData):
    """A TCP client with simplesockets 0.0.8's API (see the module docstring)."""

    EVENT_EXCEPTION = "--EXCEPTION--"
    EVENT_RECEIVED = "--RECEIVED--"
    EVENT_TIMEOUT = "--TIMEOUT--"
    EVENT_DISCONNECT = "--DISCONNECT--"
    EVENT_CONNECTED = "--CONNECTED--"

    send_timeout = 10.0  # seconds send_data() waits for room in a full queue
    connect_timeout = 10.0  # seconds connect() waits

    def __init__(self):
        self._cond = threading.Condition()
        self._native = None
        # The connection's life cycle (connect, reconnect, autorecv, disconnect,
        # shutdown, close) is serialised by _life; none of them waits for a
        # thread while holding it, nor calls a callback.
        self._life = threading.RLock()
        self._autorecv = False  # autorecv() is on (its thread runs while connected)
        self._rx = None  # the _Receiver of the autorecv thread there is now (under _life)
        self._last_rx = None  # the one before: a new one waits for it to drain
        self._closing = False
        self._held = 0  # payload bytes in recved_data
        self._held_len = 0  # its length when _held was counted
        self._taken = False  # the program took data from recved_data (then none is dropped)
        self._dropped = False  # entries were dropped (recorded once)
        self._full_since = None  # when a full recved_data first waited for that
        self._framing = "raw"
        self._max_message = None
        self._setup_flag = False
        self._connected = False  # one-shot flags for await_event
        self._disconnected = False
        self._live_id = None  # the id of the connection that is this client's now
        self.__target_ip = None
        self.__target_port = None
        self.__recv_buffer = None
        self.socket = SocketProxy(raw=True)
        self._recved = []  # recved_data
        self.event = _ClientEvent(self)
        self.on_connect = None
        self.on_disconnect = None
        self.on_receive = None

    def __str__(self):
        return (f"[socket : {self.socket}, target address : ({self.__target_ip},"
                f"{self.__target_port}), receive buffer: {self.__recv_buffer}]")

    def __repr__(self):
        return f"[{self.socket},({self.__target_ip},{self.__target_port}),{self.__recv_buffer}]"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def Address(self):
        return (self.__target_ip, self.__target_port)

    @property
    def new_data_recved(self):
        """The name older simplesockets docs use for event.new_data."""
        return self.event.new_data

    def setup(self, target_ip: str, target_port: int = 25567, recv_buffer: int = 2048,
              on_connect=None, on_disconnect=None, on_receive=None, *,
              framing: str = "raw", max_message: int = None):
        """Prepares the client. framing: "raw" (simplesockets' wire, the
        default) or "u32"/"line" when the program controls both ends."""
        self.__target_ip, self.__target_port = target_ip, target_port
        self.__recv_buffer = recv_buffer
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_receive = on_receive
        self._framing = framing
        self._max_message = max_message
        self._setup_flag = True

    def start(self):
        """Does nothing: the simplesockets docs call it before connect(), and
        0.0.8 had no such method. Connect with connect()."""

    def _new_native(self):
        """A native handle for one connection: every connect() (and reconnect())
        gets a new one, so nothing of an earlier connection (its DISCONNECT,
        what it left in the inbox) is taken for this one's."""
        native = ssock.Client(
            _addr(self.__target_ip, self.__target_port), framing=self._framing,
            max_message=self._max_message, connect_timeout=self.connect_timeout,
            read_size=max(int(self.__recv_buffer or 0), READ_SIZE)
            if self._framing == "raw" else None, linger=self.send_timeout)
        self.socket._handle = native
        return native

    def _is_live(self):
        native = self._native
        return native is not None and not native.closed and native.connected

    def connect(self) -> bool:
        """Connects; True on success, False with the error in
        event.exception.list (also when connected already: EISCONN, as the
        original's socket said; of two connect() calls at once, one connects
        and the other fails so)."""
        if not self._setup_flag:
            raise SetupError("Server isn't setup")
        return self._connect(replace=False)

    def reconnect(self) -> bool:
        """Drops the connection (if any: what it queued goes out first) and
        connects again (if another thread connects meanwhile, that connection
        is kept, and reconnect() returns True)."""
        if not self._setup_flag:
            raise SetupError("Server isn't setup")
        with self._cond:
            self.event.connected = False
            self.event.disconnected = False
        return self._connect(replace=True)

    def _connect(self, replace):
        """connect() and reconnect(): what there is (a lost connection, or for
        reconnect() the live one) is let go of first, its autorecv thread
        waited for outside _life; then, under _life, the new connection is
        made, unless another thread made one meanwhile."""
        dropped = False
        while True:
            with self._life:
                if self._is_live() and (dropped or not replace):
                    if replace:  # ours was let go of; another thread connected since
                        return True
                    _record(self, OSError(errno.EISCONN, os.strerror(errno.EISCONN)))
                    return False
                if self._native is None and self._rx is None:
                    if self._open_native() is None:
                        return False
                    break
                old = self._detach()
                dropped = True
            self._finish(old)
        if callable(self.on_connect):
            self.on_connect()
        return True

    def _open_native(self):
        """Under _life: a new connection (and autorecv, if on); None (recorded)
        when it fails."""
        try:
            native = self._new_native()
            try:
                native.connect(timeout=self.connect_timeout)
            except BaseException:
                native.close()
                raise
        except Exception as e:
            self.socket._handle = None
            _record(self, e)
            return None
        with self._cond:
            self._native = native
            self._live_id = native.id
            self.event.is_connected = True
            self.event.connected = True
            self._connected = True
            self._cond.notify_all()
        if self._autorecv:
            self._start_receiving()
        return native

    def _detach(self):
        """Under _life: takes the native handle and the autorecv thread away
        from the client (the thread is told to end: what arrived goes to
        recved_data first). Returns them for _finish(), to be called once
        _life is let go of."""
        with self._cond:
            native, self._native = self._native, None
            self._live_id = None
            rx, self._rx = self._rx, None
            if rx is not None:
                rx.drain = native is not None
                rx.stop.set()
                self._last_rx = rx
            self._cond.notify_all()  # a put() waiting for room gives up
        self.socket._handle = None
        if rx is not None:
            rx.wake()
        return rx, native

    def _detach_receiver(self):
        """Under _life: as _detach(), the autorecv thread only (autorecv off)."""
        with self._cond:
            rx, self._rx = self._rx, None
            if rx is not None:
                rx.stop.set()
                self._last_rx = rx
            self._cond.notify_all()
        if rx is not None:
            rx.wake()
        return rx, None

    def _finish(self, old):
        """Not under _life: waits for the autorecv thread that was taken away
        (unless it is this thread: in a callback, it ends, and closes the
        handle, once the callback returns), then closes the handle, giving
        what is queued `linger` seconds to go out."""
        rx, native = old
        if rx is not None:
            if rx.thread is threading.current_thread():
                if native is not None:
                    rx.close_after = native
                    native = None
            else:
                rx.thread.join()
        if native is not None:
            native.close()

    def _in_callback(self):
        """True on an autorecv thread of this client (it runs on_receive and
        on_disconnect), also after the callback let go of its connection."""
        return getattr(_local, "client", None) is self

    def send_data(self, data: bytes) -> bool:
        """Sends data; False (the error in event.exception.list) when it could
        not be queued: after send_timeout seconds of a full queue, or at once
        when called from a callback (autorecv must not stop for it). With raw
        framing any size goes (in pieces of PIECE bytes, each waiting so);
        should a piece fail, the error (its ``sent``: the bytes that went) is
        recorded and the rest is not sent. With u32/line framing one message
        must fit the send queue (32 MiB; else MessageTooLargeError) and the
        peer's max_message (16 MiB by default; else the peer ends the
        connection)."""
        try:
            native = self._native
            if native is None:
                raise ssock._ssock._make_error(ssock.ENOTCONN)
            _send(self, native.send, data, 0 if self._in_callback() else self.send_timeout)
            return True
        except ssock.Error as e:
            _record(self, e)
            return False

    def return_recved_data(self) -> list:
        """Everything autorecv() received since the last call."""
        with self._cond:
            return _Holder.take(self)

    def recv_data(self) -> bytes:
        """Waits for the next data and returns it; b'' once the connection is
        gone. (With autorecv() on, the data goes to recved_data instead.)"""
        self._taken = True
        if self._native is None:
            return b""
        try:
            return self._native.recv()
        except (ssock.NotConnectedError, ssock.ClosedError):
            return b""

    def autorecv(self) -> bool:
        """Toggles the background receiving (off at first): what arrives goes to
        recved_data and on_receive. It stays on across disconnect() and
        connect() (shutdown() turns it off)."""
        with self._life:
            if not self._autorecv:
                native = self._native
                if native is None or native.closed:
                    _record(self, ssock._ssock._make_error(ssock.ENOTCONN))
                    return False
                self._autorecv = True
                if self._rx is None:
                    self._start_receiving()
                return True
            self._autorecv = False
            old = self._detach_receiver()
        self._finish(old)
        return True

    def _start_receiving(self):
        """Under _life: starts the autorecv thread of the native handle there
        is now; it is self._rx once started (never before)."""
        rx = _Receiver(self._native, self._last_rx)
        rx.thread = threading.Thread(target=self._receiving, args=(rx,), daemon=True,
                                     name="simplesockets-autorecv")
        try:
            rx.thread.start()
        except BaseException as e:
            rx.close_fd()
            _record(self, e)
            return
        self._rx = rx

    def _receiving(self, rx):
        """The autorecv thread of one native handle: ends when told to (autorecv
        off, the handle let go of: then what arrived before goes to
        recved_data first). Whatever goes wrong with one event is recorded,
        and it goes on."""
        _local.client = self
        native = rx.native
        prev, rx.prev = rx.prev, None
        try:
            if prev is not None:  # what the one before had goes first
                with self._cond:
                    self._cond.wait_for(lambda: prev.drained or rx.stop.is_set())
            poller = select.poll()
            poller.register(native.fileno(), select.POLLIN)
            poller.register(rx.wake_fd, select.POLLIN)
            while not rx.stop.is_set() and not self._closing:
                poller.poll()
                try:
                    os.eventfd_read(rx.wake_fd)
                except BlockingIOError:
                    pass
                while not rx.stop.is_set():
                    ev = native.next_event(0)
                    if ev is None:
                        break
                    self._handle_safely(native, ev, rx)
            if rx.drain and not native.closed:
                while True:  # released: what arrived before goes to recved_data
                    ev = native.next_event(0)
                    if ev is None:
                        break
                    self._handle_safely(native, ev, rx)
        except ssock.ClosedError:
            pass
        except Exception as e:
            _record(self, e)
        finally:
            with self._cond:
                rx.drained = True
                self._cond.notify_all()
            rx.close_fd()
            native, rx.close_after, rx.native = rx.close_after, None, None
            if native is not None:  # let go of from a callback of this thread
                try:
                    native.close()
                except Exception as e:
                    _record(self, e)

    def _handle_safely(self, native, ev, rx):
        try:
            self._handle(native, ev, rx.stop)
        except ssock.ClosedError:
            raise
        except Exception as e:
            _record(self, e)

    def _handle(self, native, ev, stop):
        """One event of a native handle; only the live connection's end counts
        (a handle that was let go of, or a connection reconnect() replaced,
        ended on purpose)."""
        live = native is self._native and (ev.conn is None or ev.conn.id == self._live_id)
        if ev.type is ssock.MESSAGE:
            with self._cond:
                _Holder.put(self, ev.data, len(ev.data),
                            stop=lambda: stop.is_set() or self._native is not native)
            self._call(self.on_receive, ev.data)
        elif ev.type is ssock.DISCONNECT:
            if not live:
                return
            with self._cond:
                self.event.disconnected = True
                self.event.is_connected = False
                self._disconnected = True
                self._cond.notify_all()
            if ev.error is not None and ev.error.code != ssock.ELOCAL:
                _record(self, ev.error)
            self._call(self.on_disconnect)
        elif ev.type is ssock.ERROR:
            _record(self, ev.error)

    def _call(self, fn, *args):
        if callable(fn):
            try:
                fn(*args)
            except Exception as e:
                _record(self, e)

    def shutdown(self):
        """Stops autorecv and closes the connection (queued data goes out
        first); everything of it is let go of."""
        with self._life:
            self._autorecv = False
            old = self._detach()
            self.event.is_connected = False
        self._finish(old)

    def return_exceptions(self, delete: bool = True, reset_exceptions: bool = True) -> list:
        with self._cond:
            exceptions = list(self.event.exception.list)
            if delete:
                self.event.exception.list = []
            if reset_exceptions:
                self.event.exception.occurred = False
        return exceptions

    def disconnect(self) -> bool:
        """Closes the connection gracefully (queued data goes out first) and
        lets go of everything of it (a later connect() starts again, autorecv
        too if it was on); False (recorded) when there was none."""
        with self._life:
            had = self._is_live()
            receiving = self._rx is not None
            old = self._detach()  # also after the peer closed: nothing stays behind
            if had:
                with self._cond:
                    self.event.is_connected = False
                    self.event.disconnected = True
                    self._disconnected = True
                    self._cond.notify_all()
        self._finish(old)
        if not had:
            _record(self, ssock._ssock._make_error(ssock.ENOTCONN))
            return False
        if receiving:  # as autorecv saw the end in 0.0.8
            self._call(self.on_disconnect)
        return True

    def close(self):
        """Closes everything (not in simplesockets 0.0.8)."""
        with self._life:
            with self._cond:
                self._closing = True
                self._autorecv = False
                self._cond.notify_all()
            old = self._detach()
        self._finish(old)

    def await_event(self, timeout: int = 0):
        """Waits (no spinning) for an event; timeout in ms, 0: none. Returns
        (EVENT_EXCEPTION, exceptions), (EVENT_RECEIVED, data list),
        (EVENT_CONNECTED, None), (EVENT_DISCONNECT, None) or
        (EVENT_TIMEOUT, None)."""
        deadline = None if timeout <= 0 else time.monotonic() + timeout / 1000
        with self._cond:
            while True:
                if self.event.exception.occurred:
                    return self.EVENT_EXCEPTION, self.return_exceptions()
                if self.event._new_data._value:
                    return self.EVENT_RECEIVED, self.return_recved_data()
                if self._connected:
                    self._connected = False
                    return self.EVENT_CONNECTED, None
                if self._disconnected:
                    self._disconnected = False
                    return self.EVENT_DISCONNECT, None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self.EVENT_TIMEOUT, None
                self._cond.wait(left)
