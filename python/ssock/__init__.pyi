"""Type hints and reference documentation of the ssock package.

Conventions that hold everywhere:

* Addresses are ``"HOST:PORT"``, ``"[IPV6]:PORT"`` or ``":PORT"`` (all
  addresses) strings, or socket-module tuples ``(host, port)`` /
  ``(host, port, flowinfo, scope_id)``. Addresses handed out are tuples, as
  ``socket.getpeername()`` gives them. Port 0 picks a free port.
* Timeouts are seconds (``float``); ``None`` means no limit. Options left at 0
  (or ``None``) take libssock's documented default.
* Payloads go out through the buffer protocol (bytes, bytearray, memoryview,
  array, mmap, ...) and come in as ``bytes``, or with ``zero_copy=True`` as
  read-only ``memoryview`` objects over the library's own buffers.
* Every failure raises an :class:`Error` (an ``OSError``) or a subclass.
* Events go either to callbacks (give ``on_message`` / ``on_datagram``: one
  dispatcher thread per handle runs them, taking the GIL once per batch;
  Python never runs on the I/O thread) or to the inbox (take them with
  ``next_event()``, ``recv()``, iteration, or from asyncio with
  ``await next_event_async()`` / ``async for``).
* Every method is thread-safe. ``close()`` is idempotent, waits for calls in
  progress, and from inside a callback (of this handle or another) takes
  effect when the handle's own running callback returns, without waiting.
* Waits without a limit (``timeout=None``, a long ``linger``) end at Ctrl-C:
  the signal's exception is raised within a fifth of a second.
  Handles still open at interpreter exit are closed then.
"""
import array
import builtins
import enum
import mmap
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence, Tuple, Union

Address = Union[str, Tuple[str, int], Tuple[str, int, int, int]]
PeerAddress = Union[Tuple[str, int], Tuple[str, int, int, int]]
Payload = Union[bytes, memoryview]
# Anything with the buffer protocol (collections.abc.Buffer from Python 3.12).
_Buffer = Union[bytes, bytearray, memoryview, array.array, mmap.mmap]
Timeout = Optional[float]

__version__: str
UDP_MAX_MESSAGE: int  # 65507: the largest UDP payload over IPv4

def version() -> str:
    """The version of the C library linked in."""

def strerror(code: int) -> str:
    """The message of an error code (``ssock.ESENDQFULL`` -> ``"send queue full"``)."""

def errname(code: int) -> str:
    """The symbol of an error code (``"SSOCK_ESENDQFULL"``)."""

# Error codes, negative as in C: -errno where one fits, else below -30000.
EINVAL: int
ENOMEM: int
EBUSY: int
EMSGSIZE: int
ETIMEDOUT: int
ECONNREFUSED: int
ECONNRESET: int
EPIPE: int
EADDRINUSE: int
EADDRNOTAVAIL: int
EACCES: int
EMFILE: int
ENFILE: int
ENETUNREACH: int
EHOSTUNREACH: int
ENOTCONN: int
EAFNOSUPPORT: int
ENOCONN: int
ECLOSED: int
ESENDQFULL: int
ETRUNCATED: int
EFRAMING: int
ELIMIT: int
EIDLE: int
ESTALLED: int
EBADADDR: int
ERESOLVE: int
ELOOPTHREAD: int
ELOCAL: int
ESHUTDOWN: int
ENOINBOX: int
EPROTO: int
EREFUSED: int
ECOLLISION: int
EHANDSHAKE: int

