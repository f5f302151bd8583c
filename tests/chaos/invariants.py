"""Invariants the system keeps under faults: pure functions over the collected messages and store reads,
each returning a list of violations (empty = it holds).

Inputs: `statuses` maps an order key ("channel:ref") to its `orders.status` messages in topic order (as read
by `orderflow.bus`); `plans` maps the same keys to what the workload did (`tests.chaos.workload.Planned`).

The order state machine (`TRANSITIONS`) is written out explicitly. Two things are allowed on purpose:
- a new revision (`received` / `needs_clarification` with a higher revision) restarts the order from any
  state before shipping (`NEW_REVISION_FROM`);
- `cancelled` is terminal for the order, but the services that had not seen the cancellation yet may still
  publish what they decided before it reached them ("late messages of racing services"): intake does not read
  cancellations at all, and review and inventory learn of one through `orderflow.orders.cancelled`, which
  races with `orderflow.orders.accepted` / `...approved`. After `cancelled` we therefore accept only
  pre-shipment statuses (`LATE_AFTER_CANCEL`) that continue the order's path as it stood without the
  cancellation, count them, and prove separately that their effects were undone (no exposure, no
  reservation). Shipping statuses after `cancelled`, or a second `cancelled`, are violations.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from services.runtime.ids import derive_id
from services.runtime.status import enters_state, repeats_view

Msg = dict[str, Any]
Statuses = Mapping[str, list[Msg]]

START = "<start>"
TRANSITIONS: dict[str, frozenset[str]] = {
    START: frozenset({"received", "needs_clarification", "invalid", "cancelled"}),
    "invalid": frozenset(),
    "needs_clarification": frozenset({"needs_clarification", "received", "cancelled"}),
    "received": frozenset({"in_review", "approved", "rejected", "cancelled"}),
    "in_review": frozenset({"approved", "rejected", "cancelled"}),
    "rejected": frozenset(),
    "approved": frozenset(
        {
            "reserved",
            "backordered",
            "in_production",
            "awaiting_customer_decision",
            "awaiting_priority_approval",
            "cancelled",
        }
    ),
    # reserved -> awaiting_customer_decision | backordered: a supervisor let a priority order take its stock
    "reserved": frozenset({"partially_shipped", "shipped", "awaiting_customer_decision", "backordered", "cancelled"}),
    # repeated: promise slipped; partially_shipped: the part of a ship_partial whose remainder is backordered
    "backordered": frozenset({"reserved", "backordered", "in_production", "partially_shipped", "cancelled"}),
    "in_production": frozenset({"reserved", "in_production", "partially_shipped", "cancelled"}),
    "awaiting_customer_decision": frozenset(
        {"reserved", "backordered", "in_production", "awaiting_customer_decision", "cancelled"}
    ),
    "awaiting_priority_approval": frozenset(
        {"reserved", "backordered", "in_production", "awaiting_customer_decision", "cancelled"}
    ),
    "partially_shipped": frozenset({"partially_shipped", "shipped", "delivered", "delivery_exception"}),
    "shipped": frozenset({"delivered", "delivery_exception"}),
    "delivery_exception": frozenset({"shipped", "partially_shipped", "cancelled"}),
    "delivered": frozenset(),
    "cancelled": frozenset(),
}
LATE_AFTER_CANCEL = frozenset(
    {
        "received",
        "in_review",
        "approved",
        "rejected",
        "reserved",
        "backordered",
        "in_production",
        "awaiting_customer_decision",
        "awaiting_priority_approval",
    }
)
NEW_REVISION_FROM = LATE_AFTER_CANCEL | {START, "needs_clarification"}
# Where each kind of order may end (its last status that counts) once traffic has drained.
SETTLED: dict[str, frozenset[str]] = {
    "normal": frozenset({"reserved"}),
    "incomplete": frozenset({"reserved"}),
    "duplicate": frozenset({"reserved"}),
    "shortage": frozenset({"reserved", "awaiting_customer_decision", "awaiting_priority_approval"}),
    "cancel": frozenset({"cancelled"}),
    # scenario 7: backorders refilled by goods receipts (which leave a few waiting: no stock is ever free)
    "backorder": frozenset({"reserved", "backordered"}),
    # scenario 7: urgent orders; a supervisor approves each reallocation it sees asked for
    "priority": frozenset({"reserved", "awaiting_priority_approval", "backordered"}),
}
SHIPPED_END = frozenset({"shipped", "delivered", "partially_shipped"})  # with the warehouse simulator
REVOKED = frozenset({"backordered", "awaiting_customer_decision", "in_production", "awaiting_priority_approval"})


class Plan(Protocol):
    """What the workload did with one order (see tests.chaos.workload.Planned)."""

    key: str
    kind: str
    customer_id: str
    lines: tuple[tuple[str, int], ...]
    final_revision: int


def _details(m: Msg) -> dict[str, Any]:
    return m.get("details") or {}


def counts(m: Msg) -> bool:
    """Whether a status message is a state change (refusals and ignored submissions repeat the state; a
    restated `cancelled` repeats it after a late step of a service that had not seen the cancellation)."""
    return enters_state(_details(m))


def first_occurrences(msgs: Iterable[Msg]) -> list[Msg]:
    """Each event id at its first appearance (a redelivery or an outbox re-send repeats it later)."""
    seen: set[str] = set()
    out = []
    for m in msgs:
        if m["event_id"] not in seen:
            seen.add(m["event_id"])
            out.append(m)
    return out


def effective(msgs: Iterable[Msg]) -> list[Msg]:
    """The order's state changes: first occurrence of each event id, refusals, ignores and restatements left
    out."""
    return [m for m in first_occurrences(msgs) if counts(m)]


def redeliveries(statuses: Statuses) -> list[tuple[str, str, str, int]]:
    """(key, status, event id, times) of every status published more than once under the same event id:
    a redelivery rebuilt the same output (allowed: at-least-once with deterministic ids)."""
    out = []
    for key, msgs in sorted(statuses.items()):
        by_id = Counter(m["event_id"] for m in msgs)
        names = {m["event_id"]: m["status"] for m in msgs}
        out += [(key, names[e], e, n) for e, n in by_id.items() if n > 1]
    return out


def walk(msgs: list[Msg]) -> tuple[list[str], str, bool, list[str]]:
    """Run one order's effective statuses through the state machine: (violations, state ignoring the
    cancellation, cancelled?, the statuses published after the cancellation)."""
    bad: list[str] = []
    late: list[str] = []
    state, revision, cancelled = START, 0, False
    for m in effective(msgs):
        name, rev = m["status"], m.get("revision")
        new_revision = (
            name in ("received", "needs_clarification") and isinstance(rev, int) and rev > revision and state != START
        )
        if name == "cancelled":
            if cancelled:
                bad.append(f"cancelled twice (event {m['event_id']})")
            elif name not in TRANSITIONS[state]:
                bad.append(f"{state} -> cancelled")
            cancelled = True
            continue
        if cancelled:
            if name not in LATE_AFTER_CANCEL:
                bad.append(f"{name} after cancelled")
                continue
            late.append(name)
        if new_revision and state in NEW_REVISION_FROM:
            state, revision = name, rev
            continue
        if name not in TRANSITIONS[state]:
            bad.append(f"{state} -> {name} (revision {rev})")
        state = name
        if isinstance(rev, int) and name in ("received", "needs_clarification"):
            revision = max(revision, rev)
    return bad, state, cancelled, late


def state_machine(statuses: Statuses) -> tuple[list[str], Counter[str]]:
    """Every order's sequence is a path of the state machine; returns violations and the statuses published
    after a cancellation by services that had not seen it yet (counted per status)."""
    bad: list[str] = []
    late: Counter[str] = Counter()
    for key, msgs in sorted(statuses.items()):
        problems, _, _, after = walk(msgs)
        late.update(after)
        bad += [f"{key}: {p}" for p in problems]
    return bad, late


def cancelled_not_last(statuses: Statuses) -> list[str]:
    """Cancelled orders whose last status on the topic is not `cancelled` (a late message of a racing service
    came after it): allowed by the state machine above, but what a channel reading the topic ends up seeing."""
    out = []
    for key, msgs in sorted(statuses.items()):
        seen = [m for m in first_occurrences(msgs) if not repeats_view(_details(m))]
        if any(m["status"] == "cancelled" for m in seen) and seen[-1]["status"] != "cancelled":
            out.append(f"{key}: {' -> '.join(m['status'] for m in seen)}")
    return out


def one_event_per_transition(statuses: Statuses) -> list[str]:
    """No step published twice under two event ids: the same (revision, status) entered twice in a row (a
    redelivery that rebuilt the step with a new id), unless the state machine lets that status repeat itself
    (a promise slipped). Coming back to a state later is a new step (a reserved order whose stock a priority
    order took is backordered again, then refilled)."""
    bad = []
    for key, msgs in sorted(statuses.items()):
        previous: tuple[Any, str, str] | None = None
        for m in first_occurrences(msgs):
            if not counts(m):
                continue
            step = (m.get("revision"), m["status"])
            if previous is not None and previous[:2] == step and m["status"] not in TRANSITIONS[m["status"]]:
                bad.append(f"{key}: {step} published under 2 event ids ({previous[2]}, {m['event_id']})")
            previous = (*step, m["event_id"])
    return bad


def numbering(plans: Mapping[str, Plan], statuses: Statuses, earlier: Mapping[str, str] | None = None) -> list[str]:
    """Every complete submission got exactly one order number, announced with `received`, and no number
    went to two orders (`earlier`: number -> key of previous scenarios on the same database)."""
    bad = []
    owner: dict[str, str] = dict(earlier or {})
    for key in sorted(plans):
        msgs = effective(statuses.get(key, []))
        numbers = {m["order_number"] for m in msgs if m.get("order_number")}
        received = {m["order_number"] for m in msgs if m["status"] == "received"}
        if len(numbers) != 1:
            bad.append(f"{key}: {len(numbers)} order numbers {sorted(numbers)}")
        if not received:
            bad.append(f"{key}: never received (lost?) - statuses {[m['status'] for m in msgs]}")
        elif len(received) > 1 or received != numbers:
            bad.append(f"{key}: received as {sorted(received)}, statuses name {sorted(numbers)}")
        for n in numbers:
            if owner.setdefault(n, key) != key:
                bad.append(f"{key}: order number {n} also given to {owner[n]}")
    strays = sorted(set(statuses) - set(plans))
    bad += [f"{k}: statuses for an order the workload never sent" for k in strays]
    return bad


def held_until_corrected(plans: Mapping[str, Plan], statuses: Statuses) -> list[str]:
    """Incomplete revisions are held (needs_clarification, no number, nothing downstream) until the corrected
    revision is received; complete submissions are never held."""
    bad = []
    for key, plan in sorted(plans.items()):
        msgs = effective(statuses.get(key, []))
        if plan.kind != "incomplete":
            held = [m for m in msgs if m["status"] == "needs_clarification"]
            if held:
                bad.append(f"{key}: a complete submission was held for clarification")
            continue
        if not msgs or msgs[0]["status"] != "needs_clarification":
            bad.append(f"{key}: first status {msgs[0]['status'] if msgs else None}, not needs_clarification")
            continue
        first = [m for m in msgs if m.get("revision") == 1]
        if any(m["status"] != "needs_clarification" or m.get("order_number") for m in first):
            bad.append(f"{key}: revision 1 went on: {[(m['status'], m.get('order_number')) for m in first]}")
        corrected = [i for i, m in enumerate(msgs) if m["status"] == "received" and m.get("revision") == 2]
        if not corrected:
            bad.append(f"{key}: corrected revision 2 never received")
        elif any(m["status"] != "needs_clarification" for m in msgs[: corrected[0]]):
            bad.append(f"{key}: moved on before the correction: {[m['status'] for m in msgs[: corrected[0]]]}")
    return bad


def settled(plans: Mapping[str, Plan], statuses: Statuses, shipping: bool = False) -> list[str]:
    """After the drain every order rests where its kind should: normal ones reserved (or further, with the
    warehouse simulator), shortages reserved or waiting for a decision, cancelled ones cancelled."""
    bad = []
    for key, plan in sorted(plans.items()):
        msgs = effective(statuses.get(key, []))
        _, state, cancelled, _ = walk(statuses.get(key, []))
        end = "cancelled" if cancelled else state
        allowed = SETTLED[plan.kind] | (SHIPPED_END if shipping and plan.kind != "cancel" else frozenset())
        if end not in allowed:
            bad.append(
                f"{key} ({plan.kind}): ends {end}, expected {sorted(allowed)}; path {[m['status'] for m in msgs]}"
            )
    return bad


def shipments(statuses: Statuses, sent: list[Msg]) -> tuple[list[str], int]:
    """Fulfillment opened exactly one shipment per warehouse of each reserved order's allocation, with its lines,
    under one event id each; every shipment of a cancelled order was voided; orders never reserved got none.
    `sent`: the `fulfillment.shipments` messages of the scenario's orders. Returns the violations and the
    messages redelivered under the same event id."""
    bad: list[str] = []
    by_id = Counter(m["event_id"] for m in sent)
    redelivered = sum(n - 1 for n in by_id.values())
    opened: dict[str, dict[str, Msg]] = defaultdict(dict)  # order number -> shipment id -> opening
    ids: dict[str, set[str]] = defaultdict(set)
    voided: set[str] = set()
    for m in sent:
        if m.get("type") == "shipment.opened":
            opened[m["order_number"]].setdefault(m["shipment_id"], m)
            ids[m["shipment_id"]].add(m["event_id"])
        elif m.get("type") == "shipment.voided":
            voided.add(m["shipment_id"])
    bad += [f"shipment {sid} opened under {len(e)} event ids" for sid, e in sorted(ids.items()) if len(e) > 1]
    for key, msgs in sorted(statuses.items()):
        eff = effective(msgs)
        numbers = {m["order_number"] for m in eff if m.get("order_number")}
        ships = {sid: m for n in numbers for sid, m in opened.get(n, {}).items()}
        _, state, cancelled, _ = walk(msgs)
        if cancelled:
            bad += [f"{key}: shipment {sid} of a cancelled order not voided" for sid in sorted(set(ships) - voided)]
            continue
        reserved = [m for m in eff if m["status"] == "reserved"]
        names = [m["status"] for m in eff]
        revoked = bool(reserved) and any(n in REVOKED for n in names[names.index("reserved") + 1 :])
        if not revoked:  # a priority order took its stock: the shipment of the lost allocation is voided
            bad += [f"{key}: shipment {sid} voided, order not cancelled" for sid in sorted(set(ships) & voided)]
        ships = {sid: m for sid, m in ships.items() if sid not in voided}
        if state != "reserved" or not reserved:
            bad += [f"{key}: shipment {sid} opened for an order {state}" for sid in sorted(ships)]
            continue
        want = sorted(
            (a["warehouse"], sorted((ln["sku"], ln["quantity"]) for ln in a["lines"]))
            for a in _details(reserved[-1]).get("allocations", [])
        )
        have = sorted(
            (m["warehouse"], sorted((ln["sku"], ln["quantity"]) for ln in m["lines"])) for m in ships.values()
        )
        if have != want:
            bad.append(f"{key}: shipments {have} for the allocation {want}")
    return bad, redelivered


# ---- store reads ----------------------------------------------------------------------------------------


def stock(
    levels: list[dict[str, Any]], initial: Mapping[tuple[str, str], int], shipped: Mapping[tuple[str, str], int]
) -> list[str]:
    """No oversell (0 <= reserved <= on_hand) and stock conserved (on_hand == counted - shipped), per SKU and
    warehouse (`levels` from services.inventory.store.stock_levels)."""
    bad = []
    seen = set()
    for row in levels:
        at = (row["sku"], row["warehouse"])
        seen.add(at)
        if not 0 <= row["reserved"] <= row["on_hand"]:
            bad.append(f"{at[0]}@{at[1]}: reserved {row['reserved']} of on hand {row['on_hand']} (oversold)")
        counted, out = initial.get(at, 0), shipped.get(at, 0)
        if row["on_hand"] != counted - out:
            bad.append(f"{at[0]}@{at[1]}: on hand {row['on_hand']} != counted {counted} - shipped {out}")
    bad += [f"{s}@{w}: counted but missing from the store" for s, w in sorted(set(initial) - seen)]
    return bad


WAITING = frozenset({"backordered", "in_production", "awaiting_priority_approval", "awaiting_customer_decision"})


def waiting_hold_less(plans: Mapping[str, Plan], statuses: Statuses, held: Mapping[str, int]) -> list[str]:
    """An order the topic shows waiting for goods holds less stock than it ordered: holding it all means its
    refill was recorded but its `reserved` was never published (a stranded event). `held`: units the store
    reserves per order number (all lines)."""
    bad = []
    for key, msgs in sorted(statuses.items()):
        _, state, cancelled, _ = walk(msgs)
        numbers = {m["order_number"] for m in effective(msgs) if m.get("order_number")}
        if cancelled or state not in WAITING or key not in plans or len(numbers) != 1:
            continue
        wanted = sum(q for _, q in plans[key].lines)
        have = held.get(next(iter(numbers)), 0)
        if have >= wanted:
            bad.append(f"{key}: says {state} but the store holds all {have} of its {wanted} units (refill unannounced)")
    return bad


def without(levels: list[dict[str, Any]], holdings: Iterable[Mapping[tuple[str, str], int]]) -> list[dict[str, Any]]:
    """Stock levels less the given orders' reservations (per SKU and warehouse)."""
    less: Counter[tuple[str, str]] = Counter()
    for h in holdings:
        less.update(h)
    return [{**r, "reserved": r["reserved"] - less[(r["sku"], r["warehouse"])]} for r in levels]


