"""The bridge between the rule engine and the alert store, inside the ingest service.

Decisions are made synchronously as each message is decoded (so they follow
arrival order) and ride along with the message's rows: the alert is
committed in the same transaction as the telemetry, and the MQTT message is
acknowledged only after that. A message that raises an emergency is
committed at once, never behind a telemetry batch.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

import alerts
from devices import Event, Kind
from ingest.envelope import Envelope
from ingest.errors import MqttError
from ingest.pipeline import MessageRows
from ingest.presence import Presence
from ingest.waits import wait_for_stop
from rules import Action, RuleEngine, RuleHit, Severity, fail_safe_hit, unverified_alarm

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from datetime import datetime

    from ingest.session import MqttSession

logger = logging.getLogger(__name__)

#: How far back readings are reloaded into the windows after a restart.
RESTORE_WINDOW = timedelta(minutes=20)


class RuleFailureReport:
    """Counts contained rule failures and logs them without flooding the log.

    A rule that fails on one device's data tends to fail on every message of
    that device: each failure is counted, but a rule's failure is logged at
    most once per ``log_interval_s``, with how many there were meanwhile.
    Only the rule's name and the exception's type are logged, never an
    event's values (the traceback, which may quote them, only at debug).
    """

    def __init__(self, count: Callable[[str], None] | None = None, *, log_interval_s: float = 60.0) -> None:
        self._count = count
        self._log_interval_s = log_interval_s
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def __call__(self, rule: str, exc: BaseException) -> None:
        """Record one failure of ``rule``."""
        if self._count is not None:
            self._count(rule)
        now_mono = time.monotonic()
        last = self._last_logged.get(rule)
        if last is not None and now_mono - last < self._log_interval_s:
            self._unlogged[rule] = self._unlogged.get(rule, 0) + 1
            return
        self._last_logged[rule] = now_mono
        logger.error(
            "rule %s failed (%s); contained (%d more since the last report)",
            rule,
            type(exc).__name__,
            self._unlogged.pop(rule, 0),
            extra={"event": "rule_failed", "rule": rule},
        )
        logger.debug("rule %s failure", rule, exc_info=exc)


def to_request(hit: RuleHit) -> alerts.AlertRequest:
    """Translate a rule decision into the store's terms."""
    return alerts.AlertRequest(
        action=hit.action.value,
        rule=hit.rule,
        device_id=hit.device_id,
        severity=hit.severity.value,
        emergency=hit.emergency,
        dedup_key=hit.dedup_key,
        occurrence_key=hit.occurrence_key,
        triggered_at=hit.triggered_at,
        due_at=hit.due_at,
        evidence=dict(hit.evidence),
    )


