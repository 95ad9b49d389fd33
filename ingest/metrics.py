"""Prometheus metrics of the ingest service.

All metrics live in one container built on an injected registry, so tests
read them from a fresh ``CollectorRegistry``. Names carry their unit; labels
are small closed sets (never a device id). The alert and dispatch-queue
gauges are sampled from the database (:func:`probe_database`), because the
queue lives there, shared by every dispatcher console; the broker's own
counters come from ``ingest.broker_stats``. docs/operations.md lists them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import Counter, Gauge, Histogram, Info

from devices import RejectReason
from devices.codecs import CODECS
from ingest.db_errors import ErrorClass
from ingest.waits import wait_for_stop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from prometheus_client import CollectorRegistry

    from alerts import AlertRequest
    from ingest.pipeline import MessageRows

logger = logging.getLogger(__name__)

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
_FAST_BUCKETS_S = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1)
#: The format label's closed set: the codecs' channel names, plus one for everything else.
FORMATS = frozenset(CODECS)
UNKNOWN_FORMAT = "unknown"


#: Every ``rule`` label a contained failure can carry (rules/engine.py, ingest/alerting.py).
_CONTAINED_RULES = (
    "panic", "fall", "cancel", "heart_rate", "spo2", "body_temp", "battery", "worn",
    "service_clock", "presence", "alerting", "unverified_alarm",
)  # fmt: skip


class IngestMetrics:
    """Every metric the ingest service exports."""

    __slots__ = (
        "_decode_children",
        "ack_lag",
        "acks_lost",
        "alerts_active",
        "batch_messages",
        "codec_decode_duration",
        "codec_messages",
        "db_connections_open",
        "db_probe_duration",
        "db_probe_up",
        "db_up",
        "dispatch_oldest_waiting_age",
        "dispatch_queue_depth",
        "duplicate_rows",
        "flush_duration",
        "flush_failures",
        "messages_ignored",
        "messages_quarantined",
        "messages_received",
        "messages_stored",
        "mqtt_callback_failures",
        "mqtt_connected",
        "mqtt_connects",
        "mqtt_disconnects",
        "mqtt_session_takeovers",
        "outbox_pending",
        "retention_chunks_dropped",
        "retention_failures",
        "retention_last_success",
        "retention_rows_deleted",
        "retention_run_duration",
        "rows_written",
        "rule_decisions",
        "rule_failures",
        "rules_devices_tracked",
        "rules_evaluation_duration",
        "salvaged_events",
        "sla_breached_active",
        "storage",
        "unacked_messages",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self._decode_children: dict[tuple[str, str], tuple[Any, Any]] = {}

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
        self.mqtt_disconnects = counter(
            "carewatch_ingest_mqtt_disconnects_total",
            "Established MQTT sessions that ended, by cause (ingest/reasons.py labels)",
            ("reason",),
        )
        self.mqtt_session_takeovers = counter(
            "carewatch_ingest_mqtt_session_takeovers_total",
            "Times the broker ended our session because another client connected with our "
            "client id (0x8E): two ingests share a --client-id",
        )
        self.mqtt_callback_failures = counter(
            "carewatch_ingest_mqtt_callback_failures_total",
            "Inbound messages whose handler raised, by exception type; left unacknowledged "
            "so the broker redelivers them",
            ("kind",),
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

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        # Codecs: one sample per message, by the topic's channel (= the codec).
        self.codec_messages = counter(
            "carewatch_codec_messages_total",
            "Device messages by format and outcome (decoded, partial: some parts quarantined, quarantined)",
            ("format", "outcome"),
        )
        self.codec_decode_duration = histogram(
            "carewatch_codec_decode_duration_seconds",
            "Time to decode one message into rows, by format",
            _FAST_BUCKETS_S,
            ("format",),
        )
        # Rules.
        self.rule_decisions = counter(
            "carewatch_rules_decisions_total",
            "Rule engine decisions, by rule and action (raise, clear, hold, cancel)",
            ("rule", "action"),
        )
        self.rule_failures = counter(
            "carewatch_rules_failures_total",
            "Rule evaluations that raised and were contained, by rule (a life-safety event still alerts)",
            ("rule",),
        )
        self.rules_evaluation_duration = histogram(
            "carewatch_rules_evaluation_duration_seconds",
            "Time the rules take over one decoded message",
            _FAST_BUCKETS_S,
        )
        self.rules_devices_tracked = gauge(
            "carewatch_rules_devices_tracked_devices", "Devices the rule engine holds state for"
        )
        # Alerts and the dispatch queue, sampled from the database (the queue
        # lives there, shared by every dispatcher console).
        self.alerts_active = gauge(
            "carewatch_alerts_active_alerts",
            "Alerts not yet resolved or cleared, by state and severity",
            ("state", "severity"),
        )
        self.dispatch_queue_depth = gauge(
            "carewatch_dispatch_queue_depth_alerts", "Open alerts no dispatcher has acknowledged yet"
        )
        self.dispatch_oldest_waiting_age = gauge(
            "carewatch_dispatch_oldest_waiting_alert_age_seconds",
            "Age of the oldest open (unacknowledged) alert; 0 when the queue is empty",
        )
        self.sla_breached_active = gauge(
            "carewatch_alerts_sla_breached_alerts",
            "Open or acknowledged alerts past their on-site deadline (nobody dispatched in time)",
        )
        self.outbox_pending = gauge(
            "carewatch_alerts_outbox_pending_messages", "Alert notifications not yet published to MQTT"
        )
        # Database pool: one long-lived connection per role.
        self.db_connections_open = gauge(
            "carewatch_db_connections_open_connections", "Open database connections, by role", ("role",)
        )
        self.db_probe_up = gauge(
            "carewatch_db_probe_up", "1 while the periodic database probe (the queue sample) succeeds"
        )
        self.db_probe_duration = histogram(
            "carewatch_db_probe_duration_seconds",
            "Round trip of the periodic database probe",
            _LATENCY_BUCKETS_S,
        )
        # Retention (see ingest/retention.py).
        self.retention_rows_deleted = counter(
            "carewatch_retention_deleted_rows_total", "Rows removed by batched DELETE, by table", ("table",)
        )
        self.retention_chunks_dropped = counter(
            "carewatch_retention_dropped_chunks_total", "TimescaleDB chunks dropped, by table", ("table",)
        )
        self.retention_failures = counter(
            "carewatch_retention_failures_total", "Retention rounds that failed (retried next round)"
        )
        self.retention_last_success = gauge(
            "carewatch_retention_last_success_timestamp_seconds",
            "Unix time of the last complete retention round (or policy set-up, where licensed)",
        )
        self.retention_run_duration = histogram(
            "carewatch_retention_run_duration_seconds", "Duration of one retention round", _LATENCY_BUCKETS_S
        )

        # Closed label sets start at 0: rate() and increase() then see the
        # first failure or rejection, and alert expressions have a series to read.
        for rule in _CONTAINED_RULES:
            self.rule_failures.labels(rule=rule)
        for cause in (*ErrorClass, "unexpected"):
            self.flush_failures.labels(cause=cause)
        for reason in RejectReason:
            self.messages_quarantined.labels(reason=reason.value)

    def track_queue_depth(self, read: Callable[[], float]) -> None:
        """Read the queue depth at scrape time instead of mirroring it."""
        self.unacked_messages.set_function(read)

    def track_connection(self, role: str, is_open: Callable[[], bool]) -> None:
        """Read whether a role's connection is open at scrape time."""
        self.db_connections_open.labels(role=role).set_function(lambda: float(is_open()))

    def observe_decode(self, rows: MessageRows, duration_s: float | None) -> None:
        """Count one decoded message by format and outcome.

        The format comes from the topic's channel and is folded into a closed
        set, so a device inventing channels cannot inflate the label space.
        """
        if rows.ignored or rows.synthetic:
            return
        channel = rows.channel or UNKNOWN_FORMAT
        stored = bool(rows.readings or rows.events)
        outcome = ("partial" if stored else "quarantined") if rows.quarantine else "decoded"
        # Labelled children are cached: .labels() costs a lock and a dict
        # build, paid per message at thousands of messages per second.
        children = self._decode_children.get((channel, outcome))
        if children is None:
            fmt = channel if channel in FORMATS else UNKNOWN_FORMAT
            children = (
                self.codec_messages.labels(format=fmt, outcome=outcome),
                self.codec_decode_duration.labels(format=fmt),
            )
            if fmt != UNKNOWN_FORMAT:  # never let invented channels grow the cache
                self._decode_children[(channel, outcome)] = children
        children[0].inc()
        if duration_s is not None:
            children[1].observe(duration_s)

    def observe_rules(self, decisions: Iterable[AlertRequest], duration_s: float | None) -> None:
        """Count the rule engine's decisions over one message (and its timing, when sampled)."""
        for decision in decisions:
            self.rule_decisions.labels(rule=decision.rule, action=decision.action).inc()
        if duration_s is not None:
            self.rules_evaluation_duration.observe(duration_s)


