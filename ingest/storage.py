"""Committing decoded messages to the database, in batches, idempotently.

A batch is written in one transaction: rows are COPYed (binary) into
per-connection temporary staging tables, then moved with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. COPY is what makes the
throughput (one INSERT per row is about 10x slower); the staging step is what
makes redelivered duplicates harmless, since COPY itself cannot skip
conflicts.

If the database refuses a row's *data* (not the connection), the batch is
retried one message at a time under savepoints, and only the offending
message goes to quarantine with ``storage_rejected``, raw bytes kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pg_errors

import alerts
from devices import RejectReason
from ingest.errors import IngestError
from ingest.pipeline import quarantine

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from psycopg.rows import TupleRow

    from ingest.pipeline import MessageRows

logger = logging.getLogger(__name__)

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    time timestamptz, device_id text, metric text, value float8, received_at timestamptz, msg_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS events_stage (
    time timestamptz, device_id text, gateway_id text, kind text, detail text, event_key text,
    msg_id text, time_source text, device_time timestamptz, flags text[], received_at timestamptz,
    check_dup boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS quarantine_stage (
    received_at timestamptz, topic text, payload bytea, payload_sha256 bytea, reason text,
    detail text, gateway_id text, device_id text, duplicate_delivery boolean
) ON COMMIT DELETE ROWS;
"""

_READINGS_TYPES = ["timestamptz", "text", "text", "float8", "timestamptz", "text"]
_EVENTS_TYPES = [
    "timestamptz", "text", "text", "text", "text", "text",
    "text", "text", "timestamptz", "text[]", "timestamptz", "bool",
]  # fmt: skip
_QUARANTINE_TYPES = [
    "timestamptz",
    "text",
    "bytea",
    "bytea",
    "text",
    "text",
    "text",
    "text",
    "bool",
]

_MOVE_READINGS = """
INSERT INTO readings (time, device_id, metric, value, received_at, msg_id)
SELECT time, device_id, metric, value, received_at, msg_id FROM readings_stage
ON CONFLICT DO NOTHING
"""
# Events filed under their receive time have no stable identity across
# redelivery; for those (check_dup) an earlier copy within a day is looked up.
_MOVE_EVENTS = """
INSERT INTO device_events (time, device_id, gateway_id, kind, detail, event_key, msg_id,
                           time_source, device_time, flags, received_at)
SELECT s.time, s.device_id, s.gateway_id, s.kind, s.detail::jsonb, s.event_key, s.msg_id,
       s.time_source, s.device_time, s.flags, s.received_at
FROM events_stage s
WHERE NOT (s.check_dup AND EXISTS (
    SELECT 1 FROM device_events e
    WHERE e.device_id = s.device_id AND e.kind = s.kind AND e.event_key = s.event_key
      AND e.time BETWEEN s.time - interval '1 day' AND s.time))
ON CONFLICT DO NOTHING
"""
# A quarantined message has no identity but its bytes; only a redelivery
# (DUP flag) is checked against earlier copies, so a device that really sends
# the same bad payload twice is recorded twice.
_MOVE_QUARANTINE = """
INSERT INTO quarantine (received_at, topic, payload, payload_sha256, reason, detail,
                        gateway_id, device_id, duplicate_delivery)
SELECT s.received_at, s.topic, s.payload, s.payload_sha256, s.reason, s.detail,
       s.gateway_id, s.device_id, s.duplicate_delivery
FROM quarantine_stage s
WHERE NOT (s.duplicate_delivery AND EXISTS (
    SELECT 1 FROM quarantine q
    WHERE q.payload_sha256 = s.payload_sha256 AND q.topic = s.topic
      AND q.received_at BETWEEN s.received_at - interval '1 day' AND s.received_at))
"""


class StorageUnavailableError(IngestError):
    """The database cannot be reached or refused the connection; retry later.

    Attributes:
        sqlstate: PostgreSQL's error code when there was one.
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a committed batch did.

    Attributes:
        readings_new: rows added to ``readings`` (the rest were duplicates).
        readings_seen: rows offered to ``readings``.
        events_new: rows added to ``device_events``.
        events_seen: rows offered to ``device_events``.
        quarantined_new: rows added to ``quarantine``.
        storage_rejected: messages the database refused, now in quarantine.
    """

    readings_new: int
    readings_seen: int
    events_new: int
    events_seen: int
    quarantined_new: int
    storage_rejected: int


# SQLSTATE classes that mean "this data", not "this database": 22 data
# exception, 23 integrity constraint violation.
_DATA_ERROR_CLASSES = ("22", "23")


