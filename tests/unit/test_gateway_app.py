"""The gateway's OpenAPI document in docs/ is the one the code generates, with the contract's own schemas as
request bodies; the per-key rate limit lets a burst through, then the rate; a store that does not answer is a
503 problem, never a server error."""

import json
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from contracts.public import OrderCancel, OrderSubmitted
from orderflow.dev import stack
from orderflow.gateway import app as gateway_app
from orderflow.gateway import openapi
from orderflow.gateway.app import PROBLEM, RateLimiter, create_app
from orderflow.gateway.keys import ApiKey
from orderflow.gateway.settings import GatewaySettings


def test_the_checked_in_openapi_document_is_fresh() -> None:
    assert openapi.PATH.read_text() == openapi.render(), "run `python -m orderflow.gateway.openapi` (make docs)"


def test_request_bodies_are_the_contract_models_and_refusals_problem_json() -> None:
    doc = json.loads(openapi.render())
    schemas = doc["components"]["schemas"]
    assert schemas["order.submitted"] == OrderSubmitted.model_json_schema(mode="validation")
    assert schemas["order.cancel"] == OrderCancel.model_json_schema(mode="validation")
    post = doc["paths"]["/v1/orders"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/order.submitted"}
    assert set(post["responses"]) == {"202", "401", "403", "409", "413", "415", "422", "429", "503"}
    assert post["responses"]["422"]["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_rate_limit_lets_a_burst_through_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    key = ApiKey("k1", "web", None, None)
    assert [limiter.take(key) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take(key) == 0.5
    now[0] += 0.5
    assert limiter.take(key) == 0.0
    slow = ApiKey("k2", "web", 0.1, 1)
    assert limiter.take(slow) == 0.0 and limiter.take(slow) == 10.0


async def test_an_unreachable_store_is_503_problem_json_not_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def impatient(settings: GatewaySettings) -> AsyncMongoClient[dict[str, Any]]:  # gives up in 0.3 s, not 5 s
        return AsyncMongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=300)

    monkeypatch.setattr(gateway_app, "mongo_client", impatient)
    settings = GatewaySettings().model_copy(update={"mongodb_uri": f"mongodb://127.0.0.1:{stack.unused_port()}/"})
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        res = await http.get("/v1/orders/web/X", headers={"Authorization": "Bearer ofk_abc_def"})
    assert res.status_code == 503 and res.headers["content-type"] == PROBLEM
    assert res.json()["type"] == "/problems/store-unavailable" and res.headers["retry-after"] == "5"
