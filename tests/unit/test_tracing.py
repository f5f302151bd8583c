"""Tracing's switch (issue 14): on only when the OTEL_* variables ask for it, refusing what it cannot export, and
off meaning nothing added; log lines carry the active span's ids when it is on."""

import io
import json
import os
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import structlog
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider

from services.intake.app import CONSUMES, NAME, build
from services.runtime import logging as runtime_logging
from services.runtime import tracing
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Outgoing
from services.runtime.service import wire
from services.runtime.settings import ServiceSettings

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}


@pytest.fixture(autouse=True)
def off_afterwards() -> Iterator[None]:
    yield
    tracing.uninstall()
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "intake"}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_an_otlp_endpoint_is_set(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='grpc'"),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
    ],
)
def test_what_the_exporter_cannot_do_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        tracing.configure("intake", env)


def test_unset_means_off_and_nothing_added() -> None:
    assert tracing.configure("intake", {}) is False
    assert not tracing.enabled() and tracing.current() is None
    broker, _ = wire(NAME, ServiceSettings(), MemoryDocStore(), CONSUMES, build)
    assert not any(isinstance(m, KafkaTelemetryMiddleware) for m in broker.middlewares)
    with tracing.handling("intake", "order.submitted", "t:0:0", "web:1", None):
        assert tracing.current() is None
    assert Outgoing("orders.status", "web:1", b"{}").traced().to_doc() == {
        "topic": "orders.status",
        "key": "web:1",
        "value": "{}",
    }


def test_configured_exporter_adds_the_middleware() -> None:
    assert tracing.configure("intake", ENDPOINT) is True
    broker, _ = wire(NAME, ServiceSettings(), MemoryDocStore(), CONSUMES, build)
    assert any(isinstance(m, KafkaTelemetryMiddleware) for m in broker.middlewares)
    tracing.shutdown()


def test_an_output_keeps_the_trace_of_the_handler_span_in_the_outbox_form() -> None:
    tracing.install(TracerProvider())
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.handling("review", "order.accepted", "t:0:1", "web:1", parent):
        out = Outgoing("orders.status", "web:1", b"{}").traced()
    assert out.trace is not None and out.trace.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert out.trace.split("-")[2] != "b7ad6b7169203331"  # the handler's own span, a child of the record's
    assert Outgoing.from_doc(out.to_doc()) == out


def lines(emit: "object") -> list[dict[str, object]]:
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        emit()  # type: ignore[operator]
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_log_lines_carry_the_active_spans_ids_when_tracing_is_on() -> None:
    tracing.install(TracerProvider())
    runtime_logging.configure("review", "json")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    def emit() -> None:
        with tracing.handling("review", "order.accepted", "t:0:1", "web:1", parent):
            structlog.get_logger().info("inside")
        structlog.get_logger().info("outside")

    inside, outside = lines(emit)
    assert inside["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and len(str(inside["span_id"])) == 16
    assert "trace_id" not in outside and "span_id" not in outside


async def test_the_gateways_broker_starts_the_trace_when_tracing_is_on() -> None:
    from orderflow.gateway.app import Gateway
    from orderflow.gateway.settings import GatewaySettings

    off = Gateway(GatewaySettings())
    tracing.install(TracerProvider())
    on = Gateway(GatewaySettings())
    try:
        assert not any(isinstance(m, KafkaTelemetryMiddleware) for m in off.broker.middlewares)
        assert any(isinstance(m, KafkaTelemetryMiddleware) for m in on.broker.middlewares)
    finally:
        for g in (off, on):
            await g.client.close()


def test_services_trace_to_the_local_jaeger_only_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orderflow.dev import jaeger

    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert jaeger.running_pid() is None and jaeger.service_env("intake") == {}
    jaeger.pid_file().parent.mkdir(parents=True)
    jaeger.pid_file().write_text(f"{os.getpid()}\n")  # a live process, but not Jaeger (a reused pid)
    assert jaeger.running_pid() is None and jaeger.service_env("intake") == {}
    monkeypatch.setattr(jaeger, "running_pid", lambda: 4242)
    assert jaeger.service_env("review") == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_url(),
        "OTEL_SERVICE_NAME": "review",
    }
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")  # the caller's own choice wins
    assert jaeger.service_env("review") == {}