_ACTIVE_STATES = ("open", "acknowledged", "dispatched")
_SEVERITIES = ("critical", "major", "warning")

_ACTIVE_BY_STATE_SQL = (
    "SELECT state, severity, count(*) FROM alerts WHERE state = ANY(%s) GROUP BY state, severity"
)
_QUEUE_SQL = """
SELECT (SELECT count(*) FROM alerts WHERE state = 'open'),
       (SELECT coalesce(extract(epoch FROM %(now)s - min(raised_at)), 0) FROM alerts WHERE state = 'open'),
       (SELECT count(*) FROM alerts WHERE state IN ('open', 'acknowledged') AND sla_due_at <= %(now)s),
       (SELECT count(*) FROM alert_outbox WHERE published_at IS NULL)
"""


async def sample_alerts(conn: psycopg.AsyncConnection[Any], metrics: IngestMetrics, *, now: datetime) -> None:
    """Set the alert and dispatch-queue gauges from the database.

    The queue lives in the database, shared by every dispatcher console, so
    it is measured there rather than from what this process raised.
    """
    cursor = await conn.execute(_ACTIVE_BY_STATE_SQL, (list(_ACTIVE_STATES),))
    counts = {(str(state), str(severity)): int(n) for state, severity, n in await cursor.fetchall()}
    for state in _ACTIVE_STATES:
        for severity in _SEVERITIES:
            metrics.alerts_active.labels(state=state, severity=severity).set(counts.get((state, severity), 0))
    cursor = await conn.execute(_QUEUE_SQL, {"now": now})
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - scalar subqueries return one row
    depth, oldest_s, breached, outbox = row
    metrics.dispatch_queue_depth.set(int(depth))
    metrics.dispatch_oldest_waiting_age.set(max(0.0, float(oldest_s)))
    metrics.sla_breached_active.set(int(breached))
    metrics.outbox_pending.set(int(outbox))


