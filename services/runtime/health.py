"""Liveness, readiness, Prometheus metrics and the AsyncAPI page of a service, served by uvicorn (Starlette)
inside the service's event loop, for Kubernetes probes, scrapers and the people reading the service."""

import asyncio
import contextlib
import functools
import html
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

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
# The AsyncAPI documents `make docs` writes (docs/asyncapi/<service>.json; the image copies them to /app/docs).
ASYNCAPI_DIR = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"

Check = Callable[[], Awaitable[bool]]
_LABEL_WORD = re.compile(r"[a-z][a-z_-]{0,31}")  # an outcome's first word usable as a label (a bounded vocabulary)


@functools.cache
def handled(service: str, kind: str, outcome: str) -> tuple[Counter, Histogram]:
    """HANDLED's and LATENCY's series for one service, message type and outcome label, looked up once (a
    lookup by labels validates and locks: a few µs per message); the labels are bounded vocabularies."""
    return HANDLED.labels(service, kind, outcome), LATENCY.labels(service, kind)


def outcome_label(outcome: str) -> str:
    """A bounded metric label from a handler outcome: its first word if a lowercase word, else "other" (no ids)."""
    word = outcome.split(" ", 1)[0].split(":", 1)[0]
    return word if _LABEL_WORD.fullmatch(word) else "other" if word else "none"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's owner (FastStream, the CLI) handles SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Embedded:
    """An ASGI app served by uvicorn as a task of the running event loop."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self.server = _EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the port cannot be bound."""
        config = self.server.config
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started and not self.task.done():
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop listening, closing open connections."""
        if self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self.task
            self.task = None


def asyncapi_page(document: dict[str, Any]) -> str:
    """A self-contained HTML page (no CDN) of an AsyncAPI 3 document: every operation, then the document."""
    info = document.get("info", {})
    rows = []
    for name, op in sorted(document.get("operations", {}).items()):
        channel = document.get("channels", {}).get(op["channel"]["$ref"].rsplit("/", 1)[-1], {})
        messages = ", ".join(m["$ref"].rsplit("/", 1)[-1] for m in op.get("messages", []))
        rows.append(
            f"<tr><td>{html.escape(op.get('action', ''))}</td><td><code>{html.escape(channel.get('address', ''))}"
            f"</code></td><td>{html.escape(messages)}</td><td>{html.escape(name)}</td></tr>"
        )
    title = html.escape(f"{info.get('title', 'service')} {info.get('version', '')}")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title} — AsyncAPI</title><style>body{{font:14px system-ui,sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
        f"<h1>{title}</h1><p>{html.escape(info.get('description', ''))}</p>"
        f"<p>AsyncAPI {html.escape(str(document.get('asyncapi', '')))} · <a href='/docs/asyncapi.json'>JSON</a></p>"
        "<h2>Operations</h2><table><tr><th>action</th><th>topic</th><th>messages</th><th>operation</th></tr>"
        + "".join(rows)
        + "</table><h2>Document</h2><pre>"
        + html.escape(json.dumps(document, indent=2))
        + "</pre></body></html>"
    )


class HealthServer:
    """`/health/live`, `/health/ready` (every check passes), `/metrics` and `/docs/asyncapi` on one port."""

    def __init__(self, port: int, checks: dict[str, Check], service: str = "", host: str = "0.0.0.0") -> None:
        self.port, self.checks, self.service = port, checks, service
        self.started = time.monotonic()
        self.http = Embedded(self.app(), host, port) if port else None

    def app(self) -> Starlette:
        """The Starlette application of the four routes."""

        async def live(request: Request) -> Response:
            return JSONResponse({"live": True})

        async def ready(request: Request) -> Response:
            results = await self.ready()
            return JSONResponse(results, status_code=200 if all(results.values()) else 503)

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        async def docs(request: Request) -> Response:
            document = self.asyncapi()
            if document is None:
                return JSONResponse({"error": f"no AsyncAPI document for {self.service!r}"}, status_code=404)
            return HTMLResponse(asyncapi_page(document))

        async def docs_json(request: Request) -> Response:
            document = self.asyncapi()
            return JSONResponse(document) if document is not None else JSONResponse({}, status_code=404)

        return Starlette(
            routes=[
                Route("/health/live", live),
                Route("/health/ready", ready),
                Route("/metrics", metrics),
                Route("/docs/asyncapi", docs),
                Route("/docs/asyncapi.json", docs_json),
            ]
        )

    def asyncapi(self) -> dict[str, Any] | None:
        """The service's AsyncAPI document (docs/asyncapi/<service>.json), None when there is none."""
        path = ASYNCAPI_DIR / f"{self.service}.json"
        if not self.service or not path.is_file():
            return None
        document: dict[str, Any] = json.loads(path.read_text())
        return document

    async def start(self) -> None:
        """Listen on 0.0.0.0:port (0 disables the server)."""
        if self.http is not None:
            await self.http.start()

    async def stop(self) -> None:
        """Stop listening."""
        if self.http is not None:
            await self.http.stop()

    async def ready(self) -> dict[str, bool]:
        """Each readiness check's result (a failing or slow check is False)."""
        results = {}
        for name, check in self.checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), 3.0)
            except Exception:  # a probe reports, it never raises
                results[name] = False
        return results
