"""Review's handlers on the in-memory broker and store: rules, manual queue, credit exposure, duplicates."""

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo.errors import ConnectionFailure

from contracts import topics
from contracts.public import InvoiceRequested
from services.review import store
from services.review.app import CONSUMES, NAME, build_for
from services.review.config import ReviewSettings
from services.runtime.batch import Batch
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import Doc
from services.runtime.steps import Decision, load
from tests.factories import NOW, command, customer, product
from tests.handlers.events import accepted, cancelled, number, okey, wire
from tests.handlers.harness import Harness

CREDIT = "C-2001"  # a credit customer with a small limit: 1000.00, nothing outstanding


@pytest.fixture
async def review() -> AsyncIterator[Harness]:
    async with Harness(NAME, CONSUMES, build_for(ReviewSettings())) as h:
        for sku in ("SKU-0001", "SKU-0002"):
            await h.send(topics.MASTERDATA_PRODUCTS, product(sku), sku)
        for cust in (
            customer("C-1001"),
            customer("C-9999", status="blocked"),
            customer(CREDIT, credit_limit="1000.00", outstanding_balance="0.00"),
        ):
            await h.send(topics.MASTERDATA_CUSTOMERS, cust, cust["customer_id"])
        yield h


async def exposure(h: Harness, cid: str = "C-1001") -> tuple[int, dict[str, int]]:
    return await store.exposure(h.store, cid)


async def send_accepted(h: Harness, ref: str, **kw: Any) -> None:
    await h.send(topics.ORDERS_ACCEPTED, wire(accepted(ref, **kw)), okey(ref))


async def decide(h: Harness, ref: str, cid: str, decision: str = "approve", **kw: Any) -> None:
    await h.send(topics.ORDERS_COMMANDS, command("order.review-decision", ref, cid, decision=decision, **kw), okey(ref))


def codes(status: dict[str, Any]) -> list[str]:
    return [r["code"] for r in status["reasons"]]


async def test_clean_order_is_approved_with_packaging_charges(review: Harness) -> None:
    await send_accepted(review, "R-1", special={"packaging": "export_carton", "notes": "deliver before noon"})
    [st] = review.out[topics.ORDERS_STATUS]
    assert st["status"] == "approved" and st["order_number"] == number("R-1") and st["decided_by"]
    [ev] = review.out[topics.ORDERS_APPROVED]
    assert ev["_key"] == okey("R-1") and ev["packaging"] == "export_carton"
    assert [(c["code"], c["amount"]) for c in ev["charges"]] == [("packaging:export_carton", "2.00")]
    assert ev["total_amount"] == "112.00" == st["details"]["total_amount"]  # 10 x 11.00 + 10 x 0.20
    assert ev["lines"][0]["sku"] == "SKU-0001" and ev["lines"][0]["quantity"] == 10
    assert await exposure(review) == (11200, {number("R-1"): 11200})


async def test_blocked_customer_is_rejected(review: Harness) -> None:
    await send_accepted(review, "R-2", customer="C-9999")
    [st] = review.out[topics.ORDERS_STATUS]
    assert st["status"] == "rejected" and "customer_blocked" in codes(st)
    assert not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review, "C-9999") == (0, {})


async def test_unknown_sku_is_rejected_naming_the_line(review: Harness) -> None:
    await send_accepted(review, "R-3", lines=[("SKU-0001", 1, "11.00"), ("SKU-0042", 1, "52.00")])
    [st] = review.out[topics.ORDERS_STATUS]
    assert st["status"] == "rejected"
    assert {"code": "unknown_sku", "field": "lines[1].sku"} in [
        {"code": r["code"], "field": r["field"]} for r in st["reasons"]
    ]
    assert not review.out[topics.ORDERS_APPROVED]