class Error(OSError):
    """An ssock error.

    ``code`` is the negative ssock code and ``name`` its symbol; ``errno`` is
    the errno for codes that have one (else None). Errors from the background
    (the error log, ERROR events, disconnect reasons) also say which operation
    failed (``op``: "accept", "read", "connect", "frame", ...), with whom
    (``peer``, ``conn_id``) and, from the error log, when (``time``, seconds
    since the epoch). One the program makes (``ssock.Error("x")``) has
    ``code`` 0 and ``name`` "UNKNOWN" (a subclass: its first code, e.g.
    ``ssock.TimeoutError("x").code == ETIMEDOUT``) and None for the rest.
    Errors pickle and copy whole (class, code, errno, str()), so they cross
    multiprocessing intact."""

    code: int
    name: str
    op: Optional[str]
    peer: Optional[PeerAddress]
    conn_id: Optional[int]
    time: Optional[float]

class ClosedError(Error):
    """The handle (or connection) is closed or closing (ECLOSED, ESHUTDOWN)."""

class NoConnectionError(Error):
    """No such connection: its id is unknown or its disconnect was handed out."""

class NotConnectedError(Error):
    """The client is not connected. From ``recv()``: the connection ended, and
    ``reason`` says why (an Error, or None when the peer closed cleanly)."""

    reason: Optional[Error]

class SendQueueFullError(Error):
    """The send queue (or the server's send budget) has no room: send later,
    or pass a timeout to wait for room."""

class MessageTooLargeError(Error):
    """A message above max_message (or above what a send queue can hold)."""

class LimitError(Error):
    """A connection over max_conns was refused (closed at once)."""

class ProtocolError(Error):
    """The peer broke the framing or the protocol (EFRAMING, EPROTO, EREFUSED,
    ECOLLISION, EHANDSHAKE, ETRUNCATED)."""

class AddressError(Error):
    """An address that does not parse (EBADADDR) or resolve (ERESOLVE)."""

class TimeoutError(Error, builtins.TimeoutError):  # type: ignore[misc]
    """A wait, connect, idle (EIDLE) or mid-message read (ESTALLED) timeout.
    Also the builtin TimeoutError."""

class ConnectionRefusedError(Error, builtins.ConnectionRefusedError):  # type: ignore[misc]
    """Nobody listens there. Also the builtin ConnectionRefusedError."""

class ConnectionResetError(Error, builtins.ConnectionResetError):  # type: ignore[misc]
    """The peer reset the connection (or the pipe broke)."""

class EventType(enum.IntEnum):
    CONNECT = 1  # a connection is established
    MESSAGE = 2  # one whole message (one datagram) arrived
    DISCONNECT = 3  # a connection ended; .error says why (None: the peer closed)
    ERROR = 4  # something failed in the background; .error is the Error

CONNECT: EventType
MESSAGE: EventType
DISCONNECT: EventType
ERROR: EventType

