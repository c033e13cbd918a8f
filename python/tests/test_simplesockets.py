"""ssock.simplesockets: simplesockets 0.0.8's API, and regression tests for what
the original got wrong (DESIGN.md, "What the originals got wrong")."""
import errno
import inspect
import socket
import threading
import time
import unittest

import ssock
from ssock.simplesockets import SetupError, TCPClient, TCPServer
from ssock.simplesockets import simplesockets as ss_module
from support import (TIMEOUT, Collector, Tool, cpu_seconds, open_fds, recv_exact, run_python,
                     thread_count, wait_until)


def make_server(*args, **setup):
    server = TCPServer(*args)
    setup.setdefault("ip", "127.0.0.1")
    setup.setdefault("port", 0)
    server.setup(**setup)
    return server


def port_of(server):
    return server.socket.getsockname()[1]


def make_client(server, **setup):
    client = TCPClient()
    client.setup("127.0.0.1", port_of(server), **setup)
    return client


def receive_bytes(owner, n):
    """What a server or client received, through await_event, until n bytes
    came (raw framing may split or merge them); other events are skipped."""
    got = b""
    while len(got) < n:
        kind, data = owner.await_event(TIMEOUT * 1000)
        assert kind != owner.EVENT_TIMEOUT, f"waited for {n} bytes, got {got!r}"
        if kind == owner.EVENT_RECEIVED:
            got += b"".join(d[2] if isinstance(d, tuple) else d for d in data)
    return got


def plain_client(server):
    s = socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT)
    return s


