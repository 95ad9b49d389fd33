"""``carewatch ingest`` as operators run it: a subprocess, a real Mosquitto, a real database.

The publisher is paho-mqtt, an independent client, so these tests also check
that our MQTT session interoperates with the broker as a gateway sees it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, canonical, heart_rate_stream
from tests.support.service import IngestProcess

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

#: A recent device time: life-safety events older than a day are filed under
#: their receive time by design, so the tests must not hard-code a date.
TS = int(time.time() * 1000) - 60_000


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def wait_for_count(dsn: str, sql: str, expected: int, *, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    seen = -1
    while time.monotonic() < deadline:
        seen = count(dsn, sql)
        if seen >= expected:
            return seen
        time.sleep(0.1)
    return seen


@pytest.fixture
def ingest_factory(broker: RunningBroker, tmp_path: Path) -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for process in started:
        process.stop_quietly()


def start_ingest(
    started: list[IngestProcess],
    broker: RunningBroker,
    dsn: str,
    tmp_path: Path,
    *args: str,
    wait_ready: bool = True,
) -> IngestProcess:
    process = IngestProcess(mqtt_url=broker.url, dsn=dsn, workdir=tmp_path, args=args)
    started.append(process)
    return process.start(wait_ready=wait_ready)


def test_stream_is_stored_and_sigterm_exits_cleanly(
    broker: RunningBroker, any_db: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, any_db.dsn, tmp_path)
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(heart_rate_stream(2000))
    assert wait_for_count(any_db.dsn, "SELECT count(*) FROM readings", 2000) == 2000
    assert service.metric("carewatch_ingest_messages_stored_total") == 2000
    assert service.terminate() == 0
    assert "stopped cleanly" in service.log()


def test_kill_9_mid_stream_then_restart_stores_every_message_exactly_once(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    total = 20_000
    messages = heart_rate_stream(total)
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(messages[: total // 2])
        # Kill while the first half is still being committed.
        wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", total // 4)
        service.kill()
        stored_at_kill = count(tsdb.dsn, "SELECT count(*) FROM readings")
        gateway.publish_many(messages[total // 2 :])  # published while the service is down
    restarted = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", total) == total
    time.sleep(1.0)  # let any redelivered duplicate arrive
    assert count(tsdb.dsn, "SELECT count(*) FROM readings") == total
    assert count(tsdb.dsn, "SELECT count(DISTINCT msg_id) FROM readings") == total
    assert stored_at_kill < total
    assert restarted.terminate() == 0


def malformed_corpus() -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason) for many kinds of bad input."""
    topic = "carewatch/v1/gw-bad/dev1/json"
    cases: list[tuple[str, bytes, str]] = [
        (topic, b"{not json", "malformed_json"),
        (topic, b"", "malformed_json"),
        (topic, b"\xff\xfe\x00garbage", "malformed_json"),
        (topic, b"42", "invalid_structure"),
        (topic, b"[]", "no_events"),
        (topic, canonical(TS, "heart_rate", bpm="72"), "wrong_type"),
        (topic, canonical(TS, "heart_rate", bpm=True), "wrong_type"),
        (topic, b'{"ts":%d,"kind":"heart_rate","bpm":NaN}' % TS, "non_finite_number"),
        (topic, b'{"ts":%d,"kind":"heart_rate","bpm":Infinity}' % TS, "non_finite_number"),
        (topic, b'{"ts":%d,"kind":"heart_rate","bpm":1e400}' % TS, "non_finite_number"),
        (topic, canonical(TS, "heart_rate", bpm=0), "out_of_range"),
        (topic, canonical(TS, "heart_rate", bpm=301), "out_of_range"),
        (topic, canonical(TS, "spo2", pct=101), "out_of_range"),
        (topic, canonical(TS, "battery", pct=-1), "out_of_range"),
        (topic, canonical(TS, "teleport"), "unknown_kind"),
        (topic, json.dumps({"kind": "heart_rate", "bpm": 70}).encode(), "missing_field"),
        (topic, json.dumps({"ts": TS, "bpm": 70}).encode(), "missing_field"),
        (topic, canonical(TS, "heart_rate", bpm=70, colour="red"), "unexpected_field"),
        (
            topic,
            json.dumps({"ts": "yesterday", "kind": "heart_rate", "bpm": 70}).encode(),
            "bad_timestamp",
        ),
        (topic, canonical(4_102_444_800_000, "heart_rate", bpm=70), "clock_skew"),
        (topic, b"x" * (70 * 1024), "payload_too_large"),
        ("carewatch/v1/gw-bad/dev1", canonical(TS, "heart_rate", bpm=70), "bad_topic"),
        ("carewatch/v1/gw-bad/dev1/json/extra", canonical(TS, "heart_rate", bpm=70), "bad_topic"),
        ("carewatch/v1/gw bad/dev1/json", canonical(TS, "heart_rate", bpm=70), "bad_topic"),
        (
            "carewatch/v1/gw-bad/" + "d" * 65 + "/json",
            canonical(TS, "heart_rate", bpm=70),
            "bad_topic",
        ),
        ("carewatch/v1/gw-bad/dev1/xml", b"<x/>", "unsupported_channel"),
    ]
    return cases


