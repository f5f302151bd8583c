"""`orderflow dashboard`: one self-contained page (no CDN), its JSON state and a Prometheus exporter, all served
from one process that samples consumer lag every interval and follows `orders.status` from the beginning."""

import asyncio
import contextlib
import json
import os
import signal
import time
from importlib import resources
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts import topics
from orderflow import dashboard_metrics
from orderflow.dashboard_state import History, Sample, StatusBoard, parse_stuck
from orderflow.lag import LagMeter, PartitionLag, prefix
from services.runtime import logging as runtime_logging
from services.runtime.health import Embedded
from services.runtime.kafka import client_kwargs

__all__ = ["Dashboard", "parse_stuck", "serve"]

log = structlog.get_logger()


class Dashboard:
    """The sampled state behind the page, /api/state and /metrics (all three show the same sample)."""

    def __init__(self, bootstrap: str, thresholds: dict[str, float], interval: float) -> None:
        self.bootstrap, self.thresholds, self.interval = bootstrap, thresholds, interval
        self.board = StatusBoard()
        self.history = History()
        self.rows: list[PartitionLag] = []
        self.state: dict[str, Any] = {}
        self.status_targets: dict[int, int] | None = None  # orders.status ends when we started reading
        self.error: str | None = None
        self.page = resources.files("orderflow").joinpath("static/dashboard.html").read_bytes()
        self.registry = dashboard_metrics.registry(lambda: (self.rows, self.state))

    def caught_up(self) -> bool:
        """Whether every status message published before the dashboard started has been read."""
        targets = self.status_targets
        return targets is not None and all(self.board.read_to.get(p, 0) >= end for p, end in targets.items())

    async def follow_statuses(self, meter: LagMeter) -> None:
        """Read `orders.status` from the beginning of every partition into the board, then keep following it."""
        ranges = await meter.log_ends((topics.ORDERS_STATUS,))
        self.status_targets = {tp.partition: end for tp, (start, end) in ranges.items() if end > start}
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_kwargs())
            try:
                await consumer.start()
                consumer.assign(list(ranges))
                for tp, (start, _) in ranges.items():
                    consumer.seek(tp, self.board.read_to.get(tp.partition, start))
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for records in batch.values():
                        for r in records:
                            self.board.apply(
                                r.partition,
                                r.offset,
                                r.key and r.key.decode(errors="replace"),
                                _decode(r.value),
                                r.timestamp,
                            )
                    await asyncio.sleep(0)  # let the sampler and the HTTP server in while the history loads
            except (KafkaError, OSError) as exc:
                log.warning("orders.status reader failed, resuming", error=type(exc).__name__)
                await asyncio.sleep(2.0)
            finally:
                await consumer.stop()

    async def sample(self, reader: LagMeter) -> None:
        """Measure lag and topic offsets once and rebuild the state every view renders."""
        rows = await reader.measure()
        ranges = await reader.log_ends(topics.ALL)
        at = time.time()
        figures = self.history.add(Sample(at, rows, ranges))
        dlq = next((t for t in figures["topics"] if t["topic"] == topics.ORDERS_DLQ), {"messages": 0, "rate": 0.0})
        stuck_counts, oldest = self.board.stuck(at, self.thresholds)
        self.rows = rows
        self.state = {
            "sampled_at": round(at, 3),
            "interval": self.interval,
            "group_prefix": prefix(),
            "error": None,
            **figures,
            "partitions": [r.to_dict() for r in rows],
            "dlq": {"size": dlq["messages"], "rate": dlq["rate"]},
            "orders": {
                "by_status": self.board.counts(),
                "tracked": len(self.board.orders),
                "read_to": {str(p): o for p, o in sorted(self.board.read_to.items())},
                "caught_up": self.caught_up(),
            },
            "stuck": {"thresholds": self.thresholds, "counts": stuck_counts, "oldest": oldest},
        }

    async def sample_forever(self, reader: LagMeter) -> None:
        """Sample every interval; a failed sample keeps the last state and reports the error on the page."""
        while True:
            tick = time.monotonic()
            try:
                await asyncio.wait_for(self.sample(reader), max(10.0, self.interval * 3))
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("lag sample failed", error=type(exc).__name__)
                self.state = {**self.state, "error": f"lag sample failed: {type(exc).__name__}"}
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - tick)))

    def app(self) -> Starlette:
        """The page, /api/state, /metrics and /health/live (GET and HEAD; no cache)."""
        nocache = {"Cache-Control": "no-store"}

        async def page(request: Request) -> Response:
            return Response(self.page, media_type="text/html; charset=utf-8", headers=nocache)

        async def state(request: Request) -> Response:
            body = self.state or {"error": "first sample pending", "interval": self.interval}
            return JSONResponse(body, headers=nocache)

        async def metrics(request: Request) -> Response:
            body = dashboard_metrics.render(self.registry)
            return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8", headers=nocache)

        async def live(request: Request) -> Response:
            return JSONResponse({"live": True}, headers=nocache)

        return Starlette(
            routes=[
                Route("/", page, methods=["GET", "HEAD"]),
                Route("/index.html", page, methods=["GET", "HEAD"]),
                Route("/api/state", state, methods=["GET", "HEAD"]),
                Route("/metrics", metrics, methods=["GET", "HEAD"]),
                Route("/health/live", live, methods=["GET", "HEAD"]),
            ]
        )


def _decode(raw: bytes | None) -> Any:
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return None


async def serve(bootstrap: str, host: str, port: int, thresholds: dict[str, float], interval: float) -> None:
    """Run the dashboard until SIGINT or SIGTERM."""
    runtime_logging.configure("dashboard", os.environ.get("LOG_FORMAT", "console"), os.environ.get("LOG_LEVEL", "INFO"))
    board = Dashboard(bootstrap, thresholds, interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with LagMeter(bootstrap) as sampler, LagMeter(bootstrap) as status_reader:
        server = Embedded(board.app(), host, port)
        await server.start()
        tasks = [
            asyncio.create_task(board.sample_forever(sampler)),
            asyncio.create_task(board.follow_statuses(status_reader)),
        ]
        log.info("dashboard listening", host=host, port=port, interval=interval)
        try:
            await stop.wait()
        finally:
            await server.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