class ApiTest(unittest.TestCase):
    def test_setup_signatures_and_defaults_are_the_originals(self):
        p = inspect.signature(TCPServer.setup).parameters
        self.assertEqual(
            [(n, p[n].default) for n in list(p)[1:9]],
            [("ip", socket.gethostname()), ("port", 25567), ("listen", 5),
             ("recv_buffer", 2048), ("handle_client", None), ("on_connect", None),
             ("on_disconnect", None), ("on_receive", None)])
        p = inspect.signature(TCPClient.setup).parameters
        self.assertEqual([(n, p[n].default) for n in list(p)[1:7]],
                         [("target_ip", inspect.Parameter.empty), ("target_port", 25567),
                          ("recv_buffer", 2048), ("on_connect", None), ("on_disconnect", None),
                          ("on_receive", None)])
        self.assertEqual(inspect.signature(TCPServer).parameters["max_connections"].default,
                         None)
        self.assertEqual((TCPServer.EVENT_EXCEPTION, TCPServer.EVENT_RECEIVED,
                          TCPServer.EVENT_TIMEOUT),
                         ("--EXCEPTION--", "--RECEIVED--", "--TIMEOUT--"))
        self.assertEqual((TCPClient.EVENT_DISCONNECT, TCPClient.EVENT_CONNECTED),
                         ("--DISCONNECT--", "--CONNECTED--"))

    def test_the_imports_programs_use(self):
        from ssock.simplesockets.simplesockets import TCPClient as C, TCPServer as S
        from ssock.simplesockets.simple_sockets import TCPServer as S2
        from ssock.simplesockets._support_files.error import SetupError as E
        import ssock.simplesockets as simplesockets
        self.assertIs(S, TCPServer)
        self.assertIs(S2, TCPServer)
        self.assertIs(C, TCPClient)
        self.assertIs(E, SetupError)
        self.assertIs(simplesockets.simplesockets.TCPServer, TCPServer)

    def test_server_callbacks_inbox_clients_and_disconnect(self):
        connects, receives, disconnects = Collector(), Collector(), Collector()
        server = make_server(on_connect=connects, on_receive=receives,
                             on_disconnect=disconnects)
        server.start()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        address = connects.wait(1)[0]
        self.assertEqual(address[0], "127.0.0.1")
        self.assertIn(address, server.clients)
        self.assertTrue(client.send_data(b"hello"))
        client_socket, addr, data = receives.wait(1)[0]
        self.assertEqual((addr, data), (address, b"hello"))
        self.assertEqual(client_socket.getpeername(), address)
        self.assertIs(server.clients[address][1], client_socket)
        self.assertTrue(server.clients[address][0].is_alive())
        self.assertTrue(server.event.new_data)
        self.assertEqual(server.return_recved_data(), [(client_socket, address, b"hello")])
        self.assertFalse(server.event.new_data)
        self.assertTrue(server.send_data(b"back", client_socket))
        events = [client.await_event(TIMEOUT * 1000) for _ in range(2)]
        self.assertCountEqual(events, [(client.EVENT_CONNECTED, None),
                                       (client.EVENT_RECEIVED, [b"back"])])
        server.disconnect(address)
        self.assertEqual(disconnects.wait(1), [address])
        self.assertNotIn(address, server.clients)
        self.assertEqual(client.await_event(TIMEOUT * 1000), (client.EVENT_DISCONNECT, None))
        self.assertTrue(client.event.disconnected)
        self.assertFalse(client.event.is_connected)
        client.close()
        server.close()

    def test_disconnect_takes_the_client_socket_too(self):
        server = make_server()
        s = plain_client(server)
        wait_until(lambda: server.clients, what="the connection")
        sock = next(iter(server.clients.values()))[1]
        server.send_data(b"last", sock)
        server.disconnect(sock)  # as the seed document calls it
        self.assertEqual(recv_exact(s, 4), b"last")  # what was sent still goes out
        self.assertEqual(s.recv(1), b"")
        s.close()
        server.close()

    def test_start_stop_restart_exit_accept_killed(self):
        server = TCPServer()
        with self.assertRaises(SetupError):
            server.start()
        server.setup(ip="127.0.0.1", port=0)
        self.assertTrue(server.event.accepting_thread.run)
        server.stop()
        s = plain_client(server)  # waits in the backlog, not accepted
        self.assertEqual(server.await_event(100), (server.EVENT_TIMEOUT, None))
        self.assertEqual(server.clients, {})
        server.start()
        wait_until(lambda: server.clients, what="the accept after start()")
        with self.assertRaises(Exception):
            server.restart()  # not killed
        server.exit_accept()
        self.assertTrue(server.killed)
        s2 = plain_client(server)
        server.restart()
        self.assertFalse(server.killed)
        self.assertFalse(server.event.accepting_thread.run)  # start() brings it back
        server.event.accepting_thread.run = True
        wait_until(lambda: len(server.clients) == 2, what="the accept after restart()")
        s.close()
        s2.close()
        server.close()

    def test_return_exceptions_and_await_event(self):
        server = make_server()
        self.assertFalse(server.send_data(b"x", ("10.0.0.1", 1)))  # no such client
        self.assertTrue(server.event.exception.occurred)
        kind, exceptions = server.await_event(1000)
        self.assertEqual(kind, server.EVENT_EXCEPTION)
        text, exc = exceptions[0]
        self.assertIsInstance(exc, KeyError)
        self.assertIn("KeyError", text)
        self.assertFalse(server.event.exception.occurred)
        server.disconnect(("10.0.0.1", 1))
        self.assertEqual(len(server.return_exceptions(delete=False, reset_exception=False)), 1)
        self.assertTrue(server.event.exception.occurred)
        self.assertEqual(len(server.return_exceptions()), 1)
        self.assertEqual(server.return_exceptions(), [])
        server.close()

    def test_client_connect_failure_reconnect_shutdown_address(self):
        client = TCPClient()
        with self.assertRaises(SetupError):
            client.connect()
        client.setup("127.0.0.1", 1)
        self.assertEqual(client.Address, ("127.0.0.1", 1))
        self.assertFalse(client.connect())
        text, exc = client.return_exceptions()[0]
        self.assertIsInstance(exc, ConnectionRefusedError)
        self.assertFalse(client.send_data(b"x"))
        client.close()
        server = make_server()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.event.connected and client.event.is_connected)
        self.assertTrue(client.reconnect())
        wait_until(lambda: len(server.clients) == 1, what="the old connection to go")
        client.shutdown()
        wait_until(lambda: not server.clients, what="the shutdown to be seen")
        self.assertFalse(client.event.is_connected)
        client.close()
        server.close()

    def test_recv_data_without_autorecv(self):
        server = make_server(on_receive=lambda sock, addr, data: server.send_data(data, sock))
        client = make_client(server)
        client.connect()
        client.send_data(b"ping")
        self.assertEqual(client.recv_data(), b"ping")
        client.close()
        server.close()


