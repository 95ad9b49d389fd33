import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, RejectReason, TimeSource, z2m
from tests.unit.devices.helpers import (
    HYPOTHESIS,
    JSON_VALUES,
    as_json,
    decoder,
    emitted,
    load_cases,
    only_rejection,
)

CASES = load_cases("z2m")
RECEIVED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TOPIC = "zigbee2mqtt/sos_button"
DEVICE = "sos_button"
KINDS = {
    "panic": Kind.PANIC,
    "alarm": Kind.ALARM,
    "fall": Kind.FALL,
    "online": Kind.ONLINE,
    "offline": Kind.OFFLINE,
    "battery": Kind.BATTERY,
    "none": None,
}


def context(topic=TOPIC, device_id=None, received_at=RECEIVED_AT):
    return DecodeContext(received_at=received_at, device_id=device_id, topic=topic)


run = decoder(z2m.decode, as_json, topic=TOPIC, received_at=RECEIVED_AT)


# --- golden cases from the shared sample ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    time = datetime.fromisoformat(expect["time"]).astimezone(UTC) if expect["time"] else None
    received_at = time + timedelta(seconds=5) if time else RECEIVED_AT
    topic = case["mqtt_topic"]
    # No topic in the source: the routing layer passes the friendly name.
    device_id = None if topic else "from-routing"
    decoded = z2m.decode(
        case["raw"].encode(), context(topic=topic, device_id=device_id, received_at=received_at)
    )
    assert decoded.rejections == []
    expected = []
    primary = KINDS[expect["kind"]]
    if primary is not None:
        expected.append(primary)
    expected += [KINDS[secondary["kind"]] for secondary in expect.get("secondary", [])]
    assert [event.kind for event in decoded.events] == expected
    for event in decoded.events:
        assert event.device_id == (expect["device_id"] or device_id)
        if time is None:
            assert event.observed_at == received_at
            assert event.time_source is TimeSource.RECEIVED
        else:
            assert event.observed_at == time
            assert event.time_source is TimeSource.DEVICE
        assert event.flags == frozenset()
    batteries = [event.fields["pct"] for event in decoded.events if event.kind is Kind.BATTERY]
    assert batteries == [float(s["value"]) for s in expect.get("secondary", []) if s["kind"] == "battery"]
    if primary is Kind.ALARM:
        assert decoded.events[0].fields["label"] == expect["alarm"]


# --- panic buttons ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["emergency", "panic", "sos", "EMERGENCY", "Emergency", " emergency ", "panic_l1", "emergency_1"],
)
def test_panic_actions(action):
    assert emitted(run({"action": action, "linkquality": 80})) == [(Kind.PANIC, {})]


@pytest.mark.parametrize(
    "action",
    [
        "",
        None,
        "single",
        "double",
        "hold",
        "off",
        "fall",
        "shake",
        "arm_all_zones",
        "disarm",
        "emergencyx",
    ],
)
def test_other_actions_are_no_event(action):
    assert run({"action": action, "linkquality": 80}) == Decoded([], [])


def test_press_then_reset_triggers_once():
    press = run({"action": "emergency", "battery": None, "linkquality": 90})
    reset = run({"action": "", "battery": None, "linkquality": 90})
    assert emitted(press) == [(Kind.PANIC, {})]
    assert reset == Decoded([], [])


def test_action_and_sos_in_one_message_are_one_panic():
    assert emitted(run({"action": "sos", "sos": True})) == [(Kind.PANIC, {})]


def test_identical_presses_at_different_times_have_different_keys():
    payload = {"action": "emergency", "battery": None, "linkquality": 90}
    first = run(payload).events[0]
    again = run(payload).events[0]
    later = run(payload, received_at=RECEIVED_AT + timedelta(minutes=3)).events[0]
    assert first.event_key == again.event_key  # same delivery, same identity
    assert first.event_key != later.event_key
    assert first.event_key.startswith("h:")


# --- IAS zone booleans -----------------------------------------------------------------------


def test_ias_sos_is_panic():
    assert emitted(run({"sos": True, "battery_low": False})) == [(Kind.PANIC, {})]


@pytest.mark.parametrize("key", ["alarm_1", "alarm_2"])
def test_ias_alarm_bits_are_labelled_alarms(key):
    assert emitted(run({key: True, "tamper": False})) == [(Kind.ALARM, {"label": key})]


