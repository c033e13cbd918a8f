"""TinyProtoConnection: one connection, with tinyproto 3.0's hooks, on ssock.

As in tinyproto, each connection runs on a thread of its own: pre_loop(), then
passes of the connection loop (a message that came is handed to
transmission_received(), then loop_pass() runs), then post_loop(). transmit()
and receive() block and may be called from the hooks or from other threads;
``shutdown = True`` (from anywhere) ends the connection.

Underneath, ssock's C tinyproto framing does the wire work on its loop thread:
the 0xFF handshake, the size / accept byte / payload exchange, refusing sizes
above the limit. So, unlike tinyproto 3.0: nothing polls (a connection whose
loop_pass is not overridden sleeps until a message comes; an overridden one
is called every ``loop_interval`` seconds while idle, and at once again after
a pass that transmitted or received), a peer that closes ends the connection
(post_loop runs, the socket is closed), a truncated header is never delivered
as a message, and the stream never desyncs.
"""
import collections
import errno
import inspect
import logging
import os
import threading

import ssock

from .._sockproxy import SocketProxy
from .connection_details import TinyProtoConnectionDetails  # noqa: F401
from .errors import TinyProtoError
from .plugins import TinyProtoPlugin

log = logging.getLogger(__name__)

SC_OK = 0xFF
SC_GENERIC_ERROR = 0x00
SC_CONLIMIT = 0xFE
SC_CONFLICT = 0xFD

MSG_MAX_SIZE = 0xF0FFFFFF  # tinyproto's limit on one message (a little over 3.7 GiB)

_END = object()  # in a connection's inbox: the connection ended

# tinyproto's transmit() blocked until the payload was written, for up to the
# socket timeout; here it queues. What a client queued gets that long to go out
# when its connection closes (at interpreter exit too); with no timeout (None,
# no limit in tinyproto) this long.
UNBOUNDED_LINGER = 60.0


def linger_for(timeout):
    """Seconds a closing client connection gives its queued messages."""
    return UNBOUNDED_LINGER if timeout is None else float(timeout)