async def test_credit_near_limit_is_queued_then_approved_by_a_reviewer(review: Harness) -> None:
    await send_accepted(review, "R-4", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])  # 1045.00 of 1000.00
    [queued] = review.out[topics.ORDERS_STATUS]
    assert queued["status"] == "in_review" and codes(queued) == ["credit_review"]
    assert not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review, CREDIT) == (0, {})

    await decide(review, "R-4", "cmd-r4")
    assert review.statuses() == ["in_review", "approved"]
    approved = review.out[topics.ORDERS_STATUS][-1]
    assert approved["decided_by"] == "supervisor-1" and approved["order_number"] == number("R-4")
    [ev] = review.out[topics.ORDERS_APPROVED]
    assert ev["total_amount"] == "1045.00" and ev["order_number"] == number("R-4")
    assert await exposure(review, CREDIT) == (104500, {number("R-4"): 104500})


async def test_reviewer_rejection_records_the_reasons(review: Harness) -> None:
    await send_accepted(review, "R-5", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])
    await decide(review, "R-5", "cmd-r5", decision="reject", reasons=["customer owes too much"])
    last = review.out[topics.ORDERS_STATUS][-1]
    assert last["status"] == "rejected" and codes(last) == ["reviewer_rejected"]
    assert last["reasons"][0]["message"] == "customer owes too much"
    assert not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review, CREDIT) == (0, {})


async def test_decision_for_an_order_not_queued_is_refused(review: Harness) -> None:
    await send_accepted(review, "R-6")  # approved by the rules: not in the queue
    review.clear()
    await decide(review, "R-6", "cmd-r6")
    [st] = review.out[topics.ORDERS_STATUS]
    assert codes(st) == ["not_in_review_queue"] and st["details"] == {"refused": "order.review-decision"}
    assert st["status"] == "approved" and st["order_number"] == number("R-6")
    assert not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review) == (11000, {number("R-6"): 11000})


async def test_decision_for_an_unknown_order_is_refused_and_records_nothing(review: Harness) -> None:
    await decide(review, "R-NOPE", "cmd-nope")
    [st] = review.out[topics.ORDERS_STATUS]
    assert codes(st) == ["unknown_order"] and st["details"] == {"refused": "order.review-decision"}
    assert st["status"] == "invalid" and st["order_number"] is None and st["_key"] == okey("R-NOPE")
    assert st["decided_by"] == "supervisor-1"
    assert store.ORDERS.key(okey("R-NOPE")) not in review.memory.rows
    assert not review.out[topics.ORDERS_APPROVED]


async def test_a_refused_decision_leaves_nothing_a_later_real_order_inherits(review: Harness) -> None:
    await decide(review, "R-LATE", "cmd-early")
    await send_accepted(review, "R-LATE", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])
    assert review.statuses() == ["invalid", "in_review"]
    await decide(review, "R-LATE", "cmd-early")  # the same command, redelivered: decided afresh, now applies
    assert review.statuses() == ["invalid", "in_review", "approved"]
    assert await exposure(review, CREDIT) == (104500, {number("R-LATE"): 104500})


async def test_cancellation_releases_exposure(review: Harness) -> None:
    await send_accepted(review, "R-7")
    await send_accepted(review, "R-8")
    assert (await exposure(review))[0] == 2 * 11000
    await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-7")), okey("R-7"))
    assert await exposure(review) == (11000, {number("R-8"): 11000})
    assert not review.out[topics.ORDERS_STATUS][2:]  # fulfillment answers the channel, not review
    assert review.memory.rows[store.ORDERS.key(okey("R-7"))]["state"]["status"] == "cancelled"


async def test_cancelled_order_is_not_reviewed_again(review: Harness) -> None:
    await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-9")), okey("R-9"))
    await send_accepted(review, "R-9")
    assert review.statuses() == [] and not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review) == (0, {})


