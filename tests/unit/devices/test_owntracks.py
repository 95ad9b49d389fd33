import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, RejectReason, TimeSource, owntracks
from tests.unit.devices.helpers import (
    HYPOTHESIS,
    JSON_VALUES,
    as_json,
    decoder,
    emitted,
    load_cases,
    only_rejection,
)

CASES = load_cases("owntracks")
FIX_TIME = datetime(2026, 5, 1, 11, 58, tzinfo=UTC)
TST = int(FIX_TIME.timestamp())
RECEIVED_AT = FIX_TIME + timedelta(minutes=2)
TOPIC = "owntracks/jane/nokia"


def context(topic=TOPIC, device_id=None, received_at=RECEIVED_AT):
    return DecodeContext(received_at=received_at, device_id=device_id, topic=topic)


def location(**extra):
    return {"_type": "location", "lat": 48.856826, "lon": 2.292713, "tst": TST, "tid": "j1", **extra}


run = decoder(owntracks.decode, as_json, topic=TOPIC, received_at=RECEIVED_AT)


# --- golden cases from the shared sample ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    time = datetime.fromisoformat(expect["time"]).astimezone(UTC)
    received_at = time + timedelta(seconds=5)
    decoded = owntracks.decode(
        case["raw"].encode(), context(topic=case["mqtt_topic"], received_at=received_at)
    )
    assert decoded.rejections == []
    secondary = expect.get("secondary", [])
    assert [event.kind for event in decoded.events] == [Kind.LOCATION] + [Kind.BATTERY for _ in secondary]
    fix = decoded.events[0]
    assert fix.fields["lat"] == expect["location"]["lat"]
    assert fix.fields["lon"] == expect["location"]["lon"]
    assert [event.fields["pct"] for event in decoded.events[1:]] == [float(s["value"]) for s in secondary]
    for event in decoded.events:
        assert event.device_id == expect["device_id"]
        assert event.observed_at == time
        assert event.time_source is TimeSource.DEVICE
        assert event.flags == frozenset()


# --- identity --------------------------------------------------------------------------------


def test_routing_device_id_wins():
    event = run(location(topic="owntracks/other/phone"), device_id="resident-7").events[0]
    assert event.device_id == "resident-7"


@pytest.mark.parametrize(
    ("topic", "body_topic", "device"),
    [
        ("owntracks/jane/nokia", None, "jane/nokia"),
        ("owntracks/jane/nokia/event", None, "jane/nokia"),
        (None, "owntracks/ckrey/22A67880-15C3", "ckrey/22A67880-15C3"),
        ("owntracks/jane/nokia", "owntracks/mallory/phone", "jane/nokia"),
        ("something/else", "owntracks/jane/nokia", "jane/nokia"),
    ],
)
def test_identity_from_topics(topic, body_topic, device):
    extra = {} if body_topic is None else {"topic": body_topic}
    assert run(location(**extra), topic=topic).events[0].device_id == device


@pytest.mark.parametrize(
    "topic", [None, "owntracks/jane", "owntracks//nokia", "owntracks/jane/", "ot/jane/nokia"]
)
def test_no_identity(topic):
    rejection = only_rejection(run(location(), topic=topic))
    assert rejection.reason is RejectReason.MISSING_FIELD
    assert rejection.detail == "no device identity"


def test_tid_is_not_an_identity():
    assert only_rejection(run(location(tid="j1", topic=42), topic=None)).reason is RejectReason.MISSING_FIELD


# --- locations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(-33.8688, 151.2093), (40.7128, -74.006), (-22.9068, -43.1729), (37, -122), (90, 180), (-90, -180)],
)
def test_signed_coordinates(lat, lon):
    assert emitted(run(location(lat=lat, lon=lon))) == [
        (Kind.LOCATION, {"lat": float(lat), "lon": float(lon)})
    ]


def test_full_location_with_accuracy_and_battery():
    decoded = run(location(acc=12, batt=53, alt=154, vel=0, conn="w", t="u", bs=1, created_at=TST + 1))
    assert emitted(decoded) == [
        (Kind.LOCATION, {"lat": 48.856826, "lon": 2.292713, "accuracy_m": 12.0}),
        (Kind.BATTERY, {"pct": 53.0}),
    ]
    assert all(event.observed_at == FIX_TIME for event in decoded.events)
    assert decoded.events[1].event_key == ""  # a reading: identified by device, metric and time


