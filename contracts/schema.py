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


def write() -> None:
    """Rewrite contracts/schemas/ from the models."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    for old in SCHEMA_DIR.glob("*.json"):
        old.unlink()
    for name, text in render().items():
        (SCHEMA_DIR / name).write_text(text)


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {len(render())} schemas to {SCHEMA_DIR}\n")
