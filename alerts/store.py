"""The alert store: raising idempotently, the dispatch queue, transitions with an audit trail.

Every function takes a connection and runs inside the caller's transaction,
so the ingest service can commit telemetry rows and the alerts they raised
together, and acknowledge the MQTT message only after that commit.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.errors import AlertNotFoundError, InvalidTransitionError
from alerts.lifecycle import (
    ACTIVE,
    BASE_PRIORITY,
    ESCALATION_PRIORITY_STEP,
    OCCURRENCE_PRIORITY_STEP,
    TRANSITIONS,
    State,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from psycopg import AsyncConnection

SYSTEM_ACTOR = "carewatch"
ALERT_TOPIC_PREFIX = "carewatch/v1/alerts/"
_RANK = {"warning": 1, "major": 2, "critical": 3}
_ACTIVE_STATES = [s.value for s in ACTIVE]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    """Deadlines and escalation.

    Attributes:
        emergency_sla_s: a responder on site within 15 minutes of an emergency.
        general_sla_s: within 30 minutes for general help.
        escalate_after_s: a critical alert not acknowledged this long is escalated,
            and again every time this passes until it is.
    """

    emergency_sla_s: float = 15 * 60
    general_sla_s: float = 30 * 60
    escalate_after_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRequest:
    """What a rule decided, in the store's terms.

    Attributes:
        action: ``raise``, ``clear``, ``hold`` or ``cancel``.
        rule: the rule's name.
        device_id: the device.
        severity: ``critical``, ``major`` or ``warning``.
        emergency: True for the 15-minute promise.
        dedup_key: one active alert per key.
        occurrence_key: identity of the triggering event.
        triggered_at: device time of the trigger.
        due_at: for ``hold``, when the cancel window closes.
        evidence: what made the rule fire.
    """

    action: str
    rule: str
    device_id: str
    severity: str
    emergency: bool
    dedup_key: str
    occurrence_key: str
    triggered_at: datetime
    due_at: datetime | None = None
    evidence: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An alert as stored."""

    id: int
    device_id: str
    rule: str
    severity: str
    priority: int
    state: str
    emergency: bool
    triggered_at: datetime
    raised_at: datetime
    sla_due_at: datetime
    dedup_key: str
    occurrence_count: int
    evidence: dict[str, Any]
    claimed_by: str | None
    acknowledged_by: str | None
    resolved_by: str | None
    escalation_level: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        """Build from a ``SELECT * FROM alerts`` row (dict_row)."""
        return cls(**{name: row[name] for name in cls.__slots__})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        return {name: v.isoformat() if isinstance(v, datetime) else v for name, v in values.items()}


async def apply(
    conn: AsyncConnection[Any],
    requests: Iterable[AlertRequest],
    *,
    now: datetime,
    policy: AlertPolicy | None = None,
) -> int:
    """Apply rule decisions in order; return how many alerts were opened.

    Idempotent: a request whose occurrence was already recorded under its
    dedup key (a redelivered message, a restart) changes nothing.
    """
    policy = policy or AlertPolicy()
    opened = 0
    for request in requests:
        if request.action == "raise":
            opened += await _raise(conn, request, now, policy)
        elif request.action == "clear":
            await _clear(conn, request, now)
        elif request.action == "hold":
            await conn.execute(
                "INSERT INTO held_events (device_id, rule, occurrence_key, device_time, received_at, due_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    request.device_id,
                    request.rule,
                    request.occurrence_key,
                    request.triggered_at,
                    now,
                    request.due_at,
                ),
            )
        elif request.action == "cancel":
            await conn.execute(
                "INSERT INTO held_events (device_id, rule, occurrence_key, device_time, received_at, due_at,"
                " status, resolved_at) VALUES (%s, %s, %s, %s, %s, %s, 'cancelled', %s)"
                " ON CONFLICT (device_id, occurrence_key) DO UPDATE SET status = 'cancelled',"
                " resolved_at = EXCLUDED.resolved_at WHERE held_events.status = 'pending'",
                (
                    request.device_id,
                    request.rule,
                    request.occurrence_key,
                    request.triggered_at,
                    now,
                    request.due_at or request.triggered_at,
                    now,
                ),
            )
    return opened


