"""ssock.tinyproto: tinyproto 3.0's API and behaviour, its wire in both roles
(against a byte-by-byte stand-in for the real library, against ssock's C
tinyproto framing and against the C tool), file transfers written the way
tinyproto programs write them, and regression tests for the original's bugs."""
import hashlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

import ssock
import ssock.tinyproto as tp
from ssock.tinyproto import (TinyProtoClient, TinyProtoConnection, TinyProtoConnectionDetails,
                             TinyProtoError, TinyProtoPlugin, TinyProtoServer)
from support import (TIMEOUT, TOOL, Collector, Tool, cpu_seconds, open_fds, python_env,
                     recv_exact, thread_count, wait_until)
from tinyproto_peer import Listener, Peer, Rejected


class Running:
    """Runs a server's blocking start() on a thread, until stop()."""

    def __init__(self, server):
        self.server = server
        self.ready = threading.Event()
        self.error = None
        pre_loop = server.pre_loop

        def ready_pre_loop():
            pre_loop()
            self.ready.set()

        server.pre_loop = ready_pre_loop
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        if not self.ready.wait(TIMEOUT):
            raise AssertionError(f"server did not start: {self.error!r}")

    def _run(self):
        try:
            self.server.start()
        except BaseException as e:
            self.error = e
            self.ready.set()
            raise

    def addr(self, i=0):
        return self.server.listen_socks[i].getsockname()

    def stop(self):
        self.server.shutdown = True
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "start() did not return"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# Seconds a busy peer takes to OK a message: past ssock's default linger (1 s),
# within tinyproto's default socket timeout (5 s).
SLOW_OK = 1.5


def local(port=0, host="127.0.0.1"):
    return TinyProtoConnectionDetails(host, port)


class Echo(TinyProtoConnection):
    def transmission_received(self, msg):
        self.transmit(msg)


class ApiTest(unittest.TestCase):
    def test_names_and_submodules(self):
        from ssock.tinyproto.connection import (MSG_MAX_SIZE, SC_CONFLICT, SC_CONLIMIT,
                                                SC_GENERIC_ERROR, SC_OK)
        from ssock.tinyproto.client import TinyProtoClient as C
        from ssock.tinyproto.server import TinyProtoServer as S
        from ssock.tinyproto.errors import TinyProtoError as E
        from ssock.tinyproto.plugins import TinyProtoPlugin as P
        from ssock.tinyproto.connection_details import TinyProtoConnectionDetails as D
        from ssock.tinyproto.tinyproto import TinyProtoConnection as T
        self.assertEqual((SC_OK, SC_GENERIC_ERROR, SC_CONLIMIT, SC_CONFLICT, MSG_MAX_SIZE),
                         (0xFF, 0x00, 0xFE, 0xFD, 0xF0FFFFFF))
        self.assertEqual((C, S, E, P, D, T), (TinyProtoClient, TinyProtoServer, TinyProtoError,
                                              TinyProtoPlugin, TinyProtoConnectionDetails,
                                              TinyProtoConnection))
        self.assertIs(tp.TinyProtoServer, TinyProtoServer)

    def test_connection_details(self):
        d = TinyProtoConnectionDetails("localhost", 9123)
        self.assertEqual((d.host, d.port), ("localhost", 9123))
        self.assertIn(d.ipaddr, ("127.0.0.1", "::1"))
        self.assertEqual(TinyProtoConnectionDetails("::1", 80).socket_connect_details[:2],
                         ("::1", 80))
        with self.assertRaises(TinyProtoError):
            TinyProtoConnectionDetails("127.0.0.1", 70000)
        with self.assertRaises(TinyProtoError):
            TinyProtoConnectionDetails("no such host.invalid", 80)

    def test_handlers_and_plugins_are_checked(self):
        server = TinyProtoServer([local()])
        with self.assertRaises(ValueError):
            server.set_conn_handler(object)
        with self.assertRaises(ValueError):
            server.register_connection_plugin(object)
        with self.assertRaises(ValueError):
            TinyProtoClient(connection_handler=int)
        with self.assertRaises(TinyProtoError):
            TinyProtoServer().start()  # no address to listen on
        with self.assertRaises(ValueError):
            TinyProtoServer().add_addr("not an ip", 80)

    def test_active_connections_is_keyed_by_id(self):
        # tinyproto 3.0: a dict of UUID -> connection, so a missing key is a
        # KeyError, an int too (tinyproto 2's list indexes work while in range).
        client = TinyProtoClient()
        for key in (0, 3, -1, uuid.uuid4()):
            with self.assertRaises(KeyError):
                client.active_connections[key]
        with self.assertRaises(IndexError):  # and what tinyproto 2 raised
            client.active_connections[0]
        self.assertIsNone(client.active_connections.get(0))


