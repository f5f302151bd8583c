"""The HTTP gateway as a process on the real servers, in front of the four services: accepted orders reach
their status, each refusal is problem JSON naming what is wrong, concurrent repeats make no extra order."""

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import registry, topics
from orderflow import bus, lag, sample
from tests.e2e.gateway_proc import new_key, revoke, running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(system: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway's base URL, its status reader starting at the end of orders.status."""
    asyncio.run(lag.start_at_end(system["KAFKA_BOOTSTRAP_SERVERS"], {"gateway": (topics.ORDERS_STATUS,)}))
    with running(system, tmp_path_factory.mktemp("gateway") / "gateway.log") as url:
        yield url


def order(ref: str, channel: str = "web") -> dict[str, Any]:
    """A complete order (reserved once the services have it) from `channel`."""
    return sample.order(ref, random.Random(ref), datetime.now(UTC), channel=channel)


def command(kind: str, ref: str, **fields: Any) -> dict[str, Any]:
    """A command of `kind` from the web shop about order web:`ref`."""
    return {
        "type": kind,
        "version": 1,
        "command_id": uuid.uuid4().hex,
        "channel": "web",
        "channel_order_ref": ref,
        "issued_by": "shop",
        "issued_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def until(http: httpx.AsyncClient, url: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The order's view once `done` holds (long-polling, up to two minutes), else the last one read."""
    view: dict[str, Any] = {}
    for _ in range(12):
        view = (await http.get(url, params={"wait": 10})).json()
        if done(view):
            break
    return view


def problem(res: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of a refusal with `status`."""
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = res.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("/problems/")
    return body


async def test_an_accepted_order_reaches_reserved(system: dict[str, str], gateway: str) -> None:
    key = await new_key(system, "web")
    ref = f"GW-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway, headers=auth(key), timeout=40) as http:
        res = await http.post("/v1/orders", json=order(ref))
        assert res.status_code == 202, res.text
        assert res.headers["location"] == f"/v1/orders/web/{ref}" == res.json()["status_url"]
        view = await until(http, res.headers["location"], lambda v: v["status"] == "reserved")
        assert view["status"] == "reserved"
        assert view["order_number"].startswith("SO-") and view["revision"] == 1


async def test_each_refusal_is_problem_json_naming_what_is_wrong(system: dict[str, str], gateway: str) -> None:
    web, edi = await new_key(system, "web"), await new_key(system, "edi")
    ref = f"GW-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway, timeout=40) as http:
        assert problem(await http.post("/v1/orders", json=order(ref)), 401)["type"] == "/problems/no-key"

        lines = [{"sku": "A\u0000"}]
        body = problem(await http.post("/v1/orders", json={**order(ref), "lines": lines}, headers=auth(web)), 422)
        assert body["field"] == "lines[0].sku" and "U+0000" in body["detail"]
        body = problem(await http.post("/v1/orders", json={**order(ref), "version": 2}, headers=auth(web)), 422)
        assert body["field"] == "version"
        many = {**order(ref), "lines": [{"line_no": i} for i in range(registry.MAX_ORDER_LINES + 1)]}
        assert problem(await http.post("/v1/orders", json=many, headers=auth(web)), 422)["field"] == "lines"

        body = problem(await http.post("/v1/orders", json=order(ref, "edi"), headers=auth(web)), 403)
        assert body["field"] == "channel" and body["type"] == "/problems/wrong-channel"
        assert problem(await http.get(f"/v1/orders/web/{ref}", headers=auth(edi)), 403)["field"] == "channel"

        huge = json.dumps({**order(ref), "special_requirements": {"notes": "x" * registry.MAX_MESSAGE_BYTES}})
        headers = {**auth(web), "Content-Type": "application/json"}
        assert (
            problem(await http.post("/v1/orders", content=huge, headers=headers), 413)["type"] == "/problems/too-large"
        )

        assert (await http.post("/v1/orders", json=order(ref), headers=auth(web))).status_code == 202
        changed = {**order(ref), "priority": "urgent"}
        body = problem(await http.post("/v1/orders", json=changed, headers=auth(web)), 409)
        assert body["field"] == "revision"
        body = problem(await http.post(f"/v1/orders/web/{ref}/revisions", json=order(ref), headers=auth(web)), 422)
        assert body["field"] == "revision"
        other = {**order(ref), "channel_order_ref": "ELSEWHERE", "revision": 2}
        body = problem(await http.post(f"/v1/orders/web/{ref}/revisions", json=other, headers=auth(web)), 422)
        assert body["field"] == "channel_order_ref"
        review = command("order.review-decision", ref, decision="approve")
        assert problem(await http.post("/v1/commands", json=review, headers=auth(web)), 422)["field"] == "type"
        body = problem(await http.get(f"/v1/orders/web/{ref}", params={"wait": 999}, headers=auth(web)), 422)
        assert body["field"] == "wait"
        assert problem(await http.get("/v1/orders/web/NO-SUCH", headers=auth(web)), 404)

        await revoke(system, web)
        await asyncio.sleep(1.2)  # the gateway reuses a key's record for up to GATEWAY_KEY_CACHE (1 s)
        assert (
            problem(await http.post("/v1/orders", json=order(ref), headers=auth(web)), 401)["type"]
            == "/problems/bad-key"
        )

        slow = await new_key(system, "web", rate=0.2, burst=2)
        for _ in range(2):
            assert (await http.get(f"/v1/orders/web/{ref}", headers=auth(slow))).status_code == 200
        res = await http.get(f"/v1/orders/web/{ref}", headers=auth(slow))
        assert problem(res, 429)["type"] == "/problems/rate-limited"
        assert int(res.headers["retry-after"]) >= 1


async def test_a_revision_and_a_cancel_reach_the_services(system: dict[str, str], gateway: str) -> None:
    key = await new_key(system, "web")
    ref = f"GW-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway, headers=auth(key), timeout=40) as http:
        assert (await http.post("/v1/orders", json=order(ref))).status_code == 202
        fixed = {**order(ref), "revision": 2}
        res = await http.post(f"/v1/orders/web/{ref}/revisions", json=fixed)
        assert res.status_code == 202 and res.json()["revision"] == 2
        assert (await until(http, res.headers["location"], lambda v: v["revision"] == 2))["revision"] == 2
        cancel = command("order.cancel", ref, reason="customer asked")
        res = await http.post("/v1/commands", json=cancel)
        assert res.status_code == 202 and res.headers["location"] == f"/v1/orders/web/{ref}"
        assert (await until(http, res.headers["location"], lambda v: v["status"] == "cancelled"))[
            "status"
        ] == "cancelled"


async def test_1000_concurrent_submissions_with_10_percent_repeats_make_1000_orders(
    system: dict[str, str], gateway: str
) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    key = await new_key(system, "web", rate=10_000, burst=2_000)
    tag = uuid.uuid4().hex[:6]
    orders = [order(f"GW-{tag}-{i:04d}") for i in range(1000)]
    sends = orders + random.Random(tag).sample(orders, 100)
    random.Random(tag).shuffle(sends)
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=gateway, headers=auth(key), timeout=300, limits=limits) as http:
        answers = await asyncio.gather(*(http.post("/v1/orders", json=o) for o in sends))
    assert Counter(a.status_code for a in answers) == {202: 1100}
    assert sum(a.json()["replayed"] for a in answers) == 100
    keys = {f"web:{o['channel_order_ref']}" for o in orders}
    received: dict[str, set[str]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5):
        if msg.get("_key") in keys and msg["status"] == "received":
            received.setdefault(msg["_key"], set()).add(msg["order_number"])
        if len(received) == len(keys) or loop.time() > deadline:
            break
    await asyncio.sleep(3.0)  # a duplicate order, if any, would be numbered by now
    for msg in await bus.read(bootstrap, topics.ORDERS_STATUS, start):
        if msg.get("_key") in keys and msg["status"] == "received":
            received.setdefault(msg["_key"], set()).add(msg["order_number"])
    numbers = [n for ns in received.values() for n in ns]
    assert len(received) == 1000, f"{1000 - len(received)} orders not received"
    assert len(numbers) == len(set(numbers)) == 1000, "an order was numbered twice"


def test_log_holds_no_customer_data(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    log = Path(tmp_path_factory.getbasetemp()) / "gateway0" / "gateway.log"
    text = log.read_text()
    assert "order accepted" in text
    for secret in ("liwei@example.com", "contact_name", "ship_to"):
        assert secret not in text
