"""The benchmark's pure parts: the search for the sustained rate, the drift check, latency from the intended
send time, the order mix and its encoding."""

import json
from collections import Counter

import pytest

from orderflow import sample
from orderflow.dev import bench_load as bl


def _run(search: bl.Search, capacity: int) -> list[int]:
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, rate <= capacity)
    return tried


def test_search_doubles_then_bisects_to_within_the_precision() -> None:
    search = bl.Search(start=25, precision=0.1, max_steps=20)
    tried = _run(search, capacity=130)
    assert tried[:4] == [25, 50, 100, 200]
    assert search.failed is not None and search.held <= 130 < search.failed
    assert search.failed - search.held <= 0.1 * search.held
    assert tried[4] == 150  # the midpoint of 100 (held) and 200 (failed)


def test_search_halves_when_the_first_step_fails_and_gives_up_below_the_floor() -> None:
    search = bl.Search(start=100, floor=10, max_steps=20)
    assert _run(search, capacity=30)[:3] == [100, 50, 25]
    assert 25 <= search.held <= 30
    nothing = bl.Search(start=100, floor=10, max_steps=20)
    assert _run(nothing, capacity=0) == [100, 50, 25, 12]
    assert nothing.held == 0


def test_search_stops_at_the_ceiling_and_after_max_steps() -> None:
    assert _run(bl.Search(start=100, ceiling=400), capacity=10_000) == [100, 200, 400]
    assert len(_run(bl.Search(start=10, max_steps=3), capacity=10_000)) == 3


def test_search_rejects_inconsistent_bounds() -> None:
    with pytest.raises(ValueError, match="floor <= start <= ceiling"):
        bl.Search(start=5, floor=10)
    with pytest.raises(ValueError, match="max_steps"):
        bl.Search(start=10, max_steps=0)


def test_drift_compares_the_last_third_with_the_first_within_the_window() -> None:
    flat = [(float(t), 100.0 + (t % 2)) for t in range(60)]
    assert abs(bl.drift(flat, 0, 60)) <= 1
    growing = [(float(t), 10.0 * t) for t in range(60)]
    assert bl.drift(growing, 0, 60) == pytest.approx(400, abs=10)
    assert bl.drift(growing, 50, 60) == pytest.approx(70, abs=10)  # only the window counts
    assert bl.drift(growing[:5], 0, 60) == 0.0  # too few points to judge


def test_latency_counts_from_the_intended_time_not_the_actual_send() -> None:
    intended = dict(zip(["a", "b", "c"], bl.intended_times(1000.0, 10, 3), strict=True))
    assert intended == {"a": 1000.0, "b": 1000.1, "c": pytest.approx(1000.2)}
    # the generator stalled: "c" left 2 s late and was reserved 0.05 s after it left
    seen = {"a": {"reserved": 1000.05}, "b": {"reserved": 1000.15}, "c": {"received": 1002.2, "reserved": 1002.25}}
    got = bl.latencies(["c", "a", "b", "gone"], intended, seen, "reserved")
    assert [k for k, _ in got] == [1000.0, 1000.1, pytest.approx(1000.2)]
    assert [round(v, 3) for _, v in got] == [0.05, 0.05, 2.05]
    with pytest.raises(ValueError, match="rate must be positive"):
        bl.intended_times(0.0, 0, 3)


def _master() -> tuple[list[str], list[dict[str, object]]]:
    return [c["customer_id"] for c in sample.customers(40)], sample.products(200)


def test_mix_has_the_shares_of_shortages_hot_orders_and_credit_customers() -> None:
    customers, products = _master()
    pool = bl.mix_pool(2000, customers, products, bl.Mix(shortage=0.05, hot=0.10, hot_skus=20, credit=0.3))
    kinds = Counter(t.kind for t in pool)
    assert kinds == {"shortage": 100, "hot": 200, "spread": 1700}
    hot = {f"SKU-{i:04d}" for i in range(20)}
    credit = 0
    for t in pool:
        order = json.loads(t.raw)
        skus = {line["sku"] for line in order["lines"]}
        cust = order["customer"]["customer_id"]
        assert cust != "C-9999"
        credit += int(cust[2:]) % 2 == 1
        if t.kind == "shortage":
            assert skus == {"LAMP-RARE"} and order["lines"][0]["quantity"] > 5
            assert t.expect == "awaiting_customer_decision" and cust != bl.VIP
        elif t.kind == "hot":
            assert skus <= hot and t.expect == "reserved"
        else:
            assert not skus & hot and "LAMP-RARE" not in skus
    assert 0.25 < credit / len(pool) < 0.35


def test_mix_rejects_impossible_shares() -> None:
    customers, _ = _master()
    with pytest.raises(ValueError, match=r"Mix\.shortage"):
        bl.Mix(shortage=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        bl.Mix(shortage=0.6, hot=0.6)
    with pytest.raises(ValueError, match="more than 20 SKU"):
        bl.mix_pool(10, customers, sample.products(10))


def test_hot_pool_uses_only_the_given_customers_and_skus() -> None:
    customers, products = _master()
    three = [p for p in products if p["sku"] in ("SKU-0000", "SKU-0001", "SKU-0002")]
    pool = bl.hot_pool(300, customers[:3], three)
    orders = [json.loads(t.raw) for t in pool]
    assert {o["customer"]["customer_id"] for o in orders} == set(customers[:3])
    assert {line["sku"] for o in orders for line in o["lines"]} == {"SKU-0000", "SKU-0001", "SKU-0002"}


def test_encode_fills_references_and_keeps_the_default_partitioner() -> None:
    customers, products = _master()
    pool = bl.mix_pool(50, customers, products)
    msgs = bl.encode(pool, "BENCH-x-", "s01", 120, [0, 1, 2, 3, 4, 5])
    assert len({m.key for m in msgs}) == 120
    for m in msgs[:60]:
        order = json.loads(m.value)
        assert m.key == f"{order['channel']}:{order['channel_order_ref']}"
        assert order["channel_order_ref"].startswith("BENCH-x-s01-")
        assert bl.PLACEHOLDER not in m.value and 0 <= m.partition < 6
    assert len({m.partition for m in msgs}) == 6
    with pytest.raises(ValueError, match="non-empty pool"):
        bl.encode([], "m", "t", 1, [0])


def test_follower_records_first_times_of_its_own_orders_only() -> None:
    f = bl.Follower(marker="BENCH-x-")
    f.add(b"web:BENCH-x-1", b'{"status":"received"}', 1000)
    f.add(b"web:BENCH-x-1", b'{"status":"received"}', 2000)
    f.add(b"web:BENCH-x-1", b'{"status":"reserved"}', 3000)
    f.add(b"web:OTHER-1", b'{"status":"reserved"}', 3000)
    f.add(b"web:BENCH-x-2", b"not json", 3000)
    assert f.seen == {"web:BENCH-x-1": {"received": 1.0, "reserved": 3.0}}
    assert f.settled(["web:BENCH-x-1", "web:BENCH-x-2"], {}) == 1
    assert f.settled(["web:BENCH-x-1"], {"web:BENCH-x-1": "awaiting_customer_decision"}) == 0