@pytest.mark.parametrize("acc", [-1, "5", True, None, [5]])
def test_unusable_accuracy_is_dropped(acc):
    assert emitted(run(location(acc=acc))) == [(Kind.LOCATION, {"lat": 48.856826, "lon": 2.292713})]


def test_zero_accuracy_is_kept():
    assert emitted(run(location(acc=0)))[0][1]["accuracy_m"] == 0.0


def test_no_fix_position_yields_only_the_battery():
    assert emitted(run(location(lat=0, lon=0, batt=80))) == [(Kind.BATTERY, {"pct": 80.0})]


def test_equator_or_meridian_alone_is_a_fix():
    assert [event.kind for event in run(location(lat=0, lon=9.19)).events] == [Kind.LOCATION]
    assert [event.kind for event in run(location(lat=51.48, lon=0)).events] == [Kind.LOCATION]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("lat", 91, RejectReason.OUT_OF_RANGE),
        ("lat", -90.5, RejectReason.OUT_OF_RANGE),
        ("lon", 180.1, RejectReason.OUT_OF_RANGE),
        ("lon", -181, RejectReason.OUT_OF_RANGE),
        ("lat", "48.85", RejectReason.WRONG_TYPE),
        ("lon", True, RejectReason.WRONG_TYPE),
        ("lat", None, RejectReason.MISSING_FIELD),
    ],
)
def test_bad_coordinates_reject_the_fix_but_keep_the_battery(field, value, reason):
    decoded = run(location(batt=40, **{field: value}))
    assert [event.kind for event in decoded.events] == [Kind.BATTERY]
    assert [rejection.reason for rejection in decoded.rejections] == [reason]
    assert str(value) not in decoded.rejections[0].detail


def test_missing_coordinate():
    payload = location()
    del payload["lon"]
    assert only_rejection(run(payload)).reason is RejectReason.MISSING_FIELD


def test_non_finite_coordinate():
    raw = b'{"_type":"location","lat":NaN,"lon":2.0,"tst":%d}' % TST
    assert only_rejection(owntracks.decode(raw, context())).reason is RejectReason.NON_FINITE_NUMBER


@pytest.mark.parametrize(
    ("batt", "reason"),
    [(101, RejectReason.OUT_OF_RANGE), (-5, RejectReason.OUT_OF_RANGE), ("53", RejectReason.WRONG_TYPE)],
)
def test_bad_battery_is_rejected_alone(batt, reason):
    decoded = run(location(batt=batt))
    assert [event.kind for event in decoded.events] == [Kind.LOCATION]
    assert [rejection.reason for rejection in decoded.rejections] == [reason]


@pytest.mark.parametrize("batt", [0, 100, 99.5])
def test_battery_bounds(batt):
    assert emitted(run(location(lat=0, lon=0, batt=batt))) == [(Kind.BATTERY, {"pct": float(batt)})]


# --- fix time --------------------------------------------------------------------------------


def test_tst_is_the_fix_time_not_created_at():
    decoded = run(location(created_at=TST + 240))
    assert decoded.events[0].observed_at == FIX_TIME


def test_fractional_tst():
    assert run(location(tst=TST + 0.5)).events[0].observed_at == FIX_TIME + timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("tst", "reason"),
    [
        (None, RejectReason.MISSING_FIELD),
        ("1706856298", RejectReason.BAD_TIMESTAMP),
        (True, RejectReason.BAD_TIMESTAMP),
        (10**15, RejectReason.BAD_TIMESTAMP),
        (-(10**15), RejectReason.BAD_TIMESTAMP),
    ],
)
def test_unusable_tst_rejects_the_message(tst, reason):
    assert only_rejection(run(location(tst=tst, batt=50))).reason is reason


def test_missing_tst():
    payload = location(batt=50)
    del payload["tst"]
    assert only_rejection(run(payload)).reason is RejectReason.MISSING_FIELD


