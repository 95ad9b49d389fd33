"""The ``carewatch ingest`` service: the composition root.

It wires broker intake, decoding, batching and storage together, and owns
the order of shutdown: stop taking messages, commit what was taken,
acknowledge it, disconnect (keeping the broker-side session), close the
database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import CollectorRegistry

from devices import SUBSCRIPTION, RejectReason
from ingest import wire
from ingest.alerting import Alerting, RuleFailureReport, maintain
from ingest.batcher import Batcher
from ingest.broker_stats import BrokerStats, watch_broker
from ingest.db_errors import ErrorClass, classify, short_reason
from ingest.envelope import Envelope
from ingest.errors import ConfigError, MqttError
from ingest.http import StatusServer
from ingest.metrics import IngestMetrics, ProbeState, probe_database
from ingest.pipeline import MessageRows, Pipeline, quarantine
from ingest.reconnect_policy import ReconnectPolicy
from ingest.registry import context_resolver
from ingest.retention import run_retention
from ingest.rule_thresholds import write_thresholds
from ingest.schema import StorageInfo, migrate
from ingest.session import MqttSession
from ingest.storage import TelemetryWriter
from ingest.supervision import Supervision
from ingest.waits import wait_for_stop
from rules import RuleEngine

if TYPE_CHECKING:
    from collections.abc import Callable

    from ingest.settings import IngestSettings, MqttSettings

logger = logging.getLogger(__name__)

#: Decode and rule timings are taken for one message in 16: two clock reads
#: and two histogram updates per message cost more than the sample is worth.
_TIMING_SAMPLE_MASK = 15


def utc_now() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


async def prepare_database(
    dsn: str, settings: IngestSettings, stop: asyncio.Event, *, retry_max_s: float = 5.0
) -> StorageInfo | None:
    """Apply the schema, retrying until the database answers; None if stopped first.

    Raises:
        ConfigError: the settings are wrong (no such database, bad
            credentials): retrying would only hide it, so the service exits
            with the database's own words.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
                return await migrate(conn, timescale=settings.timescale)
        except psycopg.Error as exc:
            cause = classify(exc)
            if cause is ErrorClass.CONFIGURATION:
                raise ConfigError(f"cannot use the database: {short_reason(exc)}") from exc
            if cause is not ErrorClass.UNAVAILABLE:
                raise
            logger.warning(
                "database not reachable (%s); retrying in %.1fs",
                exc.sqlstate or "connection",
                delay,
                extra={"event": "db_unavailable"},
            )
        await wait_for_stop(stop, delay)
        delay = min(delay * 2, retry_max_s)
    return None


