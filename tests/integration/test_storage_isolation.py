"""Per-message fault isolation in the storage layer, on real TimescaleDB and plain PostgreSQL.

Each test makes the real database refuse something (a value it cannot hold,
or a trigger installed in the test database that raises for one device
only) and checks that only that message pays: it is quarantined with
``storage_rejected`` and the database's reason, the rest of the batch
commits, and an emergency decision it carried still becomes an alert.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from alerts import AlertRequest
from ingest.batcher import Batcher, BatchSettings
from ingest.db_errors import ErrorClass
from ingest.metrics import IngestMetrics
from ingest.pipeline import MessageRows
from ingest.rule_thresholds import write_thresholds
from ingest.storage import StorageError, TelemetryWriter
from rules import RulesConfig
from tests.conftest import TestDatabase
from tests.integration.test_storage import RECEIVED, _migrated, count, rows, write

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 20, 12, 0, 5, tzinfo=UTC)


def reading(device: str, i: int) -> MessageRows:
    return rows(
        f"carewatch/v1/gw/{device}/json",
        f'{{"ts":{1795000000000 + i},"kind":"heart_rate","bpm":70,"msg_id":"m{i}"}}',
    )


def panic_request(device: str, evidence: dict[str, object]) -> AlertRequest:
    return AlertRequest(
        action="raise",
        rule="panic",
        device_id=device,
        severity="critical",
        emergency=True,
        dedup_key=f"{device}:panic",
        occurrence_key=f"panic:{device}-1",
        triggered_at=RECEIVED,
        evidence=evidence,
    )


def with_reading_msg_id(message: MessageRows, msg_id: str) -> MessageRows:
    """A reading row carrying ``msg_id`` verbatim, as a codec bug could produce."""
    message.readings[0] = (*message.readings[0][:5], msg_id)
    return message


def test_a_nul_a_lone_surrogate_and_bad_json_cost_only_their_own_messages(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    batch = [reading("ok", i) for i in range(40)]
    batch.insert(7, with_reading_msg_id(reading("nul", 100), "a\x00b"))  # server: 22021
    batch.insert(19, with_reading_msg_id(reading("surrogate", 101), "\ud800"))  # client: UnicodeEncodeError
    garbled_panic = rows("carewatch/v1/gw/panicky/json", '{"ts":1795000000000,"kind":"panic"}')
    garbled_panic.alerts.append(panic_request("panicky", {"button": "\\u0000", "label": "a\x00\ud800"}))
    batch.insert(30, garbled_panic)

    result = asyncio.run(write(any_db.dsn, *batch))

    assert result.storage_rejected == 3
    assert count(any_db.dsn, "SELECT count(*) FROM readings WHERE device_id = 'ok'") == 40
    with psycopg.connect(any_db.dsn) as conn:
        quarantined = conn.execute(
            "SELECT topic, reason, detail, payload FROM quarantine ORDER BY topic"
        ).fetchall()
        alerts = conn.execute("SELECT device_id, rule, severity, state FROM alerts").fetchall()
    assert [(topic, reason) for topic, reason, _, _ in quarantined] == [
        ("carewatch/v1/gw/nul/json", "storage_rejected"),
        ("carewatch/v1/gw/panicky/json", "storage_rejected"),
        ("carewatch/v1/gw/surrogate/json", "storage_rejected"),
    ]
    details = {topic.split("/")[3]: detail for topic, _, detail, _ in quarantined}
    assert details["nul"].startswith("22021")  # the database's own reason, by SQLSTATE
    assert "UnicodeEncodeError" in details["surrogate"]
    assert all(payload for _, _, _, payload in quarantined)  # raw bytes kept
    assert alerts == [("panicky", "panic", "critical", "open")]  # the garbled panic still alerts


def test_a_refused_message_in_the_life_safety_lane_is_isolated_too(any_db: TestDatabase) -> None:
    """The fast lane uses the same writer: one bad emergency cannot block another."""
    asyncio.run(_migrated(any_db.dsn))
    clean = rows("carewatch/v1/gw/a/json", '{"ts":1795000000000,"kind":"panic"}')
    clean.alerts.append(panic_request("a", {}))
    bad = rows("carewatch/v1/gw/b/json", '{"ts":1795000000000,"kind":"panic"}')
    bad.alerts.append(panic_request("b", {"button": "\x00"}))
    result = asyncio.run(write(any_db.dsn, bad, clean))
    assert result.storage_rejected == 1
    assert count(any_db.dsn, "SELECT count(*) FROM alerts WHERE rule = 'panic'") == 2


POISON_TRIGGER = """
CREATE FUNCTION poison_readings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.device_id = 'poison' THEN
        RAISE EXCEPTION 'injected fault' USING ERRCODE = '{sqlstate}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison_readings BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION poison_readings();
