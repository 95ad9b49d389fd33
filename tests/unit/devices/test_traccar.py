"""The Traccar forwarded-JSON codec: golden fixtures plus every event type, alarm and attribute."""

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, RejectReason, TimeSource, traccar
from tests.unit.devices.helpers import (
    HYPOTHESIS,
    VALUE_FIELD,
    as_json,
    canonical_kind,
    decoder,
    kinds,
    load_cases,
    of_kind,
    reasons,
)

CASES = load_cases("traccar")
IMEI = "861585043200862"
RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EVENT_TIME = "2025-06-01T11:59:00.000+00:00"
FIX_TIME = "2025-06-01T11:58:00.000+00:00"
DEVICE_TIME = "2025-06-01T11:58:30.000+00:00"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


decode = decoder(traccar.decode, as_json, received_at=RECEIVED_AT)


def device(unique_id: object = IMEI) -> dict[str, object]:
    return {"id": 5, "attributes": {}, "name": "watch", "uniqueId": unique_id, "status": "online"}


def event(event_type: str, alarm: str | None = None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": 173,
        "attributes": {} if alarm is None else {"alarm": alarm},
        "deviceId": 5,
        "type": event_type,
        "eventTime": EVENT_TIME,
        "positionId": 0,
        "geofenceId": 0,
        "maintenanceId": 0,
    }
    body.update(extra)
    return body


def position(valid: bool = True, **attributes: object) -> dict[str, object]:
    return {
        "id": 1420,
        "attributes": attributes,
        "deviceId": 5,
        "protocol": "watch",
        "serverTime": "2025-06-01T11:59:59.000+00:00",
        "deviceTime": DEVICE_TIME,
        "fixTime": FIX_TIME,
        "outdated": False,
        "valid": valid,
        "latitude": 52.5,
        "longitude": -1.25,
        "altitude": 0,
        "speed": 0,
        "course": 0,
        "address": None,
        "accuracy": 0,
        "network": None,
    }


def event_payload(evt: dict[str, object], pos: dict[str, object] | None = None) -> dict[str, object]:
    payload: dict[str, object] = {"event": evt, "device": device()}
    if pos is not None:
        payload["position"] = pos
    return payload


def position_payload(pos: dict[str, object]) -> dict[str, object]:
    return {"position": pos, "device": device()}


# --- golden fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    received_at = RECEIVED_AT
    if expect["time"] is not None:
        received_at = at(expect["time"]) + timedelta(seconds=5)
    decoded = traccar.decode(case["raw"].encode(), DecodeContext(received_at=received_at))

    assert decoded.rejections == []
    assert decoded.events
    assert all(e.device_id == expect["device_id"] for e in decoded.events)
    kind = canonical_kind(expect["kind"])
    primary = of_kind(decoded, kind)
    if expect["time"] is None:
        assert primary.observed_at == received_at
    else:
        assert primary.observed_at == at(expect["time"])
        assert primary.time_source is TimeSource.DEVICE
    if "value" in expect:
        value = primary.fields[VALUE_FIELD[kind]]
        assert isinstance(value, int | float)
        assert math.isclose(value, expect["value"])
    if expect.get("alarm") is None:
        assert not any(e.is_life_safety for e in decoded.events)
    location = expect.get("location")
    if location is not None:
        fixes = [e for e in decoded.events if e.kind is Kind.LOCATION]
        if location["gps_valid"]:
            (fix,) = fixes
            assert fix.fields["lat"] == pytest.approx(location["lat"], abs=1e-6)
            assert fix.fields["lon"] == pytest.approx(location["lon"], abs=1e-6)
        else:
            assert fixes == []
    expected_kinds = {kind} | {canonical_kind(s["kind"]) for s in expect.get("secondary", [])}
    if location is not None and location["gps_valid"]:
        expected_kinds.add(Kind.LOCATION)
    assert set(kinds(decoded)) == expected_kinds
    for secondary in expect.get("secondary", []):
        event_ = of_kind(decoded, canonical_kind(secondary["kind"]))
        assert event_.fields[VALUE_FIELD[event_.kind]] == secondary["value"]


def test_volt_battery_is_not_a_percentage():
    # traccar-position-forward carries attributes.battery = 0 (volts): no battery event.
    (case,) = [c for c in CASES if c["id"] == "traccar-position-forward"]
    decoded = traccar.decode(case["raw"].encode(), DecodeContext(received_at=RECEIVED_AT))
    assert Kind.BATTERY not in kinds(decoded)


# --- event forwarding: alarms ------------------------------------------------------------------