class HooksTest(unittest.TestCase):
    def test_hooks_run_in_order_and_start_blocks_until_shutdown(self):
        log = Collector()

        class Conn(TinyProtoConnection):
            def pre_loop(self):
                log("conn pre_loop")

            def transmission_received(self, msg):
                log(("received", bytes(msg), type(msg)))
                self.transmit(b"ack " + msg)

            def post_loop(self):
                log("conn post_loop")

        class Server(TinyProtoServer):
            def pre_loop(self):
                log("pre_loop")

            def conn_init(self, conn_id, conn_o):
                log(("conn_init", type(conn_id), conn_o.socket_o.getpeername()[0]))

            def conn_shutdown(self, conn_id, conn_o):
                log(("conn_shutdown", conn_id in self.active_connections))

            def post_loop(self):
                log("post_loop")

        with Running(Server([local()], connection_handler=Conn)) as run:
            peer = Peer.connect(run.addr()).handshake()
            peer.transmit(b"hi")
            self.assertEqual(peer.receive(), b"ack hi")
            self.assertEqual(len(run.server.active_connections), 1)
            peer.close()
            log.wait(6)
        log.wait(7)
        self.assertEqual(log.items, [
            "pre_loop", ("conn_init", uuid.UUID, "127.0.0.1"), "conn pre_loop",
            ("received", b"hi", bytearray), "conn post_loop", ("conn_shutdown", False),
            "post_loop"])

    def test_subclass_with_slots_passing_everything_through(self):
        # The shape of tinyproto's own chat example.
        class ChatConnection(TinyProtoConnection):
            __slots__ = ("__inbox", "__lock")

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.__inbox = []
                self.__lock = threading.Lock()

            def transmission_received(self, msg):
                with self.__lock:
                    self.__inbox.append(msg.decode())
                self.transmit(("%d so far" % len(self.__inbox)).encode())

        class Server(TinyProtoServer):
            def conn_init(self, conn_id, conn_o):
                conn_o.tag = "set after construction"

        with Running(Server(listen_addressess=[local()],
                            connection_handler=ChatConnection)) as run:
            peer = Peer.connect(run.addr()).handshake()
            for i in range(1, 4):
                peer.transmit(b"line")
                self.assertEqual(peer.receive(), b"%d so far" % i)
            conn_o = next(iter(run.server.active_connections.values()))
            self.assertEqual(conn_o.tag, "set after construction")
            peer.close()

    def test_socket_o_peername_details_and_fileno(self):
        seen = {}
        arrived = threading.Event()

        class Conn(TinyProtoConnection):
            def pre_loop(self):
                self.socket_o.settimeout(7)
                seen["peer"] = self.socket_o.getpeername()
                seen["details"] = self.peername_details
                seen["timeout"] = self.socket_o.gettimeout()
                fd = self.socket_o.fileno()
                arrived.set()
                seen["readable"] = select.select([fd], [], [], TIMEOUT)[0] == [fd]
                seen["msg"] = self.receive()

        with Running(TinyProtoServer([local()], connection_handler=Conn)) as run:
            peer = Peer.connect(run.addr()).handshake()
            self.assertTrue(arrived.wait(TIMEOUT))
            peer.transmit(b"select me")
            wait_until(lambda: "msg" in seen, what="the receive in pre_loop")
            self.assertEqual(seen["peer"], peer.sock.getsockname())
            self.assertEqual(seen["details"], seen["peer"])
            self.assertEqual(seen["timeout"], 7)
            self.assertTrue(seen["readable"])
            self.assertEqual(seen["msg"], b"select me")
            peer.close()

    def test_plugins_both_ways(self):
        # Out through the plugins in order, in through them in reverse.
        class Bang(TinyProtoPlugin):
            def msg_transmit(self, msg):
                return bytes(msg) + b"!"

            def msg_receive(self, msg):
                assert msg.endswith(b"!"), msg
                return msg[:-1]

        class Xor(TinyProtoPlugin):
            def msg_transmit(self, msg):
                return bytes(b ^ 0x55 for b in msg)

            def msg_receive(self, msg):
                return bytearray(b ^ 0x55 for b in msg)

        xor = lambda data: bytes(b ^ 0x55 for b in data)
        server = TinyProtoServer([local()], connection_handler=Echo,
                                 connection_plugin_list=[Bang])
        server.register_connection_plugin(Xor())
        with Running(server) as run:
            peer = Peer.connect(run.addr()).handshake()
            peer.transmit(xor(b"abc!"))
            self.assertEqual(peer.receive(), xor(b"abc!"))
            peer.close()

    def test_shutdown_from_another_thread_ends_a_connection(self):
        ended = threading.Event()

        class Conn(TinyProtoConnection):
            def post_loop(self):
                ended.set()

        with Running(TinyProtoServer([local()], connection_handler=Conn)) as run:
            peer = Peer.connect(run.addr()).handshake()
            wait_until(lambda: run.server.active_connections, what="the connection")
            conn_o = run.server.active_connections[0]  # tinyproto 2's index works too
            conn_o.shutdown = True
            self.assertTrue(ended.wait(TIMEOUT))
            self.assertTrue(peer.at_eof())
            wait_until(lambda: not run.server.active_connections, what="conn_shutdown")
            peer.close()

    def test_loop_pass_runs_and_hooks_may_block_in_transmit_and_receive(self):
        class Asker(TinyProtoConnection):
            passes = 0

            def pre_loop(self):
                self.transmit(b"question")
                self.answer = self.receive()

            def loop_pass(self):
                Asker.passes += 1
                if Asker.passes == 5:
                    self.transmit(b"got " + self.answer)

        with Running(TinyProtoServer([local()], connection_handler=Asker)) as run:
            peer = Peer.connect(run.addr()).handshake()
            self.assertEqual(peer.receive(), b"question")
            peer.transmit(b"42")
            self.assertEqual(peer.receive(), b"got 42")
            peer.close()

    def test_old_style_add_addr_conn_init_and_no_arg_handler(self):
        inits = Collector()

        class OldConn(TinyProtoConnection):
            def __init__(self):
                super().__init__()

            def transmission_received(self, msg):
                self.transmit(msg)

        class OldServer(TinyProtoServer):
            def conn_init(self, conn_o):
                inits(conn_o.socket_o.getpeername())

        server = OldServer()
        server.set_conn_handler(OldConn)
        server.add_addr("127.0.0.1", 0)
        with Running(server) as run:
            peer = Peer.connect(run.addr()).handshake()
            peer.transmit(b"old")
            self.assertEqual(peer.receive(), b"old")
            self.assertEqual(inits.wait(1)[0], peer.sock.getsockname())
            peer.close()

    def test_several_listen_addresses_ipv6_too(self):
        server = TinyProtoServer([local(), ("::1", 0)], connection_handler=Echo)
        with Running(server) as run:
            for i in range(2):
                peer = Peer.connect(run.addr(i)).handshake()
                peer.transmit(b"via %d" % i)
                self.assertEqual(peer.receive(), b"via %d" % i)
                peer.close()
            self.assertEqual(run.addr(1)[0], "::1")

    def test_connection_limit_refuses_and_the_server_goes_on(self):
        server = TinyProtoServer([local()], connection_handler=Echo, connection_limit=2)
        with Running(server) as run:
            peers = [Peer.connect(run.addr()).handshake() for _ in range(2)]
            wait_until(lambda: len(run.server.active_connections) == 2, what="2 connections")
            extra = Peer.connect(run.addr())
            with self.assertRaises((Rejected, EOFError, ConnectionError)):
                extra.handshake()  # refused; tinyproto 3.0 died here
            for i, peer in enumerate(peers):
                peer.transmit(b"still %d" % i)
                self.assertEqual(peer.receive(), b"still %d" % i)
            for p in peers + [extra]:
                p.close()