class Intake:
    """Keeps an MQTT session up and feeds every message to the batcher."""

    def __init__(
        self,
        settings: MqttSettings,
        pipeline: Pipeline,
        batcher: Batcher,
        metrics: IngestMetrics,
        *,
        now: Callable[[], datetime],
        alerting: Alerting,
    ) -> None:
        self._settings = settings
        self._filters = (SUBSCRIPTION, *(route.topic_filter for route in pipeline.routes))
        self._alerting = alerting
        self._pipeline = pipeline
        self._batcher = batcher
        self._metrics = metrics
        self._now = now
        self._session: MqttSession | None = None
        self._subscribed = False
        self._paused = False
        self._seq = 0

    @property
    def session(self) -> MqttSession | None:
        """The current session, if connected (for publishing alerts)."""
        return self._session if self.connected else None

    @property
    def connected(self) -> bool:
        """Tell whether a session is up and its subscription confirmed."""
        return self._subscribed and self._session is not None and self._session.is_open

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, and reconnect after every loss until stopped.

        How long each wait is, and what is logged and counted, is the
        :class:`ReconnectPolicy`'s: capped jittered backoff that restarts
        only after a session stayed up, and longer waits for a takeover, a
        refused login or a quota, so two ingests sharing a client id or a
        revoked password never make a tight reconnect loop.
        """
        options = wire.ConnectOptions(
            client_id=self._settings.client_id,
            keepalive_s=self._settings.keepalive_s,
            session_expiry_s=self._settings.session_expiry_s,
            receive_maximum=self._settings.receive_maximum,
            username=self._settings.username,
            password=self._settings.password,
            protocol_level=self._settings.protocol_level,
        )
        ssl_context = self._settings.ssl_context()
        policy = ReconnectPolicy(self._metrics)
        callback_failures = self._metrics.mqtt_callback_failures
        while not stop.is_set():
            opened: MqttSession | None = None
            try:
                opened = await MqttSession.open(
                    host=self._settings.host,
                    port=self._settings.port,
                    options=options,
                    on_publish=self._on_publish,
                    ssl_context=ssl_context,
                    on_callback_failure=lambda kind: callback_failures.labels(kind=kind).inc(),
                )
                self._session = session = opened
                self._subscribed = False
                # Always (re)subscribe: harmless when the session already has it,
                # and it repairs a session the broker expired.
                for topic_filter in self._filters:
                    await session.subscribe(topic_filter, qos=1)
                self._subscribed = True
            except (MqttError, TimeoutError) as exc:
                if opened is not None:
                    opened.abort()  # a refused subscription must not leave the session half up
                await wait_for_stop(stop, policy.connect_failed_delay_s(exc))
                continue
            policy.connected()
            logger.info(
                "connected to mqtt %s:%d (session present: %s)",
                self._settings.host,
                self._settings.port,
                session.session_present,
                extra={"event": "mqtt_connected"},
            )
            stop_wait = asyncio.ensure_future(stop.wait())
            waiters: list[asyncio.Future[Any]] = [session.closed, stop_wait]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if stop.is_set():
                self._metrics.mqtt_connected.set(0)
                break
            await wait_for_stop(stop, policy.session_ended_delay_s(session.closed.result()))

    def pause(self) -> None:
        """Stop taking messages; what the broker still holds stays in our session."""
        self._paused = True
        if self._session is not None:
            self._session.pause_reading()

    async def close(self) -> None:
        """Disconnect normally (the broker keeps the session)."""
        if self._session is not None:
            await self._session.close()

    def _on_publish(self, session: MqttSession, packet: wire.Publish) -> None:
        if self._paused:
            return  # never acknowledged: redelivered after restart
        self._metrics.messages_received.inc()
        envelope = Envelope(
            topic=packet.topic,
            payload=packet.payload,
            packet_id=packet.packet_id,
            dup=packet.dup,
            received_at=self._now(),
            received_mono=time.monotonic(),
        )
        try:
            rows = self._process(envelope)
        except Exception as exc:  # noqa: BLE001 - nothing may escape into the MQTT receive loop
            rows = self._unprocessable(envelope, exc)
        self._batcher.add(rows, session)

    def _process(self, envelope: Envelope) -> MessageRows:
        self._seq += 1
        if self._seq & _TIMING_SAMPLE_MASK:
            rows = self._pipeline.process(envelope)
            self._alerting.observe(rows)
            self._metrics.observe_decode(rows, None)
            self._metrics.observe_rules(rows.alerts, None)
            return rows
        # One message in 16 is timed: the histograms are samples, the counters exact.
        started = time.perf_counter()
        rows = self._pipeline.process(envelope)
        decoded = time.perf_counter()
        self._alerting.observe(rows)
        self._metrics.observe_decode(rows, decoded - started)
        self._metrics.observe_rules(rows.alerts, time.perf_counter() - decoded)
        return rows

    def _unprocessable(self, envelope: Envelope, exc: Exception) -> MessageRows:
        """The last guard: keep the raw message in quarantine so it is stored, acknowledged, never looped."""
        logger.error(
            "unexpected error processing a message (%s); quarantined",
            type(exc).__name__,
            extra={"event": "message_crashed", "topic": envelope.topic},
        )
        rows = MessageRows(envelope)
        quarantine(rows, RejectReason.INTERNAL_ERROR, type(exc).__name__, None, None)
        return rows


class _NoAck:
    """The source of synthetic batch entries: nothing to acknowledge."""

    def ack(self, packet_ids: list[int]) -> bool:
        return not packet_ids


async def _tick(alerting: Alerting, batcher: Batcher, stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """Give the rules the service clock: silence, expired fall windows, inactivity."""
    source = _NoAck()
    while not stop.is_set():
        rows = alerting.tick()
        if rows is not None:
            batcher.add(rows, source)
        await wait_for_stop(stop, interval_s)


def _tune_gc() -> None:
    """Take everything that exists after start-up out of the garbage collector's walks.

    Almost everything allocated per message is freed by reference counting;
    the collector's cost is the full collections that walk every long-lived
    object (modules, the restored rule state). Freezing them makes those
    walks shorter. The generation thresholds stay at their defaults: a
    larger young generation made the panic latency tail worse
    (bench/alert_latency.py), and a panic's latency matters more than bulk
    throughput.
    """
    gc.collect()
    gc.freeze()


async def _restore(dsn: str, supervision: Supervision, alerting: Alerting) -> None:
    """Load the registry, then the rules' state (which needs the registry's profiles)."""
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
        await supervision.reload(conn)
        await alerting.restore(conn)


async def _write_thresholds(settings: IngestSettings, now: Callable[[], datetime]) -> None:
    """Publish the loaded rule thresholds for the dashboards (issue 6)."""
    async with await psycopg.AsyncConnection.connect(settings.dsn, connect_timeout=10) as conn:
        await write_thresholds(conn, settings.rules, now=now())


def _start_operations(  # noqa: PLR0917 - private; the composition root's own parts
    tasks: asyncio.TaskGroup,
    settings: IngestSettings,
    info: StorageInfo,
    metrics: IngestMetrics,
    probe: ProbeState,
    broker_stats: BrokerStats,
    stop: asyncio.Event,
    now: Callable[[], datetime],
) -> None:
    """Start the operations tasks (issue 6): database probe, retention, broker statistics."""
    tasks.create_task(
        probe_database(settings.dsn, metrics, stop, state=probe, now=now), name="ingest.db_probe"
    )
    tasks.create_task(
        run_retention(settings.dsn, info, settings.retention, stop, metrics=metrics, now=now),
        name="ingest.retention",
    )
    tasks.create_task(watch_broker(settings.mqtt, broker_stats, stop), name="ingest.broker_stats")


async def run_ingest(  # noqa: PLR0915 - the composition root: every part is wired here, in order
    settings: IngestSettings,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    now: Callable[[], datetime] = utc_now,
) -> int:
    """Run the service until ``stop`` is set; return the process exit code."""
    registry = registry or CollectorRegistry()
    metrics = IngestMetrics(registry)
    writer = TelemetryWriter(settings.dsn, alert_policy=settings.alert_policy)
    urgent_writer = TelemetryWriter(settings.dsn, alert_policy=settings.alert_policy)
    batcher = Batcher(writer, metrics, settings.batch, now=now, urgent_writer=urgent_writer)
    metrics.track_queue_depth(lambda: batcher.pending)
    pipeline = Pipeline(settings.pipeline)
    rule_failures = RuleFailureReport(lambda rule: metrics.rule_failures.labels(rule=rule).inc())
    engine = RuleEngine(
        settings.rules,
        context=context_resolver(lambda: pipeline.registry, settings.rules, now),
        on_failure=rule_failures,
    )
    alerting = Alerting(engine, now, on_failure=rule_failures)
    supervision = Supervision(pipeline, engine, alerting.presence, enforcement=settings.registry)
    intake = Intake(settings.mqtt, pipeline, batcher, metrics, now=now, alerting=alerting)

    metrics.track_connection("batch", lambda: writer.connected)
    metrics.track_connection("life_safety", lambda: urgent_writer.connected)
    metrics.rules_devices_tracked.set_function(lambda: engine.device_count)
    probe, broker_stats = ProbeState(), BrokerStats()
    registry.register(broker_stats)

    def ready() -> tuple[bool, str]:
        database = (batcher.database_ok or batcher.pending == 0) and probe.ok is not False
        checks = {"mqtt": intake.connected, "database": database}
        return all(checks.values()), " ".join(f"{k}={'up' if v else 'down'}" for k, v in checks.items())

    status: StatusServer | None = None
    if settings.metrics_port:
        status = StatusServer(registry, ready=ready, host=settings.metrics_host, port=settings.metrics_port)
        await status.start()
    try:
        info = await prepare_database(settings.dsn, settings, stop)
        if info is None:
            return 0
        metrics.storage.info({"backend": info.backend, "license": info.license or "none"})
        await _restore(settings.dsn, supervision, alerting)
        await _write_thresholds(settings, now)
        _tune_gc()
        batcher.database_ok = True
        metrics.db_up.set(1)
        maintenance_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            batcher_task = tasks.create_task(batcher.run(), name="ingest.batcher")
            tasks.create_task(batcher.run_urgent(), name="ingest.life_safety_lane")
            intake_task = tasks.create_task(intake.run(stop), name="ingest.intake")
            tasks.create_task(_tick(alerting, batcher, stop), name="ingest.rules_clock")
            tasks.create_task(
                maintain(
                    settings.dsn,
                    maintenance_stop,
                    now=now,
                    session=lambda: intake.session,
                    policy=settings.alert_policy,
                ),
                name="ingest.alert_maintenance",
            )
            tasks.create_task(supervision.run(settings.dsn, maintenance_stop), name="ingest.supervision")
            _start_operations(tasks, settings, info, metrics, probe, broker_stats, maintenance_stop, now)
            await stop.wait()
            logger.info("stopping: draining uncommitted messages", extra={"event": "shutdown"})
            intake.pause()
            drained = await batcher.drain(settings.shutdown_timeout_s)
            batcher.stop_urgent()
            if not drained:
                batcher_task.cancel()
            maintenance_stop.set()
            await intake.close()
            await intake_task
        logger.info("stopped cleanly", extra={"event": "stopped"})
        return 0
    finally:
        await writer.close()
        await urgent_writer.close()
        if status is not None:
            await status.stop()