def test_sos_is_panic_at_event_time():
    decoded = decode(event_payload(event("alarm", "sos")))
    assert decoded.rejections == []
    (panic,) = decoded.events
    assert panic.kind is Kind.PANIC
    assert panic.device_id == IMEI
    assert panic.fields == {}
    assert panic.observed_at == at(EVENT_TIME)


def test_fall_down_is_a_fall_alarm():
    (fall,) = decode(event_payload(event("alarm", "fallDown"))).events
    assert fall.kind is Kind.FALL
    assert fall.fields == {"stage": "alarm"}


def test_removing_means_not_worn():
    (worn,) = decode(event_payload(event("alarm", "removing"))).events
    assert worn.kind is Kind.WORN
    assert worn.fields == {"on": False}
    assert worn.observed_at == at(EVENT_TIME)


def test_general_alarm_keeps_its_label():
    (alarm,) = decode(event_payload(event("alarm", "general"))).events
    assert alarm.kind is Kind.ALARM
    assert alarm.fields == {"label": "general"}


@pytest.mark.parametrize("label", ["tampering", "vibration", "powerOff", "accident", "x" * 80])
def test_unknown_alarms_are_never_dropped(label):
    (alarm,) = decode(event_payload(event("alarm", label))).events
    assert alarm.kind is Kind.ALARM
    assert alarm.fields == {"label": label[:64]}


def test_alarm_event_without_a_cause_is_still_an_alarm():
    (alarm,) = decode(event_payload(event("alarm"))).events
    assert alarm.kind is Kind.ALARM
    assert alarm.fields == {}


def test_power_cut_has_no_canonical_kind():
    assert decode(event_payload(event("alarm", "powerCut"))) == Decoded([], [])


def test_low_battery_without_a_level_yields_nothing():
    assert decode(event_payload(event("alarm", "lowBattery"))) == Decoded([], [])


def test_low_battery_with_a_known_level_is_a_battery_reading():
    decoded = decode(
        event_payload(event("alarm", "lowBattery"), position(batteryLevel=9, alarm="lowBattery"))
    )
    assert decoded.rejections == []
    battery = of_kind(decoded, Kind.BATTERY)
    assert battery.fields == {"pct": 9}
    assert battery.observed_at == at(DEVICE_TIME)


def test_event_with_its_position_yields_the_location_too():
    decoded = decode(event_payload(event("alarm", "sos"), position(alarm="sos", batteryLevel=50)))
    assert kinds(decoded) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    # The position's own alarm attribute is the same alarm: it is not counted twice.
    assert kinds(decoded).count(Kind.PANIC) == 1


def test_old_payload_with_users_array_is_accepted():
    payload = event_payload(event("alarm", "sos"))
    payload["users"] = [{"id": 1, "name": "admin", "administrator": True}]
    assert kinds(decode(payload)) == [Kind.PANIC]


# --- event forwarding: other types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("deviceOnline", [Kind.ONLINE]),
        ("deviceOffline", [Kind.OFFLINE]),
        ("deviceInactive", [Kind.OFFLINE]),
        ("deviceUnknown", []),
        ("geofenceEnter", []),
        ("geofenceExit", []),
        ("deviceMoving", []),
        ("deviceStopped", []),
        ("ignitionOn", []),
        ("commandResult", []),
    ],
)
def test_event_types(event_type, expected):
    decoded = decode(event_payload(event(event_type)))
    assert decoded.rejections == []
    assert kinds(decoded) == expected
    for e in decoded.events:
        assert e.observed_at == at(EVENT_TIME)
        assert e.fields == {}


def test_event_without_type_is_rejected():
    evt = event("alarm", "sos")
    del evt["type"]
    decoded = decode(event_payload(evt))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


# --- times -------------------------------------------------------------------------------------


def test_older_servers_send_server_time():
    evt = event("deviceOnline")
    del evt["eventTime"]
    evt["serverTime"] = "2025-06-01T11:58:00.000+00:00"
    (online,) = decode(event_payload(evt)).events
    assert online.observed_at == at("2025-06-01T11:58:00+00:00")


def test_event_time_wins_over_server_time():
    evt = event("deviceOnline", serverTime="2025-06-01T11:00:00.000+00:00")
    (online,) = decode(event_payload(evt)).events
    assert online.observed_at == at(EVENT_TIME)


@pytest.mark.parametrize(
    "stamp",
    [
        "2025-06-01T13:59:00.000+02:00",
        "2025-06-01T11:59:00.000+0000",
        "2025-06-01T11:59:00Z",
        "2025-06-01T11:59:00",
    ],
)
def test_time_formats_become_utc(stamp):
    (online,) = decode(event_payload(event("deviceOnline", eventTime=stamp))).events
    assert online.observed_at == datetime(2025, 6, 1, 11, 59, tzinfo=UTC)


