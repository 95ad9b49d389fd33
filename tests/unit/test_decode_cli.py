"""``carewatch decode`` as a user runs it: a subprocess fed the payload on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "devices"
FORMATS = {
    "watch": "watch",
    "iw": "iw",
    "z2m": "z2m",
    "traccar": "traccar",
    "scaip": "scaip",
    "owntracks": "owntracks",
}


def decode(fmt: str, payload: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", "decode", "--format", fmt, *args],
        input=payload,
        capture_output=True,
        timeout=60,
        check=False,
    )


def cases() -> list[tuple[str, dict[str, object]]]:
    return [
        (fmt, json.loads(line))
        for fmt, name in FORMATS.items()
        for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ]


@pytest.mark.parametrize(("fmt", "case"), cases(), ids=lambda v: v["id"] if isinstance(v, dict) else v)
def test_every_fixture_decodes_through_the_command_to_its_documented_kind_and_device(fmt, case):
    expect = case["expect"]
    args = []
    if case.get("mqtt_topic"):
        args += ["--topic", case["mqtt_topic"]]
    if expect.get("device_id") is None or fmt in {"iw", "z2m"}:
        args += ["--device-id", "dev-under-test"]
    if expect.get("time"):  # received a few seconds after the frame, as in the field
        received = datetime.fromisoformat(expect["time"]) + timedelta(seconds=5)
        args += ["--received-at", received.astimezone(UTC).isoformat()]
    result = decode(fmt, case["raw"].encode(), *args)
    assert result.returncode in (0, 2, 3), result.stderr
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    kind = expect["kind"]
    canonical_kind = {"removed": "worn", "temperature": "body_temp"}.get(kind, kind)
    if kind == "none":  # no event, at most a liveness update; and never silence with exit 0
        assert not {e["kind"] for e in events} & {"panic", "fall", "alarm"}
        if not events:
            assert result.returncode in (2, 3)
            assert result.stderr
        return
    if kind == "multiple" or case.get("uncertain"):
        assert result.returncode == 0
        return
    chosen = [e for e in events if e["kind"] == canonical_kind]
    assert chosen, (kind, events, result.stderr)
    event = chosen[0]
    if expect.get("device_id") and fmt not in {"iw", "z2m"}:
        assert event["device_id"] == expect["device_id"]
    if expect.get("time"):
        assert event["time"] == expect["time"].replace(".992Z", ".992000Z")
    for key in ("time", "device_id", "kind"):
        assert key in event


def test_undecodable_payload_prints_the_reason_and_exits_2():
    result = decode("json", b"{not json", "--device-id", "d1")
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"malformed_json" in result.stderr


def test_payload_without_events_prints_nothing_and_exits_0():
    result = decode(
        "z2m", b'{"action":"","battery":90}', "--device-id", "0xabc", "--received-at", "2026-01-01T00:00:00Z"
    )
    assert result.returncode == 0
    assert [json.loads(line)["kind"] for line in result.stdout.decode().splitlines()] == ["battery"]


def test_payload_that_yields_nothing_says_why_and_exits_3():
    result = decode("watch", b"[3G*8800000015*0003*TKQ]")
    assert result.returncode == 3
    assert result.stdout == b""
    assert result.stderr.startswith(b"carewatch: no events: ")


def test_frame_type_not_understood_is_reported_as_unsupported_and_exits_2():
    result = decode("iw", b"TRVAP12,080835,+491773329827#", "--device-id", "353456789012345")
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr == b"carewatch: unsupported_frame: IW frame type TRVAP12 is not supported\n"
    assert b"491773329827" not in result.stderr


def test_trv_heartbeat_decodes_through_the_command():
    result = decode("iw", b"TRVCP01,07800010010000602001206001120124#", "--device-id", "353456789012345")
    assert result.returncode == 0
    (event,) = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert (event["kind"], event["battery_pct"]) == ("heartbeat", 100)


def test_frames_without_a_time_are_stamped_with_the_received_time():
    result = decode("watch", b"[3G*8800000015*0008*heart,72]", "--received-at", "2026-03-01T10:00:00+01:00")
    assert result.returncode == 0
    (event,) = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert event == {
        "device_id": "8800000015",
        "kind": "heart_rate",
        "time": "2026-03-01T09:00:00Z",
        "bpm": 72.0,
        "time_source": "received",
        "received_at": "2026-03-01T09:00:00Z",
    }
