"""JSON Schema files generated from the models: `python -m contracts.schema` writes contracts/schemas/."""

import json
import sys
from pathlib import Path

from contracts.registry import MODELS, _type_of

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render() -> dict[str, str]:
    """Every message type's JSON Schema, as file name -> text."""
    out: dict[str, str] = {}
    for topic, models in MODELS.items():
        for model in models:
            schema = model.model_json_schema(mode="validation")
            schema["x-topic"] = topic
            out[f"{_type_of(model)}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def on_disk(directory: Path, pattern: str = "*.json") -> dict[str, str]:
    """The generated files in `directory` matching `pattern`, as file name -> text (compare with a render)."""
    return {p.name: p.read_text() for p in sorted(directory.glob(pattern))}


def write_generated(directory: Path, files: dict[str, str], pattern: str = "*.json") -> None:
    """Make `directory` hold exactly `files` among its files matching `pattern` (stale ones are removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(pattern):
        old.unlink()
    for name, text in files.items():
        (directory / name).write_text(text)


def write() -> None:
    """Rewrite contracts/schemas/ from the models."""
    write_generated(SCHEMA_DIR, render())


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {len(render())} schemas to {SCHEMA_DIR}\n")
