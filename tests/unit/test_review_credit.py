"""Credit exposure bookkeeping: claims and releases on one customer's credit, and its stored form."""

from services.review.domain import claim, release
from services.review.store import Credit, credit_from_doc, credit_to_doc


def test_claims_add_up_and_a_repeated_claim_counts_once() -> None:
    credit = claim(Credit(), "SO-1", 1000)
    credit = claim(credit, "SO-2", 250)
    assert credit == Credit(1250, {"SO-1": 1000, "SO-2": 250})
    assert claim(credit, "SO-1", 1000) is credit


def test_release_drops_only_that_order_and_reports_the_cents() -> None:
    credit = claim(claim(Credit(), "SO-1", 1000), "SO-2", 250)
    after, released = release(credit, "SO-1")
    assert (after, released) == (Credit(250, {"SO-2": 250}), 1000)
    again, none = release(after, "SO-1")
    assert (again, none) == (after, 0)
    assert credit == Credit(1250, {"SO-1": 1000, "SO-2": 250}), "the credit given is never changed"


def test_release_of_a_customer_without_exposure_is_empty() -> None:
    assert release(Credit(), "SO-9") == (Credit(0, {}), 0)


def test_stored_form_round_trips_and_keeps_the_old_shape() -> None:
    stored = {"total": 1250, "orders": {"SO-1": 1000, "SO-2": 250}}
    assert credit_to_doc(credit_from_doc(stored)) == stored
