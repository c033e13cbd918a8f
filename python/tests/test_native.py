"""The native API: ssock.Server, Client, UDP, Loop, Conn, Event, errors."""
import array
import copy
import gc
import os
import pickle
import select
import socket
import threading
import unittest
import weakref

import ssock
from support import TIMEOUT, Collector, Tool, raw_client, recv_exact, u32, wait_until


def echo(conn, data):
    conn.send(data)


class MessagesTest(unittest.TestCase):
    def test_two_sends_are_two_messages_both_ways(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"one")
            cli.send(b"two")
            self.assertEqual(cli.recv(TIMEOUT), b"one")
            self.assertEqual(cli.recv(TIMEOUT), b"two")

    def test_empty_and_large_messages_arrive_whole(self):
        big = os.urandom(3 << 20)
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"")
            cli.send(big, timeout=TIMEOUT)
            self.assertEqual(cli.recv(TIMEOUT), b"")
            self.assertEqual(cli.recv(TIMEOUT), big)

    def test_any_buffer_is_sent_without_conversion(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            for data in (bytearray(b"ba"), memoryview(b"xmvx")[1:3], array.array("B", [1, 2])):
                cli.send(data)
                self.assertEqual(cli.recv(TIMEOUT), bytes(data))
            with self.assertRaises(TypeError):
                cli.send("text is not bytes")

    def test_zero_copy_gives_read_only_memoryviews(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv, \
                ssock.Client(srv.address, zero_copy=True) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"abc")
            got = cli.recv(TIMEOUT)
            self.assertIsInstance(got, memoryview)
            self.assertTrue(got.readonly)
            self.assertEqual(got, b"abc")
            self.assertEqual(got.tobytes(), b"abc")
        with ssock.Server("127.0.0.1:0", zero_copy=True) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"xyz")
            srv.next_event(TIMEOUT)
            ev = srv.next_event(TIMEOUT)
            self.assertIn("MESSAGE", repr(ev))
            self.assertIn("len=3", repr(ev))
            data = ev.data
            del ev
            self.assertEqual(bytes(data), b"xyz")  # the view keeps the buffer alive

    def test_repr_of_an_event_whose_payload_was_released(self):
        with ssock.Server("127.0.0.1:0", zero_copy=True) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            cli.send(b"hello")
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)
            ev = srv.next_event(TIMEOUT)
            ev.data.release()
            text = repr(ev)  # was SystemError: a result with an exception set
            self.assertIn("MESSAGE", text)
            self.assertIn("released", text)

    def test_line_framing_talks_to_a_plain_socket(self):
        with ssock.Server("127.0.0.1:0", framing="line", on_message=echo) as srv:
            s = raw_client(srv.address)
            s.sendall(b"hello\r\nworld\n")
            self.assertEqual(recv_exact(s, 12), b"hello\nworld\n")
            s.close()

    def test_u32_wire_from_a_plain_socket(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv:
            s = raw_client(srv.address)
            s.sendall(u32(b"a") + u32(b"bc"))
            self.assertEqual(recv_exact(s, 11), u32(b"a") + u32(b"bc"))
            s.close()

    def test_ipv6_and_several_listeners(self):
        with ssock.Server(["127.0.0.1:0", ("::1", 0)], on_message=echo) as srv:
            self.assertEqual(len(srv.addresses), 2)
            v6 = srv.addr(1)
            self.assertEqual(v6[0], "::1")
            with ssock.Client(v6) as cli:
                cli.connect(TIMEOUT)
                cli.send(b"six")
                self.assertEqual(cli.recv(TIMEOUT), b"six")
            index = srv.listen("127.0.0.1:0")
            self.assertEqual(index, 2)
            with self.assertRaises(IndexError):
                srv.addr(9)


class InboxTest(unittest.TestCase):
    def test_events_in_order_with_conn_and_peer(self):
        with ssock.Server("127.0.0.1:0") as srv:
            self.assertFalse(srv.callback_mode)
            with ssock.Client(srv.address) as cli:
                cli.connect(TIMEOUT)
                cli.send(b"hi")
                ev = srv.next_event(TIMEOUT)
                self.assertIs(ev.type, ssock.CONNECT)
                conn = ev.conn
                self.assertTrue(conn.open)
                self.assertEqual(conn.peer[0], "127.0.0.1")
                self.assertIs(conn.server, srv)
                ev = srv.next_event(TIMEOUT)
                self.assertIs(ev.type, ssock.MESSAGE)
                self.assertIs(ev.conn, conn)  # one Conn per connection
                self.assertEqual(ev.data, b"hi")
                srv.send(conn, b"back")
                self.assertEqual(cli.recv(TIMEOUT), b"back")
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.DISCONNECT)
            self.assertIs(ev.conn, conn)
            self.assertIsNone(ev.error)  # the peer closed cleanly
            self.assertFalse(conn.open)
            with self.assertRaises(ssock.NoConnectionError):
                conn.send(b"late")

    def test_timeout_returns_none_and_fileno_is_pollable(self):
        with ssock.Server("127.0.0.1:0") as srv:
            self.assertIsNone(srv.next_event(0))
            self.assertIsNone(srv.next_event(0.05))
            fd = srv.fileno()
            self.assertEqual(select.select([fd], [], [], 0)[0], [])
            s = raw_client(srv.address)
            self.assertEqual(select.select([fd], [], [], TIMEOUT)[0], [fd])
            self.assertIs(srv.next_event(0).type, ssock.CONNECT)
            s.close()

    def test_fileno_is_readable_while_any_event_waits(self):
        # A select() loop that takes one event per readiness must see them
        # all: an event the binding took ahead of time would leave the fd
        # unreadable while it waits.
        def drain(fd, take, n):
            got = []
            while len(got) < n:
                r = select.select([fd], [], [], TIMEOUT)[0]
                self.assertEqual(r, [fd], f"not readable with {n - len(got)} events to come")
                item = take()
                if item is not None:
                    got.append(item)
            self.assertEqual(select.select([fd], [], [], 0)[0], [])  # and not after
            return got

        def recv0(handle):
            try:
                return handle.recv(0)
            except ssock.TimeoutError:
                return None  # that readiness was a CONNECT, which recv() skips

        with ssock.Server("127.0.0.1:0") as srv, ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            for i in range(10):
                cli.send(b"m%d" % i)
            wait_until(lambda: srv.stats().inbox_events == 11, what="11 events in the inbox")
            evs = drain(srv.fileno(), lambda: srv.next_event(0), 11)
            self.assertEqual([ev.type for ev in evs], [ssock.CONNECT] + [ssock.MESSAGE] * 10)
            self.assertEqual([ev.data for ev in evs[1:]], [b"m%d" % i for i in range(10)])
            for i in range(10):
                srv.send(evs[0].conn, b"r%d" % i)
            self.assertEqual(drain(cli.fileno(), lambda: recv0(cli), 10),
                             [b"r%d" % i for i in range(10)])
        with ssock.UDP(bind="127.0.0.1:0") as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10):
                s.sendto(b"d%d" % i, udp.address)
            got = drain(udp.fileno(), lambda: recv0(udp), 10)
            self.assertEqual([data for data, _ in got], [b"d%d" % i for i in range(10)])

    def test_inbox_mode_holds_no_more_than_inbox_max(self):
        # Events the binding took ahead of the program would free room in the
        # inbox, which would fill up again behind them.
        with ssock.Server("127.0.0.1:0", inbox_max=8) as srv, \
                ssock.Client(srv.address) as cli:
            cli.connect(TIMEOUT)
            for i in range(50):
                cli.send(b"m%d" % i)
            # CONNECT and 8 messages; reading stops until the inbox is half empty.
            wait_until(lambda: srv.stats().inbox_events == 9, what="a full inbox")
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)
            self.assertEqual(srv.next_event(TIMEOUT).data, b"m0")
            self.assertEqual(srv.next_event(0).data, b"m1")
            # What was handed out left the inbox; nothing else did.
            self.assertEqual(srv.stats().inbox_events, 6)
            got = []
            while len(got) < 48:
                ev = srv.next_event(TIMEOUT)
                got.append(ev.data)
            self.assertEqual(got, [b"m%d" % i for i in range(2, 50)])

    def test_iteration_ends_when_closed(self):
        srv = ssock.Server("127.0.0.1:0")
        seen = []

        def consume():
            for ev in srv:
                seen.append(ev.type)

        t = threading.Thread(target=consume)
        t.start()
        s = raw_client(srv.address)
        s.sendall(u32(b"x"))
        wait_until(lambda: len(seen) >= 2, what="two events")
        srv.close()
        t.join(TIMEOUT)
        self.assertFalse(t.is_alive())
        self.assertEqual(seen[:2], [ssock.CONNECT, ssock.MESSAGE])
        s.close()

    def test_callbacks_need_on_message(self):
        with self.assertRaises(TypeError):
            ssock.Server("127.0.0.1:0", on_connect=print)
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv:
            with self.assertRaises(ssock.Error) as cm:
                srv.next_event(0)
            self.assertEqual(cm.exception.name, "SSOCK_ENOINBOX")