def without_claims(docs: list[dict[str, Any]], numbers: Iterable[str]) -> list[dict[str, Any]]:
    """Exposure documents less the claims of the given order numbers (their totals reduced alike)."""
    drop = set(numbers)
    out = []
    for d in docs:
        claims = d.get("orders") or {}
        gone = sum(int(a) for n, a in claims.items() if n in drop)
        kept = {n: a for n, a in claims.items() if n not in drop}
        out.append({**d, "orders": kept, "total": int(d.get("total", 0)) - gone})
    return out


def _warehouse(shipment_id: str, order_number: str) -> str:
    return shipment_id.removeprefix(order_number + "-").rsplit("-", 1)[0]


def reservations(levels: list[dict[str, Any]], plans: Mapping[str, Plan], statuses: Statuses) -> list[str]:
    """No leaked reservation: what the store holds per SKU and warehouse equals what the orders resting in
    `reserved` (or partly shipped) were allocated, less what they shipped; cancelled orders and orders awaiting
    a customer's decision hold nothing. Orders that may hold a part without saying where (awaiting a priority
    approval, backordered, in production) widen the check for their SKUs to held <= reserved <= held + part."""
    held: Counter[tuple[str, str]] = Counter()
    part: Counter[str] = Counter()
    for key, msgs in statuses.items():
        _, state, cancelled, _ = walk(msgs)
        eff = effective(msgs)
        if cancelled:
            continue
        if state in ("awaiting_priority_approval", "backordered", "in_production"):
            for sku, qty in plans[key].lines if key in plans else ():
                part[sku] += qty
            continue
        last = [m for m in eff if m["status"] == "reserved"]
        if state not in ("reserved", "partially_shipped", "shipped", "delivered", "delivery_exception") or not last:
            continue
        number = last[-1].get("order_number") or ""
        for alloc in _details(last[-1]).get("allocations", []):
            for ln in alloc["lines"]:
                held[(ln["sku"], alloc["warehouse"])] += ln["quantity"]
        for m in eff:
            if m["status"] in ("shipped", "partially_shipped"):
                wh = _warehouse(_details(m).get("shipment_id", ""), number)
                for ln in _details(m).get("lines", []):
                    held[(ln["sku"], wh)] -= ln["quantity"]
    bad = []
    total: Counter[str] = Counter()
    total_held: Counter[str] = Counter()
    for row in levels:
        at = (row["sku"], row["warehouse"])
        total[row["sku"]] += row["reserved"]
        total_held[row["sku"]] += held[at]
        if row["sku"] in part:
            if row["reserved"] < held[at]:
                bad.append(f"{at[0]}@{at[1]}: reserved {row['reserved']} < {held[at]} allocated to reserved orders")
        elif row["reserved"] != held[at]:
            bad.append(f"{at[0]}@{at[1]}: reserved {row['reserved']}, reserved orders hold {held[at]} (leak or loss)")
    for sku, extra in part.items():
        if total[sku] > total_held[sku] + extra:
            bad.append(f"{sku}: reserved {total[sku]} > {total_held[sku]} allocated + {extra} of waiting orders")
    return bad


