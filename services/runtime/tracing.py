"""OpenTelemetry traces through the pipeline (issue 14), off unless the standard OTEL_* variables ask for them.

One trace follows an order from the gateway through intake, review, inventory and fulfillment. FastStream's Kafka
telemetry middleware spans every publish and every consumed batch and carries the W3C `traceparent` in the Kafka
headers. Because the services consume in batches, the batch span cannot be the parent of each order's work: the
processor runs each record's handler in its own span, a child of the context in that record's headers
(`handling`), and every output the handler records keeps that span's `traceparent` (`current`), also in the
document's pending outbox. The publisher sends each output inside the context it kept (`within`), so a batch, a
replay or the relay republishing a stranded event continues the trace of the record that caused it.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and neither
OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none); spans go over OTLP/HTTP (protobuf) to that endpoint, named
by OTEL_SERVICE_NAME (default: the service's name) and OTEL_RESOURCE_ATTRIBUTES. Off, nothing is added: no
middleware, no spans, no headers read or written, no log fields.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the SDK is imported only when tracing is turned on
    from opentelemetry.sdk.trace import TracerProvider

TRACEPARENT = "traceparent"
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    provider: "TracerProvider | None" = None
    tracer: trace.Tracer | None = None


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for traces: an OTLP endpoint set, the SDK not disabled, the traces
    exporter not `none`."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINTS)


def check_env(env: Mapping[str, str] | None = None) -> None:
    """Refuse, naming the variable, what the exporter here cannot do: only OTLP over HTTP (protobuf) is built in."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter not in ("otlp", "none"):
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: only 'otlp' (or 'none') is supported")
    for name in PROTOCOLS:
        protocol = env.get(name, "").strip().lower()
        if protocol and protocol != "http/protobuf":
            raise ValueError(f"{name}={protocol!r}: only 'http/protobuf' is supported (Jaeger and collectors: 4318)")


def configure(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Export this process's spans over OTLP when the OTEL_* variables ask for it (see the module docstring);
    returns whether tracing is on. Without them nothing is set up and tracing stays off."""
    env = os.environ if env is None else env
    check_env(env)
    if not wanted(env):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: "TracerProvider") -> None:
    """Turn tracing on with `provider` (configure's OTLP one, or a test's in-memory one)."""
    _State.provider = provider
    _State.tracer = provider.get_tracer("orderflow")


def uninstall() -> None:
    """Turn tracing off again (tests); spans already ended stay with their processors."""
    _State.provider = _State.tracer = None


def shutdown() -> None:
    """Flush the spans not yet exported (at process stop)."""
    if _State.provider is not None:
        _State.provider.shutdown()


def enabled() -> bool:
    """Whether this process traces (an exporter is configured or a test installed a provider)."""
    return _State.tracer is not None


def provider() -> "TracerProvider | None":
    """The tracer provider when tracing is on."""
    return _State.provider


def middleware() -> Any:
    """FastStream's Kafka telemetry middleware on this process's provider (tracing must be on)."""
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    if _State.provider is None:
        raise RuntimeError("tracing is off: configure() or install() a provider before asking for the middleware")
    return KafkaTelemetryMiddleware(tracer_provider=_State.provider)


def traceparent_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The W3C traceparent among a Kafka record's headers, if any."""
    for name, value in headers or ():
        if name == TRACEPARENT and value:
            return value.decode("ascii", errors="replace")
    return None


def current() -> str | None:
    """The traceparent of the span active now (None when tracing is off or no span is active)."""
    if _State.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def handling(service: str, kind: str, origin: str, key: str | None, parent: str | None) -> Iterator[None]:
    """Run one record's handler in a span, a child of the record's `parent` traceparent (a new trace when the
    record has none); a no-op when tracing is off."""
    tracer = _State.tracer
    if tracer is None:
        yield
        return
    ctx = _PROPAGATOR.extract({TRACEPARENT: parent}) if parent else otel_context.Context()
    with tracer.start_as_current_span(
        f"{service} handle {kind}",
        context=ctx,
        kind=trace.SpanKind.CONSUMER,
        attributes={"orderflow.service": service, "orderflow.key": key or "", "messaging.message.id": origin},
    ):
        yield


@contextlib.contextmanager
def within(parent: str | None) -> Iterator[None]:
    """Make the kept `parent` traceparent the current context (publishing a stored event continues its trace)."""
    if parent is None or _State.tracer is None:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({TRACEPARENT: parent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def log_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: trace_id and span_id of the active span, when there is one."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event["trace_id"] = format(span.trace_id, "032x")
        event["span_id"] = format(span.span_id, "016x")
    return event
