#!/usr/bin/env python3
"""Sends UDP datagrams with a forged source address, for tests/test_cli.sh:

    udp_forge.py SRC_PORT DST_PORT PAYLOAD...   one datagram per PAYLOAD from
                                                127.0.0.1:SRC_PORT to
                                                127.0.0.1:DST_PORT

It writes the IPv4 and UDP headers itself on a raw socket, so it needs
CAP_NET_RAW (root); without it, it exits 77 (the test is then skipped).
"""
import socket
import struct
import sys


def main():
    src, dst = int(sys.argv[1]), int(sys.argv[2])
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        print("udp_forge.py: no raw sockets here (needs CAP_NET_RAW)", file=sys.stderr)
        return 77
    lo = socket.inet_aton("127.0.0.1")
    for p in sys.argv[3:]:
        payload = p.encode()
        udp = struct.pack(">HHHH", src, dst, 8 + len(payload), 0) + payload  # checksum 0: none
        # version/IHL, TOS, total length, id, flags/fragment, TTL, protocol, checksum
        # (the kernel fills in the length and the checksum), source, destination
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, lo, lo)
        s.sendto(ip + udp, ("127.0.0.1", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
