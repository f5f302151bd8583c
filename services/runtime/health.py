"""Liveness, readiness and Prometheus metrics over plain HTTP, for Kubernetes probes and scrapers."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

log = structlog.get_logger()

HANDLED = Counter(
    "orderflow_messages_handled_total",
    "Messages handled, by service, message type and outcome",
    ["service", "type", "outcome"],
)
DEAD_LETTERS = Counter("orderflow_dead_letters_total", "Messages sent to orders.dlq", ["service", "topic"])
LATENCY = Histogram(
    "orderflow_handler_seconds",
    "Handler time per message",
    ["service", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
BATCHES = Histogram(
    "orderflow_batch_seconds",
    "Time to process and commit one consumed batch",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

Check = Callable[[], Awaitable[bool]]


def outcome_label(outcome: str) -> str:
    """A bounded metric label from a handler outcome (no order numbers, no customer data)."""
    return outcome.split(" ", 1)[0].split(":", 1)[0][:32] or "none"


class HealthServer:
    """`/health/live`, `/health/ready` (every check passes) and `/metrics` on one port."""

    def __init__(self, port: int, checks: dict[str, Check]) -> None:
        self.port, self.checks = port, checks
        self.server: asyncio.Server | None = None
        self.started = time.monotonic()

    async def start(self) -> None:
        """Listen on 0.0.0.0:port (0 disables the server)."""
        if self.port:
            self.server = await asyncio.start_server(self._serve, "0.0.0.0", self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def ready(self) -> dict[str, bool]:
        """Each readiness check's result (a failing or slow check is False)."""
        results = {}
        for name, check in self.checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), 3.0)
            except Exception:  # a probe reports, it never raises
                results[name] = False
        return results

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await asyncio.wait_for(reader.readline(), 5.0)).decode("latin-1").split()
            path = request[1] if len(request) > 1 else "/"
            if path == "/metrics":
                status, body, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST
            elif path == "/health/live":
                status, body, ctype = 200, b'{"live": true}', "application/json"
            elif path == "/health/ready":
                results = await self.ready()
                ok = all(results.values())
                status = 200 if ok else 503
                body = ("{" + ", ".join(f'"{k}": {str(v).lower()}' for k, v in results.items()) + "}").encode()
                ctype = "application/json"
            else:
                status, body, ctype = 404, b"not found", "text/plain"
            head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'ERR'}\r\nContent-Type: {ctype}\r\n"
            writer.write(head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
