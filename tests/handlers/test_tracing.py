"""OpenTelemetry through the pipeline (issue 14): one order is ONE trace across intake, review, inventory and
fulfillment, on the in-memory broker with the services' own wiring (FastStream's Kafka telemetry middleware plus
the per-record handler spans), also when a hop's events were stranded in the outbox and a redelivery republished
them. The spans are read from an in-memory exporter."""

import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import topics
from orderflow import sample
from services.fulfillment import app as fulfillment
from services.intake import app as intake
from services.inventory import app as inventory
from services.inventory.config import InventorySettings
from services.review import app as review
from services.review.config import ReviewSettings
from services.runtime import tracing
from services.runtime.batch import RELAY_GRACE
from services.runtime.messages import Incoming, Outgoing
from tests.factories import NOW, customer, product
from tests.handlers.harness import Harness

REF = "T-1"
ORDER = f"web:{REF}"
SERVICES = ("intake", "review", "inventory", "fulfillment")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every ended span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()
    provider.shutdown()


@pytest.fixture
async def pipeline(spans: InMemorySpanExporter) -> AsyncIterator[dict[str, Harness]]:
    """The four services, each on its own in-memory broker and store, review and inventory with their master
    data and stock (built after tracing is on: `wire` adds the middleware only then)."""
    harnesses = {
        "intake": Harness(intake.NAME, intake.CONSUMES, intake.build),
        "review": Harness(review.NAME, review.CONSUMES, review.build_for(ReviewSettings())),
        "inventory": Harness(inventory.NAME, inventory.CONSUMES, inventory.build_for(InventorySettings())),
        "fulfillment": Harness(fulfillment.NAME, fulfillment.CONSUMES, fulfillment.build),
    }
    for h in harnesses.values():
        await h.__aenter__()
    try:
        r = harnesses["review"]
        await r.send(topics.MASTERDATA_PRODUCTS, product("SKU-0001"), "SKU-0001")
        await r.send(topics.MASTERDATA_CUSTOMERS, customer("C-1001"), "C-1001")
        for warehouse in InventorySettings().warehouse_preference:
            count = {"type": "stock.counted", "version": 1, "event_id": f"count-{warehouse}", "sku": "SKU-0001"}
            count |= {"warehouse": warehouse, "on_hand": 100}
            await harnesses["inventory"].send(topics.INVENTORY_MOVEMENTS, count, "SKU-0001")
        yield harnesses
    finally:
        for h in harnesses.values():
            await h.__aexit__(None, None, None)


async def forward(src: Harness, topic: str, dst: Harness) -> None:
    """Hand the order's last message on `topic` from one service to the next as Kafka would: same bytes, same
    key, inside the trace context its headers carry (the test broker's publish stands for the transport)."""
    index = max(i for i, m in enumerate(src.out[topic]) if m["_key"] == ORDER)
    value = {k: v for k, v in src.out[topic][index].items() if k != "_key"}
    parent = src.headers[topic][index].get(tracing.TRACEPARENT)
    assert parent, f"{topic} from {src.processor.service} carries no traceparent"
    with tracing.within(parent):
        await dst.send(topic, value, ORDER)


async def strand_then_redeliver(h: Harness, send: Any) -> None:
    """Run `send` while the service's broker refuses every publish (the batch's events stay pending in the outbox
    of the record's own documents, with no relay marker), then deliver the same records again as Kafka would
    (same bytes, headers and offsets: the offsets were not committed): the redelivery publishes the pending
    events in their original trace."""
    publisher, processor = h.processor.publisher, h.processor
    real_send, real_process = publisher.send_all, processor.process
    failed: list[list[Incoming]] = []

    async def refuse(messages: list[Outgoing]) -> None:
        raise KafkaConnectionError("broker unreachable")

    async def capture(records: list[Incoming]) -> None:
        failed.append(records)
        await real_process(records)

    publisher.send_all = refuse  # type: ignore[method-assign]
    processor.process = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(KafkaConnectionError):
            await send()
    finally:
        publisher.send_all = real_send  # type: ignore[method-assign]
        processor.process = real_process  # type: ignore[method-assign]
    assert not h.out, "nothing may be published while the broker refuses"
    h.relay.clock = lambda: time.time() + RELAY_GRACE + 0.1
    assert await h.relay.run_once() == 0  # events on the record's own documents: no marker
    await processor.process(failed[-1])


async def run_order(p: dict[str, Harness], stranded: str | None) -> None:
    """Submit one order and chain it through the four services; the `stranded` service's batch fails to publish
    and its events reach the next service only through the redelivery."""
    order = sample.order(REF, random.Random(REF), NOW, channel="web", customer="C-1001", skus=["SKU-0001"], lines=1)
    hops: list[tuple[str, Any]] = [
        ("intake", lambda: p["intake"].send(topics.ORDERS_SUBMITTED, order, ORDER)),
        ("review", lambda: forward(p["intake"], topics.ORDERS_ACCEPTED, p["review"])),
        ("inventory", lambda: forward(p["review"], topics.ORDERS_APPROVED, p["inventory"])),
    ]
    for name, send in hops:
        if name == stranded:
            await strand_then_redeliver(p[name], send)
        else:
            await send()
    await forward(p["intake"], topics.ORDERS_SHIPPING, p["fulfillment"])
    await forward(p["inventory"], topics.INVENTORY_ALLOCATIONS, p["fulfillment"])


def handler_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The services' per-record handler spans of the order."""
    return [
        s
        for s in exporter.get_finished_spans()
        if s.attributes and s.attributes.get("orderflow.service") and s.attributes.get("orderflow.key") == ORDER
    ]


@pytest.mark.parametrize("stranded", [None, "intake", "review", "inventory"])
async def test_one_order_is_one_trace_across_the_four_services(
    pipeline: dict[str, Harness], spans: InMemorySpanExporter, stranded: str | None
) -> None:
    await run_order(pipeline, stranded)
    assert pipeline["inventory"].statuses()[-1] == "reserved"
    handled = handler_spans(spans)
    assert {str(s.attributes["orderflow.service"]) for s in handled if s.attributes} == set(SERVICES)
    traces = {s.context.trace_id for s in handled if s.context}
    assert len(traces) == 1, f"the order's handler spans are in {len(traces)} traces, not one"
    # every handler span is a child (through the Kafka spans) of the submission's publish, the trace's one root
    [trace_id] = traces
    in_trace = [s for s in spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]
    roots = [s for s in in_trace if s.parent is None]
    assert len(roots) == 1 and roots[0].name.startswith(topics.ORDERS_SUBMITTED)
    assert all(s.parent is not None for s in handled)
    # each output is published as a child of the span of the record that caused it, not of the batch's span; a
    # stranded hop's redelivery (a duplicate) sends the pending events under the first attempt's span
    first: dict[str, ReadableSpan] = {}
    for h in sorted(handled, key=lambda s: s.start_time or 0):
        first.setdefault(str(h.attributes["orderflow.service"]) if h.attributes else "", h)
    if stranded:
        assert sum(1 for s in handled if s.attributes and s.attributes["orderflow.service"] == stranded) == 2
    for h in (s for name, s in first.items() if name != "fulfillment"):
        children = [s for s in in_trace if s.parent and h.context and s.parent.span_id == h.context.span_id]
        assert children, f"nothing was published under {h.name}'s span"