class Alerting:
    """Owns the rule engine for the service.

    Nothing here may raise into the MQTT receive path: a failing rule is
    contained by the engine itself, and anything else that fails while a
    message is observed (presence tracking, translating a decision) is
    counted in ``rule_failures_total`` and, for a life-safety event, answered
    with a fail-safe alert.
    """

    def __init__(
        self,
        engine: RuleEngine,
        now: Callable[[], datetime],
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.presence = Presence(engine.silence_limit_s)
        self._now = now
        self._on_failure = on_failure or RuleFailureReport()

    def observe(self, rows: MessageRows) -> None:
        """Run the rules over a decoded message and attach their decisions."""
        received_at = rows.envelope.received_at
        for event in rows.decoded:
            self._observe_event(rows, event, received_at)
        for event, reason in rows.unverified:
            try:
                hit = unverified_alarm(
                    event, reason=reason.value, gateway_id=rows.gateway_id, received_at=received_at
                )
            except Exception as exc:  # noqa: BLE001 - contained; the fail-safe below answers
                self._on_failure("unverified_alarm", exc)
                hit = fail_safe_hit(event, exc)
            rows.alerts.append(to_request(hit))
            rows.life_safety = True

    def _observe_event(self, rows: MessageRows, event: Event, received_at: datetime) -> None:
        try:
            self.presence.note(event, gateway_id=rows.gateway_id, received_at=received_at)
        except Exception as exc:  # noqa: BLE001 - presence is bookkeeping: the rules still run
            self._on_failure("presence", exc)
        try:
            requests = [
                (to_request(hit), hit.action is Action.RAISE and hit.emergency)
                for hit in self.engine.observe(event, received_at=received_at)
            ]
        except Exception as exc:  # noqa: BLE001 - the engine contains its rules; this is the last guard
            self._on_failure("alerting", exc)
            if not event.is_life_safety:
                return
            requests = [(to_request(fail_safe_hit(event, exc)), True)]
        for request, emergency in requests:
            rows.alerts.append(request)
            if emergency:
                rows.life_safety = True

    def tick(self) -> MessageRows | None:
        """Decisions of the service clock (silence, expired fall windows), as a synthetic batch entry."""
        now = self._now()
        hits = self.engine.tick(now)
        if not hits:
            return None
        envelope = Envelope(
            topic="", payload=b"", packet_id=0, dup=False, received_at=now, received_mono=time.monotonic()
        )
        rows = MessageRows(envelope, synthetic=True)
        rows.alerts.extend(to_request(hit) for hit in hits)
        rows.life_safety = any(hit.emergency for hit in hits)
        return rows

    async def restore(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Rebuild what the rules need from the database after a (re)start."""
        for device_id, rule, severity in await alerts.active_alerts(conn):
            self.engine.restore_alert(device_id, rule, Severity(severity))
        holds = await alerts.pending_holds(conn)
        for device_id, key, device_time, received_at in holds:
            self.engine.restore_hold(device_id, key, device_time, received_at)
        since = self._now() - RESTORE_WINDOW
        cursor = await conn.execute(
            "SELECT device_id, time, value FROM readings"
            " WHERE metric = 'heart_rate_bpm' AND received_at > %s ORDER BY time",
            (since,),
        )
        for device_id, at, value in await cursor.fetchall():
            self.engine.restore_reading(
                Event(
                    device_id=device_id,
                    kind=Kind.HEART_RATE,
                    observed_at=at,
                    fields={"bpm": value},
                    event_key="",
                )
            )
        cursor = await conn.execute(
            "SELECT device_id, max(last_seen), max(last_activity) FROM ("
            "  SELECT device_id, max(received_at) AS last_seen,"
            "  max(received_at) FILTER (WHERE kind NOT IN ('heartbeat', 'battery')) AS last_activity"
            "  FROM device_events WHERE received_at > %s GROUP BY device_id"
            "  UNION ALL"  # readings-only devices (sensors) are known from presence
            "  SELECT device_id, last_seen_at, NULL FROM device_presence WHERE last_seen_at > %s"
            ") seen GROUP BY device_id",
            (self._now() - timedelta(days=2),) * 2,
        )
        for device_id, last_seen, last_activity in await cursor.fetchall():
            self.engine.restore_seen(device_id, last_seen_at=last_seen, last_activity_at=last_activity)
        logger.info(
            "rule state restored: %d devices, %d falls in their cancel window",
            self.engine.device_count,
            len(holds),
            extra={"event": "rules_restored"},
        )


async def maintain(
    dsn: str,
    stop: asyncio.Event,
    *,
    now: Callable[[], datetime],
    session: Callable[[], MqttSession | None],
    policy: alerts.AlertPolicy,
    interval_s: float = 1.0,
) -> None:
    """Escalate unacknowledged emergencies and publish the alert outbox, until stopped.

    Runs on its own connection so a long telemetry commit never delays an
    escalation. Publication is at least once: a row is marked published only
    after the broker acknowledged it.
    """
    conn: psycopg.AsyncConnection[Any] | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
            async with conn.transaction():
                await alerts.escalate_due(conn, now=now(), policy=policy)
            await _publish_outbox(conn, session(), now)
        except psycopg.OperationalError as exc:
            logger.warning(
                "alert maintenance: database unavailable (%s)",
                exc.sqlstate,
                extra={"event": "db_unavailable"},
            )
            if conn is not None:
                await conn.close()
            conn = None
        await wait_for_stop(stop, interval_s)
    if conn is not None:
        await conn.close()


async def _publish_outbox(
    conn: psycopg.AsyncConnection[Any], session: MqttSession | None, now: Callable[[], datetime]
) -> None:
    if session is None or not session.is_open:
        return
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT id, topic, payload FROM alert_outbox WHERE published_at IS NULL"
            " ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED"
        )
        rows = await cursor.fetchall()
        published: list[int] = []
        for outbox_id, topic, payload in rows:
            try:
                await session.publish(topic, json.dumps(payload).encode(), qos=1)
            except (MqttError, TimeoutError):  # retried on the next round
                logger.warning("alert publication failed; will retry", extra={"event": "alert_publish_retry"})
                break
            published.append(outbox_id)
        if published:
            await conn.execute(
                "UPDATE alert_outbox SET published_at = %s WHERE id = ANY(%s)", (now(), published)
            )
