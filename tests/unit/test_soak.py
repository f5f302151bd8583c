"""The soak's slope test: a steady rise fails, a plateau after warm-up and noise do not."""

import random

from orderflow.dev.soak import Series, lag_series, rss_series, store_series

MINUTES = 30
TIMES = [10.0 * i for i in range(1, MINUTES * 6 + 1)]


def within(values: list[float], s: Series) -> bool:
    for t, v in zip(TIMES, values, strict=True):
        s.add(t, v)
    return s.verdict(MINUTES * 60)[2]


def test_rss_that_plateaus_after_warm_up_with_noise_passes() -> None:
    rng = random.Random(1)
    values = [min(200.0, 100.0 + t / 6) + rng.uniform(-5, 5) for t in TIMES]  # +100 MB in 10 min, then flat
    assert within(values, rss_series("inventory"))


def test_rss_rising_steadily_fails() -> None:
    values = [150.0 + t / 60 * 2 for t in TIMES]  # 2 MB a minute: a leak
    assert not within(values, rss_series("inventory"))


def test_lag_that_keeps_up_passes_and_a_growing_backlog_fails() -> None:
    rng = random.Random(2)
    assert within([rng.uniform(0, 40) for _ in TIMES], lag_series(12.5))
    assert not within([t * 3 for t in TIMES], lag_series(12.5))


def test_store_bytes_per_order_flat_passes_and_growing_fails() -> None:
    assert within([4000.0 for _ in TIMES], store_series())
    assert not within([4000.0 + t for t in TIMES], store_series())
