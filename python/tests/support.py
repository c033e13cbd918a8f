"""Helpers of the Python package's tests (stdlib only).

Every wait has a deadline and waits on something (an Event, a Condition, a
socket, a process) instead of sleeping; servers bind port 0 on loopback.
"""
import os
import resource
import socket
import subprocess
import sys
import threading
import time

import ssock

TIMEOUT = 10.0  # seconds any single wait may take before the test fails
HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.environ.get("SSOCK_TOOL")  # build/ssock, set by CTest


class Collector:
    """Collects callback arguments; waits for a count of them."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        with self.cond:
            self.items.append(args if len(args) != 1 else args[0])
            self.cond.notify_all()

    def wait(self, n, timeout=TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.items) >= n, timeout):
                raise AssertionError(f"waited {timeout}s for {n} items, have {self.items!r}")
            return list(self.items)


def wait_until(pred, timeout=TIMEOUT, what="condition", cond=None):
    """Waits for pred() on cond (a Condition the producer notifies), or else
    re-checks it on a short interval of the deadline's clock."""
    if cond is not None:
        with cond:
            if cond.wait_for(pred, timeout):
                return
        raise AssertionError(f"waited {timeout}s for {what}")
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        threading.Event().wait(0.005)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def u32(payload):
    return len(payload).to_bytes(4, "big") + payload


def raw_client(addr):
    """A plain-socket client connected to a (host, port[, ...]) address."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(addr[:2])
    return s


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def thread_count():
    return len(os.listdir("/proc/self/task"))


def cpu_seconds(pid=None):
    """CPU time (user + system) of a process (this one by default)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tool:
    """The C tool (build/ssock) as a server: `listening on` read from its stdout."""

    def __init__(self, *args):
        if not TOOL:
            raise RuntimeError("SSOCK_TOOL is not set (run through ctest)")
        self.proc = subprocess.Popen([TOOL, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"ssock {' '.join(args)}: {line!r} {self.proc.stderr.read()}")
        self.addr = line.split()[-1]
        host, _, port = self.addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def python_env(**extra):
    """The environment for a child Python that must import this ssock."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(
        ssock.__file__)), HERE, env.get("PYTHONPATH", "")] if p)
    env.update(extra)
    return env


def run_python(code, timeout=TIMEOUT * 3, **env):
    """Runs code in a child interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=python_env(**env))
