"""tinyproto's exception."""


class TinyProtoError(Exception):
    """A protocol-level failure: a rejected transmission, a bad address, no
    listen address, listeners already active."""