class ErrorsTest(unittest.TestCase):
    def test_errors_carry_code_and_name(self):
        cli = ssock.Client("127.0.0.1:1", connect_timeout=TIMEOUT)
        with self.assertRaises(ssock.ConnectionRefusedError) as cm:
            cli.connect(TIMEOUT)
        err = cm.exception
        self.assertIsInstance(err, ConnectionRefusedError)  # the builtin too
        self.assertIsInstance(err, ssock.Error)
        self.assertEqual(err.code, ssock.ECONNREFUSED)
        self.assertEqual(err.name, "SSOCK_ECONNREFUSED")
        self.assertEqual(err.errno, 111)
        with self.assertRaises(ssock.NotConnectedError):
            cli.send(b"x")
        # The error log is written by the loop thread, maybe just after connect()
        # returned: wait for its entry.
        wait_until(lambda: any(e.code == ssock.ECONNREFUSED and e.op == "connect"
                               for e in cli.errors()), what="the error log's entry")
        self.assertTrue(cli.errors(clear=True))
        self.assertEqual(cli.errors(), [])
        cli.close()
        with self.assertRaises(ssock.ClosedError):
            cli.send(b"x")

    def test_bad_addresses_and_options(self):
        with self.assertRaises(ssock.AddressError) as bad:
            ssock.Server("no-port")
        # The message itself: no "[Errno None]" for codes without an errno.
        self.assertTrue(str(bad.exception).startswith("invalid address"), str(bad.exception))
        self.assertIsNone(bad.exception.errno)
        with self.assertRaises(ValueError):
            ssock.Server("127.0.0.1:0", framing="morse")
        with self.assertRaises(ValueError):
            ssock.Server("127.0.0.1:0", idle_timeout=-1)
        with self.assertRaises(OSError) as cm:
            with ssock.Server("127.0.0.1:0") as srv:
                ssock.Server(srv.address)
        self.assertEqual(cm.exception.code, ssock.EADDRINUSE)
        self.assertEqual(ssock.strerror(ssock.ESENDQFULL), "send queue full")
        self.assertEqual(ssock.errname(ssock.ETIMEDOUT), "SSOCK_ETIMEDOUT")

    def test_errors_survive_pickle_and_copy(self):
        # multiprocessing sends exceptions back pickled: the class, code,
        # errno and str() must come through.
        errs = [ssock._ssock._make_error(ssock.ECONNREFUSED, "connect"),
                ssock._ssock._make_error(ssock.ESENDQFULL),
                ssock._ssock._make_error(ssock.ETIMEDOUT)]
        with ssock.Client("127.0.0.1:1") as cli:
            with self.assertRaises(ssock.ConnectionRefusedError) as cm:
                cli.connect(TIMEOUT)
            errs.append(cm.exception)
        for err in errs:
            for copied in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
                self.assertIs(type(copied), type(err))
                for attr in ("args", "code", "name", "errno", "strerror", "op", "peer",
                             "conn_id", "time"):
                    self.assertEqual(getattr(copied, attr), getattr(err, attr), attr)
                self.assertEqual(str(copied), str(err))
        self.assertEqual(errs[0].errno, 111)
        # One made by hand has every attribute the class declares.
        made = ssock.Error("made by hand")
        self.assertEqual((made.code, made.name, made.op, made.peer, made.conn_id, made.time),
                         (0, "UNKNOWN", None, None, None, None))
        self.assertEqual(str(made), "made by hand")
        self.assertEqual(ssock.TimeoutError("late").code, ssock.ETIMEDOUT)
        self.assertEqual(ssock.ClosedError("gone").name, "SSOCK_ECLOSED")
        made.code = ssock.EINVAL  # instances still set their own
        self.assertEqual(pickle.loads(pickle.dumps(made)).code, ssock.EINVAL)
        self.assertEqual(ssock.Error.code, 0)

    def test_strings_with_a_nul_and_codes_out_of_range_are_refused(self):
        # C would read up to the NUL, or the low 32 bits: another value than
        # the one given. Refused as the socket module refuses them.
        for bad in ("127.0.0.1:0\x00junk", ("127.0.0.1\x00junk", 0), ("local\x00host", 0)):
            with self.assertRaises(ValueError, msg=repr(bad)):
                ssock.Server(bad).close()
            with self.assertRaises(ValueError, msg=repr(bad)):
                ssock.Client(bad).close()
            with self.assertRaises(ValueError, msg=repr(bad)):
                ssock.UDP(bind=bad).close()
        with self.assertRaises(ValueError):
            ssock.Server("127.0.0.1:0", framing="line\x00garbage").close()
        with ssock.Server("127.0.0.1:0") as srv:
            with self.assertRaises(ValueError):
                srv.listen("127.0.0.1:0\x00junk")
        with ssock.UDP(bind="127.0.0.1:0") as udp:
            with self.assertRaises(ValueError):
                udp.send_to(b"x", "127.0.0.1:9\x00junk")
        for fn in (ssock.errname, ssock.strerror):
            for code in (2**32 + ssock.ETIMEDOUT, 2**40, -2**31 - 1, 2**63):
                with self.assertRaises(OverflowError, msg=f"{fn.__name__}({code})"):
                    fn(code)
            self.assertIsInstance(fn(-2**31) + fn(2**31 - 1), str)  # the ends of int's range
        self.assertEqual(ssock.errname(0), "OK")

    def test_oversized_message_closes_only_that_connection(self):
        with ssock.Server("127.0.0.1:0", max_message=16) as srv:
            bad, good = raw_client(srv.address), raw_client(srv.address)
            bad.sendall((1 << 20).to_bytes(4, "big"))
            good.sendall(u32(b"fine"))
            seen = {}
            while "msg" not in seen or "err" not in seen:
                ev = srv.next_event(TIMEOUT)
                self.assertIsNotNone(ev)
                if ev.type is ssock.MESSAGE:
                    seen["msg"] = ev.data
                elif ev.type is ssock.DISCONNECT:
                    seen["err"] = ev.error
            self.assertEqual(seen["msg"], b"fine")
            self.assertIsInstance(seen["err"], ssock.MessageTooLargeError)
            bad.close()
            good.close()

    def test_connection_limit_refuses_and_goes_on(self):
        with ssock.Server("127.0.0.1:0", max_conns=1) as srv:
            first = raw_client(srv.address)
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)
            second = raw_client(srv.address)
            self.assertEqual(second.recv(1), b"")  # closed at once
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.ERROR)
            self.assertIsInstance(ev.error, ssock.LimitError)
            self.assertEqual(srv.stats().refused, 1)
            first.sendall(u32(b"still served"))
            self.assertEqual(srv.next_event(TIMEOUT).data, b"still served")
            first.close()
            second.close()

    def test_idle_timeout_is_a_timeout_error(self):
        with ssock.Server("127.0.0.1:0", idle_timeout=0.05) as srv:
            s = raw_client(srv.address)
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.ERROR)  # the error log's entry, then the end
            self.assertEqual(ev.op, "idle")
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.DISCONNECT)
            self.assertIsInstance(ev.error, ssock.TimeoutError)
            self.assertEqual(ev.code, ssock.EIDLE)
            s.close()

    def test_a_handshake_that_never_comes_is_closed(self):
        with ssock.Server("127.0.0.1:0", framing="tinyproto", handshake_timeout=0.05) as srv:
            s = raw_client(srv.address)  # never sends tinyproto's 0xFF
            types = []
            while ssock.DISCONNECT not in types:
                ev = srv.next_event(TIMEOUT)
                types.append(ev.type)
            self.assertEqual(ev.code, ssock.EHANDSHAKE)
            s.close()

    def test_full_send_queue_raises_or_waits(self):
        with ssock.Server("127.0.0.1:0", send_queue_max=1 << 16) as srv:
            s = raw_client(srv.address)  # never reads
            conn = srv.next_event(TIMEOUT).conn
            with self.assertRaises(ssock.SendQueueFullError):
                for _ in range(100000):
                    conn.send(b"x" * 4096)
            # The kernel's buffers take some more while they have room; then
            # a send that may wait times out.
            with self.assertRaises(ssock.TimeoutError):
                for _ in range(100000):
                    conn.send(b"x" * 4096, timeout=0.02)
            s.close()


