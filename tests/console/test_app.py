"""The console over HTTP: role checks on the server, CSRF on every form, a resubmitted form sent once, field
reasons next to the fields, the command's answer (refusals too), security headers, the login rate limit."""

from typing import Any

import httpx
import pytest
import structlog.testing

from orderflow.commands import answer_ids
from tests.console.conftest import CSRF, FORM_ID, PASSWORD, Rig, login

KEY = "phone:PH-7"
FORM = "0123456789abcdef0123456789abcdef"


def in_review(event_id: str = "s1") -> dict[str, Any]:
    return {"type": "order.status", "version": 1, "event_id": event_id, "channel": "phone", "channel_order_ref": "PH-7",
            "status": "in_review", "occurred_at": "2026-12-03T10:00:00+00:00", "order_number": "SO-20261203-000007",
            "reasons": [{"code": "customisation_review", "field": "special_requirements.notes", "message": "logo"}],
            "details": {}}  # fmt: skip


def order_form(**changes: str) -> dict[str, str]:
    form = {
        "channel": "phone", "channel_order_ref": "PH-7", "revision": "1", "form_id": FORM,
        "customer.customer_id": "C-1001", "customer.name": "Buyer Co.", "customer.contact_name": "Li Wei",
        "customer.phone": "+86 571 5550 1234", "ship_to.recipient": "Li Wei", "ship_to.line1": "88 Wensan Rd",
        "ship_to.city": "", "ship_to.postal_code": "310012", "ship_to.country": "CN",
        "lines[0].sku": "SKU-0001", "lines[0].product_name": "Product 1", "lines[0].spec": "STD",
        "lines[0].quantity": "2", "lines[0].uom": "EA", "lines[0].unit_price": "11.00",
        "lines[1].sku": "", "lines[1].quantity": "", "currency": "CNY", "total_amount": "22.00",
        "payment_method": "bank_transfer", "requested_date": "2030-01-10", "priority": "normal",
    }  # fmt: skip
    return {**form, **changes}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("clerk", False), ("customer_service", False), ("reviewer", True), ("supervisor", True), ("admin", True)],
)
async def test_a_review_decision_is_checked_against_the_role_on_the_server(
    rig: Rig, web: httpx.AsyncClient, role: str, allowed: bool
) -> None:
    await rig.feed("orders.status", KEY, in_review())
    csrf = await login(web, role)
    res = await web.post("/act/review", data={"csrf": csrf, "form_id": FORM, "key": KEY, "decision": "approve"})
    if allowed:
        assert res.status_code == 303
        [(topic, key, cmd)] = rig.sent.messages
        assert (topic, key, cmd["type"]) == ("orders.commands", KEY, "order.review-decision")
        assert cmd["decision"] == "approve"
        assert (cmd["command_id"], cmd["issued_by"]) == (f"console-{FORM}", role.replace("_", "-"))
    else:
        assert res.status_code == 403 and f"Your role ({role}) may not decide reviews" in res.text
        assert rig.sent.messages == []


async def test_the_review_form_is_shown_only_to_roles_that_may_review(rig: Rig, web: httpx.AsyncClient) -> None:
    await rig.feed("orders.status", KEY, in_review())
    await login(web, "clerk")
    assert 'id="review-form"' not in (await web.get(f"/orders/{KEY}")).text
    await login(web, "reviewer")
    assert 'id="review-form"' in (await web.get(f"/orders/{KEY}")).text


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_a_form_without_its_csrf_token_is_refused(rig: Rig, web: httpx.AsyncClient, token: str | None) -> None:
    await rig.feed("orders.status", KEY, in_review())
    await login(web, "admin")
    data = {"form_id": FORM, "key": KEY, "decision": "approve", **({"csrf": token} if token is not None else {})}
    for path in ("/act/review", "/act/cancel", "/entry"):
        res = await web.post(path, data={**order_form(), **data} if path == "/entry" else data)
        assert res.status_code == 403 and "CSRF" in res.text, path
    assert rig.sent.messages == []


async def test_the_sign_in_form_needs_its_csrf_token(web: httpx.AsyncClient) -> None:
    res = await web.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": "guessed"})
    assert res.status_code == 403 and "orderflow_session" not in res.headers.get("set-cookie", "")


async def test_a_double_click_or_resubmitted_decision_is_sent_once(rig: Rig, web: httpx.AsyncClient) -> None:
    await rig.feed("orders.status", KEY, in_review())
    csrf = await login(web, "reviewer")
    page = await web.get(f"/orders/{KEY}")
    form_id = FORM_ID.findall(page.text)[0]
    data = {"csrf": csrf, "form_id": form_id, "key": KEY, "decision": "approve"}
    first, second = await web.post("/act/review", data=data), await web.post("/act/review", data=data)
    assert first.headers["location"] == second.headers["location"] == f"/orders/{KEY}?sent=console-{form_id}"
    assert len(rig.sent.messages) == 1
    await web.post("/act/review", data={**data, "form_id": FORM_ID.findall((await web.get(f"/orders/{KEY}")).text)[0]})
    assert len(rig.sent.messages) == 2, "a fresh form is a new command"


