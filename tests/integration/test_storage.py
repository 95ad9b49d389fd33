"""The storage layer on real TimescaleDB and real plain PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices import RejectReason
from ingest.envelope import Envelope
from ingest.pipeline import MessageRows, Pipeline, PipelineSettings
from ingest.schema import TimescaleMode, migrate, migrations
from ingest.storage import StorageUnavailableError, TelemetryWriter
from tests.conftest import TestDatabase

pytestmark = pytest.mark.db

RECEIVED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PIPELINE = Pipeline(PipelineSettings())


def envelope(topic: str, payload: bytes, *, dup: bool = False, received_at: datetime = RECEIVED) -> Envelope:
    return Envelope(
        topic=topic,
        payload=payload,
        packet_id=1,
        dup=dup,
        received_at=received_at,
        received_mono=0.0,
    )


def rows(topic: str, payload: bytes | str, **kwargs: object) -> MessageRows:
    data = payload.encode() if isinstance(payload, str) else payload
    return PIPELINE.process(envelope(topic, data, **kwargs))  # type: ignore[arg-type]


async def _migrated(dsn: str, mode: TimescaleMode = TimescaleMode.AUTO):
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await migrate(conn, timescale=mode)


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


async def write(dsn: str, *messages: MessageRows):
    writer = TelemetryWriter(dsn)
    try:
        return await writer.write(list(messages), now=RECEIVED)
    finally:
        await writer.close()


def test_migrate_detects_the_backend_and_is_idempotent(any_db: TestDatabase) -> None:
    first = asyncio.run(_migrated(any_db.dsn))
    second = asyncio.run(_migrated(any_db.dsn))
    assert first == second
    assert count(any_db.dsn, "SELECT count(*) FROM carewatch_migrations") == len(migrations())
    if any_db.backend == "timescaledb":
        assert first.backend == "timescaledb"
        assert first.license in {"apache", "timescale"}
        hypertables = count(
            any_db.dsn,
            "SELECT count(*) FROM timescaledb_information.hypertables"
            " WHERE hypertable_name IN ('readings', 'device_events', 'quarantine')",
        )
        assert hypertables == 3
    else:
        assert first.backend == "postgresql"
        assert first.license is None


def test_timescale_off_keeps_plain_tables_even_where_the_extension_exists(
    tsdb: TestDatabase,
) -> None:
    info = asyncio.run(_migrated(tsdb.dsn, TimescaleMode.OFF))
    assert info.backend == "postgresql"
    assert count(tsdb.dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0


def test_timescale_require_fails_on_plain_postgresql(pgdb: TestDatabase) -> None:
    with pytest.raises(psycopg.Error, match="TimescaleDB is required"):
        asyncio.run(_migrated(pgdb.dsn, TimescaleMode.REQUIRE))


def test_concurrent_migrations_serialise(any_db: TestDatabase) -> None:
    async def both() -> None:
        await asyncio.gather(_migrated(any_db.dsn), _migrated(any_db.dsn), _migrated(any_db.dsn))

    asyncio.run(both())
    assert count(any_db.dsn, "SELECT count(*) FROM carewatch_migrations") == len(migrations())


def test_batch_is_stored_once_even_when_written_twice(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    batch = [
        rows("carewatch/v1/gw/d1/json", '{"ts":1795000000000,"kind":"heart_rate","bpm":72}'),
        rows("carewatch/v1/gw/d1/json", '{"ts":1795000000000,"kind":"panic","button":"red"}'),
        rows(
            "carewatch/v1/gw/d1/json",
            '[{"ts":1795000000001,"kind":"spo2","pct":97,"msg_id":"a"},'
            '{"ts":1795000000001,"kind":"location","lat":50.08,"lon":14.42}]',
        ),
        rows("carewatch/v1/gw/d1/json", "{not json"),
    ]
    first = asyncio.run(write(any_db.dsn, *batch))
    assert (first.readings_new, first.events_new, first.quarantined_new) == (2, 2, 1)
    # Redelivery: the same messages again, this time flagged DUP by the broker.
    again = [rows(m.envelope.topic, m.envelope.payload, dup=True) for m in batch]
    second = asyncio.run(write(any_db.dsn, *again))
    assert (second.readings_new, second.events_new, second.quarantined_new) == (0, 0, 0)
    assert count(any_db.dsn, "SELECT count(*) FROM readings") == 2
    assert count(any_db.dsn, "SELECT count(*) FROM device_events") == 2
    assert count(any_db.dsn, "SELECT count(*) FROM quarantine") == 1


def test_stored_rows_keep_device_time_received_time_and_detail(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    asyncio.run(
        write(
            any_db.dsn,
            rows(
                "carewatch/v1/gw/d1/json",
                '{"ts":"2026-11-20T13:00:00+01:00","kind":"fall","stage":"alarm"}',
            ),
        )
    )
    with psycopg.connect(any_db.dsn) as conn:
        row = conn.execute(
            "SELECT time, received_at, device_id, gateway_id, kind, detail, time_source FROM device_events"
        ).fetchone()
    assert row == (
        datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
        RECEIVED,
        "d1",
        "gw",
        "fall",
        {"stage": "alarm"},
        "device",
    )


def test_two_different_presses_in_the_same_millisecond_are_both_kept(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    asyncio.run(
        write(
            any_db.dsn,
            rows("carewatch/v1/gw/d1/json", '{"ts":1795000000000,"kind":"panic","button":"a"}'),
            rows("carewatch/v1/gw/d1/json", '{"ts":1795000000000,"kind":"panic","button":"b"}'),
        )
    )
    assert count(any_db.dsn, "SELECT count(*) FROM device_events WHERE kind = 'panic'") == 2


def test_panic_without_timestamp_redelivered_later_is_stored_once(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    payload = '{"kind":"panic","msg_id":"p-1"}'
    asyncio.run(write(any_db.dsn, rows("carewatch/v1/gw/d1/json", payload)))
    later = RECEIVED + timedelta(minutes=3)
    asyncio.run(write(any_db.dsn, rows("carewatch/v1/gw/d1/json", payload, dup=True, received_at=later)))
    with psycopg.connect(any_db.dsn) as conn:
        stored = conn.execute("SELECT time, time_source, flags FROM device_events").fetchall()
    assert stored == [(RECEIVED, "received", ["bad_timestamp"])]


def test_identical_bad_payloads_are_all_kept_unless_redelivered(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    bad = "{not json"
    asyncio.run(write(any_db.dsn, rows("carewatch/v1/gw/d1/json", bad), rows("carewatch/v1/gw/d1/json", bad)))
    asyncio.run(write(any_db.dsn, rows("carewatch/v1/gw/d1/json", bad, dup=True)))
    assert count(any_db.dsn, "SELECT count(*) FROM quarantine") == 2
    with psycopg.connect(any_db.dsn) as conn:
        raw = conn.execute("SELECT payload FROM quarantine LIMIT 1").fetchone()
    assert raw == (bad.encode(),)


def test_rows_the_database_refuses_quarantine_only_their_message(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    good = rows("carewatch/v1/gw/d1/json", '{"ts":1795000000000,"kind":"worn","on":true}')
    poisoned = rows("carewatch/v1/gw/d2/json", '{"ts":1795000000000,"kind":"worn","on":false}')
    event = list(poisoned.events[0])
    event[4] = "{definitely not json"  # what a buggy codec could produce
    poisoned.events[0] = tuple(event)  # type: ignore[assignment]
    result = asyncio.run(write(any_db.dsn, good, poisoned))
    assert result.storage_rejected == 1
    assert count(any_db.dsn, "SELECT count(*) FROM device_events") == 1
    with psycopg.connect(any_db.dsn) as conn:
        quarantined = conn.execute("SELECT reason, topic, payload FROM quarantine").fetchall()
    assert quarantined == [
        (RejectReason.STORAGE_REJECTED.value, "carewatch/v1/gw/d2/json", poisoned.envelope.payload)
    ]


def test_text_with_nul_characters_is_stored(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    payload = json.dumps({"ts": 1795000000000, "kind": "panic", "button": "a\u0000b", "msg_id": "x\u0000"})
    result = asyncio.run(write(any_db.dsn, rows("carewatch/v1/gw/d1/json", payload)))
    assert result.events_new == 1


def test_unreachable_database_raises_storage_unavailable() -> None:
    writer = TelemetryWriter("host=127.0.0.1 port=1 user=postgres dbname=postgres", connect_timeout_s=1)
    with pytest.raises(StorageUnavailableError):
        asyncio.run(writer.write([rows("carewatch/v1/gw/d1/json", "{}")], now=RECEIVED))