class ServerTest(unittest.TestCase):
    def test_broadcast_except_disconnect_conns_stats(self):
        with ssock.Server("127.0.0.1:0") as srv:
            a, b = raw_client(srv.address), raw_client(srv.address)
            conns = [srv.next_event(TIMEOUT).conn for _ in range(2)]
            self.assertEqual({c.id for c in srv.conns()}, {c.id for c in conns})
            self.assertEqual(srv.broadcast(b"all"), 2)
            self.assertEqual(srv.broadcast(b"not you", exclude=conns[0]), 1)
            first = conns[0] if conns[0].peer == a.getsockname() else conns[1]
            self.assertEqual(recv_exact(a, 7), u32(b"all"))
            self.assertEqual(recv_exact(b, 7), u32(b"all"))
            self.assertEqual(recv_exact(b if first is conns[0] else a, 11), u32(b"not you"))
            st = srv.stats()
            self.assertEqual((st.accepted, st.conns, st.accepting), (2, 2, True))
            srv.disconnect(first)
            gone = a if first.peer == a.getsockname() else b
            self.assertEqual(gone.recv(1), b"")  # ssock shut its side down...
            gone.close()  # ... and closes once the peer has too
            ev = srv.next_event(TIMEOUT)
            self.assertIs(ev.type, ssock.DISCONNECT)
            self.assertEqual(ev.code, ssock.ELOCAL)
            a.close()
            b.close()

    def test_pause_resume(self):
        with ssock.Server("127.0.0.1:0") as srv:
            srv.pause()
            self.assertFalse(srv.stats().accepting)
            s = raw_client(srv.address)  # waits in the backlog
            self.assertIsNone(srv.next_event(0.1))
            srv.resume()
            self.assertIs(srv.next_event(TIMEOUT).type, ssock.CONNECT)
            s.close()

    def test_subclass_methods_are_callbacks_and_attributes_stick(self):
        class Echo(ssock.Server):
            def on_connect(self, conn):
                conn.greeted = True
                conn.send(b"hello")

            def on_message(self, conn, data):
                conn.send(data + (b"!" if conn.greeted else b"?"))

        with Echo("127.0.0.1:0") as srv, ssock.Client(srv.address) as cli:
            self.assertTrue(srv.callback_mode)
            srv.note = "attributes work"
            cli.connect(TIMEOUT)
            self.assertEqual(cli.recv(TIMEOUT), b"hello")
            cli.send(b"x")
            self.assertEqual(cli.recv(TIMEOUT), b"x!")
            self.assertEqual(srv.note, "attributes work")

    def test_closed_server_frees_its_port_and_fds(self):
        before = len(os.listdir("/proc/self/fd"))
        srv = ssock.Server("127.0.0.1:0", on_message=echo)
        addr = srv.address
        srv.close()
        srv.close()  # idempotent
        self.assertTrue(srv.closed)
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)
        ssock.Server(addr).close()  # the port is free again


