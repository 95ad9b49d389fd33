"""Retention on the real backends: what is old goes, what is kept stays.

The test servers run TimescaleDB's Apache build and plain PostgreSQL, so the
service's own maintenance (drop_chunks, batched DELETE) runs for real here.
The Community-licence path (policies, compression, continuous aggregates)
cannot run on them; its statements are checked to get past parsing and name
resolution and to stop only at the licence check.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry

import alerts
from ingest.metrics import IngestMetrics
from ingest.retention import (
    CONTINUOUS_AGGREGATES,
    Method,
    RetentionSettings,
    licensed_statements,
    method_for,
    prune,
    run_retention,
)
from ingest.schema import StorageInfo, migrate
from tests.conftest import TestDatabase

NOW = datetime.now(UTC)
SETTINGS = RetentionSettings(
    readings_days=30,
    device_events_days=365,
    quarantine_days=90,
    outbox_published_days=30,
    delete_batch_rows=2,
)


async def _fill(dsn: str) -> StorageInfo:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        info = await migrate(conn)
        for age_days in (400, 100, 40, 1):  # each old row sits in a chunk of only old rows
            at = NOW - timedelta(days=age_days)
            for n in range(3):
                await conn.execute(
                    "INSERT INTO readings (time, device_id, metric, value, received_at)"
                    " VALUES (%s, %s, %s, 70, %s)",
                    (at + timedelta(seconds=n), f"d{n}", "heart_rate_bpm", at),
                )
            await conn.execute(
                "INSERT INTO device_events (time, device_id, gateway_id, kind, event_key, received_at)"
                " VALUES (%s, 'd0', 'gw', 'panic', %s, %s)",
                (at, f"k{age_days}", at),
            )
            await conn.execute(
                "INSERT INTO quarantine (received_at, topic, payload, payload_sha256, reason, detail)"
                " VALUES (%s, 't', 'x', 'x', 'malformed_json', '')",
                (at,),
            )
            request = alerts.AlertRequest(
                action="raise", rule="panic", device_id="d0", severity="critical", emergency=True,
                dedup_key=f"d0:panic:{age_days}", occurrence_key=f"o{age_days}", triggered_at=at,
            )  # fmt: skip
            await alerts.apply(conn, [request], now=at)
        # Old outbox rows: published ones go, an unpublished one stays whatever its age.
        await conn.execute(
            "UPDATE alert_outbox SET published_at = created_at WHERE created_at > %s",
            (NOW - timedelta(days=300),),
        )
    return info


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("readings", "device_events", "quarantine", "alerts", "alert_events", "alert_outbox")
        }


def test_prune_removes_only_what_is_past_retention_and_keeps_alerts(any_db: TestDatabase) -> None:
    info = asyncio.run(_fill(any_db.dsn))
    expected_method = Method.DROP_CHUNKS if any_db.backend == "timescaledb" else Method.DELETE
    assert method_for(info) is expected_method
    before = _counts(any_db.dsn)
    assert before == {
        "readings": 12, "device_events": 4, "quarantine": 4,
        "alerts": 4, "alert_events": 4, "alert_outbox": 4,
    }  # fmt: skip

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn, autocommit=True) as conn:
            pruned = await prune(conn, method_for(info), SETTINGS, now=NOW)
        if expected_method is Method.DELETE:
            assert pruned.rows == {"readings": 9, "device_events": 1, "quarantine": 2, "alert_outbox": 2}
        else:
            assert pruned.chunks == {"readings": 3, "device_events": 1, "quarantine": 2}

    asyncio.run(run())
    after = _counts(any_db.dsn)
    # readings 30 d: only the 1-day-old ones; events 365 d: all but the 400-day one;
    # quarantine 90 d: 40 and 1 days; outbox: the unpublished 400-day row and the 1-day one.
    assert after == {
        "readings": 3, "device_events": 3, "quarantine": 2, "alerts": 4, "alert_events": 4, "alert_outbox": 2,
    }  # fmt: skip
    with psycopg.connect(any_db.dsn) as conn:
        kept = conn.execute("SELECT published_at IS NULL FROM alert_outbox ORDER BY created_at").fetchall()
    assert kept == [(True,), (False,)]


def test_retention_loop_reports_its_round_in_metrics(any_db: TestDatabase) -> None:
    info = asyncio.run(_fill(any_db.dsn))
    metrics = IngestMetrics(CollectorRegistry())

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_retention(any_db.dsn, info, SETTINGS, stop, metrics=metrics, now=lambda: NOW)
        )
        while metrics.retention_last_success._value.get() == 0:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert metrics.retention_last_success._value.get() == pytest.approx(NOW.timestamp())
    assert _counts(any_db.dsn)["readings"] == 3
    assert metrics.retention_failures._value.get() == 0


def test_licence_decides_the_method() -> None:
    assert method_for(StorageInfo(170000, "2.19.3", "timescale")) is Method.POLICIES
    assert method_for(StorageInfo(170000, "2.19.3", "apache")) is Method.DROP_CHUNKS
    assert method_for(StorageInfo(170000, None, None)) is Method.DELETE


def test_licensed_statements_stop_only_at_the_licence_check(tsdb: TestDatabase) -> None:
    async def prepare() -> StorageInfo:
        async with await psycopg.AsyncConnection.connect(tsdb.dsn) as conn:
            return await migrate(conn)

    info = asyncio.run(prepare())
    assert info.license == "apache", "this check is meaningful only on the Apache build"
    statements = licensed_statements(SETTINGS)
    assert len(statements) == 2 * len(CONTINUOUS_AGGREGATES) + 3 + 2 * 5 + 2 * 3
    with psycopg.connect(tsdb.dsn) as conn:
        for statement in statements:
            with conn.transaction(force_rollback=True):
                if statement.startswith("CREATE MATERIALIZED VIEW"):
                    # As install_policies does: the portable view makes way first.
                    conn.execute(f"DROP VIEW IF EXISTS {statement.split()[3]}")
                with pytest.raises(psycopg.Error) as refused:
                    conn.execute(statement.encode())
            assert "license" in str(refused.value), (statement, str(refused.value))
