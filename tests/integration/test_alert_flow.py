"""From a device message to a worked alert, through a real broker and database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.integration.test_ingest_service import count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, canonical
from tests.support.service import IngestProcess

__all__ = ["ingest_factory"]  # the fixture is shared

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]


def now_ms() -> int:
    return int(time.time() * 1000)


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def alerts_of(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT rule, severity, state, occurrence_count, sla_due_at - raised_at, device_id"
            " FROM alerts ORDER BY id"
        ).fetchall()


def test_panic_presses_make_one_critical_alert_with_a_15_minute_deadline(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms()
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/gw/pendant-1/json", canonical(base, "panic"))
        assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
        for press in range(1, 4):
            gateway.publish("carewatch/v1/gw/pendant-1/json", canonical(base + press * 2000, "panic"))
    assert wait_for_count(tsdb.dsn, "SELECT max(occurrence_count) FROM alerts", 4) == 4
    assert alerts_of(tsdb.dsn) == [("panic", "critical", "open", 4, timedelta(minutes=15), "pendant-1")]


def test_cancelled_fall_raises_nothing_and_an_uncancelled_fall_raises_one_critical_alert(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms() - 120_000
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/gw/watch-1/json", canonical(base, "fall", stage="alarm"))
        gateway.publish("carewatch/v1/gw/watch-1/json", canonical(base + 10_000, "cancel"))
        gateway.publish("carewatch/v1/gw/watch-2/json", canonical(base, "fall", stage="alarm"))
        # The watch keeps talking: its own clock passes the 30 s window and the 60 s grace.
        gateway.publish("carewatch/v1/gw/watch-2/json", canonical(base + 91_000, "heartbeat"))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM held_events WHERE status <> 'pending'", 2) == 2
    assert alerts_of(tsdb.dsn) == [("fall", "critical", "open", 1, timedelta(minutes=15), "watch-2")]
    with psycopg.connect(tsdb.dsn) as conn:
        holds = conn.execute("SELECT device_id, status FROM held_events ORDER BY device_id").fetchall()
    assert holds == [("watch-1", "cancelled"), ("watch-2", "raised")]


def test_sustained_high_heart_rate_raises_a_critical_alert(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms() - 12 * 60_000
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(
            ("carewatch/v1/gw/watch-3/json", canonical(base + i * 30_000, "heart_rate", bpm=140))
            for i in range(25)
        )
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 25) == 25
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    assert alerts_of(tsdb.dsn) == [
        ("heart_rate_high", "critical", "open", 1, timedelta(minutes=15), "watch-3")
    ]


def test_claim_ack_resolve_write_the_audit_trail_and_refuse_invalid_transitions(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/gw/pendant-2/json", canonical(now_ms(), "panic", button="red"))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    claimed = cli(tsdb.dsn, "dispatch", "next", "--by", "anna")
    assert claimed.returncode == 0, claimed.stderr
    alert = json.loads(claimed.stdout)
    assert (alert["rule"], alert["claimed_by"], alert["state"]) == ("panic", "anna", "open")
    assert cli(tsdb.dsn, "dispatch", "next", "--by", "ben").stdout.strip() == "no open alert waiting"
    ack = cli(tsdb.dsn, "alerts", "ack", str(alert["id"]), "--by", "anna")
    assert (ack.returncode, ack.stdout.strip()) == (0, f"alert {alert['id']} is now acknowledged")
    done = cli(
        tsdb.dsn, "alerts", "resolve", str(alert["id"]), "--by", "anna", "--note", "false alarm, visited"
    )
    assert done.returncode == 0, done.stderr
    again = cli(tsdb.dsn, "alerts", "resolve", str(alert["id"]), "--by", "anna")
    assert again.returncode == 1
    assert "is resolved: cannot resolve it" in again.stderr
    missing = cli(tsdb.dsn, "alerts", "ack", "999999", "--by", "anna")
    assert (missing.returncode, missing.stderr.strip()) == (1, "carewatch: no alert with id 999999")
    with psycopg.connect(tsdb.dsn) as conn:
        trail = conn.execute(
            "SELECT actor, action, from_state, to_state, note FROM alert_events"
            " WHERE alert_id = %s ORDER BY id",
            (alert["id"],),
        ).fetchall()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM alert_events")
    assert trail == [
        ("carewatch", "raised", None, "open", None),
        ("anna", "claimed", "open", "open", None),
        ("anna", "acknowledged", "open", "acknowledged", None),
        ("anna", "resolved", "acknowledged", "resolved", "false alarm, visited"),
    ]
    listed = cli(tsdb.dsn, "alerts", "list", "--state", "resolved", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [alert["id"]]


def test_kill_9_and_restart_neither_duplicates_nor_loses_alerts(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms() - 60_000
    with Publisher(broker.service_port) as gateway:
        gateway.publish_many(
            (f"carewatch/v1/gw/p{i % 5}/json", canonical(base + i * 100, "panic", msg_id=f"press-{i}"))
            for i in range(50)
        )
        wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 2)
        service.kill()
        gateway.publish_many(
            (f"carewatch/v1/gw/p{i % 5}/json", canonical(base + i * 100, "panic", msg_id=f"press-{i}"))
            for i in range(50, 100)
        )
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    assert wait_for_count(tsdb.dsn, "SELECT sum(occurrence_count) FROM alerts", 100) == 100
    time.sleep(1.0)
    assert count(tsdb.dsn, "SELECT count(*) FROM alerts") == 5
    assert count(tsdb.dsn, "SELECT sum(occurrence_count) FROM alerts") == 100
    assert count(tsdb.dsn, "SELECT count(*) FROM alert_occurrences") == 100


def test_fall_whose_window_spans_a_restart_is_raised_exactly_once(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    service = start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms() - 5_000
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/gw/watch-9/json", canonical(base, "fall", stage="alarm"))
        assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM held_events WHERE status = 'pending'", 1) == 1
        assert service.terminate() == 0
        start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
        gateway.publish("carewatch/v1/gw/watch-9/json", canonical(base + 91_000, "heartbeat"))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    time.sleep(1.5)  # the service clock also passes the window: still one alert
    assert alerts_of(tsdb.dsn) == [("fall", "critical", "open", 1, timedelta(minutes=15), "watch-9")]


def test_alerts_are_published_for_consoles(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    received: list[tuple[str, dict[str, object]]] = []
    console = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="console")
    console.on_message = lambda _c, _u, msg: received.append((msg.topic, json.loads(msg.payload)))
    console.connect("127.0.0.1", broker.service_port)
    console.subscribe("carewatch/v1/alerts/#", qos=1)
    console.loop_start()
    try:
        time.sleep(0.3)
        start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
        with Publisher(broker.service_port) as gateway:
            gateway.publish("carewatch/v1/gw/pendant-7/json", canonical(now_ms(), "panic"))
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        console.loop_stop()
        console.disconnect()
    assert received
    topic, payload = received[0]
    assert topic == "carewatch/v1/alerts/critical"
    assert payload["reason"] == "raised"
    assert count(tsdb.dsn, "SELECT count(*) FROM quarantine") == 0


def test_a_watch_sos_frame_relayed_by_a_gateway_becomes_a_panic_alert(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    stamp = time.strftime("%d%m%y,%H%M%S", time.gmtime(time.time() - 10))
    frame = f"[3G*6907919734*003e*AL_LTE,{stamp},V,0,N,0,E,0,0,0,0,0,22,0,0,00010000,0,0,0]"
    with Publisher(broker.service_port) as gateway:
        gateway.publish("carewatch/v1/watch-gw/6907919734/watch", frame.encode())
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    assert alerts_of(tsdb.dsn) == [("panic", "critical", "open", 1, timedelta(minutes=15), "6907919734")]
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings WHERE metric = 'battery_pct'", 1) == 1