class ExamplesTest(unittest.TestCase):
    """tinyproto's own chat example: its classes as written (name-mangled
    __slots__, *args/**kwargs passed through, properties, loop_pass polling an
    outbox), only the module imported from ssock."""

    def test_the_chat_example(self):
        from threading import Lock, Thread

        class ChatSrvConnection(tp.TinyProtoConnection):
            __slots__ = ('__msg_inbox', '__msg_inbox_lock',
                         '__msg_outbox', '__msg_outbox_lock', '__transaction_lock')

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.__msg_inbox = []
                self.__msg_outbox = []
                self.__msg_inbox_lock = Lock()
                self.__msg_outbox_lock = Lock()
                self.__transaction_lock = Lock()

            @property
            def Inbox(self):
                with self.__msg_inbox_lock:
                    res = self.__msg_inbox
                    self.__msg_inbox = []
                    return res

            @Inbox.setter
            def Inbox(self, newval):
                with self.__msg_inbox_lock:
                    self.__msg_inbox.append(newval)

            @property
            def Outbox(self):
                with self.__msg_outbox_lock:
                    res = self.__msg_outbox
                    self.__msg_outbox = []
                    return res

            @Outbox.setter
            def Outbox(self, newval):
                with self.__msg_outbox_lock:
                    self.__msg_outbox.append(newval)

            def transmission_received(self, msg):
                self.Inbox = msg.decode()

            def loop_pass(self):
                with self.__transaction_lock:
                    pending_msgs = self.Outbox
                    for msg in pending_msgs:
                        self.transmit(msg.encode())

        class ChatSrv(tp.TinyProtoServer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)

            def conn_init(self, conn_id, conn_o):
                self.broadcast_msgs(conn_id, ('**joined the chat', ))

            def conn_shutdown(self, conn_id, conn_o):
                self.broadcast_msgs(conn_id, ('**left the chat', ))

            def loop_pass(self):
                for conn_id, conn_o in self.active_connections.items():
                    pending_msgs = conn_o.Inbox
                    self.broadcast_msgs(conn_id, pending_msgs)

            def broadcast_msgs(self, originating_conn_id, msgs):
                for conn_id, conn_o in self.active_connections.items():
                    if conn_id == originating_conn_id:
                        continue
                    for m in msgs:
                        formatted_m = '[{}] {}'.format(originating_conn_id, m)
                        conn_o.Outbox = formatted_m

        class ChatClient(tp.TinyProtoClient):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                t = Thread(target=self.start)
                t.start()

            def loop_pass(self):
                for conn_id, conn_o in self.active_connections.items():
                    pending_msgs = conn_o.Inbox
                    for m in pending_msgs:
                        heard.append(m)  # the example prints them

        heard = []
        srv = ChatSrv(connection_handler=ChatSrvConnection,
                      listen_addressess=[tp.TinyProtoConnectionDetails('127.0.0.1', 0)])
        with Running(srv) as run:
            port = run.addr()[1]
            alice = ChatClient(connection_handler=ChatSrvConnection, timeout=3)
            bob = ChatClient(connection_handler=ChatSrvConnection, timeout=3)
            a = alice.active_connections[alice.connect_to(tp.TinyProtoConnectionDetails('127.0.0.1', port))]
            wait_until(lambda: len(run.server.active_connections) == 1, what="alice")
            b = bob.active_connections[bob.connect_to(tp.TinyProtoConnectionDetails('127.0.0.1', port))]
            wait_until(lambda: any("joined" in m for m in heard), what="the join notice")
            b.Outbox = "hello from bob"
            wait_until(lambda: any(m.endswith("] hello from bob") for m in heard),
                       what="bob's line at alice")
            b.shutdown = True
            wait_until(lambda: any("left the chat" in m for m in heard), what="the leave notice")
            self.assertTrue(a.is_alive())
            a.shutdown = True
            alice.shutdown = bob.shutdown = True