@contextmanager
def interrupted_after_the_credit(h: Harness) -> Iterator[None]:
    """The next batch writes its credit documents (written first), then dies before its order documents; the
    message is then delivered again, as Kafka does after a crash (the offset was not committed)."""
    real, calls = h.memory.save_many, []

    async def save_many(docs: Iterable[Doc]) -> list[Doc]:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionFailure("the store went away after the credit write")
        return await real(docs)

    h.memory.save_many = save_many  # type: ignore[method-assign]
    try:
        yield
    finally:
        h.memory.save_many = real  # type: ignore[method-assign]
    assert len(calls) >= 2, "the batch never reached its order write"


async def send_interrupted(h: Harness, topic: str, value: bytes, key: str) -> None:
    with interrupted_after_the_credit(h), contextlib.suppress(ConnectionFailure):
        await h.send(topic, value, key)


async def test_an_approval_interrupted_before_its_order_write_is_claimed_once_when_replayed(review: Harness) -> None:
    await send_accepted(review, "R-0")
    await send_interrupted(review, topics.ORDERS_ACCEPTED, wire(accepted("R-X")), okey("R-X"))
    assert (await exposure(review))[0] == 2 * 11000  # the credit was written, the order was not
    assert store.ORDERS.key(okey("R-X")) not in review.memory.rows
    await send_accepted(review, "R-X")  # the redelivery
    assert await exposure(review) == (2 * 11000, {number("R-0"): 11000, number("R-X"): 11000})
    await send_accepted(review, "R-X")  # and a duplicate after it
    assert await exposure(review) == (2 * 11000, {number("R-0"): 11000, number("R-X"): 11000})
    assert review.statuses().count("approved") == 2


async def test_another_replica_replaying_an_interrupted_approval_claims_once(review: Harness) -> None:
    await send_interrupted(review, topics.ORDERS_ACCEPTED, wire(accepted("R-R")), okey("R-R"))
    async with Harness(NAME, CONSUMES, build_for(ReviewSettings())) as other:  # the partition moved to it
        other.store = other.processor.store = MemoryDocStore(review.memory.rows, review.memory.markers)
        await other.send(topics.MASTERDATA_CUSTOMERS, customer("C-1001"), "C-1001")  # its memory, not the store
        await other.send(topics.MASTERDATA_PRODUCTS, product("SKU-0001"), "SKU-0001")
        await other.send(topics.ORDERS_ACCEPTED, wire(accepted("R-R")), okey("R-R"))
        assert other.statuses() == ["approved"]
    assert await exposure(review) == (11000, {number("R-R"): 11000})


async def test_a_cancel_interrupted_before_its_order_write_releases_once_when_replayed(review: Harness) -> None:
    await send_accepted(review, "R-Y")
    await send_accepted(review, "R-Z")
    await send_interrupted(review, topics.ORDERS_CANCELLED, wire(cancelled("R-Y")), okey("R-Y"))
    assert (await exposure(review))[0] == 11000  # released on the credit; the order still says it holds it
    await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-Y")), okey("R-Y"))
    assert await exposure(review) == (11000, {number("R-Z"): 11000})


async def test_an_amendment_interrupted_before_its_order_write_replaces_the_claim_once(review: Harness) -> None:
    await send_accepted(review, "R-A")
    amended = wire(accepted("R-A", revision=2, lines=[("SKU-0001", 20, "11.00")], confirmation="FAX-7"))
    await send_interrupted(review, topics.ORDERS_ACCEPTED, amended, okey("R-A"))
    assert (await exposure(review))[0] == 22000
    await review.send(topics.ORDERS_ACCEPTED, amended, okey("R-A"))
    assert await exposure(review) == (22000, {number("R-A"): 22000})


async def test_a_claim_left_by_an_interrupted_batch_is_released_when_the_cancelled_order_comes_back(
    review: Harness,
) -> None:
    # the credit document was written, the batch died before the order document: then the cancel came first
    await send_interrupted(review, topics.ORDERS_ACCEPTED, wire(accepted("R-X")), okey("R-X"))
    await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-X")), okey("R-X"))
    assert await exposure(review) == (11000, {})  # review cannot tell whose claim it is yet
    await send_accepted(review, "R-X")  # the interrupted batch, redelivered
    assert await exposure(review) == (0, {}) and review.statuses() == []


