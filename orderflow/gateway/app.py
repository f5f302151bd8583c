"""The gateway's HTTP API (FastAPI on uvicorn): the public contract over HTTP, nothing more.

- `POST /v1/orders` and `POST /v1/orders/{channel}/{ref}/revisions` take an `order.submitted` body, read it
  with `contracts.registry.parse` (the services' own reading), publish the bytes as received to
  `orders.submitted` keyed `"{channel}:{channel_order_ref}"` and answer 202 with the status resource in
  `Location` only once Kafka has acknowledged them; 503 with `Retry-After` otherwise.
- `POST /v1/commands` takes the one command a channel may send, `order.cancel`, to `orders.commands`.
- `GET /v1/orders/{channel}/{ref}[?wait=N]` answers from the gateway's read model of `orders.status`.
Every refusal is RFC 9457 problem JSON naming the field at fault. A key acts for its own channel only.
"""

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError

from contracts import registry, topics
from contracts.common import Reason
from contracts.public import OrderCancel, OrderStatus, OrderSubmitted, Status
from orderflow.gateway.keys import ApiKey, KeyStore
from orderflow.gateway.settings import NAME, GatewaySettings
from orderflow.gateway.views import Views, order_key
from services.runtime import tracing
from services.runtime.kafka import ensure_topics, make_broker, raw_bodies, to_incoming
from services.runtime.service import mongo_client

log = structlog.get_logger()
MAX_BODY = registry.MAX_MESSAGE_BYTES
STORE_RETRY_S = 2.0  # pause before the status reader retries a batch its store did not take
MAX_WAIT = 30.0  # seconds: the longest long-poll of a status read (?wait=)
PROBLEM = "application/problem+json"


# ---- answers ----
class Problem(BaseModel):
    """RFC 9457 problem details; `field` names the member at fault when there is one."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None


class Accepted(BaseModel):
    """A submission or command Kafka has acknowledged; `status_url` is also in `Location`."""

    channel: str
    channel_order_ref: str
    revision: int | None = None
    command_id: str | None = None
    status_url: str
    replayed: bool = Field(False, description="true when this exact submission had been received before")


class OrderView(BaseModel):
    """An order's latest status as the gateway's read model holds it (status null: accepted, no answer yet)."""

    channel: str
    channel_order_ref: str
    revision: int | None = None
    order_number: str | None = None
    status: Status | None = None
    reasons: list[Reason] = Field(default_factory=list)
    promise_date: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    occurred_at: str | None = None
    event_id: str | None = None


class Refusal(Exception):
    """A request refused with a problem document."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, field: str | None = None, **headers: str
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(type=f"/problems/{slug}", title=title, status=status, detail=detail, field=field)
        self.headers = headers


