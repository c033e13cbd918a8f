"""ssock for Python: TCP servers and clients, and UDP sockets, that keep message
boundaries, never busy-wait, always notice a closed peer, and can't be made to
allocate gigabytes by a hostile one.

The work happens in C (libssock, one epoll loop thread per handle or per
shared Loop); Python code never runs on that thread. Two ways to get events:

* callbacks: give ``on_message`` (and optionally ``on_connect``,
  ``on_disconnect``, ``on_error``); they run on one dispatcher thread per
  handle, which takes the GIL once per batch of events;
* the inbox: give no ``on_message`` and take events with ``next_event()``,
  by iterating over the handle, with ``recv()``, or from asyncio with
  ``await next_event_async()`` / ``async for``.

``inbox_max`` / ``inbox_max_bytes`` bound what the inbox holds; in inbox mode
that is all the binding holds (it takes one event at a time, and ``fileno()``
is readable exactly while one waits). In callback mode the dispatcher takes up
to 256 events at a time out of the inbox to run their callbacks, and the inbox
fills again meanwhile: up to ``inbox_max`` + 256 messages at worst.

Drop-ins for older libraries: ``ssock.simplesockets`` (simplesockets 0.0.8)
and ``ssock.tinyproto`` (tinyproto 3.0).
"""
import asyncio as _asyncio
import atexit as _atexit
import os as _os
import weakref as _weakref

from . import _ssock
from ._ssock import (  # noqa: F401  (the public API)
    CONNECT,
    CONNECTED,
    CONNECTING,
    DISCONNECT,
    DISCONNECTED,
    ERROR,
    MESSAGE,
    UDP_MAX_MESSAGE,
    AddressError,
    ClientState,
    ClosedError,
    Conn,
    ConnectionRefusedError,
    ConnectionResetError,
    Error,
    Event,
    EventType,
    LimitError,
    Loop,
    MessageTooLargeError,
    NoConnectionError,
    NotConnectedError,
    ProtocolError,
    SendQueueFullError,
    ServerStats,
    TimeoutError,
    errname,
    strerror,
    version,
)

__version__ = _ssock.__version__

# The error codes, as ssock.ESENDQFULL etc. (negative ints, as in C).
globals().update({k: v for k, v in vars(_ssock).items() if k[:1] == "E" and k.isupper()})

__all__ = [
    "Server", "Client", "UDP", "Loop", "Conn", "Event", "EventType", "ClientState",
    "ServerStats", "CONNECT", "MESSAGE", "DISCONNECT", "ERROR", "DISCONNECTED",
    "CONNECTING", "CONNECTED", "UDP_MAX_MESSAGE", "Error", "ClosedError",
    "NoConnectionError", "NotConnectedError", "SendQueueFullError",
    "MessageTooLargeError", "LimitError", "ProtocolError", "AddressError",
    "TimeoutError", "ConnectionRefusedError", "ConnectionResetError",
    "strerror", "errname", "version",
]


# The tasks waiting for a handle's fd, per asyncio loop: {loop: {fd: set of
# futures}}. A loop has one reader per fd (add_reader() replaces the one there
# is, remove_reader() removes it for everybody), so all the tasks waiting on one
# handle share one reader, which wakes them all, and it goes when the last one
# stops waiting. Weak in the loop, so a loop closed with tasks still waiting
# is not kept alive.
_waiters = _weakref.WeakKeyDictionary()


def _wake(futures):
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


async def _readable(handle):
    """Waits until the handle's fd is readable, through the running asyncio
    loop; while it keeps large payloads for reuse, at most a second, so the
    next take can give them back once idle. Any number of tasks may wait on
    one handle at once; each wakes when the fd is readable."""
    loop = _asyncio.get_running_loop()
    fd = handle.fileno()
    by_fd = _waiters.setdefault(loop, {})
    futures = by_fd.get(fd)
    if futures is None:
        futures = by_fd[fd] = set()
        loop.add_reader(fd, _wake, futures)
    ready = loop.create_future()
    futures.add(ready)
    timer = loop.call_later(1.0, _wake, (ready,)) if handle._kept_payloads else None
    try:
        await ready
    finally:
        # Also when the task is cancelled: the reader stays while others wait.
        futures.discard(ready)
        if not futures and by_fd.get(fd) is futures:
            del by_fd[fd]
            loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()


class _Async:
    """asyncio for the inbox: waits on the inbox's fd (no thread per call)."""

    __slots__ = ()

    async def next_event_async(self):
        """The next Event, awaited. Raises ClosedError once the handle closed."""
        while True:
            ev = self.next_event(0)
            if ev is not None:
                return ev
            await _readable(self)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.next_event_async()
        except ClosedError:
            raise StopAsyncIteration from None


class Server(_Async, _ssock.Server):
    __doc__ = _ssock.Server.__doc__
    __slots__ = ()


class Client(_Async, _ssock.Client):
    __doc__ = _ssock.Client.__doc__
    __slots__ = ()

    async def recv_async(self):
        """Inbox mode: the next message (bytes), awaited; raises as recv()."""
        while True:
            try:
                return self.recv(0)
            except TimeoutError:
                await _readable(self)


class UDP(_Async, _ssock.UDP):
    __doc__ = _ssock.UDP.__doc__
    __slots__ = ()

    async def recv_async(self):
        """Inbox mode: (data, addr) of the next datagram, awaited."""
        while True:
            try:
                return self.recv(0)
            except TimeoutError:
                await _readable(self)


# At interpreter exit every handle still open is closed (a dispatcher stuck in
# a callback is given 2 s), so exit neither hangs nor leaves threads in C.
_atexit.register(_ssock._close_all)
# A forked child has none of the parent's threads: its handles are unusable.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_ssock._after_fork)
