#!/usr/bin/env python3
"""Instructions per echoed message, counted by callgrind with the batching held
fixed, so the figure repeats from run to run (bench/callgrind.sh runs this).

A server's cost per message depends on how many messages one wakeup, one read
and one write carry, and that depends on timing. So the server is stopped
(SIGSTOP) while the driver writes a round of messages, and continued (SIGCONT)
only when all of them are in its socket buffers: its next wakeup finds every
connection ready, and every read finds every message of its connection. Then
the driver reads all the echoes back (checking them) and starts the next round.

    cgdriver.py --conns C --depth D --rounds R1,R2 -- SERVER_CMD...

runs the server under callgrind twice (R1 and R2 rounds) and prints the
instructions per message: (Ir(R2) - Ir(R1)) / ((R2 - R1) * C * D), so start-up,
connection set-up and shut-down cancel out. Messages are u32-framed, 64 bytes.
"""
import argparse
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def wait_state(pid, want, timeout=10.0):
    """Waits until /proc says the process is (or is not) stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if (state in "tT") == want:
            return
        time.sleep(0.001)  # /proc offers nothing to wait on
    sys.exit(f"cgdriver: server {pid} did not {'stop' if want else 'continue'}")


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("cgdriver: server closed a connection")
        buf += chunk
    return bytes(buf)


def run(cmd, conns, depth, rounds, size):
    out = tempfile.NamedTemporaryFile(prefix="cg.", delete=False).name
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.match(r"listening on (.+):(\d+)$", line.strip())
    if not m:
        sys.exit(f"cgdriver: no listening line from {cmd[0]}: {line!r}")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host, port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    payload = bytes((i * 7) & 0xFF for i in range(size))
    frame = struct.pack(">I", size) + payload
    burst = frame * depth
    for _ in range(rounds):
        os.kill(proc.pid, signal.SIGSTOP)
        wait_state(proc.pid, True)
        for s in socks:
            s.sendall(burst)
        os.kill(proc.pid, signal.SIGCONT)
        wait_state(proc.pid, False)
        for s in socks:
            if recv_exact(s, len(burst)) != burst:
                sys.exit("cgdriver: an echo differs from what was sent")
    for s in socks:
        s.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    with open(out) as f:
        summary = [l for l in f if l.startswith("summary:")]
    keep = os.environ.get("CGDRIVER_KEEP")
    if keep:  # a directory: the profiles stay there, for callgrind_annotate
        os.replace(out, os.path.join(keep, f"callgrind.{conns}x{depth}.r{rounds}"))
    else:
        os.unlink(out)
    return int(summary[0].split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--depth", type=int, required=True)
    ap.add_argument("--rounds", default="50,250")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    r1, r2 = (int(x) for x in a.rounds.split(","))
    i1 = run(cmd, a.conns, a.depth, r1, a.size)
    i2 = run(cmd, a.conns, a.depth, r2, a.size)
    print(f"{(i2 - i1) / ((r2 - r1) * a.conns * a.depth):.1f}")


if __name__ == "__main__":
    main()