def _problem_response(refusal: Refusal) -> JSONResponse:
    body = refusal.problem.model_dump(exclude_none=True)
    headers = {k.replace("_", "-"): v for k, v in refusal.headers.items()}
    return JSONResponse(body, status_code=refusal.problem.status, media_type=PROBLEM, headers=headers)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Refusals answered with problem JSON (the document lists them under application/problem+json)."""
    return {s: {"model": Problem} for s in statuses}


# ---- rate limit ----
@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: `burst` requests at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, _Bucket] = {}

    def take(self, key: ApiKey) -> float:
        """0 when the request may go; otherwise the seconds until it may."""
        rate, burst = key.rate or self.rate, key.burst or self.burst
        now = self.clock()
        bucket = self.buckets.setdefault(key.key_id, _Bucket(float(burst), now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


# ---- the gateway ----
class Gateway:
    """The process's connections and state: Mongo (keys, read model, submissions), the Kafka broker."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.client = mongo_client(settings)
        db = self.client[settings.database()]
        self.keys = KeyStore(db["keys"], settings.key_cache)
        self.views = Views(db["orders"], db["submissions"])
        self.limiter = RateLimiter(settings.rate, settings.burst)
        self.broker = make_broker(settings.kafka_bootstrap_servers, NAME, settings.linger_ms, auth=settings)
        if tracing.enabled():  # each submission starts the trace the services continue
            self.broker.add_middleware(tracing.middleware())
        self._read_statuses()

    def _read_statuses(self) -> None:
        views = self.views

        @self.broker.subscriber(
            topics.ORDERS_STATUS,
            group_id=self.settings.group_prefix + NAME,
            batch=True,
            max_records=500,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            decoder=raw_bodies,
        )
        async def read(body: Any, msg: KafkaMessage) -> None:
            statuses = []
            for record in to_incoming(msg):
                try:
                    status = registry.parse(topics.ORDERS_STATUS, record.value)
                except registry.UnreadableMessage as exc:
                    log.warning("unreadable status skipped", origin=record.origin, reason=exc.reason[:200])
                    continue
                if isinstance(status, OrderStatus):
                    statuses.append((record.partition, record.offset, status))
            try:
                await views.apply(statuses)
            except PyMongoError as exc:  # the batch is read again (not committed) after a pause
                log.warning("read model write failed, retrying the batch", error=type(exc).__name__)
                await asyncio.sleep(STORE_RETRY_S)
                raise

    async def start(self) -> None:
        """Topics present, the submissions' index, the broker (producer and status reader) started."""
        await ensure_topics(self.settings.kafka_bootstrap_servers, auth=self.settings)
        await self.views.submissions.create_index("key")
        await self.broker.start()

    async def stop(self) -> None:
        """Stop reading and publishing, close the store."""
        await self.broker.stop()
        await self.client.close()
        tracing.shutdown()

    async def publish(self, topic: str, key: str, body: bytes) -> bool:
        """Publish and wait for Kafka's acknowledgement; False when it does not come within ack_timeout."""
        try:
            await asyncio.wait_for(
                self.broker.publish(body, topic, key=key.encode(), headers={"content-type": "application/json"}),
                self.settings.ack_timeout,
            )
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("publish not acknowledged", topic=topic, error=type(exc).__name__)
            return False
        return True


def status_url(channel: str, ref: str) -> str:
    """The path of an order's status resource."""
    return f"/v1/orders/{quote(channel, safe='')}/{quote(ref, safe='')}"


