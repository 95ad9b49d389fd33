"""A panic whose only defect is garbled text, through the real service, broker and database.

PostgreSQL cannot hold U+0000 and psycopg cannot encode a lone surrogate: before devices/
sanitised text, such a panic stalled its batch and never alerted. Now it is stored as a
panic flagged ``sanitised_text``, raises the panic alert, keeps its raw bytes in
quarantine, and the telemetry behind it is stored as usual.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.integration.test_ingest_service import count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, heart_rate_stream
from tests.support.service import IngestProcess

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

__all__ = ["ingest_factory"]  # the fixture, imported for pytest

PANIC_TOPIC = "carewatch/v1/gw/pendant-9/json"


def garbled_panic(ts_ms: int) -> bytes:
    """msg_id "a\\u0000b", button "\\u202e\\ud800": written as JSON escapes, as a device sends them."""
    return b'{"ts":%d,"kind":"panic","msg_id":"a\\u0000b","button":"\\u202e\\ud800"}' % ts_ms


def test_garbled_panic_is_stored_alerts_and_keeps_its_raw_bytes(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    payload = garbled_panic(int(time.time() * 1000) - 5_000)
    readings = heart_rate_stream(300, gateway="gw-hr")
    with Publisher(broker.service_port) as gateway:
        gateway.publish(PANIC_TOPIC, payload)
        gateway.publish_many(readings)
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts WHERE rule = 'panic'", 1, timeout_s=30) == 1
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", len(readings)) == len(readings)
    with psycopg.connect(tsdb.dsn) as conn:
        events = conn.execute(
            "SELECT device_id, kind, msg_id, detail->>'button', flags FROM device_events"
        ).fetchall()
        quarantined = conn.execute("SELECT reason, payload, detail, device_id FROM quarantine").fetchall()
        alert_device = conn.execute("SELECT device_id FROM alerts WHERE rule = 'panic'").fetchall()
    assert events == [("pendant-9", "panic", "a\ufffdb", "\ufffd\ufffd", ["sanitised_text"])]
    assert quarantined == [
        ("sanitised_text", payload, "text sanitised, events stored: panic.msg_id, panic.button", "pendant-9")
    ]
    assert alert_device == [("pendant-9",)]
    assert count(tsdb.dsn, "SELECT count(*) FROM quarantine WHERE reason <> 'sanitised_text'") == 0
