"""TinyProtoClient: tinyproto 3.0's client, on ssock clients sharing one loop.

connect_to() returns the new connection's id at once (its thread connects,
then runs the hooks), as in tinyproto. start() runs the optional main loop.
One pump thread per TinyProtoClient hands what arrives to the connections
(tinyproto had each connection thread poll its socket 33 times a second);
it and the loop run while the client has connections, and stop when the
last one ended (the next connect_to() starts them again).
"""
import logging
import os
import queue
import select
import threading
import uuid

import ssock

from .._sockproxy import SocketProxy
from .connection import (MSG_MAX_SIZE, ConnectionDict, TinyProtoConnection, attach, linger_for,
                         make_connection)
from .connection_details import TinyProtoConnectionDetails
from .server import check_handler, register_plugin

log = logging.getLogger(__name__)

MAX_TIMEOUT = 2147483.647  # seconds: ssock takes its timeouts in int milliseconds


def _timeout_fits(t):
    """Whether ssock takes t (seconds) as a connect or read timeout: the
    native check itself (a negative, nan, inf or too large one it refuses)."""
    try:
        return t >= 0 and float(t) * 1000.0 <= 2147483647.0
    except OverflowError:
        return False


_ROOM = object()  # in a pump's _added: that handle's connection has room again
_FULL = object()  # _drain's answer: the connection has no room; stop polling it


class _Pump(threading.Thread):
    """Takes the events of every client handle of one TinyProtoClient and
    hands them to their connections. Sleeps in poll() until one comes.

    It owns the ssock.Loop its handles run on. Once every handle it was given
    is closed (each connection's thread closes its own and then calls gone()),
    it stops and closes the loop: a client whose connections all ended keeps
    no thread and no descriptor. `lock` (the client's) orders that against
    connect_to(): under it, a pump either takes a new handle or has stopped
    (and `on_stop` told the client to make a new one)."""

    def __init__(self, lock, on_stop):
        super().__init__(daemon=True, name="tinyproto-client-pump")
        self._lock = lock
        self._on_stop = on_stop
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        # Writers of _wake_fd (connection threads, connect_to) and the pump
        # closing it as it stops: under this lock, so a write never reaches
        # the closed fd, or another descriptor given its number since.
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        self._added = queue.SimpleQueue()
        self.loop = None
        try:
            self.loop = ssock.Loop()
        except BaseException:
            os.close(self._wake_fd)
            raise

    def _wake(self):
        with self._wake_lock:
            if not self._wake_closed:  # else the pump stopped: nothing to wake
                os.eventfd_write(self._wake_fd, 1)

    def add(self, native, conn_o):
        """Call with the client's lock held."""
        self._added.put((native, conn_o))
        self._wake()

    def room(self, native):
        """native's connection took messages: the pump reads it again."""
        self._added.put((native, _ROOM))
        self._wake()

    def gone(self, native):
        """native was closed: the pump lets go of it. Between the put and the
        wake-up the pump may take the note, find no handle left and stop."""
        self._added.put((native, None))
        self._wake()

    def run(self):
        try:
            self._serve()
        finally:
            with self._wake_lock:
                self._wake_closed = True
                os.close(self._wake_fd)
            try:
                self.loop.close()  # its thread and descriptors; every handle is closed
            except ssock.Error as e:
                log.debug("ssock: closing a client loop: %s", e)

    def _serve(self):
        poller = select.poll()
        poller.register(self._wake_fd, select.POLLIN)
        handles = {}  # fd -> (native, conn_o)
        fds = {}  # native -> fd, for every native given and not gone yet
        paused = set()  # fds not polled: their connection's queue is full
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_fd:
                    try:
                        os.eventfd_read(self._wake_fd)
                    except BlockingIOError:
                        pass
                    continue
                entry = handles.get(fd)
                if entry is None or fd in paused:
                    continue
                state = self._drain(*entry)
                if state is _FULL:
                    poller.unregister(fd)
                    paused.add(fd)
                elif not state:
                    poller.unregister(fd)
                    del handles[fd]
            while not self._added.empty():
                native, what = self._added.get()
                fd = fds.get(native)
                if what is None:  # gone: the fd is still open (native is held)
                    if fd is not None:
                        del fds[native]
                        if handles.pop(fd, None) is not None and fd not in paused:
                            poller.unregister(fd)
                        paused.discard(fd)
                elif what is _ROOM:
                    if fd in paused:
                        paused.discard(fd)
                        poller.register(fd, select.POLLIN)
                else:
                    fd = native.fileno()
                    fds[native] = fd
                    handles[fd] = (native, what)
                    poller.register(fd, select.POLLIN)
            native = what = entry = None
            if not fds:
                with self._lock:
                    if self._added.empty():
                        self._on_stop(self)
                        return

    @staticmethod
    def _drain(native, conn_o, budget=256):
        """Hands over the events waiting (up to budget: the other handles get
        their turn, and the next poll() comes back for the rest). Returns
        True, _FULL when the connection has no room left (the pump never
        waits for one), or False once the handle is closed."""
        try:
            for _ in range(budget):
                if not conn_o._has_room():
                    return _FULL
                ev = native.next_event(0)
                if ev is None:
                    return True
                t = ev.type
                if t is ssock.MESSAGE:
                    conn_o._hand_over(bytearray(ev.data))
                elif t is ssock.DISCONNECT:
                    conn_o._end(ev.error)
                elif t is ssock.ERROR and ev.code == ssock.EREFUSED:
                    conn_o._reject(ev.error)
                elif t is ssock.ERROR:
                    log.debug("ssock: %s", ev.error)
            return True
        except ssock.ClosedError:
            conn_o._end(None)
            return False


