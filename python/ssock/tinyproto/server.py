"""TinyProtoServer: tinyproto 3.0's server, on one ssock server.

start() blocks, as in tinyproto: the listeners open, pre_loop() runs, then the
server loop (accepting, conn_init(), one thread per connection, conn_shutdown()
once a connection's thread ended, loop_pass()), then post_loop(). Unlike
tinyproto 3.0: nothing polls (the loop sleeps until something happens, or for
``loop_interval`` when loop_pass is overridden), every listen address works
with IPv6 too, a closed connection's socket is closed, a connection over
connection_limit is refused (closed at once) while the server goes on, and a
peer that stalls in mid-message is closed after ``read_timeout`` seconds.
"""
import inspect
import logging
import os
import select
import socket
import threading
import time
import uuid

import ssock

from .._sockproxy import SocketProxy
from .connection import (MSG_MAX_SIZE, ConnectionDict, TinyProtoConnection, attach,
                         make_connection)
from .connection_details import TinyProtoConnectionDetails
from .errors import TinyProtoError
from .plugins import TinyProtoPlugin

log = logging.getLogger(__name__)


def _arity(method):
    """How many arguments a bound hook takes (conn_init(conn_o) in tinyproto 2,
    conn_init(conn_id, conn_o) in 3.0)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])


def _address_text(item):
    """'HOST:PORT' of a TinyProtoConnectionDetails or a (host, port) tuple."""
    if isinstance(item, TinyProtoConnectionDetails):
        return item.ssock_address
    host, port = item[0], int(item[1])
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def register_plugin(plugin_list, plugin):
    if isinstance(plugin, type):
        if not issubclass(plugin, TinyProtoPlugin):
            raise ValueError("Not a subclass of TinyProtoPlugin")
        plugin_list.append(plugin())
    elif isinstance(plugin, TinyProtoPlugin):
        plugin_list.append(plugin)
    else:
        raise ValueError("Not a subclass of TinyProtoPlugin")


def check_handler(handler):
    if not (isinstance(handler, type) and issubclass(handler, TinyProtoConnection)):
        raise ValueError("Connection handler must be a subclass of TinyProtoConnection")
    return handler


class _ListenSocket:
    """An entry of listen_socks: what a program may ask of a listener."""

    def __init__(self, native, index):
        self._native = native
        self._index = index

    def getsockname(self):
        return self._native.addr(self._index)

    def close(self):
        pass  # the server closes its listeners when it stops

    def __repr__(self):
        return f"<ssock listener {self.getsockname()}>"


class TinyProtoServer:
    """tinyproto 3.0's server. listen_addresses: TinyProtoConnectionDetails
    (or (host, port) tuples); more with add_addr(). Port 0 picks a free port:
    read it from listen_socks[i].getsockname() once start() runs (in pre_loop,
    for instance)."""

    __slots__ = ("__dict__", "__weakref__")

    loop_interval = 0.03  # seconds an idle pass waits when loop_pass is overridden
    read_timeout = 60.0  # seconds a peer may stall in mid-message
    shutdown_wait = 5.0  # seconds start() gives the connections, in all, to end and send
    max_message = MSG_MAX_SIZE  # larger messages are refused (0x00)

    def __init__(self, listen_addresses=None, connection_handler=TinyProtoConnection,
                 connection_limit=None, connection_plugin_list=(), *,
                 listen_addressess=None):
        self._shutdown = False
        self._native = None
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._by_id = {}
        self.listen_addrs = list(listen_addresses or listen_addressess or [])
        self.listen_socks = []
        self.active_connections = ConnectionDict()
        self.connection_handler = check_handler(connection_handler)
        self.connection_limit = connection_limit
        self.connection_plugin_list = []
        for plugin in connection_plugin_list:
            self.register_connection_plugin(plugin)

    def __del__(self):
        fd = self.__dict__.get("_wake_fd", -1)
        if fd >= 0:
            os.close(fd)

    @property
    def shutdown(self):
        return self.__dict__.get("_shutdown", False)

    @shutdown.setter
    def shutdown(self, value):
        self.__dict__["_shutdown"] = bool(value)
        if value:
            self._wake()

    def _wake(self):
        fd = self.__dict__.get("_wake_fd", -1)
        if fd >= 0:
            os.eventfd_write(fd, 1)

    # -- configuration ----------------------------------------------------------

    def set_conn_handler(self, handler):
        self.connection_handler = check_handler(handler)

    def register_connection_plugin(self, plugin):
        register_plugin(self.connection_plugin_list, plugin)

    def add_addr(self, ipaddr, port):
        """Adds a listen address (tinyproto 2's call): an IPv4 or IPv6 address."""
        port = int(port)
        if port < 0 or port > 65535:
            raise ValueError(
                f"Incorrect port number: {port}. Port number should be between 1 and 65535")
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, ipaddr)
                break
            except OSError:
                continue
        else:
            raise ValueError(f"Incorrect ip address {ipaddr}")
        self.listen_addrs.append((ipaddr, port))

    # -- running ----------------------------------------------------------------

    def _activate_listeners(self):
        if self._native is not None:
            raise TinyProtoError("There are already active listeners")
        if not self.listen_addrs:
            raise TinyProtoError("No addresses defined for listening")
        self._native = ssock.Server(
            [_address_text(a) for a in self.listen_addrs], framing="tinyproto",
            max_conns=self.connection_limit or 0, max_message=self.max_message,
            read_timeout=self.read_timeout, zero_copy=True)
        self.listen_socks = [_ListenSocket(self._native, i) for i in range(len(self.listen_addrs))]

    def start(self):
        """Listens and serves until shutdown is set (blocking)."""
        self._activate_listeners()
        try:
            self.pre_loop()
            self._server_loop()
            self.post_loop()
            self._shutdown_active_cons()
        finally:
            self._close_listeners()

    def _server_loop(self):
        native = self._native
        poller = select.poll()
        poller.register(native.fileno(), select.POLLIN)
        poller.register(self._wake_fd, select.POLLIN)
        overridden = type(self).loop_pass is not TinyProtoServer.loop_pass
        init_args = _arity(self.conn_init)
        done_args = _arity(self.conn_shutdown)
        while not self.shutdown:
            poller.poll(self.loop_interval * 1000 if overridden else None)
            try:
                os.eventfd_read(self._wake_fd)
            except BlockingIOError:
                pass
            while not self.shutdown:
                ev = native.next_event(0)
                if ev is None:
                    break
                self._handle(ev, init_args)
            self._reap(done_args)
            if not self.shutdown:
                self.loop_pass()

    def _handle(self, ev, init_args):
        t = ev.type
        if t is ssock.MESSAGE:
            entry = self._by_id.get(ev.conn.id)
            if entry is not None:
                entry[1]._deliver(bytearray(ev.data), reader=ev.conn)
        elif t is ssock.CONNECT:
            self._open(ev.conn, init_args)
        elif t is ssock.DISCONNECT:
            entry = self._by_id.pop(ev.conn.id, None)
            if entry is not None:
                entry[1]._end(ev.error)
        elif t is ssock.ERROR:
            entry = self._by_id.get(ev.error.conn_id) if ev.error.conn_id else None
            if ev.code == ssock.EREFUSED and entry is not None:
                entry[1]._reject(ev.error)
            elif ev.code == ssock.ELIMIT:
                log.info("connection limit reached: %s", ev.error)
            else:
                log.debug("ssock: %s", ev.error)

    def _open(self, conn, init_args):
        proxy = SocketProxy(conn)
        conn_o = make_connection(self.connection_handler, self.connection_plugin_list, proxy,
                                 True)
        attach(conn_o, conn, self._wake)
        conn_id = uuid.uuid4()
        self._by_id[conn.id] = (conn_id, conn_o)
        if init_args == 1:
            self.conn_init(conn_o)
        else:
            self.conn_init(conn_id, conn_o)
        conn_o.start()
        self.active_connections[conn_id] = conn_o

    def _reap(self, done_args):
        for conn_id, conn_o in list(self.active_connections.items()):
            if conn_o._done():
                del self.active_connections[conn_id]
                if done_args == 1:
                    self.conn_shutdown(conn_o)
                else:
                    self.conn_shutdown(conn_id, conn_o)

    def _shutdown_active_cons(self, wait=None):
        """Ends every connection; they get up to `wait` seconds (shutdown_wait)
        in all to run their post_loop and for what they transmitted to go out
        (tinyproto's transmit() blocked until the peer took it; here it queues)
        before the listeners and sockets close."""
        wait = self.shutdown_wait if wait is None else wait
        conns = list(self.active_connections.values())
        self.active_connections.clear()
        for conn_o in conns:
            conn_o.shutdown = True
        end = time.monotonic() + wait
        for conn_o in conns:
            thread = conn_o._connection_loop_thread
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(max(0.0, end - time.monotonic()))
        native = self._native
        if native is not None:
            try:
                native.flush(timeout=max(0.0, end - time.monotonic()))
            except (ssock.Error, OSError) as e:
                log.info("shutting down: not every peer took what was transmitted: %s", e)

    def _close_listeners(self):
        native, self._native = self._native, None
        self.listen_socks = []
        if native is not None:
            native.close()

    # -- the hooks --------------------------------------------------------------

    def pre_loop(self):
        pass

    def post_loop(self):
        pass

    def loop_pass(self):
        pass

    def conn_init(self, conn_id, conn_o):
        pass

    def conn_shutdown(self, conn_id, conn_o):
        pass