def test_clock_never_set_rejects_readings():
    decoded = run(location(tst=86_400, batt=50))
    assert decoded.events == []
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.BAD_TIMESTAMP] * 2


def test_future_fix_is_clock_skew():
    decoded = run(location(tst=TST + 3600))
    assert only_rejection(decoded).reason is RejectReason.CLOCK_SKEW


def test_queued_fix_hours_old_is_kept_with_its_own_time():
    old = FIX_TIME - timedelta(hours=30)
    decoded = run(location(tst=int(old.timestamp())))
    assert decoded.events[0].observed_at == old


# --- last will -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [{"_type": "lwt", "tst": 1_600_000_000}, {"_type": "lwt"}, {"_type": "LWT"}]
)
def test_lwt_is_offline_at_receive_time(payload):
    decoded = run(payload)
    assert emitted(decoded) == [(Kind.OFFLINE, {})]
    event = decoded.events[0]
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.device_time is None
    assert event.device_id == "jane/nokia"


def test_identical_lwts_at_different_times_have_different_keys():
    payload = {"_type": "lwt", "tst": 1_600_000_000}
    first = run(payload).events[0]
    later = run(payload, received_at=RECEIVED_AT + timedelta(hours=1)).events[0]
    assert first.event_key != later.event_key
    assert first.event_key == run(payload).events[0].event_key


# --- other message types ---------------------------------------------------------------------


TRANSITION = {
    "_type": "transition",
    "event": "leave",
    "desc": "Home",
    "lat": 48.856826,
    "lon": 2.292713,
    "acc": 20,
    "tst": TST,
    "wtst": 1706856000,
    "rid": "a1b2c3",
    "t": "c",
    "tid": "j1",
}


def test_transition_is_a_location_saying_which_region_was_left():
    assert emitted(run(TRANSITION)) == [
        (
            Kind.LOCATION,
            {"transition": "leave", "region": "Home", "lat": 48.856826, "lon": 2.292713, "accuracy_m": 20.0},
        )
    ]
    assert run(TRANSITION).events[0].observed_at == FIX_TIME


def test_transition_without_coordinates_still_says_what_happened():
    payload = {key: value for key, value in TRANSITION.items() if key not in {"lat", "lon"}} | {
        "event": "Enter"
    }
    assert emitted(run(payload)) == [(Kind.LOCATION, {"transition": "enter", "region": "Home"})]


@pytest.mark.parametrize("desc", ["x" * 65, "Ho\nme", 12, None, ""])
def test_unusable_region_names_are_left_out(desc):
    (event,) = run(TRANSITION | {"desc": desc}).events
    assert "region" not in event.fields


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event": "dwell"}, RejectReason.WRONG_TYPE),
        ({"event": 1}, RejectReason.WRONG_TYPE),
        ({"event": None}, RejectReason.MISSING_FIELD),
        ({"tst": None}, RejectReason.MISSING_FIELD),
        ({"tst": "yesterday"}, RejectReason.BAD_TIMESTAMP),
    ],
)
def test_broken_transitions_are_rejected(change, reason):
    assert only_rejection(run(TRANSITION | change)).reason is reason


def test_steps_report_is_a_steps_reading_at_its_end():
    decoded = run({"_type": "steps", "tst": TST, "steps": 1200, "from": TST - 3600, "to": TST - 60})
    assert emitted(decoded) == [(Kind.STEPS, {"count": 1200})]
    assert decoded.events[0].observed_at == FIX_TIME - timedelta(seconds=60)


