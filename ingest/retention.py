"""Retention, compression and rollups: how long each class of data is kept.

Raw telemetry is bulky and loses value fast; alerts and their audit trail are
the call centre's record of what it did and are never deleted here. Which
machinery enforces this depends on what the database offers:

* TimescaleDB under the Community licence (``timescale``): the database does
  it itself. Continuous aggregates replace the portable rollup views (same
  names and columns), and compression and retention policies are installed.
  The service only re-installs them at start, so a changed setting applies.
* TimescaleDB Apache build: no policies and no compression; the service calls
  ``drop_chunks`` every round. Whole chunks go: cheap, no bloat.
* Plain PostgreSQL: the service deletes in batches, each in its own short
  transaction, so neither locks nor WAL pile up behind one huge DELETE.

The licensed path cannot run on the test servers (Apache build), so its SQL
is exposed (:func:`licensed_statements`) for a parse-level check there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import psycopg

from ingest.waits import wait_for_stop

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from datetime import datetime

    from ingest.metrics import IngestMetrics
    from ingest.schema import StorageInfo

logger = logging.getLogger(__name__)

#: Only one instance sets up policies at a time (two ingest services starting together).
_POLICY_LOCK_ID = 0x0CA2E_0006
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionSettings:
    """How long each class of data is kept.

    Alerts, ``alert_events`` (audit), ``alert_occurrences``, ``held_events``,
    ``rule_thresholds`` and the registry are never deleted here.

    Attributes:
        enabled: False leaves all data in place (another tool manages it).
        readings_days: raw ``readings`` (heart rate, SpO2, temperature, battery).
        device_events_days: ``device_events`` (panic, fall, worn, location...):
            longer, they explain past alerts.
        quarantine_days: ``quarantine`` (rejected raw payloads).
        rollups_days: ``readings_5m`` and ``quarantine_1h`` where they are
            continuous aggregates (licensed); elsewhere they are views over
            the raw rows and follow their retention.
        outbox_published_days: published ``alert_outbox`` rows (the alert
            itself and its audit trail stay).
        compress_after_days: licensed only: compress chunks older than this.
        interval_s: time between retention rounds.
        delete_batch_rows: plain PostgreSQL: rows per DELETE transaction.
    """

    enabled: bool = True
    readings_days: float = 30.0
    device_events_days: float = 365.0
    quarantine_days: float = 90.0
    rollups_days: float = 730.0
    outbox_published_days: float = 30.0
    compress_after_days: float = 7.0
    interval_s: float = 3600.0
    delete_batch_rows: int = 10_000

    def raw_tables(self) -> tuple[tuple[str, str, float], ...]:
        """(table, time column, days kept) of every pruned time-series table."""
        return (
            ("readings", "time", self.readings_days),
            ("device_events", "time", self.device_events_days),
            ("quarantine", "received_at", self.quarantine_days),
        )


class Method(StrEnum):
    """How retention is enforced on a given database."""

    POLICIES = "policies"  # TimescaleDB Community licence: the database's own jobs
    DROP_CHUNKS = "drop_chunks"  # TimescaleDB Apache build: the service drops chunks
    DELETE = "delete"  # plain PostgreSQL: the service deletes in batches


def method_for(info: StorageInfo) -> Method:
    """Pick the retention method from what the database offers."""
    if info.has_community_features:
        return Method.POLICIES
    if info.timescaledb_version:
        return Method.DROP_CHUNKS
    return Method.DELETE


def _interval(days: float) -> str:
    return f"INTERVAL '{int(days * _SECONDS_PER_DAY)} seconds'"


#: Continuous aggregates: the same names and columns as the views of 010_operations.sql.
CONTINUOUS_AGGREGATES: dict[str, str] = {
    "readings_5m": (
        "CREATE MATERIALIZED VIEW readings_5m"
        " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
        " SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket, device_id, metric,"
        " avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value, count(*) AS samples"
        " FROM readings GROUP BY 1, 2, 3 WITH NO DATA"
    ),
    "quarantine_1h": (
        "CREATE MATERIALIZED VIEW quarantine_1h"
        " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
        " SELECT time_bucket(INTERVAL '1 hour', received_at) AS bucket, reason,"
        " CASE WHEN reason = 'bad_topic' THEN 'unknown'"
        " ELSE coalesce(nullif(split_part(topic, '/', 5), ''), 'unknown') END AS format,"
        " count(*) AS messages FROM quarantine GROUP BY 1, 2, 3 WITH NO DATA"
    ),
}
_CAGG_REFRESH = {
    "readings_5m": ("INTERVAL '2 days'", "INTERVAL '5 minutes'", "INTERVAL '5 minutes'"),
    "quarantine_1h": ("INTERVAL '7 days'", "INTERVAL '1 hour'", "INTERVAL '30 minutes'"),
}
#: Compression layout: segment by what panels filter on; order by the rest of
#: each unique index so redelivered rows can still be checked against it.
_COMPRESSION = {
    "readings": ("device_id, metric", "time DESC, msg_id"),
    "device_events": ("device_id", "time DESC, kind, event_key"),
    "quarantine": ("reason", "received_at DESC"),
}


def licensed_statements(settings: RetentionSettings) -> list[str]:
    """Every statement the Community-licence path runs (after replacing the views)."""
    statements: list[str] = []
    for name, create in CONTINUOUS_AGGREGATES.items():
        start, end, every = _CAGG_REFRESH[name]
        statements.append(create)
        statements.append(
            f"SELECT add_continuous_aggregate_policy('{name}', start_offset => {start},"
            f" end_offset => {end}, schedule_interval => {every}, if_not_exists => true)"
        )
    for table, (segment_by, order_by) in _COMPRESSION.items():
        statements.append(
            f"ALTER TABLE {table} SET (timescaledb.compress,"
            f" timescaledb.compress_segmentby = '{segment_by}', timescaledb.compress_orderby = '{order_by}')"
        )
    policies = [(t, days) for t, _, days in settings.raw_tables()]
    policies += [(name, settings.rollups_days) for name in CONTINUOUS_AGGREGATES]
    for table, days in policies:
        statements.append(f"SELECT remove_retention_policy('{table}', if_exists => true)")
        statements.append(f"SELECT add_retention_policy('{table}', {_interval(days)})")
    for table in _COMPRESSION:
        statements.append(f"SELECT remove_compression_policy('{table}', if_exists => true)")
        statements.append(
            f"SELECT add_compression_policy('{table}', {_interval(settings.compress_after_days)})"
        )
    return statements


async def install_policies(conn: psycopg.AsyncConnection[Any], settings: RetentionSettings) -> bool:
    """Set up continuous aggregates, compression and retention jobs (Community licence).

    ``conn`` must be in autocommit mode. Returns False when another instance
    holds the set-up lock (it is doing the same work).
    """
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_POLICY_LOCK_ID,))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return False
    try:
        cursor = await conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")
        existing_caggs = {r[0] for r in await cursor.fetchall()}
        cursor = await conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled"
        )
        compressed = {r[0] for r in await cursor.fetchall()}
        for statement in licensed_statements(settings):
            name = _subject(statement)
            if statement.startswith("CREATE MATERIALIZED VIEW") and name in existing_caggs:
                continue
            if statement.startswith("ALTER TABLE") and name in compressed:
                continue  # re-setting it fails once chunks are compressed
            async with conn.transaction():
                if statement.startswith("CREATE MATERIALIZED VIEW"):
                    await conn.execute(f"DROP VIEW IF EXISTS {name}")  # the portable view
                await conn.execute(statement)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_POLICY_LOCK_ID,))
    return True


def _subject(statement: str) -> str:
    """The relation a licensed statement is about."""
    if statement.startswith("CREATE MATERIALIZED VIEW"):
        return statement.split()[3]
    if statement.startswith("ALTER TABLE"):
        return statement.split()[2]
    return statement.split("'")[1]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention round removed, per table.

    Attributes:
        rows: rows removed by DELETE.
        chunks: TimescaleDB chunks dropped.
    """

    rows: dict[str, int]
    chunks: dict[str, int]


