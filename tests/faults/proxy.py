"""A TCP proxy for partitions: listens on 127.0.0.1:0, forwards every connection to a target, and
can black-hole traffic in both directions (bytes stop moving; no connection is closed, so held-up
bytes arrive late once healed, as after a real partition) and heal. It runs its own event loop in
a thread, so tests call it synchronously.

    with Proxy("127.0.0.1:8080") as proxy:
        ... peers connect to proxy.address ...
        proxy.partition(); ...; proxy.heal()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class Proxy:
    def __init__(self, target: str = "") -> None:
        self.target = target  # host:port; may be set later (connections wait for it)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._open: asyncio.Event
        self._server: asyncio.Server
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.address = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._open.wait()  # a connection made during a partition gets nowhere until healed
            while not self.target:  # set once the target's port is known
                await asyncio.sleep(0.01)
            host, _, port = self.target.rpartition(":")
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return
            self._writers.add(up_writer)
            try:
                down = asyncio.create_task(self._pump(reader, up_writer))
                up = asyncio.create_task(self._pump(up_reader, writer))
                self._tasks |= {down, up}
                await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
                for task in (down, up):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    self._tasks.discard(task)
            finally:
                self._close(up_writer)
        finally:
            self._close(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await self._open.wait()  # partitioned: hold the bytes (the sender's buffers fill up)
                writer.write(data)
                await writer.drain()

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.close()

    def partition(self) -> None:
        """Stop moving bytes both ways, on every connection, old and new."""
        self._loop.call_soon_threadsafe(self._open.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                self._close(writer)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        # Let the transports finish closing before the loop goes.
        self._loop.run_until_complete(asyncio.sleep(0.01))
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        with contextlib.suppress(BaseException):
            self._loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(self._loop), return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