def open_exposure(
    plans: Mapping[str, Plan], statuses: Statuses, invoiced: Iterable[str] = ()
) -> dict[str, dict[str, int]]:
    """customer -> {order number: cents} of the approved orders neither cancelled nor invoiced (the approval of
    the latest approved revision, as announced on `orders.status`)."""
    done = set(invoiced)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for key, msgs in statuses.items():
        plan = plans.get(key)
        _, _, cancelled, _ = walk(msgs)
        approved = [m for m in effective(msgs) if m["status"] == "approved"]
        if plan is None or cancelled or not approved:
            continue
        last = max(approved, key=lambda m: m.get("revision") or 0)
        number = last.get("order_number") or key
        if number in done:
            continue
        out[plan.customer_id][number] = int(Decimal(_details(last)["total_amount"]) * 100)
    return out


def exposure(docs: list[dict[str, Any]], expected: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Review's `credit:<customer>` exposure states: total == sum(orders), and the claims are exactly the open
    approved orders (`open_exposure`), amount for amount."""
    bad = []
    found = {}
    for d in docs:
        cust = d["_id"].removeprefix("credit:")
        orders = {k: int(v) for k, v in (d.get("orders") or {}).items()}
        found[cust] = orders
        if int(d.get("total", 0)) != sum(orders.values()):
            bad.append(f"{cust}: total {d.get('total')} != sum of claims {sum(orders.values())}")
    for cust in sorted(set(found) | set(expected)):
        have, want = found.get(cust, {}), dict(expected.get(cust, {}))
        extra = sorted(set(have) - set(want))
        missing = sorted(set(want) - set(have))
        wrong = sorted(n for n in set(have) & set(want) if have[n] != want[n])
        if extra:
            bad.append(f"{cust}: exposure held for {len(extra)} order(s) not open, e.g. {extra[:3]}")
        if missing:
            bad.append(f"{cust}: no exposure for {len(missing)} open approved order(s), e.g. {missing[:3]}")
        bad += [f"{cust}: {n} holds {have[n]} cents, approved total {want[n]}" for n in wrong]
        if sum(have.values()) != sum(want.values()):
            bad.append(f"{cust}: exposure {sum(have.values())} cents != open approved {sum(want.values())} cents")
    return bad


def dead_letters(letters: list[Msg], poison: list[bytes], records: int) -> tuple[list[str], int]:
    """`orders.dlq` holds exactly the poison messages of the scenario (`letters`: the DLQ messages whose payload
    names the scenario's tag): each of the `records` poison records published dead-lettered once, by intake,
    with its origin; returns the violations and the letters redelivered under the same event id."""
    bad = []
    wanted = {p.decode("utf-8", "replace") for p in poison}
    by_id = Counter(m["event_id"] for m in letters)
    redelivered = sum(n - 1 for n in by_id.values())
    unique = {m["event_id"]: m for m in letters}.values()
    for m in unique:
        if m.get("service") != "intake" or m.get("topic") != "orders.submitted":
            bad.append(f"dead letter from {m.get('service')} on {m.get('topic')}: {m.get('reason', '')[:120]}")
        elif m.get("payload") not in wanted:
            bad.append(f"dead letter of a non-poison message: {m.get('payload', '')[:120]!r}")
    origins = {(m.get("topic"), m.get("partition"), m.get("offset")) for m in unique}
    if len(origins) != len(unique):
        bad.append("two dead letters for one record under different event ids")
    if len(unique) != records:
        bad.append(f"{len(unique)} dead letters for {records} poison records published")
    missing = wanted - {m.get("payload") for m in unique}
    if missing:
        bad.append(f"{len(missing)} poison message(s) never dead-lettered, e.g. {sorted(missing)[:2]}")
    return bad, redelivered


# ---- injected faults (scenario 10) ----------------------------------------------------------------------

INJECTED = "InjectedFault"  # what services.runtime.faults raises, named in the dead letter's reason
STATUSES = frozenset(TRANSITIONS) - {START}
REPLANNED = ("reserved", "backordered", "awaiting_customer_decision", "in_production")  # told to refilled orders


def injected(letters: list[Msg]) -> list[Msg]:
    """The dead letters of messages a handler failed on by injection (one per record)."""
    return list(
        {
            (m.get("topic"), m.get("partition"), m.get("offset")): m for m in letters if INJECTED in m.get("reason", "")
        }.values()
    )


def causes(letter: Msg) -> set[str]:
    """The ids a service derives its outputs from for the dead-lettered message: the record's origin, the
    message's event or command id, and intake's submission id (channel, reference, revision)."""
    out = {f"{letter.get('topic')}:{letter.get('partition')}:{letter.get('offset')}"}
    try:
        body = json.loads(letter.get("payload") or "")
    except ValueError:
        return out
    if isinstance(body, dict):
        out |= {str(body[k]) for k in ("event_id", "command_id") if body.get(k)}
        if letter.get("topic") == "orders.submitted" and body.get("channel_order_ref"):
            out.add(f"submitted:{body.get('channel')}:{body.get('channel_order_ref')}:{body.get('revision')}")
    return out


def no_trace(faulted: list[Msg], statuses: Statuses, resent: Iterable[str] = ()) -> list[str]:
    """A message its handler failed on left no status behind: none whose event id derives from it, for its own
    order or (a refill, a reallocation) for any other. `resent`: orders whose submission was sent twice (the
    copy that did not fail rightly answers under the same submission id)."""
    published = {m["event_id"]: key for key, msgs in statuses.items() for m in msgs}
    keys = sorted(statuses)
    twice = set(resent)
    bad = []
    for letter in faulted:
        others = keys if letter.get("service") == "inventory" else []  # only inventory re-plans other orders
        own = causes(letter)
        if letter.get("topic") == "orders.submitted" and letter.get("key") in twice:
            own = {c for c in own if not c.startswith("submitted:")}
        for cause in sorted(own):
            ids = [(cause, name) for name in sorted(STATUSES)]
            ids += [(f"{cause}:{k}", name) for k in others for name in REPLANNED]
            for c, name in ids:
                eid = derive_id("status", c, name)
                if eid in published:
                    bad.append(
                        f"{published[eid]}: status {name} of a message dead-lettered by {letter.get('service')} "
                        f"({letter.get('topic')}@{letter.get('offset')}: {letter.get('reason', '')[:80]})"
                    )
    return bad
