"""The gateway's OpenAPI document, generated from the app and the contract models:
`python -m orderflow.gateway.openapi` (`make docs`) writes docs/openapi/gateway.json; a test keeps it fresh."""

import json
import sys
from pathlib import Path

from orderflow.gateway.app import create_app
from orderflow.gateway.settings import GatewaySettings

PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "gateway.json"


def render() -> str:
    """The document as written to docs/ (sorted keys, two-space indent)."""
    return json.dumps(create_app(GatewaySettings()).openapi(), indent=2, sort_keys=True) + "\n"


def write() -> None:
    """Rewrite docs/openapi/gateway.json."""
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(render())


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {PATH}\n")
