"""The chaos suite's fault injection: off by default, deterministic per message, fails only after a change."""

import pytest

from services.runtime import faults
from services.runtime.faults import InjectedFault


def test_off_by_default_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_FAULT_RATE", raising=False)
    assert faults.rate() == 0.0
    with faults.message("orders.submitted:0:1", share=0.0):
        for _ in range(5):
            faults.recorded()
    faults.recorded()  # outside any message: nothing to fail


def test_the_choice_is_the_same_for_the_same_message_and_near_the_share() -> None:
    origins = [f"orders.approved:{p}:{o}" for p in range(6) for o in range(2000)]
    chosen = [o for o in origins if faults.plan_for(o, 0.01)]
    assert 0.007 < len(chosen) / len(origins) < 0.013
    assert chosen == [o for o in origins if faults.plan_for(o, 0.01)]
    assert {faults.plan_for(o, 0.01) for o in chosen} == set(range(1, faults.MAX_POINT + 1))


def test_a_chosen_message_fails_at_its_point_and_only_once() -> None:
    origin = next(f"t:0:{i}" for i in range(10_000) if faults.plan_for(f"t:0:{i}", 0.5) == 2)
    with pytest.raises(InjectedFault, match="after recorded change #2"), faults.message(origin, share=0.5):
        faults.recorded()
        faults.recorded()
        raise AssertionError("not reached")


def test_a_chosen_message_with_fewer_changes_fails_when_its_handler_returns() -> None:
    origin = next(f"t:0:{i}" for i in range(10_000) if faults.plan_for(f"t:0:{i}", 0.5) == 3)
    with pytest.raises(InjectedFault, match="at the end of the handler, after 1 recorded"), faults.message(origin, 0.5):
        faults.recorded()


def test_a_message_that_recorded_nothing_never_fails() -> None:
    origin = next(f"t:0:{i}" for i in range(10_000) if faults.plan_for(f"t:0:{i}", 0.5))
    with faults.message(origin, share=0.5):
        pass


def test_a_bad_rate_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_FAULT_RATE", "1%")
    with pytest.raises(ValueError, match="ORDERFLOW_FAULT_RATE='1%'"):
        faults.rate()
