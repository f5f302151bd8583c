"""The dashboard's Prometheus exporter: lag gauges per group/topic/partition from the same sample the page shows."""

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orderflow.lag import PartitionLag

PARTITION_LABELS = ["group", "topic", "partition"]


class LagCollector(Collector):
    """Renders the latest snapshot on every scrape (labels: group, topic, partition, status; never order data)."""

    def __init__(self, snapshot: Callable[[], tuple[list[PartitionLag], dict[str, Any]]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge family per figure."""
        rows, state = self.snapshot()
        lag = GaugeMetricFamily("orderflow_consumer_lag", "Messages not yet consumed", labels=PARTITION_LABELS)
        committed = GaugeMetricFamily(
            "orderflow_consumer_committed_offset", "Committed offset (absent: no commit)", labels=PARTITION_LABELS
        )
        end = GaugeMetricFamily("orderflow_consumer_log_end_offset", "Log-end offset", labels=PARTITION_LABELS)
        age = GaugeMetricFamily(
            "orderflow_consumer_oldest_unconsumed_age_seconds",
            "Age of the oldest unconsumed message (0 when nothing waits; absent when it could not be read)",
            labels=PARTITION_LABELS,
        )
        for r in rows:
            labels = [r.group, r.topic, str(r.partition)]
            lag.add_metric(labels, r.lag)
            end.add_metric(labels, r.log_end)
            if r.oldest_age_s is not None:  # unknown is left out, never shown as "nothing waits"
                age.add_metric(labels, r.oldest_age_s)
            if r.committed is not None:
                committed.add_metric(labels, r.committed)
        yield from (lag, committed, end, age)
        if not state:
            return
        yield GaugeMetricFamily("orderflow_dlq_messages", "Messages on orders.dlq", value=state["dlq"]["size"])
        orders = GaugeMetricFamily("orderflow_orders", "Orders per current status", labels=["status"])
        for status, n in state["orders"]["by_status"].items():
            orders.add_metric([status], n)
        yield orders
        stuck = GaugeMetricFamily("orderflow_orders_stuck", "Orders in a status past its age limit", labels=["status"])
        for status, n in state["stuck"]["counts"].items():
            stuck.add_metric([status], n)
        yield stuck
        yield GaugeMetricFamily(
            "orderflow_lag_sampled_timestamp_seconds", "When the lag shown was measured", value=state["sampled_at"]
        )


def registry(snapshot: Callable[[], tuple[list[PartitionLag], dict[str, Any]]]) -> CollectorRegistry:
    """A registry holding only the lag collector (not the process-wide default one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LagCollector(snapshot))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `reg`."""
    return generate_latest(reg)