async def prune(
    conn: psycopg.AsyncConnection[Any], method: Method, settings: RetentionSettings, *, now: datetime
) -> Pruned:
    """Remove what is past its retention, by ``method``; ``conn`` must be in autocommit mode.

    Under :attr:`Method.POLICIES` the database's jobs do the raw tables and
    only the outbox is pruned here.
    """
    rows: dict[str, int] = {}
    chunks: dict[str, int] = {}
    if method is not Method.POLICIES:
        for table, column, days in settings.raw_tables():
            cutoff = now - timedelta(days=days)
            if method is Method.DROP_CHUNKS:
                cursor = await conn.execute(
                    "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s)", (table, cutoff)
                )
                found = await cursor.fetchone()
                chunks[table] = int(found[0]) if found else 0
                # A chunk spans days; rows older than the cutoff in a chunk that
                # also holds newer ones stay until the whole chunk is old enough.
            else:
                rows[table] = await _delete_batched(
                    conn, table, f"{column} < %s", cutoff, settings.delete_batch_rows
                )
    rows["alert_outbox"] = await _delete_batched(
        conn,
        "alert_outbox",
        "published_at < %s",
        now - timedelta(days=settings.outbox_published_days),
        settings.delete_batch_rows,
    )
    return Pruned(rows, chunks)


async def _delete_batched(
    conn: psycopg.AsyncConnection[Any], table: str, condition: str, cutoff: datetime, batch_rows: int
) -> int:
    total = 0
    while True:
        cursor = await conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} WHERE {condition} LIMIT %s))",
            (cutoff, batch_rows),
        )
        deleted = max(cursor.rowcount, 0)
        total += deleted
        if deleted < batch_rows:
            return total


async def run_retention(
    dsn: str,
    info: StorageInfo,
    settings: RetentionSettings,
    stop: asyncio.Event,
    *,
    metrics: IngestMetrics,
    now: Callable[[], datetime],
) -> None:
    """Enforce retention every ``settings.interval_s`` until stopped; failures are retried next round."""
    if not settings.enabled:
        return
    method = method_for(info)
    policies_installed = method is not Method.POLICIES
    logger.info("retention by %s", method.value, extra={"event": "retention_method"})
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with await psycopg.AsyncConnection.connect(
                dsn, connect_timeout=10, autocommit=True, application_name="carewatch-retention"
            ) as conn:
                if not policies_installed:
                    policies_installed = await install_policies(conn, settings)
                pruned = await prune(conn, method, settings, now=now())
            for table, count in pruned.rows.items():
                metrics.retention_rows_deleted.labels(table=table).inc(count)
            for table, count in pruned.chunks.items():
                metrics.retention_chunks_dropped.labels(table=table).inc(count)
            metrics.retention_last_success.set(now().timestamp())
            metrics.retention_run_duration.observe(time.monotonic() - started)
        except psycopg.Error as exc:
            metrics.retention_failures.inc()
            logger.warning(
                "retention round failed (%s); retrying next round",
                exc.sqlstate or "connection",
                extra={"event": "retention_failed"},
            )
        await wait_for_stop(stop, settings.interval_s)
