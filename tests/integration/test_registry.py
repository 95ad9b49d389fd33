"""The device registry end to end: the CLI, the running service's trust decisions, supervision."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.integration.test_alert_flow import cli, now_ms
from tests.integration.test_ingest_service import count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher, canonical
from tests.support.service import IngestProcess

__all__ = ["ingest_factory"]  # the fixture is shared

pytestmark = [pytest.mark.db]

FLEET = (
    "device_id,gateway_id,profile,model,heartbeat_interval_s,elder_id,elder_name,living_alone,birth_year,"
    "risk_tier,timezone\n"
    "w-1,gw-a,wearable,Acme W1,,e-1,Anna Virtanen,true,1936,standard,Europe/Helsinki\n"
    "t-1,gw-b,fixed_terminal,,86400,e-1,Anna Virtanen,true,1936,standard,Europe/Helsinki\n"
    "s-1,gw-b,sensor,,,,,,,,\n"
)


def devices_json(dsn: str) -> dict[str, dict[str, object]]:
    listed = cli(dsn, "devices", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["device_id"]: row for row in map(json.loads, listed.stdout.splitlines())}


def test_import_list_add_remove_through_the_cli(any_db: TestDatabase, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(FLEET)
    imported = cli(any_db.dsn, "devices", "import", str(fleet))
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 devices and 1 elders" in imported.stdout
    listed = devices_json(any_db.dsn)
    assert sorted(listed) == ["s-1", "t-1", "w-1"]
    assert listed["w-1"]["elder_name"] == "Anna Virtanen"
    assert (listed["w-1"]["status"], listed["w-1"]["online"], listed["w-1"]["last_seen_at"]) == (
        "never_seen",
        False,
        None,
    )
    # Importing again updates in place: idempotent.
    assert cli(any_db.dsn, "devices", "import", str(fleet)).returncode == 0
    assert count(any_db.dsn, "SELECT count(*) FROM devices") == 3

    added = cli(
        any_db.dsn, "devices", "add", "p-7", "--gateway", "gw-a", "--profile", "pendant", "--elder", "e-1"
    )
    assert added.returncode == 0, added.stderr
    missing_elder = cli(
        any_db.dsn, "devices", "add", "p-8", "--gateway", "gw-a", "--profile", "pendant", "--elder", "e-2"
    )
    assert (missing_elder.returncode, "give --elder-name" in missing_elder.stderr) == (2, True)
    assert cli(any_db.dsn, "devices", "remove", "p-7").returncode == 0
    assert cli(any_db.dsn, "devices", "remove", "p-7").returncode == 2
    assert sorted(devices_json(any_db.dsn)) == ["s-1", "t-1", "w-1"]
    table = cli(any_db.dsn, "devices", "list")
    assert table.stdout.splitlines()[0].split()[:5] == ["DEVICE", "GATEWAY", "PROFILE", "ELDER", "STATUS"]


def test_a_bad_fleet_file_writes_nothing_and_names_the_line(pgdb: TestDatabase, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(FLEET + "w-2,gw-a,toaster,,,,,,,,\n")
    assert cli(pgdb.dsn, "db", "migrate").returncode == 0
    result = cli(pgdb.dsn, "devices", "import", str(fleet))
    assert result.returncode == 2
    assert f"{fleet}:5: profile 'toaster'" in result.stderr
    assert count(pgdb.dsn, "SELECT count(*) FROM devices") == 0


@pytest.mark.mqtt
@pytest.mark.slow
def test_the_service_trusts_only_registered_devices_under_their_gateway_and_supervises_them(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(FLEET)
    assert cli(tsdb.dsn, "devices", "import", str(fleet)).returncode == 0
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    base = now_ms() - 5_000
    with Publisher(broker.service_port) as gateways:
        gateways.publish("carewatch/v1/gw-a/w-1/json", canonical(base, "heart_rate", bpm=71))
        gateways.publish("carewatch/v1/gw-a/w-1/json", canonical(base + 1, "battery", pct=64))
        gateways.publish("carewatch/v1/gw-a/w-1/json", canonical(base + 2, "worn", on=True))
        gateways.publish("carewatch/v1/gw-a/w-9/json", canonical(base, "heart_rate", bpm=90))  # unknown
        gateways.publish("carewatch/v1/gw-b/w-1/json", canonical(base + 3, "cancel"))  # spoofed cancel
        gateways.publish("carewatch/v1/gw-b/w-1/json", canonical(base + 4, "panic"))  # wrong gateway
        gateways.publish("carewatch/v1/gw-a/w-9/json", canonical(base + 5, "fall", stage="alarm"))  # unknown
        gateways.publish("carewatch/v1/gw-a/w-1/json", canonical(base + 6, "panic"))  # the real thing

    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 3) == 3
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM quarantine", 4) == 4
    with psycopg.connect(tsdb.dsn) as conn:
        reasons = conn.execute(
            "SELECT device_id, reason, count(*) FROM quarantine GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        alerts = conn.execute(
            "SELECT device_id, rule, severity, evidence->>'reason' FROM alerts ORDER BY 1, 2"
        ).fetchall()
        flagged = conn.execute(
            "SELECT device_id, kind, gateway_id, flags FROM device_events WHERE flags <> '{}' ORDER BY 1"
        ).fetchall()
        readings = conn.execute("SELECT device_id, metric FROM readings ORDER BY 1, 2").fetchall()
    assert reasons == [("w-1", "gateway_mismatch", 2), ("w-9", "unknown_device", 2)]
    assert alerts == [
        ("w-1", "panic", "critical", None),
        ("w-1", "unverified_alarm", "critical", "gateway_mismatch"),
        ("w-9", "unverified_alarm", "critical", "unknown_device"),
    ]
    assert flagged == [
        ("w-1", "panic", "gw-b", ["gateway_mismatch"]),
        ("w-9", "fall", "gw-a", ["unknown_device"]),
    ]
    assert readings == [("w-1", "battery_pct"), ("w-1", "heart_rate_bpm")]

    # Supervision: written a few seconds behind the messages.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and devices_json(tsdb.dsn)["w-1"]["status"] != "online":
        time.sleep(0.5)
    listed = devices_json(tsdb.dsn)
    assert (listed["w-1"]["status"], listed["w-1"]["battery_pct"], listed["w-1"]["worn"]) == (
        "online",
        64.0,
        True,
    )
    # Anna lives alone and is 85+: high risk, so half the wearable's 600 s.
    assert listed["w-1"]["silence_timeout_s"] == 300.0
    assert listed["t-1"]["status"] == "never_seen"
    assert "w-9" not in listed  # an unknown device leaves no trace in supervision

    # Registering a device takes effect in the running service, without a restart.
    assert (
        cli(tsdb.dsn, "devices", "add", "w-9", "--gateway", "gw-a", "--profile", "wearable").returncode == 0
    )
    deadline = time.monotonic() + 30
    sent = 0
    with Publisher(broker.service_port) as gateway:
        while (
            time.monotonic() < deadline
            and count(tsdb.dsn, "SELECT count(*) FROM readings WHERE device_id = 'w-9'") == 0
        ):
            gateway.publish(
                "carewatch/v1/gw-a/w-9/json", canonical(now_ms() - 1000, "heart_rate", bpm=80 + sent)
            )
            sent += 1
            time.sleep(1)
    assert count(tsdb.dsn, "SELECT count(*) FROM readings WHERE device_id = 'w-9'") == 1


@pytest.mark.mqtt
@pytest.mark.slow
def test_a_routed_zigbee2mqtt_layout_is_subscribed_decoded_and_raises_the_panic(
    broker: RunningBroker, pgdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, pgdb.dsn, tmp_path, "--route", "zigbee2mqtt/+=z2m@hub-1")
    with Publisher(broker.service_port) as z2m:
        z2m.publish("zigbee2mqtt/sos-1", b'{"action":"emergency","battery":91}')
        z2m.publish("zigbee2mqtt/sos-1", b'{"action":""}')  # the reset that follows: no event
        z2m.publish("zigbee2mqtt/bridge/state", b'{"state":"online"}')  # not under the route: not taken
    assert wait_for_count(pgdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    with psycopg.connect(pgdb.dsn) as conn:
        alerts = conn.execute("SELECT device_id, rule, severity FROM alerts").fetchall()
        events = conn.execute("SELECT device_id, gateway_id, kind FROM device_events").fetchall()
        readings = conn.execute("SELECT device_id, metric, value FROM readings").fetchall()
    assert alerts == [("sos-1", "panic", "critical")]
    assert events == [("sos-1", "hub-1", "panic")]
    assert readings == [("sos-1", "battery_pct", 91.0)]
    assert count(pgdb.dsn, "SELECT count(*) FROM quarantine") == 0
