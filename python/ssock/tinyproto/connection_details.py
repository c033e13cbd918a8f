"""TinyProtoConnectionDetails: a host and port, resolved once (IPv4 or IPv6)."""
import socket

from .errors import TinyProtoError

TINY_PROTO_SUPPORTED_ADDRESS_FAMILY = (socket.AF_INET, socket.AF_INET6)
TINY_PROTO_SUPPORTED_SOCKET_KIND = (socket.SOCK_STREAM,)


class TinyProtoConnectionDetails:
    """Where to listen or connect. Port 0 is accepted for listening (a free
    port; read it from the server's listen_socks once started): tinyproto 3.0
    refused it."""

    __slots__ = ("host", "port", "ipaddr", "socket_connect_details", "address_family",
                 "socket_kind", "socket_proto", "__weakref__")

    def __init__(self, host: str, port: int):
        if not isinstance(port, int) or port < 0 or port > 65535:
            raise TinyProtoError(
                f"Incorrect port number: {port}. Port number should be between 1 and 65535")
        self.port = port
        self.host = host
        try:
            res = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise TinyProtoError(
                f"Could not resolv host/port combination for {host}:{port}, due to error {e}")
        res = [r for r in res if r[0] in TINY_PROTO_SUPPORTED_ADDRESS_FAMILY
               and r[1] in TINY_PROTO_SUPPORTED_SOCKET_KIND]
        if not res:
            raise TinyProtoError(
                f"No supported connection details available for host/port combination "
                f"for {host}:{port}")
        family, kind, proto, _canon, addr = res[0]
        self.socket_connect_details = addr
        self.ipaddr = addr[0]
        self.address_family = family
        self.socket_kind = kind
        self.socket_proto = proto

    @property
    def ssock_address(self):
        """The address as ssock takes it ('HOST:PORT' or '[V6]:PORT')."""
        host, port = self.socket_connect_details[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self):
        return f"TinyProtoConnectionDetails({self.host!r}, {self.port})"
