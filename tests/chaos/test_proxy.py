"""The delaying proxy of scenario 11 forwards bytes in order and adds its delay each way (no servers needed)."""

import asyncio
import time

import pytest

from orderflow.dev import stack
from tests.chaos.proxy import DelayProxy, delayed

pytestmark = pytest.mark.chaos


async def test_bytes_arrive_in_order_and_late_by_the_delay_each_way() -> None:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    proxy = DelayProxy(stack.unused_port(), target)
    proxy.start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)

        async def round_trip(payload: bytes) -> float:
            started = time.monotonic()
            w.write(payload)
            await w.drain()
            assert await r.readexactly(len(payload)) == payload
            return time.monotonic() - started

        fast = await round_trip(b"x" * 10)
        with delayed([proxy], 0.1):
            slow = await round_trip(bytes(range(256)) * 400)
        assert fast < 0.1
        assert 0.2 <= slow < 1.0
        w.close()
    finally:
        proxy.stop()
        server.close()