class ClientTest(unittest.TestCase):
    def test_connect_to_returns_an_id_and_transmit_right_away(self):
        received = Collector()

        class Conn(TinyProtoConnection):
            def transmission_received(self, msg):
                received(bytes(msg))

        listener = Listener()
        client = TinyProtoClient(connection_handler=Conn, timeout=TIMEOUT)
        conn_id = client.connect_to(TinyProtoConnectionDetails(*listener.addr))
        self.assertIsInstance(conn_id, uuid.UUID)
        conn = client.active_connections[conn_id]
        conn.transmit(b"before the handshake is done")  # tinyproto raced here
        peer = listener.accept().handshake()
        self.assertEqual(peer.receive(), b"before the handshake is done")
        peer.transmit(b"and back")
        self.assertEqual(received.wait(1), [b"and back"])
        self.assertTrue(conn.is_alive())
        self.assertEqual(conn.peername_details, listener.addr)
        conn.shutdown = True
        self.assertTrue(peer.at_eof())
        peer.close()
        listener.close()

    def test_client_main_loop_and_old_connect_to(self):
        passes = Collector()

        class Client(TinyProtoClient):
            def loop_pass(self):
                passes(1)
                if len(passes.items) == 3:
                    self.shutdown = True

        listener = Listener("::1")
        client = Client()
        conn_id = client.connect_to("::1", listener.addr[1])
        peer = listener.accept().handshake()
        client.start()  # returns once shutdown is set
        self.assertEqual(len(passes.items), 3)
        self.assertTrue(client.active_connections == {})  # shutdown ended them
        self.assertTrue(peer.at_eof())
        peer.close()
        listener.close()
        self.assertIsInstance(conn_id, uuid.UUID)

    def test_a_refused_message_raises_on_the_next_transmit(self):
        listener = Listener()
        client = TinyProtoClient()
        conn = client.active_connections[client.connect_to(local(listener.addr[1]))]
        peer = listener.accept(limit=4).handshake()
        conn.transmit(b"too long for the peer")
        self.assertIsNone(peer.receive())  # refused with 0x00
        wait_until(lambda: conn._rejected is not None, what="the refusal to arrive")
        with self.assertRaises(TinyProtoError):
            conn.transmit(b"next")
        conn.transmit(b"ok")  # the connection goes on
        self.assertEqual(peer.receive(), b"ok")
        conn.shutdown = True
        self.assertTrue(peer.at_eof())
        peer.close()
        listener.close()


    def test_ended_clients_leave_no_thread_or_fd_and_connect_again(self):
        # A client per request, as a helper function makes them: once its
        # connections ended, its pump thread, loop thread and their fds go
        # (they stayed forever: 2 threads and 4 fds per client until EMFILE).
        replies = Collector()

        class Once(TinyProtoConnection):
            def pre_loop(self):
                self.transmit(b"req")
                replies(bytes(self.receive()))
                self.shutdown = True

        with Running(TinyProtoServer([local()], connection_handler=Echo)) as run:
            threads, fds = thread_count(), open_fds()

            def request(client):
                conn = client.active_connections[client.connect_to(local(run.addr()[1]))]
                conn._connection_loop_thread.join(TIMEOUT)
                self.assertFalse(conn.is_alive())

            for _ in range(20):
                request(TinyProtoClient(connection_handler=Once, timeout=TIMEOUT))
            self.assertEqual(replies.wait(20), [b"req"] * 20)
            wait_until(lambda: thread_count() <= threads, what=f"{threads} threads again")
            wait_until(lambda: open_fds() <= fds, what=f"{fds} fds again")
            # One client whose connections all ended connects again.
            client = TinyProtoClient(connection_handler=Once, timeout=TIMEOUT)
            for n in (21, 22):
                request(client)
                self.assertEqual(replies.wait(n)[-1], b"req")
                wait_until(lambda: client._pump is None, what="the pump to stop")
            wait_until(lambda: thread_count() <= threads, what=f"{threads} threads again")
            wait_until(lambda: open_fds() <= fds, what=f"{fds} fds again")

    # tinyproto's transmit() returned once the payload was written (within the
    # socket timeout, 5 s by default), so a program may end the connection or
    # exit right after it. Here transmit() only queues (and the codec holds the
    # payload until the peer's OK): closing must give the peer that long, not
    # ssock's default linger of 1 s.
    def test_shutdown_right_after_transmit_waits_for_a_slow_peer(self):
        listener = Listener()
        self.addCleanup(listener.close)
        client = TinyProtoClient()  # tinyproto's default timeout: 5 s
        conn = client.active_connections[client.connect_to(local(listener.addr[1]))]
        peer = listener.accept().handshake()
        self.addCleanup(peer.close)
        conn.transmit(b"last words")
        conn.shutdown = True
        self.assertEqual(recv_exact(peer.sock, 4), (10).to_bytes(4, "big"))
        conn._connection_loop_thread.join(SLOW_OK)  # the peer is busy
        peer.sock.sendall(b"\xff")
        self.assertEqual(recv_exact(peer.sock, 10), b"last words")
        self.assertTrue(peer.at_eof())
        conn._connection_loop_thread.join(TIMEOUT)
        self.assertFalse(conn.is_alive())

    def test_exit_right_after_transmit_waits_for_a_slow_peer(self):
        listener = Listener()
        self.addCleanup(listener.close)
        size = 4 << 20
        code = (
            "from ssock.tinyproto import TinyProtoClient, TinyProtoConnectionDetails\n"
            "c = TinyProtoClient()\n"
            f"cid = c.connect_to(TinyProtoConnectionDetails('127.0.0.1', {listener.addr[1]}))\n"
            f"c.active_connections[cid].transmit(b'x' * {size})\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=python_env())
        try:
            peer = listener.accept().handshake()
            self.addCleanup(peer.close)
            self.assertEqual(int.from_bytes(recv_exact(peer.sock, 4), "big"), size)
            with self.assertRaises(subprocess.TimeoutExpired):
                proc.wait(SLOW_OK)  # exiting: waits for the busy peer's OK
            peer.sock.sendall(b"\xff")
            self.assertEqual(recv_exact(peer.sock, size), b"x" * size)
            _, err = proc.communicate(timeout=TIMEOUT)
            self.assertEqual(proc.returncode, 0, err)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=TIMEOUT)

    def test_the_last_connection_ending_never_writes_to_the_pumps_closed_fd(self):
        # gone() queued its note, then wrote the pump's wake fd: in between,
        # the pump could take the note, find no connection left, stop and
        # close that fd (EBADF in the connection's thread, which then skipped
        # letting go of its handle; or 8 bytes into whatever reused the number).
        errors = []
        self.addCleanup(setattr, threading, "excepthook", threading.excepthook)
        threading.excepthook = lambda args: errors.append(args.exc_value)
        listener = Listener()
        self.addCleanup(listener.close)
        client = TinyProtoClient(timeout=TIMEOUT)
        conn = client.active_connections[client.connect_to(local(listener.addr[1]))]
        peer = listener.accept().handshake()
        self.addCleanup(peer.close)
        pump = client._pump
        queued = pump._added

        class StopsBetween:  # the pump stops between gone()'s two steps
            def put(self, item):
                queued.put(item)
                if item[1] is None:
                    os.eventfd_write(pump._wake_fd, 1)  # as an earlier wake-up would
                    pump.join(TIMEOUT)

            def __getattr__(self, name):
                return getattr(queued, name)

        pump._added = StopsBetween()
        conn.shutdown = True
        conn._connection_loop_thread.join(TIMEOUT)
        self.assertFalse(conn.is_alive())
        self.assertFalse(pump.is_alive())
        self.assertEqual(errors, [])
        self.assertIsNone(conn._link)  # it let go of its handle

    def test_a_timeout_ssock_would_refuse_is_refused_and_connect_to_leaves_no_pump(self):
        client = TinyProtoClient()
        for bad in (-1, -0.5, float("nan"), float("inf"), 1e300, 10 ** 400, 2147484):
            with self.assertRaises(ValueError, msg=repr(bad)):
                client.set_timeout(bad)
        self.assertEqual(client.socket_timeout, 5)
        for good in (0, 0.25, 2147483):
            client.set_timeout(good)
            self.assertEqual(client.socket_timeout, good)
        # Given to the constructor (which, as tinyproto's, does not check it),
        # connect_to() raises, and the pump it started stops again.
        threads, fds = thread_count(), open_fds()
        for bad in (-1, 1e300):
            client = TinyProtoClient(timeout=bad)
            with self.assertRaises(ValueError):
                client.connect_to(local(9))
            wait_until(lambda: client._pump is None, what="the pump to stop")
        wait_until(lambda: thread_count() <= threads, what=f"{threads} threads again")
        wait_until(lambda: open_fds() <= fds, what=f"{fds} fds again")

    def test_a_slow_connection_of_a_client_does_not_hold_up_its_others(self):
        # The client's pump waited for room in a full connection's queue,
        # so none of the client's other connections got anything meanwhile.
        release, pong, got = threading.Event(), threading.Event(), []
        self.addCleanup(release.set)
        count = 5000

        class Server(TinyProtoConnection):
            def transmission_received(self, msg):
                if msg == b"flood":
                    for i in range(count):
                        self.transmit(b"%d" % i)
                else:
                    self.transmit(b"pong")

        class Conn(TinyProtoConnection):
            max_held = 64

            def transmission_received(self, msg):
                if msg == b"pong":
                    pong.set()
                    return
                release.wait(TIMEOUT)
                got.append(int(msg))

        with Running(TinyProtoServer([local()], connection_handler=Server)) as run:
            client = TinyProtoClient(connection_handler=Conn, timeout=TIMEOUT)
            slow = client.active_connections[client.connect_to(local(run.addr()[1]))]
            fast = client.active_connections[client.connect_to(local(run.addr()[1]))]
            slow.transmit(b"flood")
            wait_until(lambda: len(slow._inbox) >= Conn.max_held - 1, what="the slow queue to fill")
            fast.transmit(b"ping")
            self.assertTrue(pong.wait(TIMEOUT), "the fast connection's reply never came")
            self.assertEqual(got, [])  # the slow one has taken none of its thousands yet
            release.set()
            wait_until(lambda: len(got) == count, what="every message of the slow one")
            self.assertEqual(got, list(range(count)))
            slow.shutdown = fast.shutdown = True


