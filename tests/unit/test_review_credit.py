"""Credit exposure bookkeeping: an order's claim moved on its customer's credit once per input, whatever an
interrupted attempt did, and a credit document whose size does not grow with the open orders."""

from services.review.domain import Source, counted, settle
from services.review.store import Credit, Op, credit_from_doc, credit_to_doc

A = "orderflow.orders.accepted:0"
C = "orderflow.orders.cancelled:3"


def at(offset: int, source: str = A, **began: int) -> Source:
    return Source(source, offset, {A: began.get("a", 0), C: began.get("c", 0)})


def test_a_claim_adds_to_the_total_and_is_recorded_under_its_input() -> None:
    credit = settle(Credit(5000), "acc-1", "SO-1", 0, 11000, at(7))
    assert credit == Credit(16000, {"acc-1": Op("SO-1", 11000, A, 7)})


def test_a_replayed_claim_counts_once() -> None:
    claimed = settle(Credit(5000), "acc-1", "SO-1", 0, 11000, at(7))
    assert claimed is not None
    # the order's document was not written: it still holds 0, but the input's earlier attempt already counts
    assert counted(claimed, "acc-1", 0) == 11000
    assert settle(claimed, "acc-1", "SO-1", 0, 11000, at(7)) == claimed
    # the replay decided otherwise (e.g. master data changed in between): its first attempt is corrected
    assert settle(claimed, "acc-1", "SO-1", 0, 0, at(7)) == Credit(5000, {})
    assert settle(claimed, "acc-1", "SO-1", 0, 9000, at(7)) == Credit(14000, {"acc-1": Op("SO-1", 9000, A, 7)})


def test_an_amendment_gives_back_the_old_claim() -> None:
    credit = settle(Credit(16000), "acc-1-rev2", "SO-1", 11000, 22000, at(9))
    assert credit == Credit(27000, {"acc-1-rev2": Op("SO-1", 11000, A, 9)})
    assert settle(Credit(16000), "acc-1-rev2", "SO-1", 11000, 0, at(9)) == Credit(
        5000, {"acc-1-rev2": Op("SO-1", -11000, A, 9)}
    )


def test_a_cancel_releases_exactly_what_was_claimed_once() -> None:
    released = settle(Credit(16000), "cxl-1", "SO-1", 11000, 0, at(2, C))
    assert released == Credit(5000, {"cxl-1": Op("SO-1", -11000, C, 2)})
    # replayed before the order's document was written: it still says 11000, the release already counts
    assert counted(released, "cxl-1", 11000) == 0
    assert settle(released, "cxl-1", "SO-1", 11000, 0, at(2, C)) == released


def test_nothing_to_change_is_none() -> None:
    assert settle(Credit(5000), "rej-1", "SO-1", 0, 0, at(1)) is None
    assert settle(Credit(5000), "old-rev", "SO-1", 11000, 11000, at(1)) is None


def test_operations_of_completed_batches_are_dropped_so_the_record_stays_bounded() -> None:
    credit = Credit()
    for offset in range(1000):  # one order per batch: every earlier batch of the partition has completed
        step = settle(credit, f"acc-{offset}", f"SO-{offset}", 0, 100, at(offset, a=offset))
        assert step is not None
        credit = step
    assert credit.total == 100_000 and list(credit.ops) == ["acc-999"]
    # a batch of another partition still in flight is kept until that partition moves past it
    credit = Credit(100, {"cxl-5": Op("SO-5", -100, C, 5)})
    kept = settle(credit, "acc-1", "SO-1", 0, 100, at(1, c=5))
    assert kept is not None and set(kept.ops) == {"cxl-5", "acc-1"}
    dropped = settle(credit, "acc-1", "SO-1", 0, 100, at(1, c=6))
    assert dropped is not None and set(dropped.ops) == {"acc-1"}


def test_settle_leaves_the_credit_given_alone() -> None:
    credit = Credit(100, {"x": Op("SO-X", 100, A, 0)})
    settle(credit, "acc-1", "SO-1", 0, 50, at(3, a=3))
    assert credit == Credit(100, {"x": Op("SO-X", 100, A, 0)})


def test_stored_form_round_trips() -> None:
    stored = {"total": 1250, "ops": {"acc-1": {"n": "SO-1", "d": 1000, "s": A, "o": 4}}}
    assert credit_to_doc(credit_from_doc(stored)) == stored
    assert credit_from_doc({"total": 7}) == Credit(7, {})
