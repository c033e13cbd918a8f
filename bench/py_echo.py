#!/usr/bin/env python3
"""Python u32 echo servers for the benchmark (bench/run.sh, rows of issue 11).

    py_echo.py KIND --listen HOST:PORT

KIND is one of:
  ssock-cb        ssock.Server with an on_message callback (the dispatcher thread)
  ssock-cb-zc     the same with zero_copy=True (payloads as memoryviews, no copy)
  ssock-inbox     ssock.Server in inbox mode: `for ev in server` on the main thread
  asyncio-streams asyncio.start_server with readexactly() per header and payload
  asyncio-proto   an asyncio.Protocol that parses every whole frame of each read
                  and writes all the replies of that read with one write()

All speak the u32 framing (4-byte big-endian length, then the payload), print
`listening on HOST:PORT` like `ssock echo`, and stop cleanly on SIGTERM/SIGINT.
Both asyncio servers are written the way a careful asyncio programmer would:
TCP_NODELAY (asyncio's default), flow control respected, no per-byte work.
"""
import argparse
import asyncio
import signal
import socket
import struct
import sys
import threading

HIGH_WATER = 1 << 20  # bytes buffered for a peer before it is no longer read


def split_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def announce(host, port):
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port}", flush=True)


def on_signals(fn):
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: fn())


# --- ssock ----------------------------------------------------------------


def ssock_callbacks(addr, zero_copy=False):
    import ssock

    def on_message(conn, data):
        conn.send(data)

    stop = threading.Event()
    with ssock.Server(addr, on_message=on_message, zero_copy=zero_copy) as srv:
        announce(*srv.address[:2])
        on_signals(stop.set)
        stop.wait()


def ssock_inbox(addr):
    import ssock

    MESSAGE = ssock.MESSAGE
    srv = ssock.Server(addr)
    announce(*srv.address[:2])
    on_signals(srv.close)
    for ev in srv:  # ends when the server is closed
        if ev.type is MESSAGE:
            ev.conn.send(ev.data)


# --- asyncio --------------------------------------------------------------


async def serve_streams(addr):
    async def handle(reader, writer):
        try:
            while True:
                header = await reader.readexactly(4)
                (n,) = struct.unpack(">I", header)
                writer.write(header + await reader.readexactly(n))
                if writer.transport.get_write_buffer_size() > HIGH_WATER:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    host, port = split_addr(addr)
    server = await asyncio.start_server(handle, host, port, limit=HIGH_WATER * 4)
    await run_until_signal(server)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data):
        buf = self.buf
        buf += data
        pos, end, out = 0, len(buf), []
        while end - pos >= 4:
            n = int.from_bytes(buf[pos : pos + 4], "big")
            if end - pos - 4 < n:
                break
            out.append(buf[pos : pos + 4 + n])
            pos += 4 + n
        if out:
            self.transport.write(b"".join(out))
            del buf[:pos]

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def serve_protocol(addr):
    host, port = split_addr(addr)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port)
    await run_until_signal(server)


async def run_until_signal(server):
    sock = server.sockets[0]
    announce(*sock.getsockname()[:2])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main():
    kinds = {
        "ssock-cb": ssock_callbacks,
        "ssock-cb-zc": lambda a: ssock_callbacks(a, zero_copy=True),
        "ssock-inbox": ssock_inbox,
        "asyncio-streams": lambda a: asyncio.run(serve_streams(a)),
        "asyncio-proto": lambda a: asyncio.run(serve_protocol(a)),
    }
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(kinds))
    p.add_argument("--listen", default="127.0.0.1:0")
    args = p.parse_args()
    kinds[args.kind](args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
