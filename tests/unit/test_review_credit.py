"""Credit exposure bookkeeping: claims and releases on one customer's credit document."""

from services.review.domain import claim, exposure_of, release


def test_claims_add_up_and_a_repeated_claim_counts_once() -> None:
    credit = claim(None, "SO-1", 1000)
    credit = claim(credit, "SO-2", 250)
    assert exposure_of(credit) == (1250, {"SO-1": 1000, "SO-2": 250})
    assert claim(credit, "SO-1", 1000) == credit


def test_release_drops_only_that_order_and_reports_the_cents() -> None:
    credit = claim(claim(None, "SO-1", 1000), "SO-2", 250)
    after, released = release(credit, "SO-1")
    assert (exposure_of(after), released) == ((250, {"SO-2": 250}), 1000)
    again, none = release(after, "SO-1")
    assert (again, none) == (after, 0)


def test_release_of_a_customer_without_exposure_is_empty() -> None:
    assert release(None, "SO-9") == ({"total": 0, "orders": {}}, 0)
