"""Every payload the simulator produces decodes, with the pipeline's own codecs, to the intended event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices import READING_METRICS, DecodeContext, Kind, TimeSource
from devices.codecs import CODECS
from simulator.formats import CHANNELS, SUPPORTED, TIMED, DeviceState, Sample, decoded_kind, encode, supports

DEVICE_TIME = datetime(2025, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC)
RECEIVED_AT = DEVICE_TIME + timedelta(minutes=5)
STATE = DeviceState(device_id="sim-watch-0042", battery_pct=63, lat=59.3293, lon=18.0686, seq=17)

#: A sample of every kind, with the field value its decoded event must carry.
SAMPLES: dict[Kind, tuple[Sample, str | None, object]] = {
    Kind.HEARTBEAT: (Sample(Kind.HEARTBEAT, {"battery_pct": 63}), None, None),
    Kind.HEART_RATE: (Sample(Kind.HEART_RATE, {"bpm": 141}), "bpm", 141),
    Kind.SPO2: (Sample(Kind.SPO2, {"pct": 88}), "pct", 88),
    Kind.BODY_TEMP: (Sample(Kind.BODY_TEMP, {"celsius": 39.6}), "celsius", 39.6),
    Kind.FALL: (Sample(Kind.FALL, {"stage": "alarm", "confidence": 0.93}), "stage", "alarm"),
    Kind.PANIC: (Sample(Kind.PANIC, {"button": "sos"}), None, None),
    Kind.CANCEL: (Sample(Kind.CANCEL, {}), None, None),
    Kind.BATTERY: (Sample(Kind.BATTERY, {"pct": 4}), None, None),
    Kind.WORN: (Sample(Kind.WORN, {"on": False}), "on", False),
    Kind.LOCATION: (Sample(Kind.LOCATION, {"lat": 59.3293, "lon": 18.0686, "accuracy_m": 12.0}), None, None),
    Kind.ONLINE: (Sample(Kind.ONLINE, {}), None, None),
    Kind.OFFLINE: (Sample(Kind.OFFLINE, {}), None, None),
}

CASES = [(channel, kind) for channel in CHANNELS for kind in sorted(SUPPORTED[channel]) if kind in SAMPLES]


def decode(channel: str, payload: bytes) -> list:
    topic = f"carewatch/v1/sim-gw-01/{STATE.device_id}/{channel}"
    context = DecodeContext(received_at=RECEIVED_AT, device_id=STATE.device_id, topic=topic)
    decoded = CODECS[channel](payload, context)
    assert decoded.rejections == [], decoded.rejections
    return decoded.events


def test_every_channel_is_covered_by_a_codec() -> None:
    assert set(CHANNELS) == set(CODECS)


@pytest.mark.parametrize(("channel", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_payload_decodes_to_the_intended_event(channel: str, kind: Kind) -> None:
    sample, field, value = SAMPLES[kind]
    payload = encode(channel, sample, DEVICE_TIME, STATE)
    events = decode(channel, payload)
    wanted = decoded_kind(channel, kind)
    matching = [e for e in events if e.kind is wanted]
    assert len(matching) == 1, [e.kind for e in events]
    event = matching[0]
    assert event.device_id == STATE.device_id
    if field is not None:
        assert event.fields[field] == value
    if kind is Kind.BATTERY:
        level = event.fields.get("pct", event.fields.get("battery_pct"))
        assert level == 4
    if kind is Kind.HEARTBEAT and "battery_pct" in event.fields:
        assert event.fields["battery_pct"] == 63
    if kind in TIMED[channel]:
        assert event.time_source is TimeSource.DEVICE
        # Vendor formats keep whole seconds; JSON and Traccar keep milliseconds.
        assert abs((event.observed_at - DEVICE_TIME).total_seconds()) < 1
    else:
        assert event.time_source is TimeSource.RECEIVED
        assert event.observed_at == RECEIVED_AT


@pytest.mark.parametrize("channel", CHANNELS)
def test_timed_readings_keep_their_identity_across_a_resend(channel: str) -> None:
    """A duplicate send of a timed reading must map onto the same stored row."""
    for kind in sorted(TIMED[channel] & set(READING_METRICS) & set(SAMPLES)):
        sample = SAMPLES[kind][0]
        payload = encode(channel, sample, DEVICE_TIME, STATE)
        first = decode(channel, payload)
        again = decode(channel, payload)
        assert [(e.kind, e.observed_at, e.event_key) for e in first] == [
            (e.kind, e.observed_at, e.event_key) for e in again
        ]


def test_unsupported_kinds_are_refused_not_mangled() -> None:
    assert not supports("watch", Sample(Kind.CANCEL, {}))
    assert not supports("watch", Sample(Kind.WORN, {"on": True}))
    assert supports("json", Sample(Kind.WORN, {"on": True}))
    with pytest.raises(ValueError, match="cannot carry"):
        encode("scaip", Sample(Kind.HEART_RATE, {"bpm": 70}), DEVICE_TIME, STATE)


def test_watch_frame_length_field_matches_its_content() -> None:
    payload = encode("watch", SAMPLES[Kind.FALL][0], DEVICE_TIME, STATE).decode()
    _, _, length, content = payload[1:-1].split("*", 3)
    assert int(length, 16) == len(content)
