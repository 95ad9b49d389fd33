"""The operator's path after a fix: find quarantined messages, export them, replay them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TestDatabase
from tests.integration.test_alert_flow import cli
from tests.integration.test_ingest_service import TS, count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, canonical
from tests.support.service import IngestProcess

__all__ = ["ingest_factory"]  # the fixture is shared

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]


def test_messages_of_an_unenrolled_device_are_replayed_once_it_is_enrolled(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    enrolled = cli(tsdb.dsn, "devices", "add", "w-1", "--gateway", "gw", "--profile", "wearable")
    assert enrolled.returncode == 0, enrolled.stderr
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    with Publisher(broker.service_port) as gateway:
        for i in range(5):  # the new watch nobody enrolled yet
            gateway.publish(
                "carewatch/v1/gw/w-2/json", canonical(TS + i, "heart_rate", bpm=70, msg_id=f"m{i}")
            )
        gateway.publish("carewatch/v1/gw/w-1/json", canonical(TS, "heart_rate", bpm=71, msg_id="ok"))
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM quarantine", 5) == 5
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings", 1) == 1

    listed = cli(tsdb.dsn, "quarantine", "list", "--reason", "unknown_device", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["topic"], row["reason"]) for row in rows] == [
        ("carewatch/v1/gw/w-2/json", "unknown_device")
    ] * 5
    summary = cli(tsdb.dsn, "quarantine", "summary")
    assert "5  unknown_device" in summary.stdout

    # The fix: enrol the device. Then export what it sent, and replay it.
    assert cli(tsdb.dsn, "devices", "add", "w-2", "--gateway", "gw", "--profile", "wearable").returncode == 0
    recording = tmp_path / "replay.jsonl"
    exported = cli(
        tsdb.dsn, "quarantine", "export", "--reason", "unknown_device", "--out", str(recording), "--mark"
    )
    assert exported.returncode == 0, exported.stderr
    assert len(recording.read_text().splitlines()) == 5
    again = cli(tsdb.dsn, "quarantine", "export", "--out", str(tmp_path / "again.jsonl"))
    assert (tmp_path / "again.jsonl").read_text() == ""  # --mark: a second export skips them

    # The running service reloads the registry within 10 s: wait until it trusts w-2.
    with Publisher(broker.service_port, client_id="probe") as probe:
        for attempt in range(40):
            probe.publish("carewatch/v1/gw/w-2/json", canonical(TS, "heartbeat", msg_id=f"probe{attempt}"))
            if count(tsdb.dsn, "SELECT count(*) FROM device_events WHERE device_id = 'w-2'"):
                break
            time.sleep(0.5)
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "replay",
            str(recording),
            "--speed",
            "1000",
            "--mqtt-url",
            broker.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert again.returncode == 0
    assert (
        wait_for_count(tsdb.dsn, "SELECT count(*) FROM readings WHERE device_id = 'w-2'", 5, timeout_s=30)
        == 5
    )
    assert count(tsdb.dsn, "SELECT count(DISTINCT msg_id) FROM readings WHERE device_id = 'w-2'") == 5
