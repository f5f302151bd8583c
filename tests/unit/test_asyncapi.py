"""The AsyncAPI documents: up to date with the code, valid AsyncAPI 3.0, and naming the real topics and schemas."""

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import topics
from contracts.registry import MODELS, _type_of
from contracts.schema import on_disk
from orderflow import asyncapi
from orderflow.procs import SERVICES

SPEC = asyncapi.DOC_DIR / "schema" / "asyncapi-3.0.0.json"  # from npm @asyncapi/specs 6.11.1 (see SOURCE.md)


def doc(service: str) -> dict[str, Any]:
    return json.loads((asyncapi.DOC_DIR / f"{service}.json").read_text())


def addresses(d: dict[str, Any], action: str) -> list[str]:
    """Topics of the document's operations of one action, resolved through their channel refs."""
    out = []
    for op in d["operations"].values():
        if op["action"] == action:
            channel_id = op["channel"]["$ref"].removeprefix("#/channels/")
            out.append(d["channels"][channel_id]["address"])
    return out


def test_asyncapi_docs_are_up_to_date() -> None:
    assert on_disk(asyncapi.DOC_DIR) == asyncapi.render(), "docs/asyncapi is stale: run `make docs`"


@pytest.mark.parametrize("service", SERVICES)
def test_doc_is_valid_asyncapi_3(service: str) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc(service))]
    assert errors == []


def test_the_spec_schema_rejects_a_broken_doc() -> None:
    broken = doc("intake")
    next(iter(broken["operations"].values()))["action"] = "consume"
    assert not jsonschema.Draft7Validator(json.loads(SPEC.read_text())).is_valid(broken)


@pytest.mark.parametrize("service", SERVICES)
def test_received_topics_are_the_service_consumes(service: str) -> None:
    assert sorted(addresses(doc(service), "receive")) == sorted(asyncapi.consumes(service))


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_sends_statuses_and_dead_letters(service: str) -> None:
    sent = addresses(doc(service), "send")
    assert topics.ORDERS_STATUS in sent
    assert topics.ORDERS_DLQ in sent


def test_every_internal_topic_consumed_is_sent_by_some_service() -> None:
    sent = {t for s in SERVICES for t in addresses(doc(s), "send")}
    consumed_internal = {t for s in SERVICES for t in asyncapi.consumes(s) if t.startswith("orderflow.")}
    assert consumed_internal <= sent


@pytest.mark.parametrize("service", SERVICES)
def test_channel_messages_are_the_registry_models_with_their_schema_files(service: str) -> None:
    d = doc(service)
    for channel in d["channels"].values():
        names = []
        for ref in channel["messages"].values():
            message = d["components"]["messages"][ref["$ref"].removeprefix("#/components/messages/")]
            names.append(message["name"])
            schema_file = asyncapi.DOC_DIR / message["externalDocs"]["url"]
            assert json.loads(schema_file.read_text())["x-topic"] == channel["address"]
            payload = d["components"]["schemas"][message["payload"]["$ref"].removeprefix("#/components/schemas/")]
            assert payload["properties"]["type"]["const"] == message["name"]
        assert names == [_type_of(m) for m in MODELS[channel["address"]]]


def test_sends_are_read_from_outgoing_calls() -> None:
    tree = ast.parse("def f(m):\n    return [Outgoing.of(topics.ORDERS_STATUS, 'k', m), other.of(x)]\n")
    assert asyncapi._sent(tree) == {topics.ORDERS_STATUS}


def test_a_topic_named_indirectly_is_an_error_not_a_silent_gap() -> None:
    with pytest.raises(ValueError, match="indirectly"):
        asyncapi._sent(ast.parse("Outgoing.of(topic, 'k', m)"))


def test_runtime_sends_follow_the_definitions_a_name_reaches(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "from services.runtime.b import emit\n\n"
        "class Worker:\n    def go(self):\n        emit()\n\n"
        "def idle():\n    pass\n"
    )
    (tmp_path / "b.py").write_text("def emit():\n    return Outgoing.of(topics.ORDERS_DLQ, 'k', m)\n")
    index = asyncapi.RuntimeIndex(tmp_path)
    assert index.sends(("a", "Worker")) == {topics.ORDERS_DLQ}
    assert index.sends(("a", "idle")) == set()