async def _body(request: Request) -> bytes:
    """The request body: JSON, at most MAX_BODY bytes (the contract's message limit)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise Refusal(
            415, "unsupported-media-type", "Send JSON", f"Content-Type must be application/json, not {ctype!r}"
        )
    declared = request.headers.get("content-length", "")
    too_large = Refusal(413, "too-large", "Body too large", f"a message is at most {MAX_BODY} bytes")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(topic: str, body: bytes) -> Any:
    try:
        return registry.parse(topic, body)
    except registry.UnreadableMessage as exc:
        raise Refusal(422, "unreadable", "The message does not match the contract", exc.reason, exc.field) from None


def _own_channel(key: ApiKey, channel: Any, field: str = "channel") -> None:
    if channel != key.channel:
        raise Refusal(
            403, "wrong-channel", "Not this key's channel", f"this key acts for channel {key.channel!r} only", field
        )


def _order_ref(order: OrderSubmitted) -> str:
    ref = order.channel_order_ref
    if not isinstance(ref, str) or not ref.strip():
        raise Refusal(
            422,
            "unreadable",
            "The message does not match the contract",
            "channel_order_ref: the channel's reference (text) is needed to key the order",
            "channel_order_ref",
        )
    return ref


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway application; connections open in its lifespan."""
    gateway = Gateway(settings or GatewaySettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        log.info("gateway ready", port=gateway.settings.port)
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="orderflow order gateway",
        version="1",
        summary="The public contract v1 over HTTP for channels that cannot produce to Kafka.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    bearer = HTTPBearer(auto_error=False, description="An API key of one channel (`orderflow gateway key add`)")

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> JSONResponse:
        return _problem_response(exc)

    @app.exception_handler(PyMongoError)
    async def store_down(request: Request, exc: PyMongoError) -> JSONResponse:
        log.warning("store unavailable", error=type(exc).__name__)
        return _problem_response(
            Refusal(
                503,
                "store-unavailable",
                "Not accepted: the gateway's store did not answer",
                "the gateway could not reach its database; nothing was accepted, send it again",
                Retry_After=str(gateway.settings.retry_after),
            )
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"][1:]) or str(first["loc"][0])
        return _problem_response(Refusal(422, "invalid-parameter", "Invalid parameter", first["msg"], where))

    async def api_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        challenge = {"WWW_Authenticate": "Bearer"}
        if credentials is None:
            raise Refusal(401, "no-key", "API key needed", "send Authorization: Bearer <key>", **challenge)
        key = await gateway.keys.find(credentials.credentials)
        if key is None:
            raise Refusal(401, "bad-key", "Unknown or revoked key", "the API key is unknown or revoked", **challenge)
        wait = gateway.limiter.take(key)
        if wait:
            raise Refusal(
                429,
                "rate-limited",
                "Too many requests",
                f"this key's rate limit is reached; retry in {wait:.1f} s",
                Retry_After=str(max(1, round(wait + 0.5))),
            )
        return key

    Key = Annotated[ApiKey, Depends(api_key)]

    async def accept(key: ApiKey, order: OrderSubmitted, body: bytes) -> JSONResponse:
        ref = _order_ref(order)
        okey, digest = order_key(key.channel, ref), hashlib.sha256(body).hexdigest()
        url = status_url(key.channel, ref)
        revision = order.revision if isinstance(order.revision, int) else None
        answer = Accepted(channel=key.channel, channel_order_ref=ref, revision=revision, status_url=url)
        prior = await gateway.views.claim(okey, order.revision, digest)
        if prior is not None and prior["sha256"] != digest:
            raise Refusal(
                409,
                "revision-conflict",
                "Revision already submitted",
                f"revision {order.revision!r} of {okey} was accepted with another body; a correction is the next "
                "revision, sent to the order's /revisions",
                "revision",
            )
        # A repeat is published again too: its first sending may not have been acknowledged yet, and intake
        # answers a repeated revision once.
        if not await gateway.publish(topics.ORDERS_SUBMITTED, okey, body):
            if prior is None:
                with contextlib.suppress(PyMongoError):
                    await gateway.views.release(okey, order.revision)
            raise _unavailable(gateway)
        answer.replayed = prior is not None
        log.info("order accepted", key_id=key.key_id, order_key=okey, revision=order.revision, replayed=answer.replayed)
        return JSONResponse(answer.model_dump(exclude_none=True), status_code=202, headers={"Location": url})

    submission: dict[str, Any] = {
        "status_code": 202,
        "response_model": Accepted,
        "responses": _problems(401, 403, 409, 413, 415, 422, 429, 503),
        "openapi_extra": {"requestBody": _contract_body("order.submitted")},
    }

    @app.post("/v1/orders", summary="Submit an order (order.submitted)", **submission)
    async def submit(request: Request, key: Key) -> JSONResponse:
        """202 once Kafka has acknowledged the order; the same body again is answered alike (intake numbers it once)."""
        body = await _body(request)
        order = _parse(topics.ORDERS_SUBMITTED, body)
        if not isinstance(order.channel, str):
            raise Refusal(
                422, "unreadable", "The message does not match the contract", "channel: text needed", "channel"
            )
        _own_channel(key, order.channel)
        return await accept(key, order, body)

    @app.post(
        "/v1/orders/{channel}/{ref}/revisions",
        summary="Submit a corrected revision of an order (order.submitted, revision 2 or later)",
        **submission,
    )
    async def revise(channel: str, ref: str, request: Request, key: Key) -> JSONResponse:
        """A correction: the body names the same channel and reference as the path, and a revision of 2 or more."""
        _own_channel(key, channel)
        body = await _body(request)
        order = _parse(topics.ORDERS_SUBMITTED, body)
        for field, want in (("channel", channel), ("channel_order_ref", ref)):
            if getattr(order, field) != want:
                raise Refusal(
                    422, "path-mismatch", "Body and path differ", f"{field}: the body must name {want!r}", field
                )
        if not isinstance(order.revision, int) or isinstance(order.revision, bool) or order.revision < 2:
            raise Refusal(
                422,
                "not-a-revision",
                "Not a revision",
                "revision: a correction carries revision 2 or later (revision 1 goes to POST /v1/orders)",
                "revision",
            )
        return await accept(key, order, body)

    @app.post(
        "/v1/commands",
        status_code=202,
        response_model=Accepted,
        responses=_problems(401, 403, 413, 415, 422, 429, 503),
        openapi_extra={"requestBody": _contract_body("order.cancel")},
        summary="Send a command a channel may send: order.cancel",
    )
    async def command(request: Request, key: Key) -> JSONResponse:
        """202 once Kafka has acknowledged the command; a repeated command_id is applied once by the services."""
        body = await _body(request)
        cmd = _parse(topics.ORDERS_COMMANDS, body)
        if not isinstance(cmd, OrderCancel):
            raise Refusal(
                422, "command-not-allowed", "Command not allowed", "type: a channel may send order.cancel only", "type"
            )
        _own_channel(key, cmd.channel)
        okey, url = order_key(cmd.channel, cmd.channel_order_ref), status_url(cmd.channel, cmd.channel_order_ref)
        if not await gateway.publish(topics.ORDERS_COMMANDS, okey, body):
            raise _unavailable(gateway)
        log.info("command accepted", key_id=key.key_id, order_key=okey, command=cmd.type)
        answer = Accepted(
            channel=cmd.channel, channel_order_ref=cmd.channel_order_ref, command_id=cmd.command_id, status_url=url
        )
        return JSONResponse(answer.model_dump(exclude_none=True), status_code=202, headers={"Location": url})

    @app.get(
        "/v1/orders/{channel}/{ref}",
        response_model=OrderView,
        responses=_problems(401, 403, 404, 422, 429),
        summary="An order's latest status, order number and reasons",
    )
    async def read(
        channel: str,
        ref: str,
        key: Key,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for the status to change")] = 0,
    ) -> OrderView:
        """The latest status from the read model of orders.status; with `wait`, the first one after the current."""
        _own_channel(key, channel)
        doc = await gateway.views.get(channel, ref)
        if doc is not None and wait:
            doc = await gateway.views.wait_change(channel, ref, doc.get("event_id"), wait)
        elif doc is None and wait:
            doc = await gateway.views.wait_change(channel, ref, None, wait)
        if doc is None:
            raise Refusal(404, "unknown-order", "Unknown order", f"no order {order_key(channel, ref)} known here")
        return OrderView.model_validate(doc)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _unavailable(gateway: Gateway) -> Refusal:
    return Refusal(
        503,
        "kafka-unavailable",
        "Not accepted: Kafka did not acknowledge",
        f"Kafka did not acknowledge within {gateway.settings.ack_timeout:g} s; nothing was accepted, send it again",
        Retry_After=str(gateway.settings.retry_after),
    )


CONTRACT_BODIES: dict[str, type[BaseModel]] = {"order.submitted": OrderSubmitted, "order.cancel": OrderCancel}


def _contract_body(name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the contract models' JSON Schemas as the request bodies' components."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for operation in (op for path in doc["paths"].values() for op in path.values()):
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    response["content"] = {PROBLEM: response["content"]["application/json"]}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, model in CONTRACT_BODIES.items():
            schema = model.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        app.openapi_schema = doc
    return app.openapi_schema
