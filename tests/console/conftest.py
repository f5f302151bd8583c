"""The console's application on a throwaway database of the real store, with a publisher that records what the
console would put on Kafka, driven over HTTP by httpx (no browser)."""

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from orderflow.console.app import Console, create_app, no_lifespan
from orderflow.console.auth import ROLES, Accounts
from orderflow.console.queues import STUCK
from orderflow.console.readmodel import ReadModel, Record
from orderflow.dashboard_state import parse_stuck

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM_ID = re.compile(r'name="form_id" value="([^"]+)"')


@dataclass
class Sent:
    """What the console published: (topic, key, message) in order."""

    messages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, topic: str, key: str, message: dict[str, Any]) -> None:
        self.messages.append((topic, key, message))


@dataclass
class Rig:
    """The console under test: its read model, what it sent, and a way to feed it statuses."""

    console: Console
    sent: Sent
    offset: int = 0

    async def feed(self, topic: str, key: str, *messages: dict[str, Any]) -> None:
        """Give the read model messages as its consumer would (one partition, growing offsets)."""
        records = []
        for msg in messages:
            self.offset += 1
            records.append(Record(topic, 0, self.offset, key, msg, 1_700_000_000_000))
        await self.console.model.apply(records)


@pytest.fixture
async def rig(servers: dict[str, str]) -> AsyncIterator[Rig]:
    """A console on a fresh database with one user per role (named after the role) and the dashboard's stuck rule."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers["MONGODB_URI"], tz_aware=True)
    name = f"t_console_{uuid.uuid4().hex[:10]}"
    db = client[name]
    model, accounts = ReadModel(db), Accounts(db)
    for role in ROLES:
        await accounts.add(role.replace("_", "-"), role, PASSWORD)
    sent = Sent()
    yield Rig(Console(model, accounts, sent, parse_stuck(STUCK)), sent)
    await client.drop_database(name)
    await client.close()


@pytest.fixture
async def web(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTPS client of the console app (Secure cookies travel over https only)."""
    transport = httpx.ASGITransport(app=create_app(rig.console, no_lifespan))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as c:
        yield c


async def login(web: httpx.AsyncClient, role: str) -> str:
    """Sign in as the user of `role`; returns the session's CSRF token."""
    page = await web.get("/login")
    res = await web.post(
        "/login", data={"username": role.replace("_", "-"), "password": PASSWORD, "csrf": CSRF.findall(page.text)[0]}
    )
    assert res.status_code == 303 and res.headers["location"] == "/", res.text
    home = await web.get("/")
    token: str = CSRF.findall(home.text)[0]
    return token
