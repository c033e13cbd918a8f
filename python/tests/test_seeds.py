"""The seed documents' programs (tests/seeds/, with only their imports changed)
against each other and against the C tool. See seed_driver.py."""
import os
import shutil
import socket
import subprocess
import sys
import unittest

from support import TIMEOUT, python_env

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_driver.py")
SEEDS = os.path.join(os.path.dirname(DRIVER), "seeds")


def netns_works():
    """Whether `unshare -rn` gives this user a network namespace of its own."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    r = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                       capture_output=True, timeout=TIMEOUT)
    return r.returncode == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NETNS = netns_works() and not os.environ.get("SEED_NO_NETNS")


class SeedProgramsTest(unittest.TestCase):
    def run_case(self, name):
        env = python_env()
        if NETNS:
            cmd = ["unshare", "-rn", sys.executable, DRIVER, name]
            env["SEED_NETNS"] = "1"
        else:  # no namespaces: the fixed ports are rewritten to free ones
            cmd = [sys.executable, DRIVER, name]
            env["SEED_PORT_MAP"] = f"9999={free_port()},22222={free_port()}"
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT * 6, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout, f"{name}: ok\n")

    def test_the_seed_programs_differ_from_the_documents_only_in_imports(self):
        docs = os.path.join(os.environ.get("SSOCK_SOURCE_DIR", ""), "..", "shared", "seeds")
        path = os.path.join(docs, "simplesockets-intro.md")
        if not os.path.exists(path):
            self.skipTest("../shared/seeds is not next to this checkout")
        with open(path) as f:
            doc = f.read()
        for name in ("simplesockets_server.py", "simplesockets_client.py"):
            with open(os.path.join(SEEDS, name)) as f:
                lines = [l for l in f.read().splitlines() if not l.startswith("#")]
            for line in lines:
                original = line.replace("from ssock.simplesockets import",
                                        "from simplesockets.simplesockets import")
                self.assertIn(original, doc, f"{name}: {line!r} is not in the document")

    def test_simplesockets_server_and_client(self):
        self.run_case("simplesockets_pair")

    def test_simplesockets_client_against_the_c_echo(self):
        self.run_case("simplesockets_client_vs_tool")

    def test_c_tool_against_the_simplesockets_server(self):
        self.run_case("tool_vs_simplesockets_server")

    def test_tutorial_client_against_the_c_echo(self):
        self.run_case("tutorial_client_vs_tool")

    def test_c_tool_against_the_tutorial_server(self):
        self.run_case("tool_vs_tutorial_server")


if __name__ == "__main__":
    unittest.main()
