"""API keys: one channel per key, only the SHA-256 of a key stored, revocation effective on the next request.

A key reads `ofk_<id>_<secret>`: the id finds the stored record, the secret (256 random bits) makes it
unguessable, so a plain SHA-256 of the whole key is a sufficient one-way hash (no password stretching
needed for a random secret)."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from contracts.public import CHANNELS

PREFIX = "ofk"


class KeyProblem(ValueError):
    """A key operation that cannot be done (unknown channel, unknown key id), the reason in the message."""


@dataclass(frozen=True)
class ApiKey:
    """A valid key's record: its id, the channel it may act for, its own rate limit (None: the default)."""

    key_id: str
    channel: str
    rate: float | None
    burst: int | None


def digest(token: str) -> str:
    """The stored form of a key: hex SHA-256 of its text."""
    return hashlib.sha256(token.encode()).hexdigest()


def _key_id(token: str) -> str | None:
    parts = token.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX and parts[1] and parts[2] else None


class KeyStore:
    """The `keys` collection of the gateway's database."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], cache_s: float = 0.0) -> None:
        self.collection, self.cache_s = collection, cache_s
        self.cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def add(self, channel: str, label: str = "", rate: float | None = None, burst: int | None = None) -> str:
        """Create a key for `channel` and return its text: shown once, only its hash is kept."""
        if channel not in CHANNELS:
            raise KeyProblem(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
        if (rate is not None and rate <= 0) or (burst is not None and burst < 1):
            raise KeyProblem("--rate must be above 0 and --burst at least 1")
        key_id = secrets.token_hex(6)
        token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        await self.collection.insert_one(
            {
                "_id": key_id,
                "channel": channel,
                "sha256": digest(token),
                "label": label,
                "rate": rate,
                "burst": burst,
                "created_at": datetime.now(UTC),
                "revoked_at": None,
            }
        )
        return token

    async def revoke(self, key: str) -> str:
        """Revoke a key given by its id or its full text; returns the id. Revoking twice is harmless."""
        key_id = _key_id(key) or key
        result = await self.collection.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        if result.matched_count == 0 and await self.collection.find_one({"_id": key_id}) is None:
            raise KeyProblem(f"no key with id {key_id!r}")
        return key_id

    async def list(self) -> list[dict[str, Any]]:
        """Every key's id, channel, label, limits and dates (never its hash)."""
        return [doc async for doc in self.collection.find({}, {"sha256": 0}).sort("created_at", 1)]

    async def find(self, token: str) -> ApiKey | None:
        """The record of a valid (known, not revoked) key, else None; an answer is reused for `cache_s` seconds."""
        hashed, now = digest(token), time.monotonic()
        cached = self.cache.get(hashed)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self._lookup(token, hashed)
        if len(self.cache) > 10_000:
            self.cache.clear()
        self.cache[hashed] = (now + self.cache_s, key)
        return key

    async def _lookup(self, token: str, hashed: str) -> ApiKey | None:
        key_id = _key_id(token)
        if key_id is None:
            return None
        doc = await self.collection.find_one({"_id": key_id})
        if doc is None or doc.get("revoked_at") is not None or not hmac.compare_digest(doc["sha256"], hashed):
            return None
        return ApiKey(key_id, doc["channel"], doc.get("rate"), doc.get("burst"))
