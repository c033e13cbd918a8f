"""asyncio: awaitable next_event/recv through the inbox's fd, no thread per call."""
import asyncio
import threading
import unittest

import ssock
from support import TIMEOUT, raw_client, u32


class AsyncioTest(unittest.TestCase):
    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, TIMEOUT))

    def test_async_for_over_a_server_and_recv_async(self):
        async def main():
            threads = threading.active_count()
            with ssock.Server("127.0.0.1:0") as srv, ssock.Client(srv.address) as cli:
                cli.connect(TIMEOUT)

                async def serve():
                    async for ev in srv:
                        if ev.type is ssock.MESSAGE:
                            ev.conn.send(ev.data.upper())

                task = asyncio.create_task(serve())
                replies = []
                for word in (b"one", b"two", b"three"):
                    cli.send(word)
                    replies.append(await cli.recv_async())
                # Waiting added no threads: it is the event loop's own reader.
                self.assertEqual(threading.active_count(), threads)
                srv.close()
                await task  # the iteration ends when the server closes
                return replies

        self.assertEqual(self.run_async(main()), [b"ONE", b"TWO", b"THREE"])

    def test_next_event_async_waits_without_blocking_the_loop(self):
        async def main():
            with ssock.Server("127.0.0.1:0") as srv:
                ticks = 0

                async def ticker():
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0)

                t = asyncio.create_task(ticker())
                waiter = asyncio.create_task(srv.next_event_async())
                await asyncio.sleep(0.05)
                self.assertFalse(waiter.done())
                s = await asyncio.get_running_loop().run_in_executor(None, raw_client, srv.address)
                ev = await waiter
                t.cancel()
                s.close()
                return ev.type, ticks

        kind, ticks = self.run_async(main())
        self.assertIs(kind, ssock.CONNECT)
        self.assertGreater(ticks, 10)

    def test_closing_ends_a_pending_await(self):
        async def main():
            srv = ssock.Server("127.0.0.1:0")
            waiter = asyncio.create_task(srv.next_event_async())
            await asyncio.sleep(0.01)
            srv.close()
            with self.assertRaises(ssock.ClosedError):
                await waiter

        self.run_async(main())

    def test_tasks_waiting_on_one_handle_all_get_events(self):
        # A loop has one reader per fd: a second waiter must not replace the
        # first's, nor the first one leaving remove the second's.
        async def main():
            with ssock.Server("127.0.0.1:0") as srv, ssock.Client(srv.address) as cli:
                waiters = [asyncio.create_task(srv.next_event_async()) for _ in range(3)]
                await asyncio.sleep(0)  # all three are waiting now
                cli.connect(TIMEOUT)
                cli.send(b"a")
                cli.send(b"b")
                evs = await asyncio.gather(*waiters)
                self.assertEqual(sorted(ev.type for ev in evs),
                                 [ssock.CONNECT, ssock.MESSAGE, ssock.MESSAGE])
                self.assertEqual(sorted(ev.data for ev in evs if ev.data), [b"a", b"b"])

                # recv_async too, with one of the waiters cancelled on the way.
                conn = evs[0].conn
                waiters = [asyncio.create_task(cli.recv_async()) for _ in range(3)]
                await asyncio.sleep(0)
                waiters[0].cancel()
                srv.send(conn, b"x")
                srv.send(conn, b"y")
                got = await asyncio.gather(*waiters[1:])
                self.assertTrue(waiters[0].cancelled())
                self.assertEqual(sorted(got), [b"x", b"y"])
                # No waiter is left, and neither is a reader: the fd is free.
                loop = asyncio.get_running_loop()
                self.assertFalse(loop.remove_reader(cli.fileno()))
                self.assertFalse(loop.remove_reader(srv.fileno()))

        self.run_async(main())

    def test_udp_recv_async(self):
        async def main():
            with ssock.UDP("127.0.0.1:0") as a, ssock.UDP(connect=a.address) as b:
                b.send(b"dgram")
                data, addr = await a.recv_async()
                return data, addr == b.address

        self.assertEqual(self.run_async(main()), (b"dgram", True))


if __name__ == "__main__":
    unittest.main()