class WireTest(unittest.TestCase):
    """Byte-exact checks of the wire, in both roles."""

    def test_server_role_bytes(self):
        with Running(TinyProtoServer([local()], connection_handler=Echo)) as run:
            peer = Peer.connect(run.addr())
            peer.sock.sendall(b"\xff")
            self.assertEqual(peer.sock.recv(1), b"\xff")
            peer.sock.sendall(b"\x00\x00\x00\x03")
            self.assertEqual(peer.sock.recv(1), b"\xff")  # accepted
            peer.sock.sendall(b"abc")
            self.assertEqual(peer.sock.recv(4), b"\x00\x00\x00\x03")  # the echo's size
            peer.sock.sendall(b"\xff")
            self.assertEqual(peer.sock.recv(3), b"abc")
            peer.close()

    def test_server_refuses_a_size_above_its_limit_and_goes_on(self):
        class Small(TinyProtoServer):
            max_message = 16

        with Running(Small([local()], connection_handler=Echo)) as run:
            peer = Peer.connect(run.addr()).handshake()
            with self.assertRaises(Rejected):
                peer.transmit(b"x" * 17)
            peer.transmit(b"fits")
            self.assertEqual(peer.receive(), b"fits")
            peer.close()

    def test_client_role_bytes(self):
        listener = Listener()
        client = TinyProtoClient()
        conn = client.active_connections[client.connect_to(local(listener.addr[1]))]
        s = listener.sock.accept()[0]
        s.settimeout(TIMEOUT)
        self.assertEqual(s.recv(1), b"\xff")
        s.sendall(b"\xff")
        conn.transmit(b"hello")
        self.assertEqual(s.recv(4), b"\x00\x00\x00\x05")
        s.sendall(b"\xff")
        self.assertEqual(s.recv(5), b"hello")
        conn.shutdown = True
        s.close()
        listener.close()