"""


def install_poison(dsn: str, sqlstate: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(POISON_TRIGGER.replace("{sqlstate}", sqlstate))


class _Acks:
    def __init__(self) -> None:
        self.packet_ids: list[int] = []

    def ack(self, packet_ids: list[int]) -> bool:
        self.packet_ids.extend(packet_ids)
        return True


async def _run_batcher(dsn: str, batch: list[MessageRows], registry: CollectorRegistry) -> _Acks:
    metrics = IngestMetrics(registry)
    writer = TelemetryWriter(dsn)
    settings = BatchSettings(max_delay_s=0.01, retry_initial_s=0.01, retry_max_s=0.05, max_attempts=3)
    batcher = Batcher(writer, metrics, settings, now=lambda: NOW)
    acks = _Acks()
    task = asyncio.create_task(batcher.run())
    for message in batch:
        batcher.add(message, acks)
    try:
        assert await batcher.drain(30.0)
        await task
    finally:
        await writer.close()
    return acks


@pytest.mark.parametrize(
    ("sqlstate", "cause"),
    [("40001", "transient"), ("P0001", "programming_error")],
    ids=["serialization-failure-every-time", "unclassified-error"],
)
def test_a_message_that_keeps_failing_is_quarantined_after_bounded_attempts(
    any_db: TestDatabase, sqlstate: str, cause: str
) -> None:
    asyncio.run(_migrated(any_db.dsn))
    install_poison(any_db.dsn, sqlstate)
    batch = [
        replace(reading("ok", i), envelope=replace(reading("ok", i).envelope, packet_id=i + 1))
        for i in range(10)
    ]
    poison = reading("poison", 99)
    batch.insert(4, replace(poison, envelope=replace(poison.envelope, packet_id=500)))
    registry = CollectorRegistry()

    acks = asyncio.run(_run_batcher(any_db.dsn, batch, registry))

    assert sorted(acks.packet_ids) == sorted([*range(1, 11), 500])  # every message acknowledged
    assert count(any_db.dsn, "SELECT count(*) FROM readings") == 10
    assert count(any_db.dsn, "SELECT count(*) FROM quarantine WHERE reason = 'storage_rejected'") == 1
    failures = registry.get_sample_value("carewatch_ingest_flush_failures_total", {"cause": cause})
    assert failures == 3  # exactly max_attempts, then isolated: never retried forever
    assert (
        registry.get_sample_value("carewatch_ingest_flush_failures_total", {"cause": "db_unavailable"}) == 0
    )


def test_write_errors_carry_their_class(any_db: TestDatabase) -> None:
    asyncio.run(_migrated(any_db.dsn))
    install_poison(any_db.dsn, "40P01")
    with pytest.raises(StorageError) as caught:
        asyncio.run(write(any_db.dsn, reading("poison", 1)))
    assert caught.value.cause is ErrorClass.TRANSIENT
    assert caught.value.sqlstate == "40P01"


def test_concurrent_services_rewrite_the_rule_thresholds_without_conflict(any_db: TestDatabase) -> None:
    """Two ingest processes starting together once failed start-up on a unique violation."""
    asyncio.run(_migrated(any_db.dsn))

    async def one() -> int:
        async with await psycopg.AsyncConnection.connect(any_db.dsn) as conn:
            return await write_thresholds(conn, RulesConfig.default(), now=NOW)

    async def many() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(6)))

    written = asyncio.run(many())
    assert len(set(written)) == 1
    assert count(any_db.dsn, "SELECT count(*) FROM rule_thresholds") == written[0]
