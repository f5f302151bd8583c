"""A delaying TCP proxy for chaos scenario 11 (Kafka slowed): each byte a side sends reaches the other side
`delay` seconds later, in order (a pipe with latency, not a throttle). Runs its own event loop in a thread,
so it keeps forwarding while the test's loop is busy; `delay` may be changed at any time."""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator


class DelayProxy:
    """Listens on `port` (127.0.0.1) and forwards every connection to `target_port`, adding `delay` each way."""

    def __init__(self, port: int, target_port: int, host: str = "127.0.0.1") -> None:
        self.port, self.target_port, self.host = port, target_port, host
        self.delay = 0.0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"delay-proxy-{port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start listening (returns once the port is bound)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            broker_r, broker_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(client_r, broker_w)),
            asyncio.create_task(self._pipe(broker_r, client_w)),
        ]
        self._tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
            self._tasks.discard(task)
        for w in (client_w, broker_w):
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + self.delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()

    def stop(self) -> None:
        """Close the listener and every forwarded connection, then the thread's loop."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def delayed(proxies: list[DelayProxy], seconds: float) -> Iterator[None]:
    """Every proxy adds `seconds` each way for the duration of the block."""
    for p in proxies:
        p.delay = seconds
    try:
        yield
    finally:
        for p in proxies:
            p.delay = 0.0