def test_epoch_milliseconds_are_accepted():
    millis = int(datetime(2025, 6, 1, 11, 59, tzinfo=UTC).timestamp() * 1000)
    (online,) = decode(event_payload(event("deviceOnline", eventTime=millis))).events
    assert online.observed_at == datetime(2025, 6, 1, 11, 59, tzinfo=UTC)


def test_missing_time_rejects_a_status_event():
    evt = event("deviceOnline")
    del evt["eventTime"]
    decoded = decode(event_payload(evt))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]


def test_unreadable_time_rejects_a_status_event():
    decoded = decode(event_payload(event("deviceOffline", eventTime="yesterday")))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]
    assert "yesterday" not in decoded.rejections[0].detail


@pytest.mark.parametrize("stamp", [None, "yesterday", True])
def test_alarm_with_missing_or_bad_time_is_kept_and_flagged(stamp):
    evt = event("alarm", "sos")
    if stamp is None:
        del evt["eventTime"]
    else:
        evt["eventTime"] = stamp
    decoded = decode(event_payload(evt))
    (panic,) = decoded.events
    assert panic.observed_at == RECEIVED_AT
    assert panic.time_source is TimeSource.RECEIVED
    assert "bad_timestamp" in panic.flags


def test_old_alarm_is_filed_now_with_device_time_kept():
    decoded = decode(event_payload(event("alarm", "sos")), received_at=at(EVENT_TIME) + timedelta(days=60))
    (panic,) = decoded.events
    assert panic.observed_at == at(EVENT_TIME) + timedelta(days=60)
    assert panic.device_time == at(EVENT_TIME)
    assert "clock_skew" in panic.flags


def test_position_uses_fix_time_never_server_time():
    location = of_kind(decode(position_payload(position())), Kind.LOCATION)
    assert location.observed_at == at(FIX_TIME)


def test_position_readings_use_device_time():
    decoded = decode(position_payload(position(heartRate=70)))
    assert of_kind(decoded, Kind.HEART_RATE).observed_at == at(DEVICE_TIME)


def test_position_falls_back_between_fix_and_device_time():
    pos = position(heartRate=70)
    del pos["fixTime"]
    decoded = decode(position_payload(pos))
    assert of_kind(decoded, Kind.LOCATION).observed_at == at(DEVICE_TIME)
    pos = position(heartRate=70)
    del pos["deviceTime"]
    decoded = decode(position_payload(pos))
    assert of_kind(decoded, Kind.HEART_RATE).observed_at == at(FIX_TIME)


def test_buffered_position_keeps_its_months_old_time():
    decoded = decode(position_payload(position()), received_at=at(FIX_TIME) + timedelta(days=200))
    assert of_kind(decoded, Kind.LOCATION).observed_at == at(FIX_TIME)


# --- identity ----------------------------------------------------------------------------------


def test_unique_id_not_database_id_is_the_identity():
    (panic,) = decode(event_payload(event("alarm", "sos")), device_id="topic-id").events
    assert panic.device_id == IMEI


def test_numeric_unique_id_is_used_as_text():
    payload = event_payload(event("alarm", "sos"))
    payload["device"] = device(123456789012345)
    (panic,) = decode(payload).events
    assert panic.device_id == "123456789012345"


@pytest.mark.parametrize("dev", [None, {}, {"id": 5}, {"uniqueId": None}, "not-an-object"])
def test_identity_falls_back_to_the_topic(dev):
    payload = event_payload(event("alarm", "sos"))
    if dev is None:
        del payload["device"]
    else:
        payload["device"] = dev
    (panic,) = decode(payload, device_id="watch-7").events
    assert panic.device_id == "watch-7"


def test_no_identity_at_all_is_rejected():
    payload = event_payload(event("alarm", "sos"))
    del payload["device"]
    decoded = decode(payload)
    assert decoded.events == []
    assert [(r.reason, r.detail) for r in decoded.rejections] == [
        (RejectReason.MISSING_FIELD, "no device identity")
    ]


def test_unusable_unique_id_falls_back_or_is_rejected():
    payload = event_payload(event("alarm", "sos"))
    payload["device"] = device("has spaces/and slashes")
    assert [e.device_id for e in decode(payload, device_id="watch-7").events] == ["watch-7"]
    decoded = decode(payload)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


# --- position forwarding -----------------------------------------------------------------------


def test_valid_position_is_a_location():
    decoded = decode(position_payload(position()))
    assert decoded.rejections == []
    (location,) = decoded.events
    assert location.kind is Kind.LOCATION
    assert location.fields == {"lat": 52.5, "lon": -1.25}