class TelemetryWriter:
    """Owns one database connection and writes batches over it."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout_s: float = 10.0,
        alert_policy: alerts.AlertPolicy | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._alert_policy = alert_policy or alerts.AlertPolicy()
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None

    @property
    def connected(self) -> bool:
        """Tell whether a usable connection is open."""
        return self._conn is not None and not self._conn.closed

    async def connect(self) -> None:
        """Open the connection and its staging tables.

        Raises:
            StorageUnavailableError: the database cannot be reached.
        """
        await self.close()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                connect_timeout=max(1, int(self._connect_timeout_s)),
                application_name="carewatch-ingest",
            )
            async with conn.transaction():
                await conn.execute(_STAGING_DDL)
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"cannot connect to the database: {exc}", exc.sqlstate) from exc
        self._conn = conn

    async def close(self) -> None:
        """Close the connection if open."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def write(self, messages: list[MessageRows], *, now: datetime) -> WriteResult:
        """Commit every row of ``messages`` in one transaction.

        Raises:
            StorageUnavailableError: nothing was committed; retry the same batch.
        """
        if not self.connected:
            await self.connect()
        conn = self._conn
        assert conn is not None  # noqa: S101 - connect() set it
        try:
            try:
                async with conn.transaction():
                    counts = await _write_rows(conn, messages, now, self._alert_policy)
                return _result(counts, storage_rejected=0)
            except psycopg.Error as exc:
                if not _is_data_error(exc):
                    raise
                logger.warning(
                    "database refused a batch (%s); writing it message by message",
                    exc.sqlstate,
                    extra={"event": "batch_refused", "sqlstate": exc.sqlstate},
                )
            return await self._write_one_by_one(conn, messages, now)
        except psycopg.Error as exc:
            await self.close()
            raise StorageUnavailableError(f"batch not committed: {exc}", exc.sqlstate) from exc

    async def _write_one_by_one(
        self, conn: psycopg.AsyncConnection[TupleRow], messages: list[MessageRows], now: datetime
    ) -> WriteResult:
        totals = [0, 0, 0, 0, 0]
        rejected = 0
        async with conn.transaction():
            for message in messages:
                # Staging tables empty only at COMMIT; clear them per message here.
                await conn.execute("TRUNCATE readings_stage, events_stage, quarantine_stage")
                try:
                    async with conn.transaction():  # savepoint
                        counts = await _write_rows(conn, [message], now, self._alert_policy)
                except psycopg.Error as exc:
                    if not _is_data_error(exc):
                        raise
                    rejected += 1
                    replacement = type(message)(message.envelope)
                    detail = f"database refused the decoded rows ({exc.sqlstate})"
                    quarantine(replacement, RejectReason.STORAGE_REJECTED, detail, None, None)
                    message.quarantine[:] = replacement.quarantine
                    message.reasons[:] = replacement.reasons
                    message.readings.clear()
                    message.events.clear()
                    # Its alerts still go in: a panic's decision must not be lost
                    # because a companion row was refused.
                    async with conn.transaction():
                        counts = await _write_rows(conn, [message], now, self._alert_policy)
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
        return _result((totals[0], totals[1], totals[2], totals[3], totals[4]), storage_rejected=rejected)


def _result(counts: tuple[int, int, int, int, int], *, storage_rejected: int) -> WriteResult:
    readings_new, readings_seen, events_new, events_seen, quarantined_new = counts
    return WriteResult(
        readings_new=readings_new,
        readings_seen=readings_seen,
        events_new=events_new,
        events_seen=events_seen,
        quarantined_new=quarantined_new,
        storage_rejected=storage_rejected,
    )


def _is_data_error(exc: psycopg.Error) -> bool:
    return (
        exc.sqlstate is not None
        and exc.sqlstate[:2] in _DATA_ERROR_CLASSES
        and not isinstance(exc, pg_errors.OperationalError)
    )


async def _write_rows(
    conn: psycopg.AsyncConnection[TupleRow],
    messages: list[MessageRows],
    now: datetime,
    policy: alerts.AlertPolicy,
) -> tuple[int, int, int, int, int]:
    readings = [row for m in messages for row in m.readings]
    events = [row for m in messages for row in m.events]
    quarantined = [row for m in messages for row in m.quarantine]
    async with conn.cursor() as cur:
        readings_new = await _copy_and_move(cur, "readings_stage", _READINGS_TYPES, readings, _MOVE_READINGS)
        events_new = await _copy_and_move(cur, "events_stage", _EVENTS_TYPES, events, _MOVE_EVENTS)
        quarantined_new = await _copy_and_move(
            cur, "quarantine_stage", _QUARANTINE_TYPES, quarantined, _MOVE_QUARANTINE
        )
    decisions = [request for m in messages for request in m.alerts]
    if decisions:
        await alerts.apply(conn, decisions, now=now, policy=policy)
    return readings_new, len(readings), events_new, len(events), quarantined_new


async def _copy_and_move(
    cur: psycopg.AsyncCursor[TupleRow],
    stage: str,
    types: list[str],
    rows: Sequence[tuple[object, ...]],
    move_sql: str,
) -> int:
    if not rows:
        return 0
    async with cur.copy(f"COPY {stage} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            await copy.write_row(row)
    await cur.execute(move_sql)
    return max(cur.rowcount, 0)