class ClientTest(unittest.TestCase):
    def test_state_id_conn_peer_and_reconnect(self):
        with ssock.Server("127.0.0.1:0", on_message=echo) as srv:
            cli = ssock.Client(srv.address)
            self.assertIs(cli.state, ssock.DISCONNECTED)
            self.assertEqual(cli.id, 0)
            cli.connect(TIMEOUT)
            self.assertTrue(cli.connected)
            first = cli.id
            self.assertEqual(cli.peer, srv.address)
            cli.reconnect()  # runs on the loop thread: its events tell when it is done
            events = [cli.next_event(TIMEOUT) for _ in range(3)]
            self.assertEqual([e.type for e in events],
                             [ssock.CONNECT, ssock.DISCONNECT, ssock.CONNECT])
            self.assertEqual([e.conn.id for e in events], [first, first, cli.id])
            self.assertNotEqual(cli.id, first)
            self.assertIs(cli.conn, events[2].conn)
            cli.disconnect()
            self.assertIs(cli.next_event(TIMEOUT).type, ssock.DISCONNECT)
            self.assertFalse(cli.connected)
            cli.close()

    def test_recv_raises_not_connected_when_the_peer_goes(self):
        srv = ssock.Server("127.0.0.1:0")
        cli = ssock.Client(srv.address)
        cli.connect(TIMEOUT)
        srv.close()
        with self.assertRaises(ssock.NotConnectedError) as cm:
            cli.recv(TIMEOUT)
        reason = cm.exception.reason  # why: None for a clean close
        self.assertTrue(reason is None or isinstance(reason, ssock.Error))
        self.assertFalse(cli.connected)
        cli.close()

    def test_auto_reconnect_with_backoff(self):
        srv = ssock.Server("127.0.0.1:0")
        addr = srv.address
        cli = ssock.Client(addr, auto_reconnect=True, reconnect_min=0.01, reconnect_max=0.05)
        cli.connect(TIMEOUT)
        first = cli.id
        srv.close()
        srv = ssock.Server(addr)
        # Connected on a new connection: right after the close the client
        # may not have seen the old one end yet, and a send there is lost.
        wait_until(lambda: cli.connected and cli.id not in (0, first), what="the reconnect")
        cli.send(b"back again")
        ev = srv.next_event(TIMEOUT)
        while ev.type is not ssock.MESSAGE:
            ev = srv.next_event(TIMEOUT)
        self.assertEqual(ev.data, b"back again")
        cli.close()
        srv.close()

    def test_close_lets_queued_data_go_out(self):
        with ssock.Server("127.0.0.1:0") as srv:
            cli = ssock.Client(srv.address)
            cli.connect(TIMEOUT)
            cli.send(b"last words")
            cli.close()
            types = []
            while ssock.DISCONNECT not in types:
                ev = srv.next_event(TIMEOUT)
                types.append(ev.type)
                if ev.type is ssock.MESSAGE:
                    self.assertEqual(ev.data, b"last words")
            self.assertIn(ssock.MESSAGE, types)

    def test_against_the_c_tool(self):
        with Tool("echo", "--listen", "127.0.0.1:0") as tool:
            with ssock.Client(tool.addr) as cli:
                cli.connect(TIMEOUT)
                for i in range(100):
                    cli.send(b"%d" % i)
                self.assertEqual([cli.recv(TIMEOUT) for _ in range(100)],
                                 [b"%d" % i for i in range(100)])


