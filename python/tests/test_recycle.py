"""Large payloads (64 KiB or more) arrive in recycled bytes objects: once the
program and ssock have let go of one, the next large payload is copied into
it instead of into fresh memory. None of that may be visible: a payload the
program holds never changes, a reused one has its own length and hash, and
the kept objects are bounded and go back once the handle is idle or closed."""
import asyncio
import threading
import tracemalloc
import unittest

import ssock
from support import TIMEOUT, Collector, raw_client, u32, wait_until

MiB = 1 << 20


def payload(i, size):
    """size bytes that differ from every other (i, size)."""
    head = f"{i}:{size}:".encode()
    return (head * (size // len(head) + 1))[:size]


# Sizes that exercise reuse of an exactly fitting object, of a larger one
# (within a quarter), and of none (too small to fit, or much smaller).
SIZES = [MiB, MiB, MiB - 100, 900_000, MiB, 65536, 65536 + 7, 2 * MiB, MiB, 70_000]


class RecycledPayloadTest(unittest.TestCase):
    def serve(self, **kw):
        srv = ssock.Server("127.0.0.1:0", **kw)
        self.addCleanup(srv.close)
        return srv

    def served_to_a_peer(self, **kw):
        """A server (inbox mode unless kw says) and a raw peer connected to it."""
        srv = self.serve(**kw)
        s = raw_client(srv.address)
        self.addCleanup(s.close)
        return srv, s

    def traced(self):
        """Starts tracemalloc; returns a function: bytes traced beyond now."""
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        base = tracemalloc.get_traced_memory()[0]
        return lambda: tracemalloc.get_traced_memory()[0] - base

    def messages(self, srv, n):
        """Takes n message payloads from an inbox server."""
        got = []
        while len(got) < n:
            ev = srv.next_event(TIMEOUT)
            self.assertIsNotNone(ev, f"waited {TIMEOUT}s for message {len(got)}")
            if ev.type is ssock.MESSAGE:
                got.append(ev.data)
        return got

    def test_held_payloads_never_change(self):
        srv, s = self.served_to_a_peer()
        held = []
        for rnd in range(3):
            for i, size in enumerate(SIZES):
                s.sendall(u32(payload(rnd * 100 + i, size)))
            for data in self.messages(srv, len(SIZES)):
                # Every other one is kept as a copy of our own and let go,
                # so its object may be reused; the others are held.
                held.append(bytearray(data) if len(held) % 2 else data)
                del data
        want = [payload(rnd * 100 + i, size) for rnd in range(3) for i, size in enumerate(SIZES)]
        self.assertEqual(len(held), len(want))
        for i, (a, b) in enumerate(zip(held, want)):
            self.assertEqual(a, b, f"payload {i} changed after it was handed out")

    def test_a_reused_payload_has_its_own_length_and_hash(self):
        srv, s = self.served_to_a_peer()
        for i, size in enumerate(SIZES * 2):
            want = payload(i, size)
            s.sendall(u32(want))
            (data,) = self.messages(srv, 1)
            self.assertIs(type(data), bytes)
            self.assertEqual(len(data), size)
            self.assertEqual(data, want)
            # A hash taken of an earlier payload in the same object must
            # not stick: compare with the hash of a fresh copy.
            self.assertEqual(hash(data), hash(data[:1] + data[1:]))
            self.assertEqual(data.find(b"\0"), -1)  # no stray bytes inside
            del data

    def test_kept_payloads_are_bounded_and_go_when_idle(self):
        srv, s = self.served_to_a_peer()
        grown = self.traced()
        for i in range(40):  # 40 MiB in all, none of it held by the program
            s.sendall(u32(payload(i, MiB)))
            self.messages(srv, 1)
        # Let go at once, they would all be freed; kept, at most 16 MiB.
        self.assertLess(grown(), 16 * MiB + MiB)
        # A second with no large payload, and the next wait gives them back.
        wait_until(lambda: srv.next_event(0.2) is None and grown() < MiB,
                   what="the kept payloads to go once idle")

    def test_callback_mode_gives_kept_payloads_back_when_idle(self):
        got = Collector()
        grown = self.traced()
        srv, s = self.served_to_a_peer(on_message=lambda conn, data: got(len(data)))
        for i in range(8):
            s.sendall(u32(payload(i, MiB)))
        self.assertEqual(got.wait(8), [MiB] * 8)
        # Nothing else happens: the dispatcher gives them back by itself.
        wait_until(lambda: grown() < MiB, what="the dispatcher to give the kept payloads back")

    def test_close_gives_kept_payloads_back(self):
        grown = self.traced()
        srv = ssock.Server("127.0.0.1:0")
        s = raw_client(srv.address)
        for i in range(4):
            s.sendall(u32(payload(i, MiB)))
        self.messages(srv, 4)
        self.assertGreater(grown(), MiB)
        srv.close()
        s.close()
        self.assertLess(grown(), MiB)

    def take_and_drop(self, srv, sock, n=8):
        """n large payloads arrive, are held together, then let go."""
        for i in range(n):
            sock.sendall(u32(payload(i, 2 * MiB)))
        held = self.messages(srv, n)
        self.assertEqual(len(held), n)

    def test_polling_program_gets_kept_payloads_back_when_idle(self):
        # Found by review: only a blocking wait looked at the idle time.
        srv, s = self.served_to_a_peer()
        grown = self.traced()
        self.take_and_drop(srv, s)
        self.assertGreater(grown(), MiB)
        wait_until(lambda: srv.next_event(0) is None and grown() < MiB,
                   what="a polling program's kept payloads to go once idle")

    def test_asyncio_program_gets_kept_payloads_back_when_idle(self):
        # Found by review: next_event_async() waits on the fd, not in C.
        srv, s = self.served_to_a_peer()
        grown = self.traced()
        self.take_and_drop(srv, s)

        async def idle():
            loop = asyncio.get_running_loop()
            waiter = asyncio.ensure_future(srv.next_event_async())  # nothing comes
            deadline = loop.time() + TIMEOUT
            try:
                while grown() >= MiB:
                    self.assertLess(loop.time(), deadline, "kept payloads never went")
                    await asyncio.sleep(0.02)
            finally:
                waiter.cancel()
            self.assertFalse(waiter.done() and not waiter.cancelled())

        asyncio.run(idle())

    def test_payloads_shared_with_other_threads_are_never_reused(self):
        # A thread holds each payload for a while; the handle must not copy
        # the next one into it meanwhile.
        srv, s = self.served_to_a_peer()
        bad = []

        def check(data, want):
            threading.Event().wait(0.001)
            if data != want:
                bad.append(len(want))

        workers = []
        for i in range(30):
            want = payload(i, MiB - i)
            s.sendall(u32(want))
            (data,) = self.messages(srv, 1)
            t = threading.Thread(target=check, args=(data, want))
            t.start()
            workers.append(t)
            del data
        for t in workers:
            t.join(TIMEOUT)
        self.assertEqual(bad, [])


if __name__ == "__main__":
    unittest.main()
