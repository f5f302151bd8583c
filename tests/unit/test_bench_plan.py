"""The benchmark's plans and printed figures: quick and full steps, the modes, bad options named."""

import pytest

from orderflow.dev import bench
from services.fulfillment.config import FulfillmentSettings
from services.intake.config import IntakeSettings
from services.inventory.config import InventorySettings
from services.review.config import ReviewSettings
from services.runtime.settings import ServiceSettings


def test_quick_searches_with_short_steps_within_a_budget_and_full_steps_last_a_minute() -> None:
    quick = bench.make_plan(quick=True)
    assert quick.rates == () and quick.step_seconds == 10 and quick.budget_seconds == 140
    full = bench.make_plan(quick=False)
    assert full.rates == () and full.step_seconds >= 60 and full.shipping and not full.budget_seconds
    assert not bench.make_plan(quick=False, mode="growth").shipping  # open reservations must stay open
    assert bench.make_plan(quick=False, mode="growth", levels=(10, 100)).levels == (10, 100)


@pytest.mark.parametrize(
    "settings", [IntakeSettings, ReviewSettings, InventorySettings], ids=["intake", "review", "inventory"]
)
def test_growth_runs_its_timed_services_with_an_immediate_fetch_and_a_short_poll(
    settings: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in bench.growth_env().items():
        monkeypatch.setenv(name, value)
    tuned = settings()
    assert (tuned.fetch_min_bytes, tuned.fetch_max_wait_ms, tuned.poll_ms) == (1, 500, 5)
    assert FulfillmentSettings().poll_ms == 0  # not on the timed path: batches as configured


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quick": False, "seconds": 30}, "at least 60 s"),
        ({"quick": True, "mode": "fast"}, "throughput, hot or growth"),
        ({"quick": True, "rates": (10, 0)}, "must be positive"),
        ({"quick": True, "mode": "growth", "levels": (100, 10)}, "increasing positive"),
    ],
)
def test_make_plan_names_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bench.make_plan(**kwargs)  # type: ignore[arg-type]


def test_cpu_sum_counts_services_and_servers_not_the_bench_or_the_simulator() -> None:
    step = {
        "cpu_ms_per_order": {
            "intake": 1.0,
            "review": 2.0,
            "inventory": 3.0,
            "fulfillment": 4.0,
            "kafka": 5.0,
            "ferretdb": 6.0,
            "postgres": 7.0,
            "bench": 100.0,
            "simulator": 50.0,
        }
    }
    assert bench.cpu_sum(step) == 28.0


def test_growth_and_hot_reports_print_the_ratios() -> None:
    result = {
        "hot": {
            "skus": bench.HOT_SKUS,
            "customers": bench.HOT_CUSTOMERS,
            "target_ratio": 2.0,
            "rows": [{"offered_per_s": 30, "mix_p99_s": 0.5, "hot_p99_s": 1.5, "ratio": 3.0}],
        },
        "growth": {
            "sku": "SKU-0200",
            "customer": "C-1007",
            "target_ratio": 1.5,
            "reservation_ratio": 2.5,
            "approval_ratio": None,
            "rows": [
                {"open": 10, "approval_s": 0.1, "reservation_s": 0.2},
                {"open": 10_000, "approval_s": 0.1, "reservation_s": 0.5},
            ],
            "shortage_sku": "LAMP-RARE",
            "shortage_ratio": 1.2,
            "shortage_rows": [{"open": 10, "shortage_s": 0.05}, {"open": 10_000, "shortage_s": 0.06}],
        },
    }
    text = "\n".join(bench.report_modes(result))
    assert "mix p99 500 ms, hot p99 1,500 ms, ratio 3.00x" in text
    assert "reservation ratio largest/smallest: 2.5 (target <= 1.5)" in text
    assert "approval ratio largest/smallest: n/a" in text
    assert " 10,000 open" in text
    assert " 10,000 open: shortage (approved->awaiting decision)     60.0 ms" in text
    assert "shortage ratio largest/smallest: 1.2 (target <= 1.5)" in text


def test_the_sustained_summary_is_printed_for_load_runs_and_not_for_growth_runs() -> None:
    shares = {"kafka_produce": 0.01, "kafka_consume": 0.001, "store_single": 0.3, "store_bulk": 0.1}
    sm = {
        "sustained_orders_per_s": 15,
        "criterion": "p99 < 1 s",
        "peak_achieved_orders_per_s": 37.7,
        "ratios_at_sustained": shares,
        "ratios_at_peak": shares,
    }
    for mode in ("throughput", "hot"):
        assert bench.sustained_lines(mode, sm)[-1] == "sustained 15 orders/s"
    assert bench.sustained_lines("growth", sm) == []


def test_store_commands_per_order_leave_out_a_restarted_service() -> None:
    before = bench.Snapshot({}, {}, None, {"intake": {"find": 10, "insert": 4}, "review": {"find": 50}})
    after = bench.Snapshot(
        {}, {}, None, {"intake": {"find": 30, "insert": 14, "findAndModify": 1}, "review": {"find": 3}}
    )
    per_order = after.command_delta(before, {"intake": 10, "review": 10})
    assert per_order == {"intake": {"find": 2.0, "findAndModify": 0.1, "insert": 1.0}}  # review's counters reset


def test_store_document_writes_per_order_come_from_the_services_counters() -> None:
    before = bench.Snapshot({}, {}, None, writes={"inventory": {"insert": 5, "update": 40}})
    after = bench.Snapshot({}, {}, None, writes={"inventory": {"insert": 15, "update": 100}, "intake": {"insert": 9}})
    assert after.write_delta(before, {"inventory": 20, "intake": 9}) == {"inventory": {"insert": 0.5, "update": 3.0}}
    line = bench.per_service_line({"inventory": {"insert": 0.5, "update": 3.0}, "intake": {"insert": 1.0}})
    assert line == "4.50: inventory 3.50 (insert 0.5, update 3.0); intake 1.00 (insert 1.0)"
