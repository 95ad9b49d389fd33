"""Committing decoded messages to the database, in batches, idempotently.

A batch is written in one transaction: rows are COPYed (binary) into
per-connection temporary staging tables, then moved with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. COPY is what makes the
throughput (one INSERT per row is about 10x slower); the staging step is what
makes redelivered duplicates harmless, since COPY itself cannot skip
conflicts.

If the database refuses a row's *data* (not the connection), the batch is
bisected under savepoints until the messages at fault are found; only they
go to quarantine with ``storage_rejected`` (raw bytes kept, the database's
message as detail), and the rest commit. What an error means is decided in
one place, :mod:`ingest.db_errors`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

import alerts
from ingest.db_errors import ErrorClass, classify, short_reason
from ingest.errors import IngestError
from ingest.salvage import reject_message, scrub_text

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


class StorageError(IngestError):
    """A batch was not committed; nothing of it is in the database.

    Attributes:
        cause: what the error means (:mod:`ingest.db_errors`): whether to
            retry, how soon, and the ``cause`` label of the failure metric.
        sqlstate: PostgreSQL's error code when there was one.
    """

    def __init__(self, message: str, cause: ErrorClass, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.sqlstate = sqlstate


class StorageUnavailableError(StorageError):
    """The database cannot be reached or refused the connection; retry later."""

    def __init__(self, message: str, sqlstate: str | None = None, cause: ErrorClass | None = None) -> None:
        super().__init__(message, cause or ErrorClass.UNAVAILABLE, sqlstate)


#: Errors after which the connection must not be reused.
_CONNECTION_LOST = frozenset({ErrorClass.UNAVAILABLE, ErrorClass.CONFIGURATION})


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
            raise StorageUnavailableError(
                f"cannot connect to the database: {short_reason(exc)}", exc.sqlstate, classify(exc)
            ) from exc
        self._conn = conn

    async def close(self) -> None:
        """Close the connection if open."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def write(
        self, messages: list[MessageRows], *, now: datetime, isolate: bool = False
    ) -> WriteResult:
        """Commit every row of ``messages`` in one transaction.

        A value the database refuses (a data error) costs only the messages
        that carry it: the batch is split until they are found, they go to
        quarantine with ``storage_rejected``, and the rest commit. ``isolate``
        does that at once, for a batch that kept failing for another reason
        (the batcher's bounded attempts): then any message that still fails
        on its own is quarantined, so none is retried forever.

        Raises:
            StorageError: nothing was committed; ``cause`` says whether and
                how to retry.
        """
        if not self.connected:
            await self.connect()
        conn = self._conn
        if conn is None:  # connect() either set it or raised
            raise StorageUnavailableError("no database connection")
        try:
            if not isolate:
                try:
                    async with conn.transaction():
                        counts = await _write_rows(conn, messages, now, self._alert_policy)
                    return _result(counts, storage_rejected=0)
                except Exception as exc:
                    if classify(exc) is not ErrorClass.DATA:
                        raise
                    logger.warning(
                        "database refused a value in a batch of %d messages (%s); isolating it",
                        len(messages),
                        getattr(exc, "sqlstate", None) or type(exc).__name__,
                        extra={"event": "batch_refused", "sqlstate": getattr(exc, "sqlstate", None)},
                    )
            return await self._write_isolated(conn, messages, now)
        except Exception as exc:
            cause = classify(exc)
            if cause in _CONNECTION_LOST or conn.closed or conn.broken:
                await self.close()
            raise StorageError(
                f"batch not committed: {short_reason(exc)}", cause, getattr(exc, "sqlstate", None)
            ) from exc

    async def _write_isolated(
        self, conn: psycopg.AsyncConnection[TupleRow], messages: list[MessageRows], now: datetime
    ) -> WriteResult:
        """Write ``messages`` in one transaction, finding the ones the database refuses by bisection.

        Each part is tried under a savepoint; a refused part is split in two,
        left half first, so decisions still apply in arrival order (a raise
        before its clear). A message refused on its own is quarantined. Only
        a lost connection aborts the whole attempt. One bad message in a
        batch of n costs about 2 log2(n) extra round trips, not n.
        """
        totals = (0, 0, 0, 0, 0)
        rejected = 0
        async with conn.transaction():
            parts = [messages]
            while parts:
                part = parts.pop()
                try:
                    counts = await _write_part(conn, part, now, self._alert_policy)
                except Exception as exc:
                    if classify(exc) in _CONNECTION_LOST:
                        raise
                    if len(part) > 1:
                        middle = len(part) // 2
                        parts.extend((part[middle:], part[:middle]))
                        continue
                    counts = await self._reject(conn, part[0], exc, now)
                    rejected += 1
                totals = _add(totals, counts)
        return _result(totals, storage_rejected=rejected)

    async def _reject(
        self, conn: psycopg.AsyncConnection[TupleRow], message: MessageRows, exc: BaseException, now: datetime
    ) -> tuple[int, int, int, int, int]:
        """Store a refused message as its quarantine row and the simplest form of its decisions that fits."""
        logger.warning(
            "database refused one message's rows (%s); quarantined as storage_rejected",
            getattr(exc, "sqlstate", None) or type(exc).__name__,
            extra={"event": "message_storage_rejected", "topic": scrub_text(message.envelope.topic)},
        )
        for decisions in reject_message(message, exc):
            message.alerts[:] = decisions
            try:
                return await _write_part(conn, [message], now, self._alert_policy)
            except Exception as retry_exc:
                if classify(retry_exc) in _CONNECTION_LOST:
                    raise
                logger.error(  # noqa: TRY400 - a traceback would quote the refused values
                    "database refused a quarantined message's decisions too (%s); trying a simpler form",
                    getattr(retry_exc, "sqlstate", None) or type(retry_exc).__name__,
                    extra={"event": "decisions_refused"},
                )
        raise exc  # not even the bare quarantine row went in: the batcher retries


async def _write_part(
    conn: psycopg.AsyncConnection[TupleRow],
    messages: list[MessageRows],
    now: datetime,
    policy: alerts.AlertPolicy,
) -> tuple[int, int, int, int, int]:
    """Write ``messages`` under a savepoint, from empty staging tables."""
    # Staging tables empty only at COMMIT: a part that went in left its rows there.
    await conn.execute("TRUNCATE readings_stage, events_stage, quarantine_stage")
    async with conn.transaction():  # savepoint
        return await _write_rows(conn, messages, now, policy)


def _add(
    a: tuple[int, int, int, int, int], b: tuple[int, int, int, int, int]
) -> tuple[int, int, int, int, int]:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4])


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
