"""The topic ownership table of secure mode against the code: it cannot drift from what services do."""

import ast
from pathlib import Path

import pytest

from contracts import topics
from orderflow import security

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
STATUS_BUILDERS = {"status", "order_status", "unknown_order"}  # services.runtime.status: each builds orders.status


def _emitted(path: Path) -> set[str]:
    """Topics a module passes to `Outgoing.of(...)` / `Outgoing(...)`, and orders.status when it imports one of
    the shared status builders."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "services.runtime.status"
            and any(alias.name in STATUS_BUILDERS for alias in node.names)
        ):
            out.add(topics.ORDERS_STATUS)
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        is_outgoing = (
            isinstance(func, ast.Attribute) and func.attr == "of" and ast.unparse(func.value) == "Outgoing"
        ) or (isinstance(func, ast.Name) and func.id == "Outgoing")
        first = node.args[0]
        if is_outgoing and isinstance(first, ast.Attribute) and ast.unparse(first.value) == "topics":
            out.add(getattr(topics, first.attr))
    return out


def _produced_by(service: str) -> set[str]:
    produced: set[str] = set()
    for module in sorted((SERVICES_DIR / service).glob("*.py")):
        produced |= _emitted(module)
    return produced


def test_the_runtime_dead_letters_for_every_service() -> None:
    assert _emitted(SERVICES_DIR / "runtime" / "batch.py") == {topics.ORDERS_DLQ}


@pytest.mark.parametrize("service", security.SERVICES)
def test_produces_is_what_the_service_code_emits(service: str) -> None:
    assert set(security.PRODUCES[service]) == _produced_by(service) | {topics.ORDERS_DLQ}


def test_every_service_is_in_the_table() -> None:
    dirs = {p.parent.name for p in SERVICES_DIR.glob("*/app.py")}
    assert dirs == set(security.SERVICES) == set(security.CONSUMES) == set(security.PRODUCES)


def test_every_topic_has_a_writer_and_every_consumed_topic_is_written() -> None:
    written = set(security.CHANNEL_WRITES).union(*security.PRODUCES.values())
    assert written == set(topics.ALL)
    assert set().union(*security.CONSUMES.values()) <= written


def test_the_channel_cannot_forge_what_services_publish() -> None:
    assert not set(security.CHANNEL_WRITES) & set().union(*security.PRODUCES.values())
    assert not [t for t in security.CHANNEL_WRITES + security.CHANNEL_READS if t.startswith("orderflow.")]


@pytest.mark.parametrize("service", security.SERVICES)
def test_grants_allow_exactly_the_service_reads_writes_and_group(service: str) -> None:
    mine = [g for g in security.grants("e2e-") if g.principal == service]
    assert {g.name for g in mine if g.resource == "topic" and g.operation == "READ"} == set(security.CONSUMES[service])
    assert {g.name for g in mine if g.resource == "topic" and g.operation == "WRITE"} == set(security.PRODUCES[service])
    assert [(g.name, g.operation) for g in mine if g.resource == "group"] == [(f"e2e-{service}", "READ")]


def test_grants_name_only_known_principals_and_never_the_admin() -> None:
    principals = {g.principal for g in security.grants()}
    assert principals == {*security.SERVICES, security.CHANNEL}
    assert security.ADMIN not in principals
    assert not [g for g in security.grants() if g.principal == security.CHANNEL and g.resource == "group"]
