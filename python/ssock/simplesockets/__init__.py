"""simplesockets 0.0.8 on ssock: ``TCPServer`` and ``TCPClient`` with the same
API, so that a program written for simplesockets runs on ssock by changing its
import line (``from simplesockets.simplesockets import TCPServer`` becomes
``from ssock.simplesockets import TCPServer``; the submodule
``ssock.simplesockets.simplesockets`` exists too).

It speaks simplesockets' wire format (raw bytes, no framing) by default, so it
talks to real simplesockets peers; programs that control both ends can pass
``framing="u32"`` to ``setup()`` and get whole messages. What the original got
wrong stays fixed: a closed peer is noticed, nothing spins, the connection
limit holds, no message is lost between threads, and memory stays bounded.
See README.md ("Python") for the differences, call by call.
"""
from . import simplesockets  # noqa: F401  (import simplesockets.simplesockets)
from ._support_files.error import SetupError
from .simplesockets import TCPClient, TCPServer

__all__ = ["TCPServer", "TCPClient", "SetupError"]
