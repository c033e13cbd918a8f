"""The name later simplesockets releases gave the module: the same classes."""
from .simplesockets import TCPClient, TCPServer  # noqa: F401
from ._support_files.error import SetupError  # noqa: F401