async def test_the_credit_document_does_not_grow_with_open_orders(review: Harness) -> None:
    for i in range(30):
        await send_accepted(review, f"R-G{i}")
    assert await exposure(review) == (30 * 11000, {number(f"R-G{i}"): 11000 for i in range(30)})
    credit = review.memory.rows[store.CREDITS.key("C-1001")]
    assert credit["inbox"] == [] and set(credit["state"]) == {"total", "ops"}
    # this harness consumes every record at offset 0: a later batch cannot tell the earlier ones completed, so
    # the record keeps one op per input here; with real offsets it keeps only batches still in flight
    # (tests/unit/test_review_credit.py)
    assert all(op["n"].startswith(number("R-G")) for op in credit["state"]["ops"].values())


async def test_cancellation_removes_an_order_from_the_queue(review: Harness) -> None:
    await send_accepted(review, "R-10", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])
    await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-10")), okey("R-10"))
    await decide(review, "R-10", "cmd-r10")
    last = review.out[topics.ORDERS_STATUS][-1]
    assert codes(last) == ["not_in_review_queue"] and last["status"] == "cancelled"
    assert not review.out[topics.ORDERS_APPROVED]
    assert await exposure(review, CREDIT) == (0, {})


def invoice(ref: str, cid: str = "C-1001", amount: str = "110.00") -> bytes:
    return wire(
        InvoiceRequested(
            event_id=f"invoice-{ref}",
            order_number=number(ref),
            customer_id=cid,
            currency="CNY",
            lines=[],
            total_amount=Decimal(amount),
            delivered_at=NOW,
        )
    )


async def test_invoice_request_releases_exposure(review: Harness) -> None:
    await send_accepted(review, "R-11")
    await send_accepted(review, "R-12")
    await review.send(topics.FINANCE_INVOICE_REQUESTS, invoice("R-11"), number("R-11"))
    assert await exposure(review) == (11000, {number("R-12"): 11000})


async def test_the_invoices_of_one_batch_load_their_orders_in_one_round_trip(review: Harness) -> None:
    refs = ["R-B1", "R-B2", "R-B3"]
    for ref in refs:
        await send_accepted(review, ref)
    loads: list[list[str]] = []
    load_many = review.store.load_many

    async def counted(keys: Iterable[str]) -> dict[str, Doc]:
        loads.append(list(keys))
        return await load_many(loads[-1])

    review.store.load_many = counted  # type: ignore[method-assign]
    records = [Incoming(topics.FINANCE_INVOICE_REQUESTS, 0, i, number(ref), invoice(ref)) for i, ref in enumerate(refs)]
    await review.processor.process(records)
    assert len(loads) == 2 and sorted(loads[1]) == sorted(store.ORDERS.key(okey(ref)) for ref in refs)
    assert await exposure(review) == (0, {})


async def test_an_invoice_finds_the_claim_by_the_order_number_also_after_a_manual_approval(review: Harness) -> None:
    await send_accepted(review, "R-M", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])
    assert store.NUMBERS.key(number("R-M")) not in review.memory.rows  # queued: it claims nothing yet
    await decide(review, "R-M", "cmd-rm")
    assert review.memory.rows[store.NUMBERS.key(number("R-M"))]["state"] == {"order": okey("R-M")}
    await review.send(topics.FINANCE_INVOICE_REQUESTS, invoice("R-M", CREDIT, "1045.00"), number("R-M"))
    assert await exposure(review, CREDIT) == (0, {})


async def test_an_invoice_for_a_number_review_never_approved_records_nothing(review: Harness) -> None:
    before = review.memory.find()
    await review.send(topics.FINANCE_INVOICE_REQUESTS, invoice("R-NONE"), number("R-NONE"))
    assert review.memory.find() == before and not review.out


