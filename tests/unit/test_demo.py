"""`orderflow demo` gives up honestly: the orders that did not settle are counted, named and fail the command."""

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from orderflow import bus, demo, reach
from orderflow.cli import app


class FakeBus:
    """What run() touches on Kafka: published orders are remembered; `follow` answers with `answer(key)`."""

    def __init__(self, answer: dict[int, str | None]) -> None:
        self.answer = answer  # order index -> the status the services publish (None: no status at all)
        self.published: list[tuple[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def nothing(*_args: Any, **_kwargs: Any) -> None:
            return None

        async def end_offsets(*_args: Any) -> dict[int, int]:
            return {0: 0}

        @contextlib.asynccontextmanager
        async def producer(_bootstrap: str) -> AsyncIterator[None]:
            yield None

        async def publish(_producer: None, _topic: str, items: list[tuple[str, Any]]) -> None:
            self.published.extend(items)

        async def follow(*_args: Any, **_kwargs: Any) -> AsyncIterator[dict[str, Any]]:
            orders = [key for key, value in self.published if key != "poison"]
            for i, key in enumerate(orders):
                if self.answer.get(i):
                    yield {"_key": key, "status": self.answer[i]}
            while True:
                await asyncio.sleep(0.01)
                yield {}

        class Sim:
            def __init__(self, _bootstrap: str) -> None: ...

            async def run(self, stop: asyncio.Event) -> None:
                await stop.wait()

        async def answer_shortages(*_args: Any) -> Counter[str]:
            return Counter({"wait": 1})

        monkeypatch.setattr(demo, "ensure_topics", nothing)
        monkeypatch.setattr(demo, "load_reference_data", nothing)
        monkeypatch.setattr(demo, "Simulator", Sim)
        monkeypatch.setattr(demo, "answer_shortages", answer_shortages)
        for name, fake in (("end_offsets", end_offsets), ("producer", producer), ("publish", publish)):
            monkeypatch.setattr(bus, name, fake)
        monkeypatch.setattr(bus, "follow", follow)


def _run(monkeypatch: pytest.MonkeyPatch, answer: dict[int, str | None]) -> tuple[dict[str, Any], list[str]]:
    FakeBus(answer).install(monkeypatch)
    said: list[str] = []
    # the demo's own clock only (the event loop keeps the real one)
    monkeypatch.setattr("orderflow.demo.time", SimpleNamespace(monotonic=_clock(), time=time.time))
    return asyncio.run(demo.run("fake:9092", count=4, timeout=50, say=said.append)), said


def _clock() -> Any:
    """A monotonic clock that moves a second per reading, so the demo's deadlines pass without waiting."""
    ticks: Iterator[float] = (float(n) for n in range(10**6))
    return lambda: next(ticks)


def test_a_demo_whose_orders_all_settle_reports_none_unsettled(monkeypatch: pytest.MonkeyPatch) -> None:
    figures, said = _run(monkeypatch, {0: "delivered", 1: "rejected", 2: "in_review", 3: "delivered"})
    assert figures["unsettled"] == {}
    assert "4 orders + 3 unreadable (sent to orders.dlq) settled in" in said[-2]


def test_giving_up_counts_and_names_the_orders_that_did_not_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    figures, said = _run(monkeypatch, {0: "delivered", 1: "approved", 2: None, 3: "approved"})
    assert figures["unsettled"] == {"approved": 2, "(no status)": 1}
    assert "3 of 4 orders did not settle (2 approved, 1 (no status))" in said[-2]
    assert not any("settled in" in line for line in said)


def test_an_answered_shortage_that_does_not_end_is_unsettled(monkeypatch: pytest.MonkeyPatch) -> None:
    figures, said = _run(monkeypatch, {0: "delivered", 1: "awaiting_customer_decision", 2: "invalid", 3: "rejected"})
    assert figures["unsettled"] == {"awaiting_customer_decision": 1}
    assert "1 of 4 orders did not settle" in said[-2]


@pytest.mark.parametrize(("unsettled", "code"), [({}, 0), ({"approved": 180}, 1)])
def test_the_command_fails_when_orders_did_not_settle(
    monkeypatch: pytest.MonkeyPatch, unsettled: dict[str, int], code: int
) -> None:
    async def run(*_args: Any) -> dict[str, Any]:
        return {"orders": 200, "unsettled": unsettled}

    async def reachable() -> None:
        return None

    monkeypatch.setattr(demo, "run", run)
    monkeypatch.setattr(reach, "check_kafka", reachable)  # the fake bus needs no servers
    monkeypatch.setattr(reach, "check_store", reachable)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "fake:9092")
    result = CliRunner().invoke(app, ["demo", "--orders", "200"])
    assert result.exit_code == code
    assert ("demo failed: 180 of 200 orders did not settle" in result.output) == bool(code)
