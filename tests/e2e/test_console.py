"""The console in Debian's headless Chromium (Selenium + chromium-driver) on the real servers and services: each
role signs in; a clerk keys in a phone order without a city, sees intake's reason next to the city field, corrects
it and sees received -> approved -> reserved; a reviewer approves from the review queue; customer service ships
part of a short order and backorders the rest; a supervisor approves a priority reallocation; a role is refused
an action outside it (403) and a form without its CSRF token (403). Screenshots of the queues and an order page
go to docs/."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from contracts import topics
from orderflow import bus, demo, sample
from orderflow.console.auth import ROLES
from tests.e2e.checks import statuses_until
from tests.e2e.console_proc import add_user, chromium, console

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSWORD = "e2e-console-password"
WAIT = 90.0
POST = """
const [path, fields, done] = arguments;
fetch(path, {method: "POST", body: new URLSearchParams(fields), redirect: "manual", credentials: "same-origin"})
  .then(async r => done([r.status, await r.text()]));
"""


class Browser:
    """The console in Chromium: sign in, open pages, fill forms, wait for what the page shows."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver, self.url = driver, url

    def sign_in(self, name: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.driver.find_element(By.NAME, "username").send_keys(name)
        self.driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        self.driver.find_element(By.ID, "sign-in").click()
        self.until(lambda d: d.find_elements(By.ID, "whoami"), "the home page after signing in")

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def until(self, check: Any, what: str, timeout: float = WAIT) -> Any:
        """Wait for `check`; an element the page re-rendered while it was read counts as not yet (check again)."""
        wait = WebDriverWait(
            self.driver, timeout, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException]
        )
        return wait.until(check, f"waited {timeout} s for {what}")

    def css(self, selector: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def fill(self, form: str, values: dict[str, str]) -> None:
        for name, value in values.items():
            el = self.driver.find_element(By.CSS_SELECTOR, f'{form} [name="{name}"]')
            if el.tag_name == "select":
                Select(el).select_by_visible_text(value)
            elif el.get_attribute("type") == "date":
                self.driver.execute_script("arguments[0].value = arguments[1]", el, value)
            else:
                el.clear()
                el.send_keys(value)

    def timeline(self) -> list[str]:
        return [r.get_attribute("data-status") for r in self.css("#timeline tr[data-status]")]

    def answer(self) -> str:
        """The service's answer to the command just sent (waits for it; the page reloads when it arrives)."""
        self.until(lambda d: d.find_elements(By.ID, "answer-status"), "the service's answer")
        return str(self.driver.find_element(By.ID, "answer-status").text)

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """POST a form from the page (as a forged or stale form would be), returning status and body."""
        status, body = self.driver.execute_async_script(POST, path, fields)
        return int(status), str(body)

    def from_queue(self, user: str, queue: str, order: str, shows: str) -> None:
        """Sign in, open the queue, check the order's row shows `shows`, save the screenshot, open the order."""
        self.sign_in(user)
        self.open(f"/queues/{queue}")
        row = self.css(f'tr[data-order="{order}"]')
        assert row, f"{order} is not in the {queue} queue"
        assert shows in row[0].text, row[0].text
        self.shot(f"console-queue-{queue}.png")
        row[0].find_element(By.TAG_NAME, "a").click()

    def shot(self, name: str) -> None:
        DOCS.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(DOCS / name))


def web_order(ref: str, sku: str, qty: int, customer: str, **changes: Any) -> dict[str, Any]:
    o = sample.order(ref, random.Random(ref), datetime.now(UTC), channel="web", customer=customer, skus=[sku], lines=1)
    line = {**o["lines"][0], "quantity": qty}
    total = f"{float(line['unit_price']) * qty:.2f}"
    return {**o, "lines": [line], "total_amount": total, **changes}


def key(order: dict[str, Any]) -> str:
    return f"{order['channel']}:{order['channel_order_ref']}"


