"""README.md's Python examples (blocks marked <!-- python: NAME -->) run as
written: the echo server, and both clients against it."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

from support import TIMEOUT, python_env

ROOT = os.environ.get("SSOCK_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")


def blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return dict(re.findall(r"<!-- python: (\S+) -->\n```python\n(.*?)```", text, re.S))


class ReadmeTest(unittest.TestCase):
    def test_the_python_examples_run_as_written(self):
        code = blocks()
        self.assertEqual(sorted(code), ["async_client.py", "echo_client.py", "echo_server.py"])
        with tempfile.TemporaryDirectory() as d:
            for name, text in code.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            server = subprocess.Popen([sys.executable, os.path.join(d, "echo_server.py"),
                                       "127.0.0.1:0"], stdout=subprocess.PIPE, text=True,
                                      env=python_env())
            try:
                line = server.stdout.readline()
                self.assertTrue(line.startswith("listening on 127.0.0.1:"), line)
                addr = line.split()[-1]
                expect = {"echo_client.py": "reply 1: one\nreply 2: two\n",
                          "async_client.py": "reply: one\nreply: two\n"}
                for name, out in expect.items():
                    r = subprocess.run([sys.executable, os.path.join(d, name), addr],
                                       capture_output=True, text=True, timeout=TIMEOUT,
                                       env=python_env())
                    self.assertEqual((r.returncode, r.stdout), (0, out), r.stderr)
                server.send_signal(signal.SIGINT)  # Ctrl-C
                self.assertEqual(server.wait(TIMEOUT), 0)
                self.assertEqual(server.stdout.read(), "")
            finally:
                if server.poll() is None:
                    server.kill()
                server.stdout.close()


if __name__ == "__main__":
    unittest.main()