class RegressionTest(unittest.TestCase):
    def test_a_slow_connection_does_not_hold_up_the_others(self):
        # A's handler is stuck while its peer floods it: A's queue fills.
        # The server used to wait for room there, and B's ping waited too;
        # now A's reading is paused and B is answered.
        release, slow, got_a = threading.Event(), {}, Collector()

        class Conn(TinyProtoConnection):
            max_held = 4

            def transmission_received(self, msg):
                if msg.startswith(b"a"):
                    if not slow:
                        slow["conn"] = self
                        release.wait(TIMEOUT * 2)
                    got_a(bytes(msg))
                else:
                    self.transmit(b"pong")

        n, sent = 300, [0]
        with Running(TinyProtoServer([local()], connection_handler=Conn)) as run:
            a = Peer.connect(run.addr()).handshake()
            # Lockstep small writes: without it Nagle and delayed ACKs make
            # every message take 40 ms.
            a.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            flood_error = []

            def flood():
                try:
                    for i in range(n):
                        a.transmit(b"a%d" % i)
                        sent[0] += 1
                except OSError as e:
                    flood_error.append(e)
            flooder = threading.Thread(target=flood)
            flooder.start()
            wait_until(lambda: "conn" in slow, what="A's handler to be stuck")
            conn_a = slow["conn"]
            # A's queue is full and one more message of A's came after it
            # (the server loop used to wait there), or A's reading is paused.
            held = conn_a.max_held
            wait_until(lambda: len(conn_a._inbox) >= held and (
                sent[0] >= held + 3 or getattr(conn_a, "_resume", None)),
                what="A's queue full")
            b = Peer.connect(run.addr()).handshake()
            b.transmit(b"ping")
            self.assertEqual(b.receive(), b"pong")  # while A is still stuck
            self.assertFalse(release.is_set())
            release.set()
            flooder.join(TIMEOUT)
            self.assertEqual(flood_error, [])
            self.assertEqual(got_a.wait(n), [b"a%d" % i for i in range(n)])
            a.close()
            b.close()

    def test_a_truncated_header_is_no_message(self):
        got, ended = Collector(), threading.Event()

        class Conn(TinyProtoConnection):
            def transmission_received(self, msg):
                got(msg)

            def post_loop(self):
                ended.set()

        with Running(TinyProtoServer([local()], connection_handler=Conn)) as run:
            peer = Peer.connect(run.addr()).handshake()
            peer.sock.sendall(b"\x00\x00")  # half a header, then EOF
            peer.close()
            self.assertTrue(ended.wait(TIMEOUT))
            self.assertEqual(got.items, [])

    def test_simultaneous_sends_close_instead_of_desyncing(self):
        got, ended = Collector(), threading.Event()

        class Talker(TinyProtoConnection):
            def pre_loop(self):
                self.transmit(b"mine")

            def transmission_received(self, msg):
                got(msg)

            def post_loop(self):
                ended.set()

        with Running(TinyProtoServer([local()], connection_handler=Talker)) as run:
            peer = Peer.connect(run.addr()).handshake()
            self.assertEqual(peer.sock.recv(4), b"\x00\x00\x00\x04")  # its size...
            peer.sock.sendall(b"\x00\x00\x00\x05")  # ...crosses ours
            self.assertTrue(ended.wait(TIMEOUT))
            self.assertTrue(peer.at_eof())
            self.assertEqual(got.items, [])
            peer.close()

    def test_a_huge_announced_size_reserves_nothing_and_a_stall_is_closed(self):
        ended = threading.Event()

        class Conn(TinyProtoConnection):
            def post_loop(self):
                ended.set()

        class Server(TinyProtoServer):
            read_timeout = 0.3

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        with Running(Server([local()], connection_handler=Conn)) as run:
            before = rss()
            peer = Peer.connect(run.addr()).handshake()
            peer.sock.sendall((0xF0000000).to_bytes(4, "big"))
            self.assertEqual(peer.sock.recv(1), b"\xff")  # accepted: under MSG_MAX_SIZE
            peer.sock.sendall(b"x" * 1000)  # then stalls
            self.assertTrue(ended.wait(TIMEOUT))  # closed by the read timeout
            self.assertLess(rss() - before, 64 << 20)
            peer.close()

    def test_a_slow_connection_holds_a_bounded_queue_and_loses_nothing(self):
        release, got = threading.Event(), []

        class Slow(TinyProtoConnection):
            max_held = 8

            def transmission_received(self, msg):
                release.wait(TIMEOUT)
                got.append(int(msg))

        with Running(TinyProtoServer([local()], connection_handler=Slow)) as run, \
                ssock.Client(run.addr(), framing="tinyproto", send_queue_max=1 << 20) as cli:
            cli.connect(TIMEOUT)
            for i in range(300):
                cli.send(b"%d" % i, timeout=TIMEOUT)
            wait_until(lambda: run.server.active_connections, what="the connection")
            conn_o = run.server.active_connections[0]
            # Full at 8: reading pauses. What was read before the pause took
            # effect still comes (a few); then the queue stops growing.
            wait_until(lambda: len(conn_o._inbox) >= 8 and conn_o._resume is not None,
                       what="the queue to fill and reading to pause")
            held = len(conn_o._inbox)
            threading.Event().wait(0.2)  # the sender keeps going; the queue does not grow
            self.assertEqual(len(conn_o._inbox), held)
            self.assertLess(held, 300)
            release.set()
            wait_until(lambda: len(got) == 300, what="every message")
            self.assertEqual(got, list(range(300)))

    def test_closed_connections_leave_no_socket_and_idle_ones_no_cpu(self):
        with Running(TinyProtoServer([local()], connection_handler=Echo)) as run:
            fds = open_fds()
            peers = [Peer.connect(run.addr()).handshake() for _ in range(20)]
            wait_until(lambda: len(run.server.active_connections) == 20, what="20 conns")
            before = cpu_seconds()
            threading.Event().wait(0.5)  # 20 idle connections: tinyproto polled 33/s each
            self.assertLess(cpu_seconds() - before, 0.1)
            for p in peers:
                p.close()
            wait_until(lambda: not run.server.active_connections, what="the conns to end")
            wait_until(lambda: open_fds() <= fds, what="their sockets to close")

    def test_a_goodbye_transmitted_from_post_loop_at_server_shutdown_arrives(self):
        # tinyproto's transmit() in post_loop blocked until the peer took the
        # message; here it queues, and the server closed right after the
        # connection threads returned: the peer got the size, then EOF.
        class Conn(TinyProtoConnection):
            def post_loop(self):
                self.transmit(b"goodbye")

        run = Running(TinyProtoServer([local()], connection_handler=Conn))
        self.addCleanup(run.stop)
        peer = Peer.connect(run.addr()).handshake()
        self.addCleanup(peer.close)
        wait_until(lambda: run.server.active_connections, what="the connection")
        run.server.shutdown = True
        self.assertEqual(recv_exact(peer.sock, 4), (7).to_bytes(4, "big"))
        run.thread.join(SLOW_OK)  # the peer is busy in its own loop a while
        peer.sock.sendall(b"\xff")
        self.assertEqual(recv_exact(peer.sock, 7), b"goodbye")
        self.assertTrue(peer.at_eof())
        run.thread.join(TIMEOUT)
        self.assertFalse(run.thread.is_alive(), "start() did not return")

    def test_a_peer_that_never_takes_the_goodbye_delays_shutdown_a_bounded_time(self):
        class Conn(TinyProtoConnection):
            def post_loop(self):
                self.transmit(b"goodbye")

        class Server(TinyProtoServer):
            shutdown_wait = 0.3

        run = Running(Server([local()], connection_handler=Conn))
        self.addCleanup(run.stop)
        peer = Peer.connect(run.addr()).handshake()
        self.addCleanup(peer.close)
        wait_until(lambda: run.server.active_connections, what="the connection")
        run.server.shutdown = True
        self.assertEqual(recv_exact(peer.sock, 4), (7).to_bytes(4, "big"))  # never OKed
        run.thread.join(TIMEOUT)
        self.assertFalse(run.thread.is_alive(), "start() did not return")
        self.assertTrue(peer.at_eof())