class TinyProtoClient:
    """tinyproto 3.0's client: connect_to() opens connections handled by
    connection_handler; start() runs the optional main loop."""

    __slots__ = ("__dict__", "__weakref__")

    loop_interval = 0.03  # seconds between loop_pass calls when it is overridden

    def __init__(self, connection_handler=TinyProtoConnection, connection_plugin_list=(),
                 timeout=5):
        self._shutdown = False
        self._cond = threading.Condition()
        self._pump = None
        self._pump_lock = threading.RLock()  # a handler's __init__ may connect_to too
        self.active_connections = ConnectionDict()
        self.connection_handler = check_handler(connection_handler)
        self.connection_plugin_list = []
        for plugin in connection_plugin_list:
            self.register_connection_plugin(plugin)
        self.socket_timeout = timeout

    @property
    def shutdown(self):
        return self.__dict__.get("_shutdown", False)

    @shutdown.setter
    def shutdown(self, value):
        self.__dict__["_shutdown"] = bool(value)
        cond = self.__dict__.get("_cond")
        if value and cond is not None:
            with cond:
                cond.notify_all()

    def set_conn_handler(self, handler):
        self.connection_handler = check_handler(handler)

    def set_timeout(self, t):
        """The socket timeout of new connections (seconds): how long connect,
        a blocked transmit and a receive() may wait, and how long a peer may
        stall in mid-message."""
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError("Timeout value is not integer")
        if not _timeout_fits(t):  # socket.settimeout refused it at connect
            raise ValueError(f"Timeout value out of range: {t!r} (0 to {MAX_TIMEOUT} seconds)")
        self.socket_timeout = t

    def register_connection_plugin(self, plugin):
        register_plugin(self.connection_plugin_list, plugin)

    def _pump_stopped(self, pump):
        """The pump's call (with _pump_lock held) as it stops: its
        connections all ended; the next connect_to() starts a new one."""
        if self._pump is pump:
            self._pump = None

    def _start_pump(self):
        """The running pump, or a new one (call with _pump_lock held)."""
        if self._pump is None:
            pump = _Pump(self._pump_lock, self._pump_stopped)
            pump.start()
            self._pump = pump
        return self._pump

    def connect_to(self, connection_details, port=None) -> uuid.UUID:
        """Opens a connection (its thread connects) and returns its id.
        connection_details: a TinyProtoConnectionDetails, or host with port
        (tinyproto 2's connect_to(host, port))."""
        if not isinstance(connection_details, TinyProtoConnectionDetails):
            if port is None:
                host, port = connection_details
            else:
                host = connection_details
            connection_details = TinyProtoConnectionDetails(host, port)
        timeout = self.socket_timeout
        with self._pump_lock:
            pump = self._start_pump()
            native = None
            try:
                native = ssock.Client(
                    connection_details.ssock_address, framing="tinyproto",
                    max_message=MSG_MAX_SIZE, connect_timeout=timeout, read_timeout=timeout,
                    zero_copy=True, loop=pump.loop, linger=linger_for(timeout))
                proxy = SocketProxy(None, native, timeout=timeout)
                conn_o = make_connection(self.connection_handler, self.connection_plugin_list,
                                         proxy, False, connection_details)

                def connect():
                    native.connect(timeout=proxy.gettimeout())

                attach(conn_o, native, lambda: pump.gone(native), connect,
                       lambda: pump.room(native))
                pump.add(native, conn_o)
            except BaseException:
                if native is not None:
                    native.close()
                pump.gone(native)  # a pump left with no handle stops
                raise
        conn_o.start()
        conn_id = uuid.uuid4()
        self.active_connections[conn_id] = conn_o
        return conn_id

    def _shutdown_active_cons(self):
        for conn_id in tuple(self.active_connections):
            self.active_connections.pop(conn_id).shutdown = True

    def _client_loop(self):
        overridden = type(self).loop_pass is not TinyProtoClient.loop_pass
        while not self.shutdown:
            if overridden:
                self.loop_pass()
            with self._cond:
                self._cond.wait_for(lambda: self.shutdown,
                                    self.loop_interval if overridden else None)

    def start(self):
        """Runs the main loop until shutdown is set (blocking)."""
        self.pre_loop()
        self._client_loop()
        self.post_loop()
        self._shutdown_active_cons()

    def pre_loop(self):
        pass

    def post_loop(self):
        pass

    def loop_pass(self):
        pass