def test_malformed_messages_are_quarantined_with_reasons_and_never_stop_the_service(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    corpus = malformed_corpus() * 12  # a few hundred, identical ones included
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many((topic, payload) for topic, payload, _ in corpus)
        gateway.publish("carewatch/v1/gw-bad/dev1/json", canonical(TS, "heart_rate", bpm=70))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM quarantine", len(corpus)) == len(corpus)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 1) == 1
    with psycopg.connect(tsdb.dsn) as conn:
        by_reason = dict(conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall())
        kept_bytes = conn.execute(
            "SELECT count(*) FROM quarantine WHERE reason = 'payload_too_large'"
            " AND octet_length(payload) = 70 * 1024"
        ).fetchone()
    expected: dict[str, int] = {}
    for _, _, reason in corpus:
        expected[reason] = expected.get(reason, 0) + 1
    assert by_reason == expected
    assert kept_bytes == (12,)
    service.assert_running()
    assert service.http("/readyz")[0] == 200
    assert service.metric("carewatch_ingest_messages_quarantined_total", 'reason="non_finite_number"') == 36


def test_panic_with_skewed_clock_is_stored_flagged_not_quarantined(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/gw/dev1/json", canonical(4_102_444_800_000, "panic"))
        gateway.publish("carewatch/v1/gw/dev2/json", json.dumps({"kind": "fall", "confidence": "high"}))
        gateway.publish("carewatch/v1/gw/dev3/json", b'{"ts":%d,"kind":"fall","confidence":NaN}' % TS)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM device_events", 3) == 3
    with psycopg.connect(tsdb.dsn) as conn:
        rows = conn.execute(
            "SELECT device_id, kind, time_source, flags FROM device_events ORDER BY device_id"
        ).fetchall()
    assert rows == [
        ("dev1", "panic", "received", ["clock_skew"]),
        ("dev2", "fall", "received", ["bad_timestamp", "invalid_fields"]),
        ("dev3", "fall", "device", ["invalid_fields"]),
    ]
    assert count(tsdb.dsn, "SELECT count(*) FROM quarantine") == 0


def test_messages_published_while_the_service_is_down_are_stored_on_start(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    first = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    assert first.terminate() == 0  # the broker now holds a persistent session for us
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(heart_rate_stream(500))
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 500) == 500


def test_own_alert_stream_is_ignored_not_quarantined(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    with Publisher(broker.service_port) as console:
        console.publish("carewatch/v1/alerts/critical", b'{"alert": 1}')
        console.publish("carewatch/v1/gw/dev1/json", canonical(TS, "heart_rate", bpm=70))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 1) == 1
    assert service.metric("carewatch_ingest_messages_ignored_total") == 1
    assert count(tsdb.dsn, "SELECT count(*) FROM quarantine") == 0


def set_connections(admin_dsn: str, dbname: str, *, allowed: bool) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )


def test_database_outage_applies_backpressure_and_loses_nothing(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    from tests.support.database import server_dsn  # noqa: PLC0415

    admin = server_dsn("timescaledb")
    dbname = psycopg.conninfo.conninfo_to_dict(tsdb.dsn)["dbname"]
    assert isinstance(dbname, str)
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path, "--receive-maximum", "100")
    messages = heart_rate_stream(1000)
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(messages[:10])
        assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 10) == 10
        set_connections(admin, dbname, allowed=False)
        try:
            gateway.publish_many(messages[10:])
            time.sleep(2.0)
            depth = service.metric("carewatch_ingest_queue_depth_messages")
            assert 0 < depth <= 100, depth  # held in memory only up to the receive maximum
            assert service.metric("carewatch_ingest_db_up") == 0
            assert service.http("/readyz")[0] == 503
            service.assert_running()
        finally:
            set_connections(admin, dbname, allowed=True)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 1000, timeout_s=90) == 1000
    assert service.terminate() == 0