def test_accuracy_is_kept_when_positive():
    pos = position()
    pos["accuracy"] = 12.5
    assert of_kind(decode(position_payload(pos)), Kind.LOCATION).fields["accuracy_m"] == 12.5


def test_invalid_position_is_no_location():
    assert decode(position_payload(position(valid=False))) == Decoded([], [])


def test_zero_zero_position_is_no_location():
    pos = position()
    pos["latitude"] = 0
    pos["longitude"] = 0
    assert decode(position_payload(pos)) == Decoded([], [])


@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [
        (91.0, 0.5, RejectReason.OUT_OF_RANGE),
        (1.0, -181.0, RejectReason.OUT_OF_RANGE),
        ("north", 1.0, RejectReason.WRONG_TYPE),
        (None, 1.0, RejectReason.MISSING_FIELD),
    ],
)
def test_bad_coordinates_are_rejected(lat, lon, reason):
    pos = position()
    pos["latitude"] = lat
    pos["longitude"] = lon
    decoded = decode(position_payload(pos))
    assert decoded.events == []
    assert reasons(decoded) == [reason]


def test_watch_attributes_become_readings():
    pos = position(
        batteryLevel=81,
        battery=3.9,
        heartRate=72,
        steps=4321,
        temp1=36.6,
        bloodOxygen=97,
        pressureHigh=128,
        pressureLow=84,
    )
    decoded = decode(position_payload(pos))
    assert decoded.rejections == []
    fields = {e.kind: dict(e.fields) for e in decoded.events}
    assert fields == {
        Kind.LOCATION: {"lat": 52.5, "lon": -1.25},
        Kind.BATTERY: {"pct": 81},
        Kind.HEART_RATE: {"bpm": 72},
        Kind.STEPS: {"count": 4321},
        Kind.BODY_TEMP: {"celsius": 36.6},
        Kind.SPO2: {"pct": 97},
        Kind.BLOOD_PRESSURE: {"systolic": 128, "diastolic": 84},
    }


@pytest.mark.parametrize("temp", [0, 12.5, 85.0, 46.0, 20.0, "warm"])
def test_implausible_temp1_is_not_a_body_temperature(temp):
    decoded = decode(position_payload(position(valid=False, temp1=temp)))
    assert decoded == Decoded([], [])


def test_zero_readings_mean_no_reading():
    decoded = decode(position_payload(position(valid=False, heartRate=0, bloodOxygen=0, pressureHigh=0)))
    assert decoded == Decoded([], [])


def test_blood_pressure_needs_both_values():
    decoded = decode(position_payload(position(valid=False, pressureHigh=120)))
    assert decoded == Decoded([], [])


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"heartRate": 500}, RejectReason.OUT_OF_RANGE),
        ({"heartRate": -3}, RejectReason.OUT_OF_RANGE),
        ({"batteryLevel": 130}, RejectReason.OUT_OF_RANGE),
        ({"bloodOxygen": 101}, RejectReason.OUT_OF_RANGE),
        ({"heartRate": "fast"}, RejectReason.WRONG_TYPE),
        ({"heartRate": True}, RejectReason.WRONG_TYPE),
        ({"heartRate": [72]}, RejectReason.WRONG_TYPE),
        ({"steps": -1}, RejectReason.OUT_OF_RANGE),
        ({"steps": 10.5}, RejectReason.OUT_OF_RANGE),
        ({"steps": "many"}, RejectReason.WRONG_TYPE),
    ],
)
def test_bad_readings_are_rejected_without_leaking_values(attributes, reason):
    decoded = decode(position_payload(position(valid=False, **attributes)))
    assert decoded.events == []
    assert reasons(decoded) == [reason]
    assert str(next(iter(attributes.values()))) not in decoded.rejections[0].detail


def test_non_finite_reading_is_rejected():
    raw = json.dumps(position_payload(position(valid=False, heartRate=1))).replace(
        '"heartRate": 1', '"heartRate": NaN'
    )
    decoded = traccar.decode(raw.encode(), DecodeContext(received_at=RECEIVED_AT))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.NON_FINITE_NUMBER]


def test_numeric_text_attributes_are_accepted():
    decoded = decode(position_payload(position(valid=False, batteryLevel="85", steps="12")))
    assert [dict(e.fields) for e in decoded.events] == [{"pct": 85}, {"count": 12}]


def test_attributes_that_are_not_an_object_are_rejected():
    pos = position()
    pos["attributes"] = ["batteryLevel", 5]
    decoded = decode(position_payload(pos))
    assert kinds(decoded) == [Kind.LOCATION]
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