def test_both_alarm_bits():
    decoded = run({"alarm_1": True, "alarm_2": True})
    assert emitted(decoded) == [(Kind.ALARM, {"label": "alarm_1"}), (Kind.ALARM, {"label": "alarm_2"})]
    assert decoded.events[0].event_key != decoded.events[1].event_key


@pytest.mark.parametrize(
    "state",
    [
        {"sos": False, "alarm_1": False, "alarm_2": False, "tamper": False},
        {"tamper": True},
        {"battery_low": True},
        {"alarm_1": "true", "sos": 1},
    ],
)
def test_ias_bits_without_alarm(state):
    assert run(state) == Decoded([], [])


# --- fall sensors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "stage"),
    [
        ("fall_down_status", "fall", "alarm"),
        ("fall_down_status", "maybe_fall", "warning"),
        ("fall_down_status", "FALL", "alarm"),
        ("fall_status", "fall_alarm", "alarm"),
        ("fall_status", "fall_warning", "warning"),
        ("status", "falling", "alarm"),
        ("status", "Falling", "alarm"),
    ],
)
def test_fall_sensors(key, value, stage):
    assert emitted(run({key: value, "linkquality": 40})) == [(Kind.FALL, {"stage": stage})]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fall_down_status", "none"),
        ("fall_status", "normal"),
        ("fall_status", "unknown"),
        ("status", "occupied"),
        ("status", "unoccupied"),
        ("status", "sitting"),
        ("status", "on_the_bed"),
        ("status", "low_posture"),
        ("fall_status", None),
        ("fall_down_status", 1),
    ],
)
def test_fall_sensor_quiet_states(key, value):
    assert run({key: value, "breathing_rate": 14}) == Decoded([], [])


def test_fall_comes_before_battery():
    decoded = run({"fall_status": "fall_alarm", "battery": 64})
    assert emitted(decoded) == [(Kind.FALL, {"stage": "alarm"}), (Kind.BATTERY, {"pct": 64.0})]


# --- battery ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "pct"), [(0, 0.0), (100, 100.0), (55.5, 55.5), (7, 7.0)])
def test_battery(value, pct):
    assert emitted(run({"battery": value, "voltage": 3000})) == [(Kind.BATTERY, {"pct": pct})]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (101, RejectReason.OUT_OF_RANGE),
        (-1, RejectReason.OUT_OF_RANGE),
        (10**30, RejectReason.OUT_OF_RANGE),
        ("85", RejectReason.WRONG_TYPE),
        (True, RejectReason.WRONG_TYPE),
        ([50], RejectReason.WRONG_TYPE),
    ],
)
def test_bad_battery_is_rejected_alone(value, reason):
    decoded = run({"action": "emergency", "battery": value})
    assert [event.kind for event in decoded.events] == [Kind.PANIC]
    assert [rejection.reason for rejection in decoded.rejections] == [reason]
    assert str(value) not in decoded.rejections[0].detail


def test_non_finite_battery():
    decoded = z2m.decode(b'{"battery": NaN}', context())
    assert only_rejection(decoded).reason is RejectReason.NON_FINITE_NUMBER


def test_null_battery_and_battery_low_are_nothing():
    assert run({"battery": None, "battery_low": True, "voltage": 2400}) == Decoded([], [])


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "last_seen",
    [
        "2026-05-01T11:59:30Z",
        "2026-05-01T11:59:30.000Z",
        "2026-05-01T13:59:30+02:00",
        "2026-05-01T07:59:30-04:00",
        1777636770000,
        1777636770000.0,
    ],
)
def test_last_seen_is_the_event_time(last_seen):
    decoded = run({"action": "emergency", "battery": 90, "last_seen": last_seen})
    expected = datetime(2026, 5, 1, 11, 59, 30, tzinfo=UTC)
    assert [event.observed_at for event in decoded.events] == [expected, expected]
    assert all(event.time_source is TimeSource.DEVICE for event in decoded.events)


@pytest.mark.parametrize("last_seen", ["yesterday", "2026-05-01T11:59:30", True, float("inf"), 1e300, []])
def test_unreadable_last_seen_falls_back_to_receive_time(last_seen):
    raw = json.dumps({"action": "emergency", "battery": 90, "last_seen": last_seen}).encode()
    decoded = z2m.decode(raw, context())
    assert decoded.rejections == []
    assert [event.kind for event in decoded.events] == [Kind.PANIC, Kind.BATTERY]
    for event in decoded.events:
        assert event.observed_at == RECEIVED_AT
        assert event.flags == {"bad_timestamp"}


