"""Prometheus metrics of the ingest service.

All metrics live in one container built on an injected registry, so tests
read them from a fresh ``CollectorRegistry``. Names carry their unit; labels
are small closed sets (never a device id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, Info

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

_LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class IngestMetrics:
    """Every metric the ingest service exports."""

    __slots__ = (
        "ack_lag",
        "acks_lost",
        "batch_messages",
        "db_up",
        "duplicate_rows",
        "flush_duration",
        "flush_failures",
        "messages_ignored",
        "messages_quarantined",
        "messages_received",
        "messages_stored",
        "mqtt_connected",
        "mqtt_connects",
        "rows_written",
        "salvaged_events",
        "storage",
        "unacked_messages",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.messages_received = counter("carewatch_ingest_messages_received_total", "MQTT messages received")
        self.messages_stored = counter(
            "carewatch_ingest_messages_stored_total",
            "Messages whose rows were committed and that were acknowledged to the broker",
        )
        self.messages_quarantined = counter(
            "carewatch_ingest_messages_quarantined_total",
            "Messages (or parts) quarantined, by reason",
            ("reason",),
        )
        self.messages_ignored = counter(
            "carewatch_ingest_messages_ignored_total",
            "Messages that are not device input (the alert stream)",
        )
        self.salvaged_events = counter(
            "carewatch_ingest_life_safety_flagged_total",
            "Panic/fall events kept despite a bad timestamp or field, by flag",
            ("flag",),
        )
        self.rows_written = counter(
            "carewatch_ingest_rows_written_total", "New rows committed, by table", ("table",)
        )
        self.duplicate_rows = counter(
            "carewatch_ingest_duplicate_rows_total",
            "Rows already stored (redelivery), by table",
            ("table",),
        )
        self.batch_messages = Histogram(
            "carewatch_ingest_batch_messages",
            "Messages per committed batch",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.flush_duration = Histogram(
            "carewatch_ingest_flush_duration_seconds",
            "Time to commit one batch",
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.ack_lag = Histogram(
            "carewatch_ingest_ack_lag_seconds",
            "From receiving a message to acknowledging it after commit",
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.flush_failures = counter(
            "carewatch_ingest_flush_failures_total",
            "Batches that could not be committed, by cause",
            ("cause",),
        )
        self.acks_lost = counter(
            "carewatch_ingest_acks_lost_total",
            "Committed messages whose connection closed before the ack (the broker redelivers them)",
        )
        self.mqtt_connects = counter(
            "carewatch_ingest_mqtt_connects_total",
            "MQTT connection attempts, by outcome",
            ("outcome",),
        )
        self.mqtt_connected = Gauge(
            "carewatch_ingest_mqtt_connected", "1 while connected to the broker", registry=registry
        )
        self.db_up = Gauge(
            "carewatch_ingest_db_up", "1 while the last database write succeeded", registry=registry
        )
        self.unacked_messages = Gauge(
            "carewatch_ingest_queue_depth_messages",
            "Messages received and not yet acknowledged (bounded by the MQTT receive maximum)",
            registry=registry,
        )
        self.storage = Info("carewatch_ingest_storage", "The storage backend in use", registry=registry)

    def track_queue_depth(self, read: Callable[[], float]) -> None:
        """Read the queue depth at scrape time instead of mirroring it."""
        self.unacked_messages.set_function(read)