class RegressionTest(unittest.TestCase):
    def test_two_sends_stay_two_messages_with_framing(self):
        # raw (simplesockets' wire) may merge them, as TCP does; u32 never.
        server = make_server(framing="u32")
        client = make_client(server, framing="u32")
        client.connect()
        client.send_data(b"one")
        client.send_data(b"two")
        got = []
        while len(got) < 2:
            kind, data = server.await_event(TIMEOUT * 1000)
            self.assertEqual(kind, server.EVENT_RECEIVED)
            got += [d for _, _, d in data]
        self.assertEqual(got, [b"one", b"two"])
        client.close()
        server.close()

    def test_a_2048_byte_message_is_not_held_back(self):
        server = make_server()
        s = plain_client(server)
        s.sendall(b"x" * 2048)
        self.assertEqual(receive_bytes(server, 2048), b"x" * 2048)
        s.close()
        server.close()

    def test_a_closed_peer_is_noticed_and_nothing_spins(self):
        gone = Collector()
        server = make_server(on_disconnect=gone)
        s = plain_client(server)
        wait_until(lambda: server.clients, what="the connection")
        address = next(iter(server.clients))
        s.close()
        self.assertEqual(gone.wait(1), [address])
        self.assertEqual(server.clients, {})
        before = cpu_seconds()
        threading.Event().wait(0.5)  # measure what the idle server costs
        self.assertLess(cpu_seconds() - before, 0.1)
        server.close()

    def test_max_connections_holds(self):
        server = make_server(2)
        socks = [plain_client(server) for _ in range(2)]
        wait_until(lambda: len(server.clients) == 2, what="two connections")
        extra = plain_client(server)
        self.assertEqual(extra.recv(1), b"")  # refused: closed at once
        kind, exceptions = server.await_event(TIMEOUT * 1000)
        self.assertEqual(kind, server.EVENT_EXCEPTION)
        self.assertIsInstance(exceptions[0][1], ssock.LimitError)
        self.assertEqual(len(server.clients), 2)
        for s in socks + [extra]:
            s.close()
        server.close()

    def test_max_connections_set_after_setup_holds(self):
        # 0.0.8 read max_connections at every accept: programs set it late.
        connects = Collector()
        server = make_server(on_connect=connects)
        server.max_connections = 1
        first = plain_client(server)
        connects.wait(1)
        extra = plain_client(server)
        self.assertEqual(extra.recv(1), b"")  # refused: closed at once
        kind, exceptions = server.await_event(TIMEOUT * 1000)
        self.assertEqual(kind, server.EVENT_EXCEPTION)
        self.assertIsInstance(exceptions[0][1], ssock.LimitError)
        self.assertEqual(exceptions[0][1].op, "accept")
        self.assertEqual(len(server.clients), 1)
        self.assertEqual(len(connects.items), 1)
        server.max_connections = None  # and lifting it lets the next one in
        later = plain_client(server)
        connects.wait(2)
        self.assertEqual(len(server.clients), 2)
        for s in (first, extra, later):
            s.close()
        server.close()

    def test_close_tells_of_every_client_and_empties_clients(self):
        disconnects = Collector()
        server = make_server(on_disconnect=disconnects)
        socks = [plain_client(server) for _ in range(2)]
        wait_until(lambda: len(server.clients) == 2, what="two connections")
        addresses = list(server.clients)
        server.close()
        self.assertEqual(server.clients, {})
        self.assertCountEqual(disconnects.wait(2), addresses)
        for s in socks:
            self.assertEqual(s.recv(1), b"")
            s.close()

    def test_no_message_is_lost_between_threads(self):
        n = 20000
        server = make_server(framing="u32")
        client = make_client(server, framing="u32")
        client.connect()
        sender = threading.Thread(
            target=lambda: [client.send_data(b"%d" % i) for i in range(n)])
        sender.start()
        got = []
        deadline = time.monotonic() + TIMEOUT * 3
        while len(got) < n and time.monotonic() < deadline:
            kind, data = server.await_event(1000)
            if kind == server.EVENT_RECEIVED:
                got += [int(d) for _, _, d in data]
        sender.join()
        self.assertEqual(got, list(range(n)))
        client.close()
        server.close()

    def test_the_inbox_is_bounded_and_nothing_is_dropped(self):
        server = make_server(framing="u32")
        client = make_client(server, framing="u32")
        client.connect()
        n = ss_module.MAX_HELD * 3
        sender = threading.Thread(
            target=lambda: [client.send_data(b"%d" % i) for i in range(n)])
        sender.start()
        wait_until(lambda: len(server.recved_data) == ss_module.MAX_HELD,
                   what="the inbox to fill", cond=server._cond)
        threading.Event().wait(0.2)  # nobody takes: reading has stopped
        self.assertEqual(len(server.recved_data), ss_module.MAX_HELD)
        got = []
        while len(got) < n:
            kind, data = server.await_event(TIMEOUT * 1000)
            self.assertEqual(kind, server.EVENT_RECEIVED)
            got += [int(d) for _, _, d in data]
        sender.join()
        self.assertEqual(got, list(range(n)))
        client.close()
        server.close()

    def test_a_program_that_takes_recved_data_itself_keeps_receiving(self):
        # The docs name recved_data as the variable that holds what came; a
        # program may take it itself (swap in a new list, or empty it in place)
        # instead of calling return_recved_data(). Reading must go on past the
        # bound (MAX_HELD entries, MAX_HELD_BYTES, patched small here).
        def swap(server):
            items, server.recved_data = server.recved_data, []
            return items

        def clear(server):
            items = server.recved_data[:]
            del server.recved_data[:len(items)]  # in place: nobody is told
            return items

        old = ss_module.MAX_HELD_BYTES
        ss_module.MAX_HELD_BYTES = 1 << 20
        self.addCleanup(setattr, ss_module, "MAX_HELD_BYTES", old)
        for take in (swap, clear):
            with self.subTest(take=take.__name__):
                server = make_server(framing="u32")
                client = make_client(server, framing="u32")
                client.connect()
                n, chunk = 64, b"x" * (64 << 10)  # 4 MiB: 4 times the bound
                sender = threading.Thread(target=lambda: [client.send_data(chunk)
                                                          for _ in range(n)])
                sender.start()
                got = 0
                deadline = time.monotonic() + TIMEOUT
                while got < n and time.monotonic() < deadline:
                    with server._cond:
                        server._cond.wait_for(lambda: server.recved_data, 0.05)
                    got += len(take(server))
                sender.join(TIMEOUT)
                self.assertEqual(got, n)
                client.close()
                server.close()

    def test_on_receive_and_polling_together_lose_nothing(self):
        # A program that logs in on_receive and works through recved_data in a
        # loop that lags: once it has taken data from recved_data, a full
        # recved_data stops reading (nothing is dropped to make room).
        for polls_first in (True, False):
            with self.subTest(polls_first=polls_first):
                receives = Collector()
                server = make_server(framing="u32", on_receive=receives)
                client = make_client(server, framing="u32")
                client.connect()
                if polls_first:
                    self.assertEqual(server.return_recved_data(), [])
                n = ss_module.MAX_HELD * 3
                sender = threading.Thread(
                    target=lambda: [client.send_data(b"%d" % i) for i in range(n)])
                sender.start()
                # Not polls_first: the loop starts once recved_data is full, as
                # a program's does that sends requests first (within DROP_GRACE).
                wait_until(lambda: len(server._recved) == ss_module.MAX_HELD,
                           what="recved_data to fill", cond=server._cond)
                got = []
                while len(got) < n:
                    kind, data = server.await_event(TIMEOUT * 1000)
                    if kind == server.EVENT_TIMEOUT:
                        break
                    self.assertEqual(kind, server.EVENT_RECEIVED)
                    got += [int(d) for _, _, d in data]
                sender.join(TIMEOUT)
                self.assertEqual(got, list(range(n)))
                self.assertEqual(len(receives.wait(n)), n)
                client.close()
                server.close()

    def test_a_program_that_only_uses_on_receive_is_told_of_drops_once(self):
        # It never takes recved_data, so recved_data keeps only the newest
        # entries; that is recorded once in event.exception.list, not silent.
        receives = Collector()
        server = make_server(framing="u32", on_receive=receives)
        client = make_client(server, framing="u32")
        client.connect()
        n = ss_module.MAX_HELD * 3
        for i in range(n):
            client.send_data(b"%d" % i)
        self.assertEqual([int(d) for _, _, d in receives.wait(n)], list(range(n)))
        exceptions = server.return_exceptions()
        self.assertEqual(len(exceptions), 1, exceptions)
        self.assertIn("recved_data", str(exceptions[0][1]))
        with server._cond:
            self.assertEqual(len(server._recved), ss_module.MAX_HELD)
        client.close()
        server.close()

    def test_a_client_lets_go_of_its_threads_and_fds_when_it_disconnects(self):
        # A client per request (0.0.8 had no close(): disconnect() or shutdown()
        # ends it): nothing of it may stay behind.
        server = make_server(on_receive=lambda sock, addr, data: server.send_data(data, sock))
        for how in ("disconnect", "shutdown"):
            with self.subTest(how=how):
                threads, fds = thread_count(), open_fds()
                for _ in range(20):
                    client = make_client(server)
                    self.assertTrue(client.connect())
                    self.assertTrue(client.autorecv())
                    self.assertTrue(client.send_data(b"hi"))
                    self.assertEqual(receive_bytes(client, 2), b"hi")
                    getattr(client, how)()
                try:
                    wait_until(lambda: thread_count() <= threads and open_fds() <= fds)
                except AssertionError:
                    self.fail(f"threads {thread_count()} (were {threads}), "
                              f"fds {open_fds()} (were {fds})")
        server.close()

    def test_connect_after_disconnect_receives_again(self):
        server = make_server(on_receive=lambda sock, addr, data: server.send_data(data, sock))
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        self.assertTrue(client.disconnect())
        self.assertEqual(client.await_event(TIMEOUT * 1000), (client.EVENT_CONNECTED, None))
        self.assertEqual(client.await_event(TIMEOUT * 1000), (client.EVENT_DISCONNECT, None))
        self.assertTrue(client.connect())  # autorecv is still on
        self.assertTrue(client.event.is_connected)
        self.assertFalse(client.event.disconnected is True and client.event.is_connected is False)
        self.assertTrue(client.send_data(b"again"))
        self.assertEqual(receive_bytes(client, 5), b"again")
        client.close()
        server.close()

    def test_reconnect_while_connected_leaves_no_stale_disconnect(self):
        connects, disconnects = Collector(), Collector()
        server = make_server(on_connect=connects, on_disconnect=disconnects)
        for autorecv in (True, False):
            with self.subTest(autorecv=autorecv):
                c0, d0 = len(connects.items), len(disconnects.items)
                client = make_client(server)
                self.assertTrue(client.connect())
                if autorecv:
                    self.assertTrue(client.autorecv())
                first = connects.wait(c0 + 1)[c0]
                self.assertTrue(client.reconnect())
                self.assertEqual(disconnects.wait(d0 + 1)[d0], first)
                second = connects.wait(c0 + 2)[c0 + 1]
                if autorecv:
                    self.assertEqual(client.await_event(TIMEOUT * 1000),
                                     (client.EVENT_CONNECTED, None))
                    # The old connection's end is not this one's.
                    self.assertEqual(client.await_event(300), (client.EVENT_TIMEOUT, None))
                self.assertTrue(client.event.connected)
                self.assertTrue(client.event.is_connected)
                self.assertFalse(client.event.disconnected)
                self.assertTrue(server.send_data(b"hello", second))
                if autorecv:
                    self.assertEqual(receive_bytes(client, 5), b"hello")
                else:
                    self.assertEqual(client.recv_data(), b"hello")
                client.close()
                self.assertEqual(disconnects.wait(d0 + 2)[d0 + 1], second)  # before the next
        server.close()

    def test_connect_while_connected_fails_as_it_did(self):
        server = make_server()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertFalse(client.connect())  # 0.0.8: EISCONN, caught
        (text, exc), = client.return_exceptions()
        self.assertIsInstance(exc, OSError)
        self.assertEqual(exc.errno, errno.EISCONN)
        self.assertTrue(client.event.is_connected)
        self.assertTrue(client.send_data(b"still"))
        self.assertEqual(receive_bytes(server, 5), b"still")
        client.close()
        server.close()

    def test_the_exception_list_is_bounded(self):
        server = make_server()
        for i in range(ss_module.MAX_EXCEPTIONS + 50):
            server.send_data(b"x", ("10.0.0.1", i))
        exceptions = server.return_exceptions()
        self.assertEqual(len(exceptions), ss_module.MAX_EXCEPTIONS)
        self.assertIn("1", str(exceptions[-1][1]))
        server.close()

    def test_ipv6(self):
        server = make_server(ip="::1")
        client = TCPClient()
        client.setup("::1", port_of(server))
        self.assertTrue(client.connect())
        client.send_data(b"six")
        kind, data = server.await_event(TIMEOUT * 1000)
        self.assertEqual(data[0][1][0], "::1")
        self.assertEqual(data[0][2], b"six")
        client.close()
        server.close()

    def test_await_event_and_a_polling_loop_do_not_burn_cpu(self):
        server = make_server()
        before = cpu_seconds()
        self.assertEqual(server.await_event(300), (server.EVENT_TIMEOUT, None))
        self.assertLess(cpu_seconds() - before, 0.05)
        before = cpu_seconds()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the seed document's loop
            if server.new_data_recved:
                break
        self.assertLess(cpu_seconds() - before, 0.1)
        s = plain_client(server)
        s.sendall(b"wake")
        start = time.monotonic()
        while not server.event.new_data:  # still sees data at once
            self.assertLess(time.monotonic() - start, TIMEOUT)
        s.close()
        server.close()


    def test_a_client_that_never_reads_does_not_stall_the_others(self):
        # send_data from on_receive runs on the dispatcher thread, which every
        # callback of the server shares: it must not wait there for room in a
        # full queue (send_timeout, 10 s a message), or one client that never
        # reads holds up every other client's answers.
        big = b"r" * (20 << 20)  # for the reader: two fill its 32 MiB queue

        def on_receive(sock, addr, data):
            server.send_data(data * 16 if data == b"ping" else big, sock)
        server = make_server(on_receive=on_receive)
        bad = socket.socket()
        bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        bad.settimeout(TIMEOUT)
        bad.connect(("127.0.0.1", port_of(server)))

        def flood():
            try:
                for _ in range(200):
                    bad.sendall(b"x" * 65536)
            except OSError:
                pass  # the server stopped reading, or the test closed it

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        # Its queue (32 MiB by default) fills with the second reply: that
        # fails at once, and is recorded (before the fix the callback waited
        # send_timeout there).
        wait_until(lambda: any(isinstance(e, ssock.SendQueueFullError)
                               for _, e in list(server.event.exception.list)),
                   what="a reply to the reader to fail on its full queue")
        good = plain_client(server)
        good.settimeout(TIMEOUT / 2)  # well under send_timeout, far above what it takes
        good.sendall(b"ping")
        self.assertEqual(recv_exact(good, 64), b"ping" * 16)
        good.close()
        bad.close()
        server.close()
        flooder.join(TIMEOUT)

    def test_concurrent_connects_make_one_connection(self):
        # Two threads call connect() at once: one connection; the other call
        # fails as a connect() while connected does (EISCONN recorded).
        connects = Collector()
        server = make_server(on_connect=connects)
        for i in range(10):
            client = make_client(server)
            barrier = threading.Barrier(2)
            results = []

            def go():
                barrier.wait(TIMEOUT)
                results.append(client.connect())

            threads = [threading.Thread(target=go) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT)
                self.assertFalse(t.is_alive(), "connect() did not return")
            self.assertEqual(sorted(results), [False, True], f"round {i}")
            (text, exc), = client.return_exceptions()
            self.assertEqual(exc.errno, errno.EISCONN)
            connects.wait(i + 1)
            client.close()
            wait_until(lambda: not server.clients, what="the client to leave")
        self.assertEqual(len(connects.items), 10)
        server.close()

    def test_connect_racing_a_reconnect_from_on_disconnect(self):
        # The server kicks the client again and again; on_disconnect calls
        # reconnect() on the autorecv thread while the program calls connect()
        # whenever is_connected is False: no exception out of connect(), no
        # deadlock, and at the end one connection and nothing left behind.
        server = make_server()
        client = make_client(server)
        client.on_disconnect = lambda: client.reconnect()
        threads, fds = thread_count(), open_fds()
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        escaped = []

        def storm():
            try:
                end = time.monotonic() + 3  # a few thousand kicks
                while time.monotonic() < end and not escaped:
                    wait_until(lambda: server.clients or not client.event.is_connected,
                               what="a connection to kick")
                    for address in list(server.clients):
                        server.disconnect(address)
                    if not client.event.is_connected:
                        client.connect()
            except Exception as e:  # what connect() let out
                escaped.append(e)

        stormer = threading.Thread(target=storm, daemon=True)
        stormer.start()
        stormer.join(TIMEOUT * 6)
        self.assertFalse(stormer.is_alive(), "connect() deadlocked")
        self.assertEqual(escaped, [])
        kinds = {type(e) for _, e in client.return_exceptions()}
        self.assertLessEqual(kinds, {OSError, ssock.NotConnectedError}, kinds)
        # The last kick may still be on its way (is_connected not yet False),
        # and a connection the client let go of may not be gone from the
        # server yet: connect again until it is one, settled.
        client.on_disconnect = None
        wait_until(lambda: (client.event.is_connected or client.connect())
                   and len(server.clients) == 1, what="one connection")
        self.assertTrue(client.send_data(b"alive"))
        self.assertEqual(receive_bytes(server, 5), b"alive")
        client.shutdown()
        wait_until(lambda: not server.clients and thread_count() <= threads
                   and open_fds() <= fds, what="the client to let go of everything")
        server.close()

    def test_disconnect_after_the_peer_closed_lets_go_of_everything(self):
        # A client per request: the server ends the connection, the client
        # calls disconnect() (as the docs say): False, ENOTCONN recorded as
        # before, and its threads and descriptors are let go of.
        server = make_server()
        threads, fds = thread_count(), open_fds()
        for _ in range(10):
            client = make_client(server)
            self.assertTrue(client.connect())
            self.assertTrue(client.autorecv())
            wait_until(lambda: server.clients, what="the connection")
            for address in list(server.clients):
                server.disconnect(address)
            wait_until(lambda: not client.event.is_connected, what="the end to show")
            self.assertFalse(client.disconnect())
            self.assertIn(errno.ENOTCONN,
                          [getattr(e, "errno", None) for _, e in client.return_exceptions()])
        try:
            wait_until(lambda: thread_count() <= threads and open_fds() <= fds)
        except AssertionError:
            self.fail(f"threads {thread_count()} (were {threads}), "
                      f"fds {open_fds()} (were {fds})")
        server.close()

    def test_assigning_recved_data_something_else_than_a_list(self):
        server = make_server()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        wait_until(lambda: server.clients, what="the connection")
        for owner in (client, server):
            for bad in (None, "", b"", 5):
                with self.subTest(owner=type(owner).__name__, value=bad):
                    before = owner.recved_data
                    with self.assertRaises(TypeError):
                        owner.recved_data = bad
                    self.assertIs(owner.recved_data, before)
            owner.recved_data = ()  # list-like: taken as a list
            self.assertEqual(owner.recved_data, [])
            self.assertIsInstance(owner.recved_data, list)
        address, = server.clients
        self.assertTrue(server.send_data(b"one", address))
        self.assertEqual(receive_bytes(client, 3), b"one")
        self.assertTrue(client.send_data(b"two"))
        self.assertEqual(receive_bytes(server, 3), b"two")
        client.close()
        server.close()

    def test_an_unexpected_error_does_not_end_autorecv(self):
        # Whatever goes wrong handling one event is recorded; the autorecv
        # thread goes on with the next.
        class Refusing(list):
            def append(self, item):
                raise ValueError("refused")

        server = make_server()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        wait_until(lambda: server.clients, what="the connection")
        self.assertEqual(client.await_event(TIMEOUT * 1000), (client.EVENT_CONNECTED, None))
        address, = server.clients
        client.recved_data = Refusing()
        self.assertTrue(server.send_data(b"lost", address))
        kind, exceptions = client.await_event(TIMEOUT * 1000)
        self.assertEqual(kind, client.EVENT_EXCEPTION)
        self.assertIsInstance(exceptions[0][1], ValueError)
        client.recved_data = []
        self.assertTrue(server.send_data(b"next", address))
        self.assertEqual(receive_bytes(client, 4), b"next")
        client.close()
        server.close()

    def test_send_data_of_a_payload_above_the_send_queue(self):
        # 0.0.8 used sendall: any size. With raw framing a payload above the
        # send queue (32 MiB) goes out in pieces.
        server = make_server()
        client = make_client(server)
        self.assertTrue(client.connect())
        self.assertTrue(client.autorecv())
        wait_until(lambda: server.clients, what="the connection")
        address, = server.clients
        big = bytes(range(256)) * ((40 << 20) // 256)
        for sender, receiver, send in (
                (client, server, lambda: client.send_data(big)),
                (server, client, lambda: server.send_data(big, address))):
            with self.subTest(sender=type(sender).__name__):
                self.assertTrue(send(), sender.return_exceptions())
                got = receive_bytes(receiver, len(big))
                self.assertEqual(len(got), len(big))
                self.assertTrue(got == big)
        client.close()
        server.close()

    def test_a_big_send_in_a_callback_or_with_framing(self):
        # In a callback a piece that finds no room fails at once: False, the
        # error (with the bytes that went) recorded, the rest not sent.
        huge = b"h" * (100 << 20)
        results = Collector()
        server = make_server(
            on_receive=lambda sock, addr, data: results(server.send_data(huge, sock)))
        client = make_client(server)  # it never reads
        self.assertTrue(client.connect())
        self.assertTrue(client.send_data(b"go"))
        self.assertEqual(results.wait(1), [False])
        (text, exc), = server.return_exceptions()
        self.assertIsInstance(exc, ssock.SendQueueFullError)
        self.assertTrue(0 < exc.sent < len(huge) and exc.sent % ss_module.PIECE == 0, exc.sent)
        client.close()
        server.close()
        # With framing, one message must still fit the send queue.
        server = make_server(framing="u32")
        client = make_client(server, framing="u32")
        self.assertTrue(client.connect())
        self.assertFalse(client.send_data(b"x" * (40 << 20)))
        (text, exc), = client.return_exceptions()
        self.assertIsInstance(exc, ssock.MessageTooLargeError)
        client.close()
        server.close()


class ExitTest(unittest.TestCase):
    """A program that ends right after send_data(): 0.0.8's send_data returned
    once the data was in the kernel, so all of it arrived. Here send_data
    queues, and what is queued still goes out at exit (for up to send_timeout
    seconds) while the peer is slow to read."""

    SIZE = 8 << 20  # far more than loopback's socket buffers hold
    SLOW = 2.0  # the peer starts reading this late: past ssock's default linger (1 s)

    def start_child(self, code):
        result = {}
        child = threading.Thread(target=lambda: result.update(proc=run_python(code)))
        child.start()
        self.addCleanup(child.join, TIMEOUT * 3)
        return child, result

    def slow_reader(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(TIMEOUT)
        return s

    def read_all_late(self, s):
        threading.Event().wait(self.SLOW)  # the slow peer (not a synchronisation)
        got = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                return got
            got += len(chunk)

    def test_a_server_that_exits_right_after_send_data(self):
        for disconnect in (False, True):
            with self.subTest(disconnect=disconnect):
                ctl = socket.create_server(("127.0.0.1", 0))
                ctl.settimeout(TIMEOUT)
                child, result = self.start_child(f"""
import socket
from ssock.simplesockets import TCPServer
S = TCPServer()
S.setup(ip="127.0.0.1", port=0)
ctl = socket.create_connection(("127.0.0.1", {ctl.getsockname()[1]}))
ctl.sendall(b"%d" % S.socket.getsockname()[1])
ctl.close()
while True:
    if S.event.new_data:
        for sock, addr, data in S.return_recved_data():
            print("send_data", S.send_data(b"x" * {self.SIZE}, sock))
            if {disconnect}:
                S.disconnect(sock)
        break
""")
                c, _ = ctl.accept()
                c.settimeout(TIMEOUT)
                port = int(c.recv(16))
                c.close()
                ctl.close()
                s = self.slow_reader()
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET")
                got = self.read_all_late(s)
                s.close()
                child.join(TIMEOUT * 3)
                self.assertEqual(result["proc"].stdout.strip(), "send_data True",
                                 result["proc"].stderr)
                self.assertEqual(result["proc"].returncode, 0)
                self.assertEqual(got, self.SIZE)

    def test_a_client_that_exits_right_after_send_data(self):
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        listener.settimeout(TIMEOUT)
        child, result = self.start_child(f"""
from ssock.simplesockets import TCPClient
C = TCPClient()
C.setup(target_ip="127.0.0.1", target_port={listener.getsockname()[1]})
print("connect", C.connect(), "send_data", C.send_data(b"y" * {self.SIZE}))
""")
        s, _ = listener.accept()
        s.settimeout(TIMEOUT)
        got = self.read_all_late(s)
        s.close()
        listener.close()
        child.join(TIMEOUT * 3)
        self.assertEqual(result["proc"].stdout.strip(), "connect True send_data True",
                         result["proc"].stderr)
        self.assertEqual(result["proc"].returncode, 0)
        self.assertEqual(got, self.SIZE)


class InteropTest(unittest.TestCase):
    """simplesockets' wire is raw bytes: a plain socket stands in for a real
    simplesockets peer."""

    def test_server_with_a_raw_peer(self):
        server = make_server()
        s = plain_client(server)
        s.sendall(b"from a plain socket")
        self.assertEqual(receive_bytes(server, 19), b"from a plain socket")
        sock = next(iter(server.clients.values()))[1]
        server.send_data(b"reply", sock)
        self.assertEqual(recv_exact(s, 5), b"reply")
        s.close()
        server.close()

    def test_client_with_a_raw_peer(self):
        listener = socket.create_server(("127.0.0.1", 0))
        client = TCPClient()
        client.setup("127.0.0.1", listener.getsockname()[1])
        self.assertTrue(client.connect())
        peer, _ = listener.accept()
        client.autorecv()
        client.send_data(b"to a plain socket")
        self.assertEqual(recv_exact(peer, 17), b"to a plain socket")
        peer.sendall(b"answer")
        peer.close()
        seen, got = [], b""
        while client.EVENT_DISCONNECT not in seen:  # CONNECTED comes too, in any order
            kind, data = client.await_event(TIMEOUT * 1000)
            self.assertNotEqual(kind, client.EVENT_TIMEOUT)
            seen.append(kind)
            if kind == client.EVENT_RECEIVED:
                got += b"".join(data)
        self.assertEqual(got, b"answer")
        client.close()
        listener.close()

    def test_client_against_the_c_tool(self):
        with Tool("echo", "--framing", "raw", "--listen", "127.0.0.1:0") as tool:
            client = TCPClient()
            client.setup("127.0.0.1", tool.port)
            self.assertTrue(client.connect())
            client.autorecv()
            client.send_data(b"echo me")
            self.assertEqual(receive_bytes(client, 7), b"echo me")
            client.close()


if __name__ == "__main__":
    unittest.main()