async def test_two_credit_orders_never_pass_the_ceiling(review: Harness) -> None:
    await send_accepted(review, "R-13", customer=CREDIT, lines=[("SKU-0001", 60, "11.00")])  # 660.00
    await send_accepted(review, "R-14", customer=CREDIT, lines=[("SKU-0001", 40, "11.00")])  # 1100.00: tolerance
    await send_accepted(review, "R-15", customer=CREDIT, lines=[("SKU-0001", 50, "11.00")])  # 1210.00: too much
    assert review.statuses() == ["approved", "in_review", "rejected"]
    assert codes(review.out[topics.ORDERS_STATUS][1]) == ["credit_review"]
    assert codes(review.out[topics.ORDERS_STATUS][2]) == ["credit_limit_exceeded"]
    assert await exposure(review, CREDIT) == (66000, {number("R-13"): 66000})
    # once the first order is invoiced (paid or not, it is on the balance feed now), room opens again
    await review.send(topics.FINANCE_INVOICE_REQUESTS, invoice("R-13", CREDIT, "660.00"), number("R-13"))
    await send_accepted(review, "R-16", customer=CREDIT, lines=[("SKU-0001", 50, "11.00")])
    assert review.statuses()[-1] == "approved"
    assert await exposure(review, CREDIT) == (55000, {number("R-16"): 55000})


async def test_amended_revision_replaces_the_exposure(review: Harness) -> None:
    await send_accepted(review, "R-17")
    await send_accepted(review, "R-17", revision=2, lines=[("SKU-0001", 20, "11.00")], confirmation="FAX-7")
    assert review.statuses() == ["approved", "approved"]
    assert [e["revision"] for e in review.out[topics.ORDERS_APPROVED]] == [1, 2]
    assert await exposure(review) == (22000, {number("R-17"): 22000})


async def test_an_amendment_to_another_customer_moves_the_claim(review: Harness) -> None:
    await send_accepted(review, "R-C")
    await send_accepted(review, "R-C", revision=2, customer=CREDIT)
    assert review.statuses() == ["approved", "approved"]
    assert await exposure(review) == (0, {})
    assert await exposure(review, CREDIT) == (11000, {number("R-C"): 11000})


async def test_major_change_without_confirmation_is_rejected(review: Harness) -> None:
    await send_accepted(review, "R-18")
    await send_accepted(review, "R-18", revision=2, lines=[("SKU-0001", 10, "10.50")])
    assert review.statuses() == ["approved", "rejected"]
    assert codes(review.out[topics.ORDERS_STATUS][-1]) == ["confirmation_required"]
    assert await exposure(review) == (0, {})  # the rejected amendment holds nothing


async def test_infeasible_date_is_rejected(review: Harness) -> None:
    await send_accepted(review, "R-19", requested=NOW.date() - timedelta(days=1))
    [st] = review.out[topics.ORDERS_STATUS]
    assert st["status"] == "rejected" and codes(st) == ["date_not_feasible"]


# ---- duplicate delivery: the same message twice, effects and outputs once ----
async def test_duplicate_master_data_is_stored_once(review: Harness) -> None:
    review.clear()
    for _ in range(2):
        await review.send(topics.MASTERDATA_PRODUCTS, product("SKU-0003", list_price="20.00"), "SKU-0003")
    doc = review.memory.rows[store.PRODUCTS.key("SKU-0003")]
    assert doc["state"]["list_price"] == "20.00" and doc["pending"] == []
    assert dict(review.out) == {}


async def test_duplicate_accepted_is_reviewed_once(review: Harness) -> None:
    for _ in range(2):
        await send_accepted(review, "R-20")
    assert review.statuses() == ["approved"] and len(review.out[topics.ORDERS_APPROVED]) == 1
    assert await exposure(review) == (11000, {number("R-20"): 11000})


