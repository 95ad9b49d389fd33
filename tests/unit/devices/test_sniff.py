"""A panic or fall in a JSON payload that does not parse at all still comes out, beside the rejection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devices import DecodeContext, Kind, RejectReason
from devices.codecs import CODECS

RECEIVED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DEEP = b"[" * 10_000 + b"]" * 10_000


def decode(fmt: str, payload: bytes, topic: str = "carewatch/v1/gw/dev1/x"):
    context = DecodeContext(received_at=RECEIVED_AT, device_id="dev1", topic=topic)
    return CODECS[fmt](payload, context)


@pytest.mark.parametrize(
    ("fmt", "payload", "kind"),
    [
        ("json", b'{"ts":1795000000000,"kind":"panic","button":' + DEEP + b"}", Kind.PANIC),
        ("json", b'{"ts":1795000000000,"kind":"fall","confid', Kind.FALL),
        ("json", b'[{"kind" : "alarm", "ts":', Kind.ALARM),
        ("z2m", b'{"action":"emergency","device":' + DEEP + b"}", Kind.PANIC),
        ("z2m", b'{"battery":87,"fall_down_status":"fall","linkq', Kind.FALL),
        ("traccar", b'{"event":{"type":"alarm","attributes":{"alarm":"sos"},"deviceId":5,"eve', Kind.PANIC),
        ("traccar", b'{"event":{"attributes":{"alarm":"fallDown"}},"groupId":' + DEEP + b"}", Kind.FALL),
    ],
)
def test_an_unparsable_payload_that_names_a_panic_or_fall_yields_it_flagged(fmt, payload, kind):
    decoded = decode(fmt, payload)
    assert [event.kind for event in decoded.events] == [kind]
    event = decoded.events[0]
    assert {"invalid_fields", "unparsed_payload"} <= event.flags
    assert event.observed_at == RECEIVED_AT  # nothing of the payload is believed, not even its time
    assert [r.reason for r in decoded.rejections] == [RejectReason.MALFORMED_JSON]  # raw bytes kept


def test_the_traccar_device_is_taken_from_the_payload_when_it_is_readable():
    decoded = decode("traccar", b'{"event":{"attributes":{"alarm":"sos"}},"device":{"uniqueId":"w-77"},"x":[')
    assert [(e.kind, e.device_id) for e in decoded.events] == [(Kind.PANIC, "w-77")]


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("json", b'{"ts":1795000000000,"kind":"heart_rate","bpm":7'),
        ("json", b'{"ts":1, "note":"kind panic"' + DEEP),
        ("z2m", b'{"action":"single","device":' + DEEP + b"}"),
        ("traccar", b'{"event":{"type":"deviceOnline","attributes":{"alarm":"powerCut"'),
    ],
)
def test_an_unparsable_payload_without_a_life_safety_marker_is_only_rejected(fmt, payload):
    decoded = decode(fmt, payload)
    assert decoded.events == []
    assert [r.reason for r in decoded.rejections] == [RejectReason.MALFORMED_JSON]


def test_two_identical_unparsable_presses_are_one_event_each_time_they_arrive():
    payload = b'{"kind":"panic","ts":'
    first, second = decode("json", payload), decode("json", payload)
    assert first.events[0].event_key == second.events[0].event_key  # a redelivery counts once
