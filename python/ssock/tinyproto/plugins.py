"""tinyproto's plugin base: a plugin rewrites every message on its way out
(msg_transmit, in registration order) and in (msg_receive, in reverse)."""


class TinyProtoPlugin:
    def msg_transmit(self, msg):
        return msg

    def msg_receive(self, msg):
        return msg
