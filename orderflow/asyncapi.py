"""AsyncAPI 3.0 document of each service, generated from the code: `python -m orderflow.asyncapi` (`make docs`).

What a service receives is its `CONSUMES` (services/<name>/app.py); what it sends is read off its source:
every `Outgoing.of(topics.X, ...)` in its package, plus those reached through the runtime definitions it
imports (`status()` -> orders.status, `Processor` -> its batch's dead letters -> orders.dlq). The messages
of a topic and their schemas come from contracts/registry.py, the same models as contracts/schemas/.
FastStream's own AsyncAPI export is not used: the services' batch subscribers take raw records, so it
names neither the payload schemas nor anything published.
"""

import ast
import importlib
import json
import os
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts import topics
from contracts.registry import MODELS, _type_of
from contracts.schema import SCHEMA_DIR, write_generated
from orderflow.procs import SERVICES
from services.runtime.kafka import PARTITIONS
from services.runtime.settings import ServiceSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_DIR = REPO_ROOT / "docs" / "asyncapi"
SERVICES_DIR = REPO_ROOT / "services"
RUNTIME = "runtime"
KAFKA_BINDING = "0.5.0"

Definition = tuple[str, str]  # (runtime module, top-level name)


def consumes(service: str) -> tuple[str, ...]:
    """The topics the service subscribes to: its app module's CONSUMES."""
    return tuple(importlib.import_module(f"services.{service}.app").CONSUMES)