async def test_repeated_decision_command_is_applied_once(review: Harness) -> None:
    await send_accepted(review, "R-21", customer=CREDIT, lines=[("SKU-0001", 95, "11.00")])
    for _ in range(2):
        await decide(review, "R-21", "cmd-r21")
    assert review.statuses() == ["in_review", "approved"] and len(review.out[topics.ORDERS_APPROVED]) == 1
    assert await exposure(review, CREDIT) == (104500, {number("R-21"): 104500})


async def test_duplicate_refused_decision_is_answered_with_one_event_id(review: Harness) -> None:
    for _ in range(2):
        await decide(review, "R-22", "cmd-r22")
    first, second = review.out[topics.ORDERS_STATUS]  # recorded nowhere, so decided again: the same answer
    assert first["event_id"] == second["event_id"] and codes(first) == codes(second) == ["unknown_order"]


async def test_duplicate_cancellation_releases_once(review: Harness) -> None:
    await send_accepted(review, "R-23")
    await send_accepted(review, "R-24")
    for _ in range(2):
        await review.send(topics.ORDERS_CANCELLED, wire(cancelled("R-23")), okey("R-23"))
    assert await exposure(review) == (11000, {number("R-24"): 11000})
    assert review.statuses() == ["approved", "approved"]


async def test_duplicate_invoice_request_releases_once(review: Harness) -> None:
    await send_accepted(review, "R-25")
    await send_accepted(review, "R-26")
    for _ in range(2):
        await review.send(topics.FINANCE_INVOICE_REQUESTS, invoice("R-25"), number("R-25"))
    assert await exposure(review) == (11000, {number("R-26"): 11000})
    assert review.statuses() == ["approved", "approved"]


# ---- store.record on its own: which credits it settles, the number document, the order last ----
class Unsent:
    async def send_all(self, messages: list[Outgoing]) -> None:
        assert messages == []


class Settles:
    """A `store.Settle` that adds the change to the total and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int]] = []

    def __call__(self, credit: store.Credit, held: int, target: int) -> store.Credit | None:
        self.asked.append((credit.total, held, target))
        return None if held == target else store.Credit(credit.total - held + target)


async def test_record_moves_the_claim_numbers_the_order_once_and_looks_at_the_credit_it_is_told_to() -> None:
    memory, settle = MemoryDocStore(), Settles()
    batch = Batch(memory, NOW, "test")
    order = await load(batch, store.ORDERS, "web:W-1")
    approved = store.ReviewOrder(1, "approved", order_number="SO-1", customer_id="C-1", claim=500)
    outcome = await store.record(batch, order, "in-1", Decision(approved, (), "approved"), settle, also="C-2")
    assert outcome == "approved" and settle.asked == [(0, 0, 500), (0, 0, 0)]  # C-1, then C-2 (`also`)
    assert (await load(batch, store.CREDITS, "C-1")).state == store.Credit(500)
    assert (await load(batch, store.CREDITS, "C-2")).state is None  # unchanged: nothing written
    assert (await load(batch, store.NUMBERS, "SO-1")).state == "web:W-1"
    assert order.state == approved and order.doc.inbox == ["in-1"]
    await batch.commit(Unsent())
    later = Batch(memory, NOW, "test")
    order = await load(later, store.ORDERS, "web:W-1")
    await store.record(later, order, "in-2", Decision(replace(approved, revision=2, claim=700)), settle)
    assert settle.asked[-1] == (500, 500, 700) and (await load(later, store.CREDITS, "C-1")).state == store.Credit(700)
    assert not (await load(later, store.NUMBERS, "SO-1")).doc.dirty  # inserted once


async def test_record_leaves_alone_a_credit_the_order_neither_held_nor_claims() -> None:
    batch, settle = Batch(MemoryDocStore(), NOW, "test"), Settles()
    order = await load(batch, store.ORDERS, "web:W-2")
    rejected = store.ReviewOrder(1, "rejected", order_number="SO-2", customer_id="C-1")
    assert await store.record(batch, order, "in-1", Decision(rejected, (), "rejected"), settle) == "rejected"
    assert settle.asked == [] and set(batch.docs) == {store.ORDERS.key("web:W-2")}