# --- position forwarding: alarms ---------------------------------------------------------------


def test_comma_separated_alarms_are_each_mapped():
    decoded = decode(position_payload(position(alarm="sos,lowBattery", batteryLevel=8)))
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    assert of_kind(decoded, Kind.PANIC).observed_at == at(DEVICE_TIME)
    assert of_kind(decoded, Kind.BATTERY).fields == {"pct": 8}


def test_alarm_list_with_spaces_and_unknowns():
    decoded = decode(position_payload(position(valid=False, alarm="fallDown, removing,,geofenceExit")))
    assert kinds(decoded) == [Kind.FALL, Kind.WORN, Kind.ALARM]
    assert of_kind(decoded, Kind.ALARM).fields == {"label": "geofenceExit"}


def test_low_battery_alarm_on_a_position_without_level_yields_nothing():
    assert decode(position_payload(position(valid=False, alarm="lowBattery,powerCut"))) == Decoded([], [])


def test_same_alarm_through_both_forwarders_has_one_identity():
    via_event = decode(event_payload(event("alarm", "sos", eventTime=DEVICE_TIME)))
    via_position = decode(position_payload(position(valid=False, alarm="sos")))
    assert via_event.events[0].event_key == via_position.events[0].event_key


def test_different_alarms_have_different_identities():
    first = decode(event_payload(event("alarm", "sos")))
    later = decode(event_payload(event("alarm", "sos", eventTime="2025-06-01T11:59:30.000+00:00")))
    assert first.events[0].event_key != later.events[0].event_key


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"{'event': 1}", b"\xff\xfe", b"[" * 100_000])
def test_malformed_json(raw):
    decoded = traccar.decode(raw, DecodeContext(received_at=RECEIVED_AT, device_id="watch-7"))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_JSON]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        [{"event": {}}],
        "sos",
        42,
        None,
        {},
        {"device": device()},
        {"event": "alarm", "device": device()},
        {"position": [1, 2], "device": device()},
        {"event": None, "position": None, "device": device()},
    ],
)
def test_json_of_neither_shape_is_invalid(payload):
    decoded = decode(payload, device_id="watch-7")
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


def test_unexpected_failure_becomes_a_rejection(monkeypatch):
    def explode(payload, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(traccar, "_decode", explode)
    decoded = decode(event_payload(event("alarm", "sos")))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_garbage_bytes_never_raise(payload):
    decoded = traccar.decode(payload, DecodeContext(received_at=RECEIVED_AT, device_id="watch-7"))
    assert isinstance(decoded, Decoded)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
KEYS = st.sampled_from(
    [
        "type",
        "eventTime",
        "serverTime",
        "fixTime",
        "deviceTime",
        "attributes",
        "alarm",
        "valid",
        "latitude",
        "longitude",
        "accuracy",
        "batteryLevel",
        "heartRate",
        "steps",
        "temp1",
        "bloodOxygen",
        "pressureHigh",
        "pressureLow",
        "uniqueId",
    ]
)
RECORDS = st.dictionaries(KEYS, JSON_VALUES | st.dictionaries(KEYS, JSON_VALUES, max_size=6), max_size=8)


@HYPOTHESIS
@given(st.fixed_dictionaries({}, optional={"event": RECORDS, "position": RECORDS, "device": RECORDS}))
def test_shape_like_garbage_never_raises_and_stays_in_range(payload):
    decoded = traccar.decode(json.dumps(payload).encode(), DecodeContext(received_at=RECEIVED_AT))
    for e in decoded.events:
        for value in e.fields.values():
            if isinstance(value, float):
                assert math.isfinite(value)
        if e.kind is Kind.LOCATION:
            assert -90 <= e.fields["lat"] <= 90
            assert -180 <= e.fields["lon"] <= 180
        if e.kind in {Kind.BATTERY, Kind.SPO2}:
            assert 0 <= e.fields["pct"] <= 100


@pytest.mark.parametrize(
    ("label", "kind"), [("SOS", Kind.PANIC), ("falldown", Kind.FALL), ("Removing", Kind.WORN)]
)
def test_alarm_names_match_whatever_their_case(label, kind):
    assert kinds(decode(event_payload(event("alarm", label)))) == [kind]


def test_huge_step_counts_are_out_of_range_and_do_not_break_the_payload():
    decoded = decode(position_payload(position(valid=False, alarm="sos", steps=10**400)))
    assert kinds(decoded) == [Kind.PANIC]
    assert reasons(decoded) == [RejectReason.OUT_OF_RANGE]
