#!/usr/bin/env python3
"""A misbehaving `ssock send-file`, for tests/test_cli.sh: speaks the file
transfer protocol (tools/cmd_files.c) byte by byte and breaks it on purpose.

    file_peer.py PORT name NAME...      one header per NAME (Python escapes
                                        allowed: 'a\\x00b'); each must be
                                        refused: prints each 'X' reason
    file_peer.py PORT badsum NAME       right size, wrong checksum
    file_peer.py PORT short NAME        half the announced data, then E
    file_peer.py PORT toomuch NAME      more data than announced
    file_peer.py PORT cut NAME          half the data, then closes the socket
    file_peer.py PORT hold NAME         half the data, then waits for a line on
                                        stdin before it sends the rest and E
                                        (a transfer in progress, held open)
    file_peer.py PORT stall NAME        half the data, then nothing: waits for
                                        the receiver to close the connection
                                        and prints 'closed'
    file_peer.py PORT put NAME TEXT     a whole file NAME holding TEXT

    file_peer.py xxh64 FILE             prints XXH64 (seed 0) of FILE, written
                                        here from the spec independently of
                                        tools/xxh64.c, to cross-check it

Prints every answer of the receiver as 'R', 'K name' or 'X reason' lines.
Exits 0 when the receiver answered as expected, 1 otherwise. Every read has
a 10 s timeout.
"""
import socket
import struct
import sys


def send_msg(s, payload):
    s.sendall(struct.pack(">I", len(payload)) + payload)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise EOFError("receiver closed the connection")
        buf += got
    return buf


def recv_msg(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    msg = recv_exact(s, n)
    print((msg[:1] + b" " + msg[1:]).decode("utf-8", "replace") if len(msg) > 1 else msg.decode())
    sys.stdout.flush()
    return msg


M64 = (1 << 64) - 1
P1, P2, P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
P4, P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def xxh_round(acc, lane):
    return (rotl((acc + lane * P2) & M64, 31) * P1) & M64


def xxh64(data):
    n, i = len(data), 0
    if n >= 32:
        v = [(P1 + P2) & M64, P2, 0, (-P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = xxh_round(v[k], struct.unpack_from("<Q", data, i + 8 * k)[0])
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M64
        for k in range(4):
            h = ((h ^ xxh_round(0, v[k])) * P1 + P4) & M64
    else:
        h = P5
    h = (h + n) & M64
    while i + 8 <= n:
        h ^= xxh_round(0, struct.unpack_from("<Q", data, i)[0])
        h = (rotl(h, 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h ^= (struct.unpack_from("<I", data, i)[0] * P1) & M64
        h = (rotl(h, 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M64
        h = (rotl(h, 11) * P1) & M64
        i += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    return h ^ (h >> 32)


def header(name, size, mode=0o644):
    return b"H\x01" + struct.pack(">QI", size, mode) + name


def main():
    if sys.argv[1] == "xxh64":
        with open(sys.argv[2], "rb") as f:
            print("%016x" % xxh64(f.read()))
        return 0
    port, mode = int(sys.argv[1]), sys.argv[2]
    names = [n.encode().decode("unicode_escape").encode("latin-1") for n in sys.argv[3:]]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if mode == "name":
        ok = True
        for n in names:
            send_msg(s, header(n, 3))
            ok = recv_msg(s)[:1] == b"X" and ok
        return 0 if ok else 1
    data = bytes(range(256)) * 64  # 16 KiB
    if mode == "put":
        text = sys.argv[4].encode()
        send_msg(s, header(names[0], len(text)))
        if recv_msg(s) != b"R":
            return 0
        send_msg(s, b"D" + text)
        send_msg(s, b"E" + struct.pack(">Q", xxh64(text)))
        recv_msg(s)
        return 0
    send_msg(s, header(names[0], len(data)))
    if recv_msg(s) != b"R":
        return 1
    if mode == "badsum":
        send_msg(s, b"D" + data)
        send_msg(s, b"E" + struct.pack(">Q", 0x0123456789ABCDEF))
    elif mode == "short":
        send_msg(s, b"D" + data[: len(data) // 2])
        send_msg(s, b"E" + struct.pack(">Q", 0))
    elif mode == "toomuch":
        send_msg(s, b"D" + data + b"extra")
        send_msg(s, b"E" + struct.pack(">Q", 0))
    elif mode == "cut":
        send_msg(s, b"D" + data[: len(data) // 2])
        s.close()
        return 0
    elif mode == "hold":
        send_msg(s, b"D" + data[: len(data) // 2])
        sys.stdin.readline()
        send_msg(s, b"D" + data[len(data) // 2 :])
        send_msg(s, b"E" + struct.pack(">Q", xxh64(data)))
        return 0 if recv_msg(s)[:1] == b"K" else 1
    elif mode == "stall":
        send_msg(s, b"D" + data[: len(data) // 2])
        try:
            got = s.recv(1)
        except ConnectionResetError:
            got = b""
        print("closed" if got == b"" else "got data")
        return 0 if got == b"" else 1
    return 0 if recv_msg(s)[:1] == b"X" else 1


if __name__ == "__main__":
    sys.exit(main())