class ClientState(enum.IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2

DISCONNECTED: ClientState
CONNECTING: ClientState
CONNECTED: ClientState

class Conn:
    """One connection of a Server or Client, named by an id that is never
    reused. The same Conn object comes with every event of its connection;
    set any attribute on it to keep per-connection state."""

    id: int
    peer: PeerAddress
    open: bool  # False once its disconnect was handed out (or the handle closed)
    handle: Union["Server", "Client"]
    server: Optional["Server"]
    client: Optional["Client"]
    queued: int  # bytes in its send queue as of the last Server.conns()

    def send(self, data: _Buffer, timeout: Timeout = 0) -> None:
        """Queues data as one message; the caller's buffer is free on return
        (bytes of 64 KiB or more and zero_copy payloads, being immutable, are
        not copied: ssock keeps a reference until they are written; mutable
        buffers are copied). timeout: 0 raises SendQueueFullError at once
        when the queue is full, None waits for room, seconds wait up to that
        (then TimeoutError). Raises NoConnectionError once the connection is
        gone."""
    def flush(self, timeout: Timeout = None) -> None:
        """Waits until what is queued to this connection has been written to
        its socket, or it ended (see Server.flush and Client.flush)."""
    def pause_reading(self) -> None:
        """Stops reading from this connection: its peer meets TCP backpressure
        (with tinyproto its next message waits for this side's answer) while
        the other connections go on. Events already read still come: those in
        the inbox, and with callbacks the batch being run (up to 256). Pausing
        twice is fine; a client's next connection starts reading.
        NoConnectionError once the connection is gone."""
    def resume_reading(self) -> None:
        """Reads from this connection again (what it sent meanwhile comes in
        order)."""
    def close(self) -> None:
        """Closes gracefully: what is queued is sent first, then the DISCONNECT
        event follows (error code ELOCAL). Closing twice is fine."""

class Event:
    """One event from an inbox (next_event(), iteration, next_event_async())."""

    type: EventType
    conn: Optional[Conn]  # None for UDP, and for errors of no connection
    data: Optional[Payload]  # MESSAGE
    peer: Optional[PeerAddress]  # the sender (UDP), else the connection's peer
    error: Optional[Error]  # ERROR; DISCONNECT: why (None: closed cleanly)
    code: int  # error.code, 0 when none
    op: Optional[str]  # ERROR: the operation that failed
    unsent: int  # DISCONNECT: queued bytes that were never sent

class ServerStats(Tuple[int, int, int, bool, int, int, int]):
    accepted: int  # connections accepted since the start
    refused: int  # closed at once: over max_conns
    conns: int  # open now
    accepting: bool  # False while paused (pause(), a full inbox, out of fds)
    queued: int  # bytes queued to send, all connections
    inbox_events: int  # events waiting in the inbox
    inbox_bytes: int  # their payload bytes

class Loop:
    """One event loop (one I/O thread) shared by many handles: pass it as
    ``loop=``. ``Loop(start=False)`` is driven by ``run()`` calls instead."""

    def __init__(self, *, start: bool = True) -> None: ...
    def run(self, timeout: Timeout = None) -> None:
        """One pass of the loop on this thread (Loop(start=False) only)."""
    def start(self) -> None:
        """Runs the loop on a background thread."""
    def stop(self) -> None:
        """Stops the background thread (joins it)."""
    def close(self) -> None:
        """Frees the loop. Raises Error (EBUSY) while handles use it."""
    def __enter__(self) -> "Loop": ...
    def __exit__(self, *exc: Any) -> bool: ...

class _Handle:
    """What Server, Client and UDP share."""

    closed: bool
    callback_mode: bool  # True: events go to callbacks; False: to the inbox

    def close(self) -> None:
        """Closes everything: connections, sockets, threads. Queued data first
        gets up to `linger` seconds to drain (Server and Client; from a
        callback, after it returned), then what is left is discarded. At interpreter exit the
        handles still open drain together, for the longest linger among them
        (Ctrl-C cuts it short)."""
    def next_event(self, timeout: Timeout = None) -> Optional[Event]:
        """Inbox mode: the next Event, or None once timeout passed. Raises
        ClosedError once closed, Error(ENOINBOX) in callback mode."""
    async def next_event_async(self) -> Event:
        """Inbox mode: the next Event, awaited (the running asyncio loop
        watches fileno(); no thread per call). Any number of tasks may await
        it on one handle at once: each event goes to one of them."""
    def __iter__(self) -> Iterator[Event]:
        """Inbox mode: every event, waiting without limit; ends at close()."""
    def __next__(self) -> Event: ...
    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def __anext__(self) -> Event: ...
    def errors(self, clear: bool = False) -> list[Error]:
        """The background error log (bounded: error_log_max), oldest first."""
    def fileno(self) -> int:
        """Inbox mode: a descriptor readable while an event waits, for select,
        poll or an asyncio reader. Only wait on it."""
    def __enter__(self: Any) -> Any: ...
    def __exit__(self, *exc: Any) -> bool: ...

class Server(_Handle):
    """A TCP server. Starts serving on construction.

    Callbacks (callback mode; each optional but on_message), run on the
    handle's dispatcher thread, may be given as arguments or defined as
    methods of a subclass:

    * ``on_connect(conn)``
    * ``on_message(conn, data)``
    * ``on_disconnect(conn, error)``: error is None when the peer closed
      cleanly, else the Error (ELOCAL when closed by this side)
    * ``on_error(exc)``: background errors (an Error), and any exception a
      callback raised; without it, those are printed as unraisable exceptions.
      A raising callback never stops the dispatcher.
    """

    address: PeerAddress  # the first listener's bound address
    addresses: list[PeerAddress]

    def __init__(
        self,
        listen: Union[Address, Sequence[Address]],
        *,
        framing: str = "u32",  # "u32", "line", "raw" or "tinyproto"
        backlog: int = 0,
        max_conns: int = 0,  # 0: no limit but the fd limit
        max_message: int = 0,  # default 16 MiB, at most 4 GiB - 1
        read_size: int = 0,  # bytes per read(); default 64 KiB
        send_queue_max: int = 0,  # bytes per connection; default 32 MiB
        send_budget: int = 0,  # bytes queued for all connections; default 64 MiB
        # Messages (and their bytes) the inbox holds before reading stops;
        # default 1024 and 64 MiB; one message always fits, whatever its size.
        # Inbox mode holds no more. In callback mode the dispatcher takes up
        # to 256 events at a time out of the inbox to run their callbacks,
        # and the inbox fills up again meanwhile: up to inbox_max + 256
        # messages (inbox_max_bytes + 256 * max_message bytes) at worst.
        inbox_max: int = 0,
        inbox_max_bytes: int = 0,
        idle_timeout: float = 0,  # seconds without traffic: EIDLE; 0 never
        read_timeout: float = 0,  # seconds in mid-message: ESTALLED; 0 never
        keepalive: int = 0,  # TCP keepalive idle seconds; 0 off
        error_log_max: int = 0,  # default 64
        loop: Optional[Loop] = None,
        zero_copy: bool = False,
        handshake_timeout: float = 0,  # a handshake (tinyproto's 0xFF) not done: EHANDSHAKE; default 10 s
        linger: float = 1.0,  # seconds close() lets queued data drain (not nan; inf: no limit)
        on_connect: Optional[Callable[[Conn], Any]] = None,
        on_message: Optional[Callable[[Conn, Payload], Any]] = None,
        on_disconnect: Optional[Callable[[Conn, Optional[Error]], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
    ) -> None: ...
    def listen(self, addr: Address) -> int:
        """Adds a listen address; returns its index (for addr())."""
    def addr(self, index: int = 0) -> PeerAddress:
        """The bound address of a listener (IndexError for no such index)."""
    def send(self, conn: Union[Conn, int], data: _Buffer, timeout: Timeout = 0) -> None:
        """As conn.send(data, timeout), by Conn or id."""
    def broadcast(self, data: _Buffer, exclude: Union[Conn, int, None] = None) -> int:
        """Queues data to every open connection but `exclude`; returns how many
        (full queues are skipped and reported as errors)."""
    def disconnect(self, conn: Union[Conn, int]) -> None:
        """As conn.close()."""
    def flush(self, conn: Union[Conn, int, None] = None, timeout: Timeout = None) -> None:
        """Waits until what is queued to conn (None: to every connection) has
        been written to its socket; a connection that ends meanwhile ends the
        wait for it (its DISCONNECT event's `unsent` counts what never went).
        TimeoutError after timeout seconds; NoConnectionError for a conn that
        is gone already. In a callback it holds up the handle's other events
        while it waits."""
    def conns(self) -> list[Conn]:
        """The open connections, oldest first."""
    def stats(self) -> ServerStats: ...
    def pause(self) -> None:
        """Stops accepting (the listeners stay bound; the backlog fills)."""
    def resume(self) -> None: ...

class Client(_Handle):
    """A TCP client; not connected until connect(). Callbacks as Server's,
    for its connection (a new Conn for every (re)connection)."""

    state: ClientState
    connected: bool
    id: int  # the current connection's id; 0 when none
    conn: Optional[Conn]  # the current connection, once its CONNECT was seen
    peer: Optional[PeerAddress]
    target: str  # the address it connects to

    def __init__(
        self,
        connect: Address,
        *,
        framing: str = "u32",
        max_message: int = 0,
        read_size: int = 0,
        send_queue_max: int = 0,
        inbox_max: int = 0,  # as Server's: with callbacks, up to inbox_max + 256
        inbox_max_bytes: int = 0,
        connect_timeout: float = 0,  # per attempt; default 10 s
        idle_timeout: float = 0,
        read_timeout: float = 0,
        keepalive: int = 0,
        auto_reconnect: bool = False,  # reconnect with backoff after a loss
        reconnect_min: float = 0,  # first backoff; default 0.1 s
        reconnect_max: float = 0,  # backoff cap; default 10 s
        reconnect_max_tries: int = 0,  # 0: never give up
        queue_while_offline: bool = False,  # sends while offline wait for the connection
        error_log_max: int = 0,
        loop: Optional[Loop] = None,
        linger: float = 1.0,  # seconds close() lets queued data drain (not nan; inf: no limit)
        zero_copy: bool = False,
        on_connect: Optional[Callable[[Conn], Any]] = None,
        on_message: Optional[Callable[[Conn, Payload], Any]] = None,
        on_disconnect: Optional[Callable[[Conn, Optional[Error]], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
    ) -> None: ...
    def connect(self, timeout: Timeout = None) -> None:
        """Connects (re-resolving the host), waiting up to timeout (None: until
        connected or failed; 0: start it and return). Raises the attempt's
        error (ConnectionRefusedError, TimeoutError, AddressError, ...); with
        auto_reconnect a failed attempt is retried instead, and the wait ends
        once connected, at the timeout (TimeoutError), or when
        reconnect_max_tries ran out."""
    def reconnect(self) -> None:
        """Drops the connection (if any) and connects again in the background."""
    def disconnect(self) -> None:
        """Closes the connection gracefully and stops reconnecting."""
    def send(self, data: _Buffer, timeout: Timeout = 0) -> None:
        """Queues data as one message (see Conn.send). NotConnectedError when
        not connected (unless queue_while_offline)."""
    def flush(self, timeout: Timeout = None) -> None:
        """Waits until everything queued was written to the socket (TimeoutError
        after timeout seconds; NotConnectedError when the connection ended
        with data unsent)."""
    def recv(self, timeout: Timeout = None) -> Payload:
        """Inbox mode: the next message. Raises TimeoutError, NotConnectedError
        when the connection ended, or the error that came instead."""
    async def recv_async(self) -> Payload:
        """Inbox mode: recv(), awaited."""

class UDP(_Handle):
    """A UDP socket: one datagram is one message. Bound (``bind``) it takes
    datagrams from anyone; connected (``connect``) it talks to one peer.
    Callback: ``on_datagram(udp, data, addr)``."""

    address: PeerAddress  # the local address

    def __init__(
        self,
        bind: Optional[Address] = None,
        *,
        connect: Optional[Address] = None,
        max_message: int = 0,  # default and at most 65507
        inbox_max: int = 0,  # as Server's: with on_datagram, up to inbox_max + 256
        error_log_max: int = 0,
        loop: Optional[Loop] = None,
        zero_copy: bool = False,
        on_datagram: Optional[Callable[["UDP", Payload, PeerAddress], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
    ) -> None: ...
    def send_to(self, data: _Buffer, addr: Address, timeout: Timeout = 0) -> None:
        """One datagram to addr. Never queues: timeout 0 raises
        SendQueueFullError when the socket buffer is full."""
    def send(self, data: _Buffer, timeout: Timeout = 0) -> None:
        """Connected form: one datagram to the peer."""
    def recv(self, timeout: Timeout = None) -> Tuple[Payload, PeerAddress]:
        """Inbox mode: (data, sender) of the next datagram."""
    async def recv_async(self) -> Tuple[Payload, PeerAddress]: ...
