"""tinyproto 3.0 on ssock: TinyProtoServer, TinyProtoClient, TinyProtoConnection,
TinyProtoConnectionDetails, TinyProtoPlugin, TinyProtoError and the status
constants, with the same API, so a tinyproto program runs on ssock by
changing its imports (``from tinyproto import TinyProtoServer`` becomes
``from ssock.tinyproto import TinyProtoServer``; ``import tinyproto as tp``
becomes ``import ssock.tinyproto as tp``; the submodules connection, server,
client, connection_details, errors, plugins and tinyproto exist too).

The wire is tinyproto 3.0's, so it talks to real tinyproto peers in both
roles; ssock's C tinyproto framing does the wire work. See the module
docstrings of .connection, .server and .client for what behaves differently
because it was a bug.
"""
from .client import TinyProtoClient
from .connection import (MSG_MAX_SIZE, SC_CONFLICT, SC_CONLIMIT, SC_GENERIC_ERROR, SC_OK,
                         TinyProtoConnection)
from .connection_details import TinyProtoConnectionDetails
from .errors import TinyProtoError
from .plugins import TinyProtoPlugin
from .server import TinyProtoServer

__all__ = ["TinyProtoServer", "TinyProtoClient", "TinyProtoConnection",
           "TinyProtoConnectionDetails", "TinyProtoPlugin", "TinyProtoError", "SC_OK",
           "SC_GENERIC_ERROR", "SC_CONLIMIT", "SC_CONFLICT", "MSG_MAX_SIZE"]
