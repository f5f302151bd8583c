"""Batches fill under load (issue 15): a batch that did not fill waits out what is left of the service's batch
interval before the next is taken; a full batch, or one that took longer than the interval, does not wait."""

import pytest

from services.runtime.kafka import pause


@pytest.mark.parametrize(
    ("filled", "interval", "elapsed", "expected"),
    [
        (False, 0.030, 0.010, 0.020),  # what is left of the interval
        (False, 0.030, 0.045, 0.0),  # the batch outlasted the interval: the next one at once
        (True, 0.030, 0.001, 0.0),  # a full batch: more is waiting
        (False, 0.0, 0.0, 0.0),  # interval off
    ],
)
def test_a_batch_that_did_not_fill_waits_out_the_rest_of_the_interval(
    filled: bool, interval: float, elapsed: float, expected: float
) -> None:
    assert pause(filled, interval, elapsed) == pytest.approx(expected)