async def test_console_in_headless_chromium(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag = uuid.uuid4().hex[:6]
    users = {role: f"{role.replace('_', '-')}-{tag}" for role in ROLES}
    for role, name in users.items():
        add_user(name, role, PASSWORD)

    # a scarce product for the shortage and one for the priority reallocation, 5 units each
    rare = next(p for p in sample.products() if p["sku"] == "LAMP-RARE")
    short, scarce = f"SHORT-{tag}", f"PRIO-{tag}"
    counts = [(s, {"type": "stock.counted", "version": 1, "event_id": f"count-{s}", "sku": s, "warehouse": "WH-EAST",
                   "on_hand": 5}) for s in (short, scarce)]  # fmt: skip
    async with bus.producer(bootstrap) as p:
        await bus.publish(
            p, topics.MASTERDATA_PRODUCTS, [(s, {**rare, "sku": s, "substitutes": []}) for s in (short, scarce)]
        )
        await bus.publish(p, topics.INVENTORY_MOVEMENTS, counts)
    assert await demo.wait_drained(bootstrap, print, 60, groups=("review", "inventory"))

    holder = web_order(f"HOLD-{tag}", scarce, 4, "C-1001")
    custom = web_order(f"CUSTOM-{tag}", "SKU-0001", 2, "C-1001")
    custom["special_requirements"] = {"packaging": None, "notes": "please engrave our logo"}
    shortage = web_order(f"SHORT-{tag}", short, 8, "C-1001")
    urgent = web_order(f"URGENT-{tag}", scarce, 3, "C-1003", priority="urgent")
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    commands_from = await bus.end_offsets(bootstrap, topics.ORDERS_COMMANDS)
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.ORDERS_SUBMITTED, [(key(o), o) for o in (holder, custom, shortage)])
        await statuses_until(
            bootstrap, start,
            {key(holder): "reserved", key(custom): "in_review", key(shortage): "awaiting_customer_decision"}, WAIT,
        )  # fmt: skip
        await bus.publish(p, topics.ORDERS_SUBMITTED, [(key(urgent), urgent)])
        await statuses_until(bootstrap, start, {key(urgent): "awaiting_priority_approval"}, WAIT)

    with console() as url, chromium() as driver:
        b = Browser(driver, url)
        for role, name in users.items():
            b.sign_in(name)
            assert b.css("#whoami")[0].get_attribute("data-role") == role
            assert bool(b.css("#new-order")) == (role in ("clerk", "customer_service", "admin"))

        # a clerk keys in a phone order without a city; intake's reason appears next to the city field
        b.sign_in(users["clerk"])
        b.open("/entry")
        ref = b.css('[name="channel_order_ref"]')[0].get_attribute("value")
        b.fill("#order-form", {
            "channel": "phone", "requested_date": (datetime.now(UTC) + timedelta(days=10)).date().isoformat(),
            "payment_method": "bank_transfer", "customer.customer_id": "C-1001", "customer.name": "Buyer Co.",
            "customer.contact_name": "Li Wei", "customer.phone": "+86 571 5550 1234",
            "ship_to.recipient": "Li Wei", "ship_to.line1": "88 Wensan Rd", "ship_to.postal_code": "310012",
            "lines[0].sku": "SKU-0001", "lines[0].product_name": "Product 1", "lines[0].spec": "STD",
            "lines[0].quantity": "2", "lines[0].unit_price": "11.00",
        })  # fmt: skip
        b.driver.find_element(By.ID, "add-line").click()
        b.fill("#order-form", {"lines[1].sku": "SKU-0002", "lines[1].quantity": "1"})
        b.css("#lines tr.line")[1].find_element(By.CLASS_NAME, "remove-line").click()  # added and removed again
        assert b.css('[name="total_amount"]')[0].get_attribute("value") == "22.00"  # the hint the script fills in
        b.driver.find_element(By.ID, "submit-order").click()
        city = '.field-reason[data-field="ship_to.city"]'
        b.until(lambda d: d.find_elements(By.CSS_SELECTOR, city), "intake's reason next to the city field")
        assert "ship_to.city" in b.css(city)[0].text
        b.shot("console-clarification.png")
        b.fill("#order-form", {"ship_to.city": "Hangzhou"})
        b.driver.find_element(By.ID, "submit-order").click()
        b.until(lambda d: {"received", "approved", "reserved"} <= set(b.timeline()), "received, approved, reserved")
        entered = b.timeline()
        assert entered.index("needs_clarification") < entered.index("received") < entered.index("approved")
        assert entered.index("approved") < entered.index("reserved")
        b.shot("console-order.png")
        b.open(f"/orders/phone:{ref}")
        assert b.css("#status")[0].get_attribute("data-status") == "reserved"

        # a reviewer approves the customised order from the review queue
        b.from_queue(users["reviewer"], "review", key(custom), "customisation_review")
        ActionChains(b.driver).double_click(b.driver.find_element(By.ID, "approve")).perform()  # sent once
        assert b.answer() == "approved"

        # customer service ships what is in stock and backorders the rest
        b.from_queue(users["customer_service"], "shortage", key(shortage), "ship_partial")
        b.fill("#shortage-form", {"choice": "ship_partial", "remainder": "backorder"})
        b.driver.find_element(By.ID, "send-decision").click()
        assert b.answer() == "backordered"

        # a supervisor approves the urgent order's reallocation (the holder loses two units)
        b.from_queue(users["supervisor"], "priority", key(urgent), "loses 2")
        b.driver.find_element(By.ID, "approve-priority").click()
        assert b.answer() == "reserved"

        # outside the role: 403; without the CSRF token: 403; neither sends anything
        b.sign_in(users["clerk"])
        b.open(f"/orders/{key(custom)}")
        csrf = b.css('meta[name="csrf"]')[0].get_attribute("content")
        form = {"key": key(urgent), "form_id": uuid.uuid4().hex, "decision": "approve"}
        status, body = b.post("/act/priority", {**form, "csrf": csrf})
        assert status == 403 and "may not approve priority reallocations" in body
        b.sign_in(users["supervisor"])
        status, body = b.post("/act/cancel", {**form, "reason": "forged"})
        assert status == 403 and "CSRF" in body
        b.open("/queues/stuck")

    sent = await bus.read(bootstrap, topics.ORDERS_COMMANDS, commands_from)  # one each: the double click too
    by_user = sorted((m["issued_by"], m["type"]) for m in sent)
    assert by_user == sorted([
        (users["reviewer"], "order.review-decision"), (users["customer_service"], "order.shortage-decision"),
        (users["supervisor"], "order.priority-approval"),
    ]), by_user  # fmt: skip