@dataclass(slots=True)
class ProbeState:
    """The database probe's last result, for ``/readyz``.

    Attributes:
        ok: None before the first probe, then whether the last one succeeded.
    """

    ok: bool | None = None


async def probe_database(
    dsn: str,
    metrics: IngestMetrics,
    stop: asyncio.Event,
    *,
    state: ProbeState,
    now: Callable[[], datetime],
    interval_s: float = 5.0,
    timeout_s: float = 5.0,
) -> None:
    """Sample the alert gauges every ``interval_s`` on a connection of its own, until stopped.

    Doubles as the database health check behind ``/readyz``: the batcher
    only learns about an outage when it next writes, which on a quiet night
    may be minutes away.
    """
    conn: psycopg.AsyncConnection[Any] | None = None
    metrics.track_connection("probe", lambda: conn is not None and not conn.closed)
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        dsn,
                        connect_timeout=max(1, int(timeout_s)),
                        autocommit=True,
                        application_name="carewatch-probe",
                    )
                await sample_alerts(conn, metrics, now=now())
            metrics.db_probe_up.set(1)
            state.ok = True
            metrics.db_probe_duration.observe(time.monotonic() - started)
        except (psycopg.Error, TimeoutError) as exc:
            metrics.db_probe_up.set(0)
            state.ok = False
            logger.warning(
                "database probe failed (%s)",
                getattr(exc, "sqlstate", None) or type(exc).__name__,
                extra={"event": "db_probe_failed"},
            )
            if conn is not None:
                await conn.close()
            conn = None
        await wait_for_stop(stop, interval_s)
    if conn is not None:
        await conn.close()