def test_future_last_seen_rejects_the_reading_but_keeps_the_panic():
    future = (RECEIVED_AT + timedelta(hours=2)).isoformat()
    decoded = run({"action": "emergency", "battery": 90, "last_seen": future})
    assert [event.kind for event in decoded.events] == [Kind.PANIC]
    panic = decoded.events[0]
    assert panic.observed_at == RECEIVED_AT
    assert panic.time_source is TimeSource.RECEIVED
    assert "clock_skew" in panic.flags
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.CLOCK_SKEW]


def test_day_old_last_seen_files_the_panic_now():
    old = RECEIVED_AT - timedelta(days=2)
    decoded = run({"action": "emergency", "last_seen": old.isoformat()})
    panic = decoded.events[0]
    assert panic.observed_at == RECEIVED_AT
    assert panic.device_time == old
    assert "clock_skew" in panic.flags


def test_no_last_seen_is_receive_time_unflagged():
    event = run({"sos": True}).events[0]
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == frozenset()


# --- availability ----------------------------------------------------------------------------

AVAILABILITY = "zigbee2mqtt/sos_button/availability"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"state":"online"}', Kind.ONLINE),
        (b'{"state": "offline"}', Kind.OFFLINE),
        (b"online", Kind.ONLINE),
        (b"offline", Kind.OFFLINE),
        (b"offline\n", Kind.OFFLINE),
        (b"OFFLINE", Kind.OFFLINE),
        (b'"offline"', Kind.OFFLINE),
        (b'{"state":"Online"}', Kind.ONLINE),
    ],
)
def test_availability(payload, kind):
    decoded = z2m.decode(payload, context(topic=AVAILABILITY))
    assert emitted(decoded) == [(kind, {})]
    event = decoded.events[0]
    assert event.device_id == DEVICE
    assert event.observed_at == RECEIVED_AT


def test_availability_object_without_topic():
    decoded = z2m.decode(b'{"state":"offline"}', context(topic=None, device_id="hall"))
    assert emitted(decoded) == [(Kind.OFFLINE, {})]


@pytest.mark.parametrize("payload", [b'{"state":"ON"}', b'{"state":"OFF","brightness":20}'])
def test_switch_state_is_not_availability(payload):
    assert z2m.decode(payload, context()) == Decoded([], [])


@pytest.mark.parametrize("payload", [b'{"state":"weird"}', b'{"status":"online"}', b"{}"])
def test_bad_availability_payload(payload):
    rejection = only_rejection(z2m.decode(payload, context(topic=AVAILABILITY)))
    assert rejection.reason is RejectReason.INVALID_STRUCTURE


def test_availability_word_not_on_legacy_topic_is_malformed():
    assert (
        only_rejection(z2m.decode(b"away", context(topic=AVAILABILITY))).reason is RejectReason.MALFORMED_JSON
    )


# --- legacy action topic ---------------------------------------------------------------------

ACTION = "zigbee2mqtt/sos_button/action"


@pytest.mark.parametrize("payload", [b"emergency", b"emergency\r\n", b'"emergency"', b"SOS"])
def test_legacy_action_press(payload):
    decoded = z2m.decode(payload, context(topic=ACTION))
    assert emitted(decoded) == [(Kind.PANIC, {})]
    assert decoded.events[0].device_id == DEVICE


@pytest.mark.parametrize("payload", [b"", b"single", b"hold", b"fall", b"online", b"1", b"1_single", b"\xff"])
def test_legacy_action_other_words(payload):
    assert z2m.decode(payload, context(topic=ACTION)) == Decoded([], [])


def test_bare_emergency_without_topic_is_still_a_panic():
    decoded = z2m.decode(b"emergency", context(topic=None, device_id="hall"))
    assert emitted(decoded) == [(Kind.PANIC, {})]


# --- malformed payloads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"single", b"", b'{"action":"emergency"', b'{"action":"emergency",}', b"\xff\xfe\x00", b"{'action': 1}"],
)
def test_non_json_on_main_topic(payload):
    rejection = only_rejection(z2m.decode(payload, context()))
    assert rejection.reason is RejectReason.MALFORMED_JSON
    assert "emergency" not in rejection.detail


@pytest.mark.parametrize("payload", [b"[]", b'[{"action":"emergency"}]', b"42", b"null", b"true", b'"hello"'])
def test_json_that_is_not_an_object(payload):
    assert only_rejection(z2m.decode(payload, context())).reason is RejectReason.INVALID_STRUCTURE