async def _raise(
    conn: AsyncConnection[Any], request: AlertRequest, now: datetime, policy: AlertPolicy
) -> int:
    seen = await conn.execute(
        "SELECT 1 FROM alert_occurrences WHERE dedup_key = %s AND occurrence_key = %s",
        (request.dedup_key, request.occurrence_key),
    )
    if await seen.fetchone() is not None:
        return 0
    if request.rule == "fall":
        await conn.execute(
            "UPDATE held_events SET status = 'raised', resolved_at = %s"
            " WHERE device_id = %s AND occurrence_key = %s AND status = 'pending'",
            (now, request.device_id, request.occurrence_key),
        )
    cursor = await conn.execute(
        "SELECT id, severity, priority, state FROM alerts"
        " WHERE dedup_key = %s AND state = ANY(%s) FOR UPDATE",
        (request.dedup_key, _ACTIVE_STATES),
    )
    current = await cursor.fetchone()
    evidence = Jsonb(dict(request.evidence or {}))
    if current is None:
        sla_s = policy.emergency_sla_s if request.emergency else policy.general_sla_s
        escalate_at = (
            now + timedelta(seconds=policy.escalate_after_s) if request.severity == "critical" else None
        )
        cursor = await conn.execute(
            "INSERT INTO alerts (device_id, rule, severity, priority, emergency, triggered_at, raised_at,"
            " sla_due_at, dedup_key, last_occurrence_at, evidence, next_escalation_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                request.device_id,
                request.rule,
                request.severity,
                BASE_PRIORITY[request.severity],
                request.emergency,
                request.triggered_at,
                now,
                now + timedelta(seconds=sla_s),
                request.dedup_key,
                request.triggered_at,
                evidence,
                escalate_at,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None  # noqa: S101 - RETURNING
        alert_id = int(row[0])
        # Three independent inserts in one round trip: this is the panic's critical path.
        async with conn.pipeline():
            await _occurrence(conn, alert_id, request, now)
            await _audit(
                conn,
                alert_id,
                now,
                SYSTEM_ACTOR,
                "raised",
                None,
                State.OPEN,
                detail=dict(request.evidence or {}),
            )
            await _outbox(conn, alert_id, request.severity, "raised", now)
        return 1
    alert_id, severity, _priority, state = current
    await _occurrence(conn, alert_id, request, now)
    upgraded = _RANK[request.severity] > _RANK[severity]
    await conn.execute(
        "UPDATE alerts SET occurrence_count = occurrence_count + 1,"
        " last_occurrence_at = greatest(last_occurrence_at, %s),"
        " priority = priority + %s, severity = %s, emergency = emergency OR %s,"
        " sla_due_at = CASE WHEN %s AND NOT emergency THEN least(sla_due_at, %s) ELSE sla_due_at END,"
        " next_escalation_at = CASE WHEN %s AND next_escalation_at IS NULL AND state = 'open' THEN %s"
        "   ELSE next_escalation_at END"
        " WHERE id = %s",
        (
            request.triggered_at,
            OCCURRENCE_PRIORITY_STEP
            + (BASE_PRIORITY[request.severity] - BASE_PRIORITY[severity] if upgraded else 0),
            request.severity if upgraded else severity,
            request.emergency,
            request.emergency,
            now + timedelta(seconds=policy.emergency_sla_s),
            upgraded and request.severity == "critical",
            now + timedelta(seconds=policy.escalate_after_s),
            alert_id,
        ),
    )
    action = "upgraded" if upgraded else "occurrence"
    await _audit(conn, alert_id, now, SYSTEM_ACTOR, action, state, state, detail=dict(request.evidence or {}))
    if upgraded:
        await _outbox(conn, alert_id, request.severity, "upgraded", now)
    return 0


async def _clear(conn: AsyncConnection[Any], request: AlertRequest, now: datetime) -> None:
    cursor = await conn.execute(
        "SELECT id, state FROM alerts WHERE dedup_key = %s AND state = ANY(%s) FOR UPDATE",
        (request.dedup_key, _ACTIVE_STATES),
    )
    current = await cursor.fetchone()
    if current is None:
        return
    alert_id, state = current
    if state == State.OPEN:
        await conn.execute(
            "UPDATE alerts SET state = 'cleared', cleared_at = %s, next_escalation_at = NULL WHERE id = %s",
            (now, alert_id),
        )
        await _audit(conn, alert_id, now, SYSTEM_ACTOR, "cleared", State.OPEN, State.CLEARED)
    else:
        # Someone is already handling it: record that the condition ended, let them resolve.
        await _audit(conn, alert_id, now, SYSTEM_ACTOR, "condition_ended", state, state)


async def transition(
    conn: AsyncConnection[Any], alert_id: int, action: str, *, by: str, now: datetime, note: str | None = None
) -> Alert:
    """Acknowledge, dispatch or resolve an alert, with an audit record.

    Raises:
        AlertNotFoundError: no such alert.
        InvalidTransitionError: its state does not allow ``action`` (e.g. resolving twice).
    """
    allowed_from, to_state = TRANSITIONS[action]
    cursor = await conn.execute("SELECT state FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
    row = await cursor.fetchone()
    if row is None:
        raise AlertNotFoundError(alert_id)
    state = State(row[0])
    if state not in allowed_from:
        raise InvalidTransitionError(alert_id, state.value, action)
    column = {"acknowledge": "acknowledged", "dispatch": "dispatched", "resolve": "resolved"}[action]
    await conn.execute(
        f"UPDATE alerts SET state = %s, {column}_by = %s, {column}_at = %s,"
        " next_escalation_at = NULL, resolution_note = coalesce(%s, resolution_note) WHERE id = %s",
        (to_state.value, by, now, note, alert_id),
    )
    await _audit(conn, alert_id, now, by, column, state, to_state, note=note)
    return await get(conn, alert_id)


async def claim_next(conn: AsyncConnection[Any], *, by: str, now: datetime) -> Alert | None:
    """Claim the most urgent open, unclaimed alert (priority, then deadline).

    ``FOR UPDATE SKIP LOCKED`` lets many dispatchers claim at once without
    waiting on each other or taking the same alert twice.
    """
    cursor = await conn.execute(
        "SELECT id FROM alerts WHERE state = 'open' AND claimed_by IS NULL"
        " ORDER BY priority DESC, sla_due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    alert_id = int(row[0])
    await conn.execute(
        "UPDATE alerts SET claimed_by = %s, claimed_at = %s WHERE id = %s", (by, now, alert_id)
    )
    await _audit(conn, alert_id, now, by, "claimed", State.OPEN, State.OPEN)
    return await get(conn, alert_id)


async def wait_and_claim(
    conn: AsyncConnection[Any], *, by: str, timeout_s: float, now: Callable[[], datetime], poll_s: float = 5.0
) -> Alert | None:
    """Claim the most urgent alert, waiting up to ``timeout_s`` for one to arrive.

    ``conn`` must be in autocommit mode: it LISTENs for new alerts between
    claim attempts. A notification only speeds things up; the poll every
    ``poll_s`` keeps a dispatcher correct if one is lost.
    """
    await conn.execute("LISTEN carewatch_alerts")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with conn.transaction():
            claimed = await claim_next(conn, by=by, now=now())
        remaining = deadline - loop.time()
        if claimed is not None or remaining <= 0:
            return claimed
        async for _ in conn.notifies(timeout=min(poll_s, remaining), stop_after=1):
            pass


async def escalate_due(
    conn: AsyncConnection[Any], *, now: datetime, policy: AlertPolicy | None = None
) -> int:
    """Escalate unacknowledged critical alerts and record SLA breaches; return escalations."""
    policy = policy or AlertPolicy()
    cursor = await conn.execute(
        "UPDATE alerts SET escalation_level = escalation_level + 1, priority = priority + %s,"
        " next_escalation_at = %s WHERE state = 'open' AND next_escalation_at <= %s"
        " RETURNING id, severity, escalation_level",
        (ESCALATION_PRIORITY_STEP, now + timedelta(seconds=policy.escalate_after_s), now),
    )
    escalated = await cursor.fetchall()
    for alert_id, severity, level in escalated:
        await _audit(
            conn, alert_id, now, SYSTEM_ACTOR, "escalated", State.OPEN, State.OPEN, detail={"level": level}
        )
        await _outbox(conn, alert_id, severity, "reminder", now)
    cursor = await conn.execute(
        "UPDATE alerts SET sla_breached_at = %s WHERE state IN ('open', 'acknowledged')"
        " AND sla_due_at <= %s AND sla_breached_at IS NULL RETURNING id, state",
        (now, now),
    )
    for alert_id, state in await cursor.fetchall():
        await _audit(conn, alert_id, now, SYSTEM_ACTOR, "sla_breached", state, state)
    return len(escalated)


async def get(conn: AsyncConnection[Any], alert_id: int) -> Alert:
    """One alert.

    Raises:
        AlertNotFoundError: no such alert.
    """
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT * FROM alerts WHERE id = %s", (alert_id,))
        row = await cursor.fetchone()
    if row is None:
        raise AlertNotFoundError(alert_id)
    return Alert.from_row(row)


async def list_alerts(
    conn: AsyncConnection[Any], *, state: str | None = None, limit: int = 200
) -> list[Alert]:
    """Alerts, most urgent first, optionally in one state."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT * FROM alerts WHERE (%s::text IS NULL OR state = %s)"
            " ORDER BY (state = ANY(%s)) DESC, priority DESC, sla_due_at, id LIMIT %s",
            (state, state, _ACTIVE_STATES, limit),
        )
        rows = await cursor.fetchall()
    return [Alert.from_row(row) for row in rows]


async def active_alerts(conn: AsyncConnection[Any]) -> list[tuple[str, str, str]]:
    """(device_id, rule, severity) of every active alert, to rebuild rule state."""
    cursor = await conn.execute(
        "SELECT device_id, rule, severity FROM alerts WHERE state = ANY(%s)", (_ACTIVE_STATES,)
    )
    return [(str(d), str(r), str(s)) for d, r, s in await cursor.fetchall()]


async def pending_holds(conn: AsyncConnection[Any]) -> list[tuple[str, str, datetime, datetime]]:
    """(device_id, occurrence_key, device_time, received_at) of falls still in their window."""
    cursor = await conn.execute(
        "SELECT device_id, occurrence_key, device_time, received_at FROM held_events WHERE status = 'pending'"
    )
    return [(str(d), str(k), t, r) for d, k, t, r in await cursor.fetchall()]


async def _occurrence(
    conn: AsyncConnection[Any], alert_id: int, request: AlertRequest, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO alert_occurrences (alert_id, dedup_key, occurrence_key, observed_at, recorded_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (alert_id, request.dedup_key, request.occurrence_key, request.triggered_at, now),
    )


async def _audit(  # noqa: PLR0917 - private, mirrors the table's columns
    conn: AsyncConnection[Any],
    alert_id: int,
    at: datetime,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    *,
    note: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO alert_events (alert_id, at, actor, action, from_state, to_state, note, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (alert_id, at, actor, action, from_state, to_state, note, Jsonb(dict(detail or {}))),
    )


async def _outbox(
    conn: AsyncConnection[Any], alert_id: int, severity: str, reason: str, now: datetime
) -> None:
    payload = {"alert_id": alert_id, "severity": severity, "reason": reason, "at": now.isoformat()}
    await conn.execute(
        "INSERT INTO alert_outbox (alert_id, topic, payload, created_at) VALUES (%s, %s, %s, %s)",
        (alert_id, ALERT_TOPIC_PREFIX + severity, Jsonb(payload), now),
    )


def alert_json(alert: Alert) -> str:
    """One alert as a JSON line (for ``carewatch alerts list --json``)."""
    return json.dumps(alert.to_json(), sort_keys=True)