class TinyProtoConnection:
    """One connection. Subclass it and override the hooks (pre_loop, loop_pass,
    post_loop, transmission_received); set it with set_conn_handler()."""

    __slots__ = ("__dict__", "__weakref__")

    loop_interval = 0.03  # seconds an idle pass waits when loop_pass is overridden
    max_held = 1024  # messages waiting for this connection's thread before reading stops
    max_held_bytes = 64 << 20  # ... or their bytes

    def __init__(self, socket_object=None, socket_already_up=True, remote_details=None,
                 connection_plugin_list=(), *args, **kwargs):
        # *args/**kwargs: tinyproto 2's Thread-style arguments are accepted and
        # ignored, so subclasses that pass everything through keep working.
        self._shutdown = False
        self._cond = threading.Condition(threading.Lock())
        self._inbox = collections.deque()
        self._held = 0  # bytes in _inbox
        self._ended = False
        self._end_reason = None
        self._rejected = None
        self._did_work = False
        self._link = None  # the ssock Conn (server side) or Client (client side)
        self._connect = None  # client side: connects the link
        self._on_done = None  # tells the owner this connection's thread ended
        self._on_room = None  # client side: tells the pump to read again
        self._resume = None  # while full: what reads again once half is taken
        self._efd = -1  # socket_o.fileno(): readable while a message waits
        self._up = threading.Event()  # set once connected (or failed to)
        if socket_already_up:
            self._up.set()
        self.connection_lock = threading.RLock()
        self.peername_details = None
        self.socket_o = socket_object
        self.is_socket_up = socket_already_up
        self.remote_details = remote_details
        self.plugin_list = []
        for plugin in connection_plugin_list:
            self.register_plugin(plugin)
        self._connection_loop_thread = threading.Thread(
            target=self._connection_thread_runner, daemon=True, name="tinyproto-connection")

    # -- the flag that ends the connection ----------------------------------

    @property
    def shutdown(self):
        return self.__dict__.get("_shutdown", False)

    @shutdown.setter
    def shutdown(self, value):
        self.__dict__["_shutdown"] = bool(value)
        if value and "_cond" in self.__dict__:
            with self._cond:
                self._cond.notify_all()

    # -- tinyproto's helpers --------------------------------------------------

    def _ba_to_s(self, size_ba):
        "Always 4 byte size!!!"
        if type(size_ba) is not bytearray:
            raise ValueError("Must be a byte array")
        return int.from_bytes(size_ba[:4], "big")

    def _s_to_ba(self, s):
        "Always 4 byte size!!!"
        if type(s) is not int:
            raise ValueError("Must be an integer")
        return bytearray((s & 0xFFFFFFFF).to_bytes(4, "big"))

    def _prep_for_transmit(self, msg):
        if type(msg) is int:
            return bytearray((msg,))
        return bytearray(msg)

    def _process_plugins_transmit(self, msg):
        for p in self.plugin_list:
            msg = p.msg_transmit(msg)
        return msg

    def _process_plugins_receive(self, msg):
        for p in reversed(self.plugin_list):
            msg = p.msg_receive(msg)
        return msg

    def set_socket(self, so, is_up=True, conn_details=None):
        """tinyproto 2's way to hand over the socket."""
        self.socket_o = so
        self.is_socket_up = is_up
        self.remote_details = conn_details

    def register_plugin(self, plugin):
        if isinstance(plugin, type):
            if not issubclass(plugin, TinyProtoPlugin):
                raise ValueError("Not a subclass of TinyProtoPlugin")
            self.plugin_list.append(plugin())
        elif isinstance(plugin, TinyProtoPlugin):
            self.plugin_list.append(plugin)
        else:
            raise ValueError("Not a subclass of TinyProtoPlugin")

    # -- what the owner (server or client pump) calls ------------------------

    def _deliver(self, msg, reader):
        """The server's loop hands a message to the connection's thread. It
        never waits: once max_held messages (or max_held_bytes) wait, the
        connection's reading (`reader`, its Conn) is paused until the thread
        has taken half of them. Its peer waits for the OK byte (TCP pushes
        back) while the server's other connections go on. (The client's
        pump, whose connections have handles of their own, uses _has_room()
        and _hand_over().)"""
        with self._cond:
            if self._resume is None and self._full(len(msg)):
                try:
                    reader.pause_reading()
                    self._resume = reader.resume_reading
                except ssock.Error:
                    pass  # gone: nothing more comes
            self._put(msg)

    def _put(self, msg):
        """Call with _cond held."""
        self._held += len(msg)
        self._inbox.append(msg)
        if len(self._inbox) == 1 and self._efd >= 0:
            os.eventfd_write(self._efd, 1)
        self._cond.notify_all()

    def _full(self, more=0):
        """Whether max_held messages wait, or max_held_bytes would with `more`
        (call with _cond held)."""
        return bool(self._inbox) and (len(self._inbox) >= self.max_held or
                                      self._held + more >= self.max_held_bytes)

    def _has_room(self):
        """The client pump's check, which never waits, before it takes this
        connection's next event. When max_held messages (or max_held_bytes)
        wait it returns False and the pump leaves the events in this
        connection's own handle (whose bound stops reading: TCP pushes back)
        until the connection's thread has taken half of them and _on_room()
        told it to come back. Only the pump adds messages, so room it saw
        stays until it has handed one over (with _hand_over())."""
        with self._cond:
            if self._full():
                self._resume = self._on_room
                return False
            return True

    def _hand_over(self, msg):
        with self._cond:
            self._put(msg)

    def _end(self, reason=None):
        with self._cond:
            if not self._ended:
                self._ended = True
                self._end_reason = reason
                self._inbox.append(_END)
                if len(self._inbox) == 1 and self._efd >= 0:
                    os.eventfd_write(self._efd, 1)
                self._cond.notify_all()

    def _reject(self, err):
        with self._cond:
            self._rejected = err
            self._cond.notify_all()

    def _fileno(self):
        with self._cond:
            if self._efd < 0:
                self._efd = os.eventfd(1 if self._inbox else 0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            return self._efd

    # -- taking messages --------------------------------------------------

    def _next(self, timeout):
        """The next message, _END, or None when timeout (None: no limit) passed
        or shutdown was set."""
        resume = None
        with self._cond:
            if not self._inbox and timeout != 0:
                self._cond.wait_for(lambda: self._inbox or self.shutdown, timeout)
            if not self._inbox:
                return None
            if self._inbox[0] is _END:
                return _END  # stays: every later receive() sees the end too
            msg = self._inbox.popleft()
            self._held -= len(msg)
            if not self._inbox and self._efd >= 0:
                try:
                    os.eventfd_read(self._efd)
                except BlockingIOError:
                    pass
            if self._resume and (len(self._inbox) <= self.max_held // 2 and
                                 self._held <= self.max_held_bytes // 2):
                resume, self._resume = self._resume, None
        if resume is not None:
            try:
                resume()  # the server's Conn reads again, or the client's pump
            except ssock.Error:
                pass  # gone meanwhile
        return msg

    def _timeout(self):
        so = self.socket_o
        return so.gettimeout() if hasattr(so, "gettimeout") else None

    # -- the API -------------------------------------------------------------

    def receive(self):
        """Waits for the next message (as tinyproto: a bytearray, through the
        plugins). Returns False once the connection has ended (and sets
        shutdown); with a socket timeout that passes, logs it, sets shutdown
        and returns an empty bytearray, as tinyproto did."""
        with self.connection_lock:
            msg = self._next(self._timeout())
            if msg is _END:
                self.shutdown = True
                return False
            if msg is None:
                if not self.shutdown:
                    log.error("Shutting down connection on receive due to error timed out")
                    self.shutdown = True
                    return bytearray()
                return False
            self._did_work = True
            return self._process_plugins_receive(msg)

    def transmit(self, msg):
        """Sends msg (bytes-like, or an int for one byte) as one message, after
        the plugins. Blocks while the send queue is full (for the socket
        timeout, when one is set). Raises TinyProtoError if the peer refused an
        earlier message (tinyproto reported that on the refused one itself;
        here the refusal arrives after transmit() returned); on a dead
        connection it logs, sets shutdown and returns, as tinyproto did."""
        with self.connection_lock:
            msg = self._process_plugins_transmit(msg)
            rejected, self._rejected = self._rejected, None
            if rejected is not None:
                raise TinyProtoError(f"Transmission rejected: {rejected}")
            data = bytes((msg,)) if type(msg) is int else msg
            link = self._link
            # A client's connection is made by its thread: sending right after
            # connect_to() waits for it instead of failing (tinyproto raced).
            if not self._up.is_set() and self._connection_loop_thread.ident is not None:
                self._up.wait(self._timeout())
            try:
                if link is None:
                    raise OSError(errno.ENOTCONN, "not connected")
                link.send(data, timeout=self._timeout())
            except ssock.MessageTooLargeError as e:
                raise TinyProtoError(f"Message too large: {e}") from e
            except (ssock.Error, OSError) as e:
                log.error("Shutting down connection on transmit due to error %s", e)
                self.shutdown = True
                return
            self._did_work = True

    def is_alive(self) -> bool:
        return self._connection_loop_thread.is_alive()

    def start(self):
        self._connection_loop_thread.start()

    # -- the connection's thread ----------------------------------------------

    def _initialise_connection(self):
        try:
            if self._connect is not None and not self.is_socket_up:
                self._connect()
                self.is_socket_up = True
            self.peername_details = self.socket_o.getpeername()
        finally:
            self._up.set()

    def _connection_loop(self):
        overridden = type(self).loop_pass is not TinyProtoConnection.loop_pass
        while not self.shutdown:
            if overridden:
                wait = 0 if self._did_work else self.loop_interval
            else:
                wait = None
            self._did_work = False
            msg = self._next(wait)
            if msg is _END:
                self.shutdown = True
                break
            with self.connection_lock:
                if msg is not None:
                    self._did_work = True
                    self.transmission_received(self._process_plugins_receive(msg))
                self.loop_pass()

    def _cleanup_connection(self):
        link = self._link
        try:
            if link is not None and self._connect is not None:
                # The client's handle: what was transmitted gets the socket
                # timeout (as now set) to go out, as tinyproto's blocking
                # transmit did; close() would give it the linger set at start.
                try:
                    if link.connected:
                        link.flush(timeout=linger_for(self._timeout()))
                except (ssock.Error, OSError):
                    pass  # timed out, or the connection ended: close anyway
                link.close()
            elif link is not None:
                link.close()  # graceful: what was transmitted still goes out
        except (ssock.Error, OSError):
            pass
        with self._cond:
            if self._efd >= 0:
                os.close(self._efd)
                self._efd = -1

    def _connection_thread_runner(self):
        try:
            try:
                self._initialise_connection()
            except (OSError, TinyProtoError) as e:
                log.error("Connection could not be established: %s", e)
                self.shutdown = True
                return
            self.pre_loop()
            self._connection_loop()
            self.post_loop()
        finally:
            self._cleanup_connection()
            self._finished = True
            if self._on_done is not None:
                self._on_done()
            if self._connect is not None:
                self._let_go_of_client_handle()

    def _let_go_of_client_handle(self):
        """A client's connection ended and its handle is closed: nothing here
        keeps the handle object (and the descriptor it holds until freed)
        alive, though the connection object stays in active_connections."""
        self._link = None
        self._connect = None
        self._on_done = None
        self._on_room = None
        if isinstance(self.socket_o, SocketProxy):
            self.socket_o._handle = None

    def _done(self):
        """Whether the connection's thread has run its last hook (it may still
        be returning): the owner joins it, then calls conn_shutdown."""
        if self.__dict__.get("_finished"):
            self._connection_loop_thread.join()
            return True
        return self._connection_loop_thread.ident is not None and not self.is_alive()

    # -- the hooks --------------------------------------------------------------

    def pre_loop(self):
        pass

    def post_loop(self):
        pass

    def loop_pass(self):
        pass

    def transmission_received(self, msg):
        pass


def _accepts_kwargs(handler, names):
    """Whether handler(**{name: ...}) fits its __init__ (3.0 style) or it takes
    no arguments (tinyproto 2 style, then set_socket())."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return True
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True
    have = {p.name for p in params}
    return all(n in have for n in names)


def make_connection(handler, plugins, proxy, already_up, remote_details=None):
    """A connection object of the program's handler class, whichever
    tinyproto generation its constructor follows."""
    kwargs = {"socket_object": proxy, "socket_already_up": already_up,
              "connection_plugin_list": plugins}
    if remote_details is not None:
        kwargs["remote_details"] = remote_details
    if _accepts_kwargs(handler, kwargs):
        return handler(**kwargs)
    conn_o = handler()
    if "_cond" not in conn_o.__dict__:  # its __init__ did not call ours
        TinyProtoConnection.__init__(conn_o)
    conn_o.set_socket(proxy, already_up, remote_details)
    for p in plugins:
        conn_o.register_plugin(p)
    return conn_o


def attach(conn_o, link, on_done, connect=None, on_room=None):
    """Binds a connection object to its ssock link (and its socket stand-in's
    fileno() to the connection's inbox)."""
    conn_o._link = link
    conn_o._on_done = on_done
    conn_o._connect = connect
    conn_o._on_room = on_room
    if isinstance(conn_o.socket_o, SocketProxy):
        conn_o.socket_o._fileno = conn_o._fileno


class NoSuchConnection(KeyError, IndexError):
    """A key of active_connections that is not there: a KeyError, as from
    tinyproto 3.0's dict, and for an int an IndexError too, as from tinyproto
    2's list."""


class ConnectionDict(dict):
    """active_connections: by id, as tinyproto 3.0; an int index that is no key
    gives the connection at that position (tinyproto 2's list indexes)."""

    def __missing__(self, key):
        if isinstance(key, int) and not isinstance(key, bool):
            try:
                return list(self.values())[key]
            except IndexError:
                pass
        raise NoSuchConnection(key)