def test_steps_report_without_to_uses_tst():
    decoded = run({"_type": "steps", "tst": TST, "steps": 5})
    assert decoded.events[0].observed_at == FIX_TIME


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"steps": -1}, RejectReason.UNSUPPORTED_FRAME, "the phone has no step counter"),
        ({"steps": None}, RejectReason.MISSING_FIELD, "steps is missing"),
        ({"steps": 1.5}, RejectReason.WRONG_TYPE, "steps must be a whole number"),
        ({"steps": True}, RejectReason.WRONG_TYPE, "steps must be a whole number"),
        ({"steps": -2}, RejectReason.OUT_OF_RANGE, "steps is out of range"),
        ({"steps": 10**30}, RejectReason.OUT_OF_RANGE, "steps is out of range"),
        ({"to": "now"}, RejectReason.BAD_TIMESTAMP, "to must be epoch seconds"),
        ({"tst": None}, RejectReason.MISSING_FIELD, "tst is missing"),
    ],
)
def test_broken_steps_reports_are_rejected(change, reason, detail):
    payload = {"_type": "steps", "tst": TST, "steps": 10} | change
    rejection = only_rejection(run(payload))
    assert (rejection.reason, rejection.detail) == (reason, detail)


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"_type": "waypoint", "desc": "Home", "lat": 1.0, "lon": 2.0, "rad": 50, "tst": TST}, "waypoint"),
        ({"_type": "waypoints", "waypoints": []}, "waypoints"),
        ({"_type": "card", "name": "Jane", "face": "..."}, "card"),
        ({"_type": "cmd", "action": "reportLocation"}, "cmd"),
        ({"_type": "status", "android": {}}, "status"),
        ({"_type": "configuration"}, "configuration"),
        ({"_type": "beacon", "uuid": "x"}, "beacon"),
        ({"_type": "something-new"}, "that is not a plain word"),
        ({"_type": "Jane Doe 1234"}, "that is not a plain word"),
    ],
)
def test_other_types_are_quarantined_naming_only_a_plain_type(payload, named):
    rejection = only_rejection(run(payload))
    assert (rejection.reason, rejection.detail) == (
        RejectReason.UNSUPPORTED_FRAME,
        f"OwnTracks message type {named} is not supported",
    )
    assert "Jane" not in rejection.detail


def test_type_case_variation():
    assert [event.kind for event in run(location(_type="Location")).events] == [Kind.LOCATION]


def test_encrypted_payload_is_rejected():
    rejection = only_rejection(run({"_type": "encrypted", "data": "c2VjcmV0"}))
    assert rejection.reason is RejectReason.UNSUPPORTED_FRAME
    assert "c2VjcmV0" not in rejection.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"lat": 1.0, "lon": 2.0, "tst": TST}, RejectReason.MISSING_FIELD),
        ({"_type": 5}, RejectReason.WRONG_TYPE),
        (b'{"_type":"location","lat":48.85', RejectReason.MALFORMED_JSON),
        (b"_type=location", RejectReason.MALFORMED_JSON),
        (b"", RejectReason.MALFORMED_JSON),
        (b"\x00\xff", RejectReason.MALFORMED_JSON),
        (b'[{"_type":"location"}]', RejectReason.INVALID_STRUCTURE),
        (b'"location"', RejectReason.INVALID_STRUCTURE),
        (b"null", RejectReason.INVALID_STRUCTURE),
    ],
)
def test_malformed_payloads(payload, reason):
    assert only_rejection(run(payload)).reason is reason


# --- robustness ------------------------------------------------------------------------------


@HYPOTHESIS
@given(payload=st.binary(max_size=300))
def test_garbage_never_raises(payload):
    assert isinstance(owntracks.decode(payload, context()), Decoded)


@HYPOTHESIS
@given(
    message=st.fixed_dictionaries(
        {"_type": st.sampled_from(["location", "lwt", "transition", "encrypted"]) | JSON_VALUES},
        optional=dict.fromkeys(["lat", "lon", "tst", "acc", "batt", "topic"], JSON_VALUES),
    )
)
def test_random_messages_never_raise(message):
    decoded = owntracks.decode(json.dumps(message).encode(), context())
    assert isinstance(decoded, Decoded)
    for event in decoded.events:
        if event.kind is Kind.LOCATION:
            assert -90 <= event.fields["lat"] <= 90
            assert -180 <= event.fields["lon"] <= 180


def test_unexpected_error_becomes_a_rejection(monkeypatch):
    def explode(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(owntracks, "_decode_location", explode)
    rejection = only_rejection(run(location()))
    assert rejection.reason is RejectReason.INVALID_STRUCTURE
    assert "boom" not in rejection.detail