async def test_an_order_entered_twice_by_double_click_is_submitted_once_with_the_clerk(
    rig: Rig, web: httpx.AsyncClient
) -> None:
    csrf = await login(web, "clerk")
    for _ in range(2):
        res = await web.post("/entry", data={**order_form(), "csrf": csrf})
        assert res.status_code == 303 and res.headers["location"] == f"/orders/{KEY}?sent=entry-{FORM}"
    [(topic, key, body)] = rig.sent.messages
    assert (topic, key, body["entered_by"], body["revision"]) == ("orders.submitted", KEY, "clerk", 1)
    assert body["ship_to"]["city"] is None and body["lines"] == [
        {"line_no": 1, "sku": "SKU-0001", "product_name": "Product 1", "spec": "STD", "quantity": 2, "uom": "EA",
         "unit_price": "11.00"}
    ]  # fmt: skip


async def test_intakes_reasons_appear_next_to_the_fields_and_the_correction_is_revision_2(
    rig: Rig, web: httpx.AsyncClient
) -> None:
    csrf = await login(web, "clerk")
    await web.post("/entry", data={**order_form(), "csrf": csrf})
    [(_, _, body)] = rig.sent.messages
    await rig.feed("orders.submitted", KEY, body)
    held = {**in_review("h1"), "status": "needs_clarification", "reasons": [
        {"code": "missing", "field": "ship_to.city", "message": "The city (ship_to.city) is missing; please provide."}
    ]}  # fmt: skip
    await rig.feed("orders.status", KEY, held)
    page = await web.get(f"/orders/{KEY}")
    assert 'data-field="ship_to.city">The city (ship_to.city) is missing; please provide.' in page.text
    assert 'name="revision" value="2"' in page.text
    form_id = FORM_ID.findall(page.text)[0]
    res = await web.post("/entry", data={**order_form(), "ship_to.city": "Hangzhou", "revision": "2",
                                         "form_id": form_id, "csrf": csrf})  # fmt: skip
    assert res.status_code == 303
    _, _, fixed = rig.sent.messages[-1]
    assert (fixed["revision"], fixed["channel_order_ref"], fixed["ship_to"]["city"]) == (2, "PH-7", "Hangzhou")


async def test_a_new_order_with_a_reference_in_use_is_refused(rig: Rig, web: httpx.AsyncClient) -> None:
    await rig.feed("orders.status", KEY, in_review())
    csrf = await login(web, "clerk")
    res = await web.post("/entry", data={**order_form(), "csrf": csrf})
    assert res.status_code == 409 and "exists already" in res.text and rig.sent.messages == []


async def test_the_page_shows_the_services_answer_including_a_refusal(rig: Rig, web: httpx.AsyncClient) -> None:
    await rig.feed("orders.status", KEY, in_review())
    csrf = await login(web, "customer_service")
    res = await web.post("/act/cancel", data={"csrf": csrf, "form_id": FORM, "key": KEY, "reason": "asked"})
    target = res.headers["location"]
    assert "waiting for the service" in (await web.get(target)).text
    refusal = {**in_review(), "event_id": sorted(answer_ids(f"console-{FORM}"))[0], "status": "shipped",
               "details": {"refused": True}, "occurred_at": "2026-12-03T10:00:09+00:00",
               "reasons": [{"code": "already_shipped", "field": None, "message": "the order has shipped"}]}  # fmt: skip
    await rig.feed("orders.status", KEY, refusal)
    page = (await web.get(target)).text
    assert "(refused)" in page and "already_shipped" in page
    assert (await rig.console.model.order(KEY) or {})["status"] == "in_review"


async def test_pages_need_a_session_and_carry_security_headers(web: httpx.AsyncClient) -> None:
    assert (await web.get("/queues/review")).status_code == 401
    assert (await web.get("/")).headers["location"] == "/login"
    page = await web.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    res = await web.post("/login", data={"username": "admin", "password": PASSWORD,
                                         "csrf": CSRF.findall(page.text)[0]})  # fmt: skip
    cookie = res.headers["set-cookie"].lower()
    assert "orderflow_session=" in cookie and "httponly" in cookie
    assert "secure" in cookie and "samesite=strict" in cookie


async def test_failed_sign_ins_are_rate_limited(web: httpx.AsyncClient) -> None:
    for _ in range(5):
        page = await web.get("/login")
        res = await web.post("/login", data={"username": "admin", "password": "wrong password!",
                                             "csrf": CSRF.findall(page.text)[0]})  # fmt: skip
        assert res.headers["location"] == "/login?error=1"
    page = await web.get("/login")
    res = await web.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": CSRF.findall(page.text)[0]})
    assert res.status_code == 429 and "Too many failed sign-ins" in res.text


async def test_a_disabled_user_loses_the_session(rig: Rig, web: httpx.AsyncClient) -> None:
    await login(web, "reviewer")
    assert (await web.get("/queues/review")).status_code == 200
    await rig.console.accounts.disable("reviewer")
    assert (await web.get("/queues/review")).status_code == 401


async def test_the_console_logs_no_customer_contact_data(rig: Rig, web: httpx.AsyncClient) -> None:
    csrf = await login(web, "clerk")
    with structlog.testing.capture_logs() as logs:
        await web.post("/entry", data={**order_form(), "csrf": csrf, "customer.email": "buyer@example.com"})
        await web.get("/search", params={"q": "Buyer Co."})
        await web.get("/queues/clarification", params={"customer": "Li Wei"})
    assert any(e.get("event") == "order_entered" for e in logs) and rig.sent.messages
    text = repr(logs)
    for contact in ("Li Wei", "+86 571", "buyer@example.com", "88 Wensan", "Buyer Co"):
        assert contact not in text, contact