class UDPTest(unittest.TestCase):
    def test_bound_and_connected_forms(self):
        got = Collector()

        def on_datagram(udp, data, addr):
            udp.send_to(data.upper(), addr)
            got(data, addr)

        with ssock.UDP("127.0.0.1:0", on_datagram=on_datagram) as server:
            with ssock.UDP(connect=server.address) as client:
                client.send(b"ping")
                data, addr = client.recv(TIMEOUT)
                self.assertEqual((data, addr), (b"PING", server.address))
                self.assertEqual(got.wait(1)[0], (b"ping", client.address))
                with self.assertRaises(ssock.TimeoutError):
                    client.recv(0.01)

    def test_oversized_datagram_is_an_error(self):
        with ssock.UDP("127.0.0.1:0", max_message=8) as server:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x" * 100, server.address)
            s.sendto(b"ok", server.address)
            with self.assertRaises(ssock.MessageTooLargeError):
                server.recv(TIMEOUT)
            self.assertEqual(server.recv(TIMEOUT)[0], b"ok")
            s.close()


class LoopTest(unittest.TestCase):
    def test_many_handles_on_one_loop(self):
        with ssock.Loop() as loop:
            srv = ssock.Server("127.0.0.1:0", loop=loop, on_message=echo)
            clients = [ssock.Client(srv.address, loop=loop) for _ in range(5)]
            for i, c in enumerate(clients):
                c.connect(TIMEOUT)
                c.send(b"%d" % i)
            self.assertEqual([c.recv(TIMEOUT) for c in clients], [b"%d" % i for i in range(5)])
            with self.assertRaises(ssock.Error) as cm:
                loop.close()  # still in use
            self.assertEqual(cm.exception.code, ssock.EBUSY)
            for c in clients:
                c.close()
            srv.close()

    def test_a_loop_driven_by_the_program(self):
        loop = ssock.Loop(start=False)
        srv = ssock.Server("127.0.0.1:0", loop=loop)
        s = raw_client(srv.address)
        ev = None
        for _ in range(100):
            loop.run(0.05)
            ev = srv.next_event(0)
            if ev is not None:
                break
        self.assertIs(ev.type, ssock.CONNECT)
        s.close()
        srv.close()
        loop.close()


class LifetimeTest(unittest.TestCase):
    def test_cycles_through_callbacks_are_collected(self):
        class Holder:
            pass

        h = Holder()
        srv = ssock.Server("127.0.0.1:0", on_message=lambda c, d: h.srv.send(c, d))
        h.srv = srv
        ref = weakref.ref(srv)
        srv.close()  # the dispatcher lets go of it
        del srv, h
        gc.collect()
        self.assertIsNone(ref())

    def test_an_inbox_handle_nobody_holds_is_closed(self):
        srv = ssock.Server("127.0.0.1:0")
        addr = srv.address
        del srv
        gc.collect()
        ssock.Server(addr).close()  # its port was released


if __name__ == "__main__":
    unittest.main()