CHUNK = 1 << 20
FILE_SIZE = 24 * CHUNK + 12345


class FileSender(TinyProtoConnection):
    """Streams a file with transmit() from loop_pass, one chunk per pass, then
    an empty message, then waits for the receiver's digest."""

    path = None
    result = None

    def pre_loop(self):
        self.f = open(self.path, "rb")

    def loop_pass(self):
        chunk = self.f.read(CHUNK)
        self.transmit(chunk)
        if not chunk:
            type(self).result = bytes(self.receive())
            self.shutdown = True

    def post_loop(self):
        self.f.close()


class FileReceiver(TinyProtoConnection):
    """Writes what arrives to a file; an empty message ends it: the digest
    goes back."""

    directory = None
    done = None

    def pre_loop(self):
        self.f = open(os.path.join(self.directory, "received"), "wb")
        self.h = hashlib.sha256()

    def transmission_received(self, msg):
        if msg:
            self.f.write(msg)
            self.h.update(msg)
            return
        self.f.close()
        self.transmit(self.h.digest())
        type(self).done.set()


def make_file(path):
    data = os.urandom(FILE_SIZE)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).digest()


class FileTransferTest(unittest.TestCase):
    """Both roles against ssock's C tinyproto framing (the native module's
    framing="tinyproto", and the C tool)."""

    def setUp(self):
        import tempfile
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "file")
        self.digest = make_file(self.path)

    def tearDown(self):
        self.dir.cleanup()

    def test_client_streams_a_file_to_the_c_framing(self):
        with ssock.Server("127.0.0.1:0", framing="tinyproto") as srv:
            FileSender.path = self.path
            client = TinyProtoClient(connection_handler=FileSender, timeout=TIMEOUT)
            conn = client.active_connections[client.connect_to(local(srv.address[1]))]
            h, n = hashlib.sha256(), 0
            while True:
                ev = srv.next_event(TIMEOUT)
                self.assertIsNotNone(ev)
                if ev.type is ssock.MESSAGE:
                    if not ev.data:
                        ev.conn.send(h.digest())
                        break
                    h.update(ev.data)
                    n += len(ev.data)
            wait_until(lambda: not conn.is_alive(), what="the sender to finish")
            self.assertEqual(n, FILE_SIZE)
            self.assertEqual(FileSender.result, self.digest)

    def test_server_receives_a_file_from_the_c_framing(self):
        FileReceiver.directory = self.dir.name
        FileReceiver.done = threading.Event()
        inits = Collector()

        class Server(TinyProtoServer):
            def conn_init(self, conn_id, conn_o):
                inits(conn_o.socket_o.getpeername())

        with Running(Server([local()], connection_handler=FileReceiver)) as run, \
                ssock.Client(run.addr(), framing="tinyproto") as cli:
            cli.connect(TIMEOUT)
            with open(self.path, "rb") as f:
                while True:
                    chunk = f.read(CHUNK)
                    cli.send(chunk, timeout=TIMEOUT)
                    if not chunk:
                        break
            self.assertEqual(cli.recv(TIMEOUT), self.digest)
            self.assertTrue(FileReceiver.done.is_set())
            self.assertEqual(len(inits.items), 1)
        with open(os.path.join(self.dir.name, "received"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), self.digest)

    def test_stop_and_wait_against_the_c_tool_echo(self):
        class Checker(TinyProtoConnection):
            sent = received = 0
            ok = True

            def pre_loop(self):
                self.f = open(self_path, "rb")

            def loop_pass(self):
                chunk = self.f.read(CHUNK)
                if not chunk:
                    self.shutdown = True
                    return
                self.transmit(chunk)
                echo = self.receive()  # the tool answers each message
                Checker.ok &= echo == chunk
                Checker.sent += len(chunk)

            def post_loop(self):
                self.f.close()

        self_path = self.path
        with Tool("echo", "--framing", "tinyproto", "--listen", "127.0.0.1:0") as tool:
            client = TinyProtoClient(connection_handler=Checker, timeout=TIMEOUT)
            conn = client.active_connections[client.connect_to("127.0.0.1", tool.port)]
            wait_until(lambda: not conn.is_alive(), timeout=TIMEOUT * 3, what="the echo")
        self.assertTrue(Checker.ok)
        self.assertEqual(Checker.sent, FILE_SIZE)

    def test_the_c_tool_chats_with_a_server(self):
        class Shout(TinyProtoConnection):
            def transmission_received(self, msg):
                self.transmit(msg.upper())

        with Running(TinyProtoServer([local()], connection_handler=Shout)) as run:
            port = run.addr()[1]
            out = subprocess.run([TOOL, "chat", "--framing", "tinyproto", f"127.0.0.1:{port}"],
                                 input="one\ntwo\nthree\n", capture_output=True, text=True,
                                 timeout=TIMEOUT)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout, "ONE\nTWO\nTHREE\n")


if __name__ == "__main__":
    unittest.main()
