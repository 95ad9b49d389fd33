"""One hostile message must never stop the service: the issue's poison checks, through the real service.

A real Mosquitto, a real database and ``carewatch ingest`` as a subprocess;
the publisher is paho, an independent client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.integration.test_ingest_service import TS, count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, canonical
from tests.support.service import IngestProcess

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]
__all__ = ["ingest_factory"]  # the fixture is shared

#: Text the database cannot hold or that hides what it says, as JSON escapes in the payload.
POISON_TEXT = ["a\u0000b", "\ud800", "x\u0007y\u009b", "\u202eevil"]


def poison_panics() -> list[bytes]:
    """Canonical panics with every poison in msg_id and in button (the payload is valid JSON)."""
    payloads = []
    for i, text in enumerate(POISON_TEXT):
        payloads.append(json.dumps({"ts": TS, "kind": "panic", "msg_id": f"p{i}" + text}).encode())
        payloads.append(json.dumps({"ts": TS + 1, "kind": "panic", "button": text}).encode())
    return payloads


def test_poisoned_panics_alert_and_every_other_device_keeps_flowing(
    broker: RunningBroker, any_db: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, any_db.dsn, tmp_path)
    poison = poison_panics()
    with Publisher(broker.service_port) as gateway:
        for i, payload in enumerate(poison):
            gateway.publish(f"carewatch/v1/gw-bad/poison{i}/json", payload)
        for i in range(20):  # after the poison, from other devices
            gateway.publish(
                f"carewatch/v1/gw/dev{i}/json", canonical(TS + i, "heart_rate", bpm=70, msg_id=f"m{i}")
            )
        published = time.monotonic()
        gateway.publish("carewatch/v1/gw/clean/json", canonical(TS, "panic", msg_id="clean-1"))
        clean_alert = wait_for_count(
            any_db.dsn,
            "SELECT count(*) FROM alerts WHERE device_id = 'clean' AND rule = 'panic'",
            1,
            timeout_s=10,
        )
        clean_latency_s = time.monotonic() - published
    assert clean_alert == 1
    assert clean_latency_s < 2.0, clean_latency_s
    assert wait_for_count(any_db.dsn, "SELECT count(*) FROM readings", 20) == 20
    # Every garbled panic still alerts, one alert per device.
    poisoned = wait_for_count(
        any_db.dsn,
        "SELECT count(DISTINCT device_id) FROM alerts WHERE device_id LIKE 'poison%' AND rule = 'panic'",
        len(poison),
    )
    assert poisoned == len(poison)
    # Nothing vanished: each poisoned message is stored as an event or kept raw in quarantine.
    with psycopg.connect(any_db.dsn) as conn:
        accounted = conn.execute(
            "SELECT count(*) FROM (SELECT device_id FROM device_events WHERE device_id LIKE 'poison%'"
            " UNION SELECT split_part(topic, '/', 4) FROM quarantine WHERE topic LIKE '%/poison%') seen"
        ).fetchone()
    assert accounted == (len(poison),)
    assert service.metric("carewatch_ingest_flush_failures_total", 'cause="db_unavailable"') == 0
    assert service.metric("carewatch_ingest_messages_received_total") == len(poison) + 21
    service.assert_running()
    assert service.terminate() == 0


def test_a_database_that_does_not_exist_exits_with_a_clear_message(
    broker: RunningBroker, any_db: TestDatabase, tmp_path: Path
) -> None:
    missing = (
        any_db.dsn.replace("dbname=", "dbname=nope_")
        if "dbname=" in any_db.dsn
        else any_db.dsn + " dbname=nope"
    )
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "ingest",
            "--mqtt-url",
            broker.url,
            "--dsn",
            missing,
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr
    assert time.monotonic() - started < 30  # no retrying in silence
    assert count(any_db.dsn, "SELECT 1") == 1  # the real database was never touched