def test_pretty_printed_json_with_bom():
    payload = "\ufeff" + json.dumps({"action": "emergency", "device": {"model": "TS0215A"}}, indent=4)
    assert emitted(z2m.decode(payload.encode(), context())) == [(Kind.PANIC, {})]


def test_quiet_telemetry_is_no_event():
    payload = {"temperature": 21.5, "humidity": 40, "linkquality": 120, "update": {"state": "idle"}}
    assert run(payload) == Decoded([], [])


# --- identity --------------------------------------------------------------------------------


def test_routing_device_id_wins():
    event = run({"action": "emergency"}, device_id="resident-7").events[0]
    assert event.device_id == "resident-7"


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("zigbee2mqtt/0x847127fffe0542eb", "0x847127fffe0542eb"),
        ("zigbee2mqtt/bedroom/sos button", "bedroom/sos button"),
        ("zigbee2mqtt/bedroom/sos/availability", "bedroom/sos"),
        ("zigbee2mqtt/bedroom/sos/action", "bedroom/sos"),
    ],
)
def test_identity_from_topic(topic, device):
    payload = b"offline" if topic.endswith("availability") else b'{"action":"emergency"}'
    if topic.endswith("action"):
        payload = b"emergency"
    event = z2m.decode(payload, context(topic=topic)).events[0]
    assert event.device_id == device


@pytest.mark.parametrize(
    "topic", [None, "zigbee2mqtt/", "zigbee2mqtt/bridge/state", "zigbee2mqtt/bridge", "home/z2m/button"]
)
def test_no_identity(topic):
    rejection = only_rejection(z2m.decode(b'{"action":"emergency"}', context(topic=topic)))
    assert rejection.reason is RejectReason.MISSING_FIELD
    assert rejection.detail == "no device identity"


# --- robustness ------------------------------------------------------------------------------


@HYPOTHESIS
@given(payload=st.binary(max_size=300), topic=st.sampled_from([TOPIC, AVAILABILITY, ACTION, None]))
def test_garbage_never_raises(payload, topic):
    decoded = z2m.decode(payload, context(topic=topic, device_id=None if topic else "x"))
    assert isinstance(decoded, Decoded)


KEYS = st.sampled_from(
    [
        "action",
        "sos",
        "alarm_1",
        "alarm_2",
        "tamper",
        "battery",
        "last_seen",
        "fall_status",
        "status",
        "state",
    ]
)


@HYPOTHESIS
@given(
    state=st.dictionaries(
        KEYS, JSON_VALUES | st.sampled_from(["emergency", "fall", "", "online"]), max_size=6
    )
)
def test_random_states_never_raise(state):
    decoded = z2m.decode(json.dumps(state).encode(), context())
    assert isinstance(decoded, Decoded)
    for event in decoded.events:
        assert event.device_id == DEVICE
        if event.kind is Kind.BATTERY:
            assert 0 <= event.fields["pct"] <= 100


def test_unexpected_error_becomes_a_rejection(monkeypatch):
    def explode(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(z2m, "_decode_state", explode)
    rejection = only_rejection(z2m.decode(b'{"action":"emergency"}', context()))
    assert rejection.reason is RejectReason.INVALID_STRUCTURE
    assert "boom" not in rejection.detail


@pytest.mark.parametrize("action", [7, ["emergency"], {"a": 1}])
def test_an_action_that_is_not_a_string_is_a_wrong_type(action):
    decoded = z2m.decode(json.dumps({"action": action}).encode(), context())
    assert decoded.events == []
    assert [r.reason for r in decoded.rejections] == [RejectReason.WRONG_TYPE]


@pytest.mark.parametrize("payload", [b'{"action":"emergency\\u0000"}', b'{"action":"\\u202eycnegreme"}'])
def test_an_action_that_is_not_a_plain_word_is_kept_for_an_operator(payload):
    decoded = z2m.decode(payload, context())
    assert [r.reason for r in decoded.rejections] == [RejectReason.UNSUPPORTED_FRAME]


@pytest.mark.parametrize("state", ["ofline", "[offline", "\u0000"])
def test_a_state_that_is_neither_availability_nor_a_switch_state_is_kept(state):
    decoded = z2m.decode(json.dumps({"state": state}).encode(), context())
    assert [r.reason for r in decoded.rejections] == [RejectReason.UNSUPPORTED_FRAME]


@pytest.mark.parametrize("state", ["ON", "OFF", "open"])
def test_a_switch_state_is_no_event_and_no_rejection(state):
    assert z2m.decode(json.dumps({"state": state}).encode(), context()) == Decoded([], [])
