"""Deterministic ids: an output's id derives from its input, so a redelivery rebuilds the same ids."""

import uuid

_NAMESPACE = uuid.UUID("6f1f4f3e-3a53-4c35-9a51-0c8b7f0d2a11")


def derive_id(*parts: object) -> str:
    """A stable UUID for the given parts (same parts, same id)."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(str(p) for p in parts)))
