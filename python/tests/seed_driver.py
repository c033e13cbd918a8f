"""Runs the seed documents' programs (tests/seeds/) against each other and
against the C tool, on the fixed ports they were written with.

    seed_driver.py CASE         (run by test_seeds.py)

test_seeds.py runs this inside a network namespace of its own (unshare -rn,
with only the loopback up) so the fixed ports (9999, 22222) can't collide with
anything; where namespaces are not allowed it sets SEED_PORT_MAP and the
programs are run with those port numbers rewritten (the one change then made
to them besides the imports). Every wait has a deadline; exit 0 when the
programs said what they should, 1 otherwise (with what they said).
"""
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
TOOL = os.environ["SSOCK_TOOL"]
DEADLINE = 15.0
PORTS = dict(p.split("=") for p in os.environ.get("SEED_PORT_MAP", "").split(",") if p)
procs = []


def port(n):
    return int(PORTS.get(str(n), n))


def program(name):
    """The path of seed program `name`, its ports rewritten if they must be."""
    path = os.path.join(SEEDS, name)
    if not PORTS:
        return path
    with open(path) as f:
        text = f.read()
    for old, new in PORTS.items():
        text = text.replace(old, new)
    fd, copy = tempfile.mkstemp(suffix="_" + name)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return copy


def start(*cmd, stdin=None):
    """Starts cmd with its output on a pipe; stdin, when given, is all its input."""
    if stdin is None:
        inp = subprocess.DEVNULL
    else:
        inp = tempfile.TemporaryFile()
        inp.write(stdin.encode())
        inp.seek(0)
    p = subprocess.Popen(cmd, stdin=inp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def python(name, stdin=None):
    return start(sys.executable, "-u", program(name), stdin=stdin)


def wait_port(n):
    """Waits until something accepts on 127.0.0.1:n."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", n), timeout=1).close()
            return
        except OSError:
            select.select([], [], [], 0.01)
    raise SystemExit(f"nothing listens on {n}")


def read_until(p, text):
    """Reads p's output until it holds text; returns what was read."""
    out = b""
    deadline = time.monotonic() + DEADLINE
    while text.encode() not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            raise SystemExit(f"waited for {text!r}, got {out.decode(errors='replace')!r}")
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            raise SystemExit(f"ended before {text!r}: {out.decode(errors='replace')!r}")
        out += chunk
    return out.decode()


def finish(p):
    out, _ = p.communicate(timeout=DEADLINE)
    return p.returncode, out.decode()


def case_simplesockets_pair():
    """The simplesockets server and client seeds, both on ssock.simplesockets."""
    python("simplesockets_server.py")
    wait_port(port(9999))
    client = python("simplesockets_client.py")
    read_until(client, "b'Test'")


def case_simplesockets_client_vs_tool():
    """The simplesockets client seed against `ssock echo --framing raw`."""
    start(TOOL, "echo", "--framing", "raw", "--listen", f"127.0.0.1:{port(9999)}")
    wait_port(port(9999))
    read_until(python("simplesockets_client.py"), "b'Test'")


def case_tool_vs_simplesockets_server():
    """`ssock send --reply` against the simplesockets server seed (which echoes
    and then disconnects: the reply must still arrive)."""
    python("simplesockets_server.py")
    wait_port(port(9999))
    rc, out = finish(start(TOOL, "send", "--framing", "raw", "--reply",
                           f"127.0.0.1:{port(9999)}", "hello"))
    if rc != 0 or out != "hello\n":
        raise SystemExit(f"ssock send: exit {rc}, {out!r}")


def case_tutorial_client_vs_tool():
    """The annotated tutorial client against `ssock echo --framing raw`."""
    start(TOOL, "echo", "--framing", "raw", "--listen", f"127.0.0.1:{port(22222)}")
    wait_port(port(22222))
    rc, out = finish(python("tclient.py", stdin="hello there\n"))
    if rc != 0 or "Got this string from server:\nhello there\n" not in out:
        raise SystemExit(f"tclient: exit {rc}, {out!r}")


def case_tool_vs_tutorial_server():
    """`ssock chat --framing raw` against the annotated tutorial server."""
    server = python("tserver.py")
    read_until(server, "Listening on address")
    rc, out = finish(start(TOOL, "chat", "--framing", "raw", f"127.0.0.1:{port(22222)}",
                           stdin="hi\n"))
    if rc != 0 or "I got this from you: 'hi" not in out:
        raise SystemExit(f"ssock chat: exit {rc}, {out!r}")


def main():
    name = sys.argv[1]
    if os.environ.get("SEED_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    try:
        globals()["case_" + name]()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    print(f"{name}: ok")


if __name__ == "__main__":
    main()