def _topic_of(call: ast.Call) -> str | None:
    """The topic of an `Outgoing.of(topics.X, ...)` call; None for any other call."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "of" and isinstance(func.value, ast.Name)):
        return None
    if func.value.id != "Outgoing":
        return None
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "topics":
        return str(getattr(topics, first.attr))
    raise ValueError(f"Outgoing.of at line {call.lineno} names its topic indirectly; use topics.<NAME>")


def _sent(node: ast.AST) -> set[str]:
    """Topics of the `Outgoing.of` calls inside `node`."""
    return {t for n in ast.walk(node) if isinstance(n, ast.Call) and (t := _topic_of(n)) is not None}


def _runtime_imports(tree: ast.Module) -> dict[str, Definition]:
    """Local name -> runtime definition, for each `from services.runtime.<module> import <name>`."""
    prefix = f"services.{RUNTIME}."
    return {
        alias.asname or alias.name: (node.module.removeprefix(prefix), alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix)
        for alias in node.names
    }


class RuntimeIndex:
    """The runtime's top-level definitions, what each sends and which other runtime definitions it uses."""

    def __init__(self, root: Path = SERVICES_DIR / RUNTIME) -> None:
        self.defs: dict[Definition, ast.AST] = {}
        self.imports: dict[str, dict[str, Definition]] = {}
        for path in sorted(root.glob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            self.imports[path.stem] = _runtime_imports(tree)
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    self.defs[(path.stem, node.name)] = node

    def _uses(self, definition: Definition) -> Iterator[Definition]:
        module, _ = definition
        for n in ast.walk(self.defs[definition]):
            if isinstance(n, ast.Name) and n.id != definition[1]:
                if (module, n.id) in self.defs:
                    yield (module, n.id)
                elif n.id in self.imports[module]:
                    yield self.imports[module][n.id]

    def sends(self, start: Definition) -> set[str]:
        """Topics sent by `start` or any runtime definition it reaches."""
        seen, todo, out = set(), [start], set()
        while todo:
            d = todo.pop()
            if d in seen or d not in self.defs:
                continue
            seen.add(d)
            out |= _sent(self.defs[d])
            todo.extend(self._uses(d))
        return out


def publishes(service: str, runtime: RuntimeIndex | None = None) -> tuple[str, ...]:
    """The topics the service's code can send to, in contracts/topics.py order."""
    runtime = runtime or RuntimeIndex()
    found: set[str] = set()
    for path in sorted((SERVICES_DIR / service).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found |= _sent(tree)
        for definition in _runtime_imports(tree).values():
            found |= runtime.sends(definition)
    return tuple(t for t in topics.ALL if t in found)


def _ident(name: str) -> str:
    """An AsyncAPI identifier (letters, digits, `_`, `-`) for a topic or message type."""
    return name.replace(".", "_")


def _schemas(model: type[BaseModel], into: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON Schema with its definitions moved to components/schemas (`into`)."""
    schema = model.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        if into.setdefault(name, sub) != sub:
            raise ValueError(f"two different schemas are both called {name}")
    return schema


def _channel(topic: str, messages: list[str]) -> dict[str, Any]:
    binding: dict[str, Any] = {"topic": topic, "partitions": PARTITIONS, "bindingVersion": KAFKA_BINDING}
    if topic in topics.COMPACTED:
        binding["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    return {
        "address": topic,
        "title": topic,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {"kafka": binding},
    }


def _operation(service: str, action: str, topic: str, messages: list[str]) -> dict[str, Any]:
    kafka: dict[str, Any] = {"clientId": {"type": "string", "enum": [service]}, "bindingVersion": KAFKA_BINDING}
    if action == "receive":
        kafka = {"groupId": {"type": "string", "enum": [service]}, **kafka}
    verb = "Consumes" if action == "receive" else "Publishes"
    return {
        "action": action,
        "title": f"{verb} {topic}",
        "channel": {"$ref": f"#/channels/{_ident(topic)}"},
        "messages": [{"$ref": f"#/channels/{_ident(topic)}/messages/{m}"} for m in messages],
        "bindings": {"kafka": kafka},
    }


def _message(model: type[BaseModel], topic: str) -> dict[str, Any]:
    kind = _type_of(model)
    return {
        "name": kind,
        "title": model.__name__,
        "summary": (model.__doc__ or kind).strip().splitlines()[0],
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{kind}"},
        "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
        "externalDocs": {
            "description": f"JSON Schema of {kind} on {topic}",
            "url": Path(os.path.relpath(SCHEMA_DIR / f"{kind}.json", DOC_DIR)).as_posix(),  # from the document
        },
    }


def document(service: str, runtime: RuntimeIndex | None = None) -> dict[str, Any]:
    """The service's AsyncAPI 3.0 document: a channel per topic it receives or sends, its messages' schemas."""
    received, sent = consumes(service), publishes(service, runtime)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in [t for t in topics.ALL if t in received or t in sent]:
        ids = []
        for model in MODELS[topic]:
            kind = _type_of(model)
            ids.append(_ident(kind))
            messages[_ident(kind)] = _message(model, topic)
            schemas[kind] = _schemas(model, schemas)
        channels[_ident(topic)] = _channel(topic, ids)
        for action, listed in (("receive", received), ("send", sent)):
            if topic in listed:
                operations[f"{action}_{_ident(topic)}"] = _operation(service, action, topic, ids)
    bootstrap = ServiceSettings.model_fields["kafka_bootstrap_servers"].default
    return {
        "asyncapi": "3.0.0",
        "id": f"urn:orderflow:{service}",
        "info": {
            "title": f"orderflow {service}",
            "version": version("orderflow"),
            "description": (
                f"The {service} service (`python -m services.{service}.app`): consumer group `{service}`, "
                f"settings from the environment (prefix `{service.upper()}_`, servers from KAFKA_BOOTSTRAP_SERVERS). "
                "Generated by `make docs` from the code; do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster",
                "variables": {"bootstrap": {"default": bootstrap, "description": "KAFKA_BOOTSTRAP_SERVERS"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": dict(sorted(schemas.items()))},
    }


def render() -> dict[str, str]:
    """Every service's document, as file name -> JSON text."""
    runtime = RuntimeIndex()
    return {f"{s}.json": json.dumps(document(s, runtime), indent=2, ensure_ascii=False) + "\n" for s in SERVICES}


def write() -> None:
    """Rewrite docs/asyncapi/ from the code."""
    write_generated(DOC_DIR, render())


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {len(SERVICES)} AsyncAPI documents to {DOC_DIR}\n")
