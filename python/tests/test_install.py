"""The package installs offline with pip from the repository, for the python3
first on PATH and for Debian's /usr/bin/python3, and works there."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SMOKE = """
import ssock, ssock.simplesockets, ssock.tinyproto, sys
from ssock.tinyproto.connection import SC_OK
assert ssock.__file__.startswith(sys.argv[1]), ssock.__file__
with ssock.Server("127.0.0.1:0", on_message=lambda c, d: c.send(d)) as s, \\
        ssock.Client(s.address) as c:
    c.connect(5)
    c.send(b"installed")
    assert c.recv(5) == b"installed"
print("ok")
"""


def interpreters():
    """The interpreters to install for: this one, and Debian's when it is another."""
    found = [sys.executable]
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(debian) != os.path.realpath(sys.executable):
        found.append(debian)
    return found


def has_pip(python):
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


class InstallTest(unittest.TestCase):
    def test_pip_install_offline_and_use(self):
        for python in interpreters():
            with self.subTest(python=python):
                if not has_pip(python):
                    self.skipTest(f"{python} has no pip (Debian: apt-get install python3-pip)")
                with tempfile.TemporaryDirectory(prefix="ssock-install-") as target:
                    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
                    env["PIP_NO_INDEX"] = "1"  # nothing may come from an index
                    r = subprocess.run([python, "-m", "pip", "install", "--no-index",
                                        "--target", target, ROOT], capture_output=True,
                                       text=True, env=env, timeout=600)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    for name in ("__init__.pyi", "py.typed", "simplesockets", "tinyproto"):
                        self.assertTrue(os.path.exists(os.path.join(target, "ssock", name)))
                    env["PYTHONPATH"] = target
                    r = subprocess.run([python, "-c", SMOKE, target], capture_output=True,
                                       text=True, env=env, cwd=target, timeout=60)
                    self.assertEqual((r.returncode, r.stdout), (0, "ok\n"), r.stderr)
                    # The native tests, with this interpreter and this copy.
                    env["PYTHONPATH"] = os.pathsep.join([target, HERE])
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                    r = subprocess.run([python, "-m", "unittest", "test_native"],
                                       capture_output=True, text=True, env=env, cwd=HERE,
                                       timeout=300)
                    self.assertEqual(r.returncode, 0, r.stderr[-3000:])


if __name__ == "__main__":
    unittest.main()
