import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    Decoded,
    Event,
    Kind,
    Rejection,
    RejectReason,
    TimePolicy,
    TimeSource,
    decode_canonical,
)

RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DEVICE_TIME = RECEIVED_AT - timedelta(minutes=1)
TS = "2025-06-01T11:59:00Z"
DEVICE_ID = "dev-1"
POLICY = TimePolicy()
HYPOTHESIS = settings(database=None, deadline=None)


def decode(payload) -> Decoded:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_canonical(raw, device_id=DEVICE_ID, received_at=RECEIVED_AT, policy=POLICY)


def only_event(payload) -> Event:
    decoded = decode(payload)
    assert decoded.rejections == []
    assert len(decoded.events) == 1
    return decoded.events[0]


def only_rejection(payload) -> Rejection:
    decoded = decode(payload)
    assert decoded.events == []
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


def iso(moment: datetime) -> str:
    return moment.isoformat()


def heart_rate(bpm=72, **extra):
    return {"ts": TS, "kind": "heart_rate", "bpm": bpm, **extra}


def panic(**extra):
    return {"ts": TS, "kind": "panic", **extra}


def fall(**extra):
    return {"ts": TS, "kind": "fall", **extra}


# --- every kind is accepted with its fields ----------------------------------------------

ACCEPTED = [
    ({"kind": "heart_rate", "bpm": 72}, {"bpm": 72.0}),
    ({"kind": "heart_rate", "bpm": 58.5}, {"bpm": 58.5}),
    ({"kind": "spo2", "pct": 97.5}, {"pct": 97.5}),
    ({"kind": "body_temp", "celsius": 36.6}, {"celsius": 36.6}),
    ({"kind": "fall"}, {}),
    (
        {"kind": "fall", "confidence": 0.9, "stage": "alarm"},
        {"confidence": 0.9, "stage": "alarm"},
    ),
    ({"kind": "fall", "stage": "warning"}, {"stage": "warning"}),
    ({"kind": "panic"}, {}),
    ({"kind": "panic", "button": "pendant"}, {"button": "pendant"}),
    ({"kind": "cancel"}, {}),
    ({"kind": "heartbeat"}, {}),
    ({"kind": "heartbeat", "battery_pct": 80}, {"battery_pct": 80.0}),
    ({"kind": "battery", "pct": 55}, {"pct": 55.0}),
    ({"kind": "worn", "on": True}, {"on": True}),
    ({"kind": "worn", "on": False}, {"on": False}),
    ({"kind": "location", "lat": 52.52, "lon": 13.405}, {"lat": 52.52, "lon": 13.405}),
    (
        {"kind": "location", "lat": -33.9, "lon": 151.2, "accuracy_m": 12.5},
        {"lat": -33.9, "lon": 151.2, "accuracy_m": 12.5},
    ),
]


@pytest.mark.parametrize(("body", "fields"), ACCEPTED, ids=[str(b) for b, _ in ACCEPTED])
def test_every_kind_is_accepted_with_its_value_fields(body, fields):
    event = only_event({"ts": TS, **body})
    assert event.kind is Kind(body["kind"])
    assert dict(event.fields) == fields


@pytest.mark.parametrize(("body", "fields"), ACCEPTED, ids=[str(b) for b, _ in ACCEPTED])
def test_accepted_event_is_filed_under_device_time_without_flags(body, fields):
    event = only_event({"ts": TS, **body})
    assert event.device_id == DEVICE_ID
    assert event.observed_at == DEVICE_TIME
    assert event.time_source is TimeSource.DEVICE
    assert event.device_time is None
    assert event.flags == frozenset()


def test_optional_fields_left_out_are_absent_from_fields():
    event = only_event({"ts": TS, "kind": "location", "lat": 1.0, "lon": 2.0})
    assert "accuracy_m" not in event.fields


def test_msg_id_is_carried_on_the_event():
    assert only_event(heart_rate(msg_id="m-1")).msg_id == "m-1"


def test_msg_id_of_64_characters_is_accepted():
    assert only_event(heart_rate(msg_id="m" * 64)).msg_id == "m" * 64


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "heart_rate", "bpm": 300},
        {"kind": "heart_rate", "bpm": 0.001},
        {"kind": "spo2", "pct": 0},
        {"kind": "spo2", "pct": 100},
        {"kind": "battery", "pct": 0},
        {"kind": "battery", "pct": 100},
        {"kind": "heartbeat", "battery_pct": 100},
        {"kind": "location", "lat": 90, "lon": 180},
        {"kind": "location", "lat": -90, "lon": -180, "accuracy_m": 0},
        {"kind": "fall", "confidence": 0},
        {"kind": "fall", "confidence": 1},
        {"kind": "body_temp", "celsius": 20.1},
        {"kind": "body_temp", "celsius": 45.9},
    ],
    ids=str,
)
def test_values_on_the_inclusive_range_boundaries_are_accepted(body):
    assert only_event({"ts": TS, **body}).kind is Kind(body["kind"])


@HYPOTHESIS
@given(bpm=st.floats(min_value=0, max_value=300, exclude_min=True))
def test_any_heart_rate_in_range_is_accepted_with_its_value(bpm):
    assert only_event(heart_rate(bpm)).fields == {"bpm": bpm}


@HYPOTHESIS
@given(bpm=st.integers(min_value=1, max_value=300))
def test_any_integer_heart_rate_in_range_is_accepted(bpm):
    assert only_event(heart_rate(bpm)).fields == {"bpm": float(bpm)}


@HYPOTHESIS
@given(
    bpm=st.floats(max_value=0, allow_nan=False, allow_infinity=False)
    | st.floats(min_value=300, exclude_min=True, allow_infinity=False)
)
def test_any_finite_heart_rate_out_of_range_is_rejected_as_out_of_range(bpm):
    assert only_rejection(heart_rate(bpm)).reason is RejectReason.OUT_OF_RANGE


# --- timestamps normalise to aware UTC ---------------------------------------------------


def test_epoch_milliseconds_timestamp_is_converted_to_utc():
    millis = int(DEVICE_TIME.timestamp() * 1000) + 250
    event = only_event({"ts": millis, "kind": "cancel"})
    assert event.observed_at == DEVICE_TIME + timedelta(milliseconds=250)
    assert event.observed_at.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2025-06-01T11:59:00Z",
        "2025-06-01T11:59:00+00:00",
        "2025-06-01T13:59:00+02:00",
        "2025-06-01T06:29:00-05:30",
        "2025-06-01T23:44:00+11:45",
        "2025-05-31T23:59:00-12:00",
    ],
)
def test_rfc3339_timestamp_with_any_offset_is_normalised_to_utc(text):
    event = only_event({"ts": text, "kind": "cancel"})
    assert event.observed_at == DEVICE_TIME
    assert event.observed_at.tzinfo is UTC


def test_rfc3339_fractional_seconds_are_kept():
    event = only_event({"ts": "2025-06-01T11:59:00.125Z", "kind": "cancel"})
    assert event.observed_at == DEVICE_TIME + timedelta(milliseconds=125)


@HYPOTHESIS
@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - bounds of a naive strategy
        max_value=datetime(2025, 5, 31),  # noqa: DTZ001
    ),
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_any_offset_timestamp_is_filed_under_the_same_utc_instant(moment, offset_minutes):
    local = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    event = only_event({"ts": iso(local), "kind": "cancel"})
    assert event.observed_at == local
    assert event.observed_at.utcoffset() == timedelta(0)


@HYPOTHESIS
@given(
    millis=st.integers(
        min_value=int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000),
        max_value=int(RECEIVED_AT.timestamp() * 1000),
    )
)
def test_any_plausible_epoch_milliseconds_round_trip_to_the_same_instant(millis):
    event = only_event({"ts": millis, "kind": "cancel"})
    assert round(event.observed_at.timestamp() * 1000) == millis


def test_reading_from_days_ago_keeps_its_device_time():
    old = RECEIVED_AT - timedelta(days=3)
    event = only_event({"ts": iso(old), "kind": "heart_rate", "bpm": 60})
    assert event.observed_at == old
    assert event.time_source is TimeSource.DEVICE


def test_timestamp_exactly_five_minutes_ahead_is_accepted():
    ahead = RECEIVED_AT + timedelta(seconds=300)
    assert only_event(heart_rate(ts=iso(ahead))).observed_at == ahead


def test_timestamp_of_2000_01_01_exactly_is_accepted():
    assert only_event(heart_rate(ts="2000-01-01T00:00:00Z")).observed_at == datetime(2000, 1, 1, tzinfo=UTC)


# --- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"not json", b'{"ts": 1,}', b"\xff\xfe", b'{"kind": "panic"} trailing', b"[1, 2"],
)
def test_unparseable_payload_is_rejected_as_malformed_json(payload):
    assert only_rejection(payload).reason is RejectReason.MALFORMED_JSON


@pytest.mark.parametrize("payload", [b'"text"', b"42", b"null", b"true", b"3.5"])
def test_top_level_json_that_is_not_object_or_array_is_invalid_structure(payload):
    assert only_rejection(payload).reason is RejectReason.INVALID_STRUCTURE


def test_array_item_that_is_not_an_object_is_invalid_structure():
    assert only_rejection(b"[[]]").reason is RejectReason.INVALID_STRUCTURE


def test_empty_array_is_rejected_as_no_events():
    assert only_rejection(b"[]").reason is RejectReason.NO_EVENTS


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "heart_rate", "bpm": "72"},
        {"kind": "heart_rate", "bpm": True},
        {"kind": "heart_rate", "bpm": None},
        {"kind": "heart_rate", "bpm": [72]},
        {"kind": "spo2", "pct": "97"},
        {"kind": "battery", "pct": False},
        {"kind": "body_temp", "celsius": "36.6"},
        {"kind": "worn", "on": 1},
        {"kind": "worn", "on": "true"},
        {"kind": "location", "lat": "52.5", "lon": 13.4},
        {"kind": "heartbeat", "battery_pct": "80"},
        {"kind": "cancel", "msg_id": 5},
    ],
    ids=str,
)
def test_value_of_the_wrong_type_is_rejected_without_coercion(body):
    assert only_rejection({"ts": TS, **body}).reason is RejectReason.WRONG_TYPE


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_non_finite_heart_rate_is_rejected_as_non_finite(literal):
    payload = b'{"ts": "' + TS.encode() + b'", "kind": "heart_rate", "bpm": ' + literal + b"}"
    assert only_rejection(payload).reason is RejectReason.NON_FINITE_NUMBER


def test_nan_heart_rate_is_rejected_as_non_finite():
    assert only_rejection(heart_rate(math.nan)).reason is RejectReason.NON_FINITE_NUMBER


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "spo2", "pct": math.nan},
        {"kind": "location", "lat": math.inf, "lon": 0},
        {"kind": "location", "lat": 0, "lon": 0, "accuracy_m": math.inf},
        {"kind": "heartbeat", "battery_pct": math.nan},
    ],
    ids=str,
)
def test_non_finite_value_in_any_numeric_field_is_rejected_as_non_finite(body):
    assert only_rejection({"ts": TS, **body}).reason is RejectReason.NON_FINITE_NUMBER


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "heart_rate", "bpm": 0},
        {"kind": "heart_rate", "bpm": -1},
        {"kind": "heart_rate", "bpm": 300.5},
        {"kind": "heart_rate", "bpm": 1e308},
        {"kind": "spo2", "pct": -0.1},
        {"kind": "spo2", "pct": 100.1},
        {"kind": "battery", "pct": 101},
        {"kind": "battery", "pct": -5},
        {"kind": "heartbeat", "battery_pct": 100.5},
        {"kind": "location", "lat": 90.1, "lon": 0},
        {"kind": "location", "lat": -90.1, "lon": 0},
        {"kind": "location", "lat": 0, "lon": 180.1},
        {"kind": "location", "lat": 0, "lon": -180.1},
        {"kind": "location", "lat": 0, "lon": 0, "accuracy_m": -1},
        {"kind": "body_temp", "celsius": 80},
        {"kind": "body_temp", "celsius": 0},
        {"kind": "body_temp", "celsius": 20},
        {"kind": "body_temp", "celsius": 46},
        {"kind": "cancel", "msg_id": "m" * 65},
        {"kind": "cancel", "msg_id": ""},
    ],
    ids=str,
)
def test_value_outside_its_range_is_rejected_as_out_of_range(body):
    assert only_rejection({"ts": TS, **body}).reason is RejectReason.OUT_OF_RANGE


@pytest.mark.parametrize("kind", ["teleport", "PANIC", "Heart_Rate", "", 5, None])
def test_unknown_kind_is_rejected_as_unknown_kind(kind):
    assert only_rejection({"ts": TS, "kind": kind}).reason is RejectReason.UNKNOWN_KIND


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "heart_rate", "bpm": 72},
        {"ts": TS, "bpm": 72},
        {"ts": TS, "kind": "heart_rate"},
        {"ts": TS, "kind": "spo2"},
        {"ts": TS, "kind": "body_temp"},
        {"ts": TS, "kind": "battery"},
        {"ts": TS, "kind": "worn"},
        {"ts": TS, "kind": "location", "lat": 1.0},
        {"ts": TS, "kind": "location", "lon": 1.0},
        {},
    ],
    ids=str,
)
def test_missing_ts_kind_or_required_field_is_rejected_as_missing_field(body):
    assert only_rejection(body).reason is RejectReason.MISSING_FIELD


def test_missing_field_detail_names_the_field():
    assert "bpm" in only_rejection({"ts": TS, "kind": "heart_rate"}).detail


@pytest.mark.parametrize(
    "body",
    [
        heart_rate(unit="bpm"),
        {"ts": TS, "kind": "cancel", "reason": "ok"},
        {"ts": TS, "kind": "worn", "on": True, "confidence": 1},
        {"ts": TS, "kind": "spo2", "pct": 97, "bpm": 70},
    ],
    ids=str,
)
def test_unexpected_extra_field_is_rejected_as_unexpected_field(body):
    assert only_rejection(body).reason is RejectReason.UNEXPECTED_FIELD


def test_unexpected_field_detail_names_the_field():
    assert "unit" in only_rejection(heart_rate(unit="bpm")).detail


def test_naive_timestamp_is_rejected_as_bad_timestamp():
    rejection = only_rejection(heart_rate(ts="2025-06-01T11:59:00"))
    assert rejection.reason is RejectReason.BAD_TIMESTAMP
    assert "offset" in rejection.detail


@pytest.mark.parametrize(
    "ts",
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-06-01",
        "",
        1.748779e12,
        True,
        None,
        [2025, 6, 1],
        {"ms": 1},
        10**30,
        -(10**30),
    ],
    ids=repr,
)
def test_unparseable_timestamp_is_rejected_as_bad_timestamp(ts):
    assert only_rejection(heart_rate(ts=ts)).reason is RejectReason.BAD_TIMESTAMP


@pytest.mark.parametrize(
    "ts",
    ["1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", 0, 1_748_779_140],
    ids=["just-before-2000", "epoch-text", "epoch-zero-ms", "epoch-seconds-mistaken-for-ms"],
)
def test_timestamp_before_2000_is_rejected_as_bad_timestamp(ts):
    assert only_rejection(heart_rate(ts=ts)).reason is RejectReason.BAD_TIMESTAMP


def test_timestamp_more_than_five_minutes_ahead_is_rejected_as_clock_skew():
    ahead = RECEIVED_AT + timedelta(seconds=301)
    assert only_rejection(heart_rate(ts=iso(ahead))).reason is RejectReason.CLOCK_SKEW


def test_future_skew_limit_comes_from_the_time_policy():
    ahead = RECEIVED_AT + timedelta(seconds=30)
    decoded = decode_canonical(
        json.dumps(heart_rate(ts=iso(ahead))).encode(),
        device_id=DEVICE_ID,
        received_at=RECEIVED_AT,
        policy=TimePolicy(max_future_skew_s=10),
    )
    assert [r.reason for r in decoded.rejections] == [RejectReason.CLOCK_SKEW]


def test_cancel_is_not_life_safety_and_is_rejected_for_a_bad_timestamp():
    assert only_rejection({"ts": "nonsense", "kind": "cancel"}).reason is RejectReason.BAD_TIMESTAMP


def test_rejection_detail_does_not_echo_the_health_value():
    assert "987.654" not in only_rejection(heart_rate(987.654)).detail


def test_rejection_detail_is_bounded_in_length():
    body = {**heart_rate(), "x" * 500: 1}
    assert len(only_rejection(body).detail) <= 200


def test_reading_with_timestamp_beyond_the_calendar_is_rejected_not_raised():
    rejection = only_rejection(heart_rate(ts="9999-12-31T23:30:00-01:00"))
    assert rejection.reason is RejectReason.BAD_TIMESTAMP


# --- life-safety salvage ------------------------------------------------------------------


def test_panic_without_ts_is_kept_under_receive_time_flagged_bad_timestamp():
    event = only_event({"kind": "panic"})
    assert event.kind is Kind.PANIC
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == {"bad_timestamp"}
    assert event.device_time is None


@pytest.mark.parametrize("ts", ["2025-06-01T11:59:00", "garbage", 1.5, True, None, ""], ids=repr)
def test_panic_with_unparseable_ts_is_kept_under_receive_time_flagged_bad_timestamp(ts):
    event = only_event(panic(ts=ts))
    assert event.time_source is TimeSource.RECEIVED
    assert event.observed_at == RECEIVED_AT
    assert event.flags == {"bad_timestamp"}
    assert event.device_time is None


def test_fall_with_naive_ts_is_kept_under_receive_time_flagged_bad_timestamp():
    event = only_event(fall(ts="2025-06-01T11:59:00", stage="alarm"))
    assert event.kind is Kind.FALL
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == {"bad_timestamp"}
    assert event.fields == {"stage": "alarm"}


def test_panic_from_the_future_is_kept_under_receive_time_with_device_time():
    ahead = RECEIVED_AT + timedelta(hours=1)
    event = only_event(panic(ts=iso(ahead)))
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.device_time == ahead
    assert event.flags == {"clock_skew"}


def test_fall_from_the_future_is_kept_under_receive_time_flagged_clock_skew():
    ahead = RECEIVED_AT + timedelta(minutes=10)
    event = only_event(fall(ts=iso(ahead), confidence=0.8))
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == {"clock_skew"}
    assert event.fields == {"confidence": 0.8}


def test_panic_from_an_unset_clock_is_kept_under_receive_time_with_device_time():
    event = only_event(panic(ts="1970-01-01T00:00:05Z"))
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.device_time == datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert event.flags == {"clock_skew"}


def test_panic_older_than_24_hours_is_filed_under_receive_time_flagged_clock_skew():
    stale = RECEIVED_AT - timedelta(hours=24, seconds=1)
    event = only_event(panic(ts=iso(stale)))
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.device_time == stale
    assert event.flags == {"clock_skew"}


def test_fall_older_than_24_hours_is_filed_under_receive_time():
    stale = RECEIVED_AT - timedelta(days=3)
    assert only_event(fall(ts=iso(stale))).time_source is TimeSource.RECEIVED


def test_panic_exactly_24_hours_old_keeps_its_device_time():
    stale = RECEIVED_AT - timedelta(hours=24)
    event = only_event(panic(ts=iso(stale)))
    assert event.observed_at == stale
    assert event.time_source is TimeSource.DEVICE


def test_late_but_plausible_panic_keeps_its_device_time():
    late = RECEIVED_AT - timedelta(hours=2)
    event = only_event(panic(ts=iso(late)))
    assert event.observed_at == late
    assert event.time_source is TimeSource.DEVICE
    assert event.device_time is None
    assert event.flags == frozenset()


def test_life_safety_age_limit_comes_from_the_time_policy():
    late = RECEIVED_AT - timedelta(hours=2)
    decoded = decode_canonical(
        json.dumps(panic(ts=iso(late))).encode(),
        device_id=DEVICE_ID,
        received_at=RECEIVED_AT,
        policy=TimePolicy(max_life_safety_age_s=3600),
    )
    assert decoded.events[0].time_source is TimeSource.RECEIVED


def test_reading_older_than_24_hours_is_not_moved_to_receive_time():
    stale = RECEIVED_AT - timedelta(days=2)
    assert only_event(heart_rate(ts=iso(stale))).observed_at == stale


@pytest.mark.parametrize(
    "extra",
    [{"button": 5}, {"button": "b" * 65}, {"button": ["x"]}, {"colour": "red"}],
    ids=str,
)
def test_panic_with_a_broken_field_is_kept_flagged_invalid_fields(extra):
    event = only_event(panic(**extra))
    assert event.kind is Kind.PANIC
    assert event.flags == {"invalid_fields"}
    assert event.fields == {}


def test_panic_with_broken_field_and_good_ts_keeps_device_time():
    event = only_event(panic(button=5))
    assert event.observed_at == DEVICE_TIME
    assert event.time_source is TimeSource.DEVICE


def test_salvaged_panic_keeps_its_valid_button():
    event = only_event(panic(button="bed", colour="red"))
    assert event.fields == {"button": "bed"}


@pytest.mark.parametrize(
    "extra",
    [
        {"stage": "imminent"},
        {"stage": 1},
        {"confidence": 1.5},
        {"confidence": "high"},
        {"confidence": math.nan},
        {"confidence": True},
        {"severity": 3},
    ],
    ids=str,
)
def test_fall_with_a_broken_field_is_kept_flagged_invalid_fields(extra):
    event = only_event(fall(**extra))
    assert event.kind is Kind.FALL
    assert event.flags == {"invalid_fields"}
    assert event.fields == {}


def test_salvaged_fall_keeps_its_valid_fields():
    event = only_event(fall(stage="alarm", confidence=0.7, severity="high"))
    assert event.fields == {"stage": "alarm", "confidence": 0.7}


def test_salvaged_fall_keeps_valid_stage_when_confidence_is_broken():
    assert only_event(fall(stage="warning", confidence=7)).fields == {"stage": "warning"}


def test_panic_with_broken_ts_and_broken_field_carries_both_flags():
    event = only_event(panic(ts="not a time", button=[1]))
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == {"bad_timestamp", "invalid_fields"}


def test_panic_with_only_a_bad_ts_is_not_flagged_invalid_fields():
    assert "invalid_fields" not in only_event(panic(ts="not a time")).flags


def test_salvaged_panic_keeps_a_valid_msg_id_as_its_event_key():
    event = only_event(panic(button=5, msg_id="press-9"))
    assert event.msg_id == "press-9"
    assert event.event_key == "press-9"


@pytest.mark.parametrize("msg_id", ["m" * 65, "", 17], ids=repr)
def test_salvaged_panic_with_invalid_msg_id_drops_it_and_uses_a_digest(msg_id):
    event = only_event(panic(msg_id=msg_id))
    assert event.msg_id is None
    assert event.event_key.startswith("h:")


def test_panic_with_timestamp_before_the_calendar_is_salvaged():
    event = only_event(panic(ts="0001-01-01T00:30:00+01:00"))
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == {"bad_timestamp"}


# --- arrays -------------------------------------------------------------------------------


def test_array_keeps_good_items_in_order_and_rejects_the_bad_one():
    decoded = decode([heart_rate(70), heart_rate("72"), {"ts": TS, "kind": "spo2", "pct": 96}])
    assert [e.kind for e in decoded.events] == [Kind.HEART_RATE, Kind.SPO2]
    assert [r.reason for r in decoded.rejections] == [RejectReason.WRONG_TYPE]


def test_rejected_array_item_detail_names_its_index():
    decoded = decode([heart_rate(70), heart_rate(70), heart_rate(-3)])
    assert decoded.rejections[0].detail.startswith("item 2:")


def test_every_rejected_array_item_is_reported_with_its_own_reason():
    decoded = decode([heart_rate(math.nan), {"ts": TS, "kind": "nope"}, heart_rate(70)])
    assert [(r.reason, r.detail.split(":")[0]) for r in decoded.rejections] == [
        (RejectReason.NON_FINITE_NUMBER, "item 0"),
        (RejectReason.UNKNOWN_KIND, "item 1"),
    ]


def test_non_object_array_item_is_rejected_with_its_index():
    decoded = decode([heart_rate(70), "oops"])
    assert len(decoded.events) == 1
    assert decoded.rejections[0].reason is RejectReason.INVALID_STRUCTURE
    assert decoded.rejections[0].detail.startswith("item 1:")


def test_panic_in_an_array_is_salvaged_beside_a_rejected_reading():
    decoded = decode([heart_rate("x"), panic(button=5)])
    assert [e.kind for e in decoded.events] == [Kind.PANIC]
    assert decoded.rejections[0].detail.startswith("item 0:")


def test_single_object_payload_detail_has_no_item_prefix():
    assert not only_rejection(heart_rate(-1)).detail.startswith("item")


# --- redelivery identity ------------------------------------------------------------------


def test_reading_without_msg_id_has_empty_event_key():
    assert only_event(heart_rate()).event_key == ""


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "spo2", "pct": 97},
        {"kind": "body_temp", "celsius": 37},
        {"kind": "battery", "pct": 50},
    ],
    ids=str,
)
def test_every_reading_kind_without_msg_id_has_empty_event_key(body):
    assert only_event({"ts": TS, **body}).event_key == ""


def test_reading_with_msg_id_uses_it_as_event_key():
    assert only_event(heart_rate(msg_id="r-42")).event_key == "r-42"


def test_event_with_msg_id_uses_it_as_event_key():
    assert only_event(panic(msg_id="p-1")).event_key == "p-1"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "panic"},
        {"kind": "fall"},
        {"kind": "cancel"},
        {"kind": "heartbeat"},
        {"kind": "worn", "on": True},
        {"kind": "location", "lat": 1, "lon": 2},
    ],
    ids=str,
)
def test_event_without_msg_id_gets_a_content_digest_key(body):
    assert only_event({"ts": TS, **body}).event_key.startswith("h:")


def test_identical_event_content_gives_the_same_digest_on_redelivery():
    first = only_event(panic(button="pendant"))
    again = only_event(panic(button="pendant"))
    assert first.event_key == again.event_key


def test_event_digest_does_not_depend_on_key_order_or_whitespace():
    compact = b'{"ts":"' + TS.encode() + b'","kind":"panic","button":"a"}'
    spaced = b'{ "button" : "a",\n "kind": "panic", "ts": "' + TS.encode() + b'" }'
    assert decode(compact).events[0].event_key == decode(spaced).events[0].event_key


def test_events_with_different_content_get_different_digests():
    assert only_event(panic(button="a")).event_key != only_event(panic(button="b")).event_key


def test_events_at_different_times_get_different_digests():
    later = iso(DEVICE_TIME + timedelta(milliseconds=1))
    assert only_event(panic()).event_key != only_event(panic(ts=later)).event_key


def test_salvaged_panic_digest_is_stable_on_redelivery():
    assert only_event(panic(button=5)).event_key == only_event(panic(button=5)).event_key


@HYPOTHESIS
@given(items=st.permutations([("ts", TS), ("kind", "fall"), ("stage", "alarm"), ("confidence", 0.5)]))
def test_event_digest_is_independent_of_field_order(items):
    assert only_event(dict(items)).event_key == only_event(fall(stage="alarm", confidence=0.5)).event_key


@HYPOTHESIS
@given(
    buttons=st.lists(
        st.text(max_size=64).filter(lambda s: "\x00" not in s), min_size=2, max_size=2, unique=True
    )
)
def test_different_buttons_never_share_a_digest(buttons):
    first, second = (only_event(panic(button=b)).event_key for b in buttons)
    assert first != second


# --- robustness ---------------------------------------------------------------------------

FIELD_NAMES = [
    "ts",
    "kind",
    "msg_id",
    "bpm",
    "pct",
    "celsius",
    "confidence",
    "stage",
    "button",
    "battery_pct",
    "on",
    "lat",
    "lon",
    "accuracy_m",
    "extra",
]
KIND_NAMES = [k.value for k in Kind] + ["", "PANIC", "unknown"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(KIND_NAMES)
)
safe_timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - bounds of a naive strategy
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
).map(datetime.isoformat)
json_values = st.recursive(
    scalars | safe_timestamps,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=25,
)
objects = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8)


@HYPOTHESIS
@given(document=json_values | objects | st.lists(objects, max_size=5))
def test_any_json_document_decodes_without_raising_and_accounts_for_every_item(document):
    decoded = decode(document)
    if isinstance(document, list) and document:
        assert len(decoded.events) + len(decoded.rejections) == len(document)
    elif isinstance(document, dict):
        assert len(decoded.events) + len(decoded.rejections) == 1
    else:
        assert len(decoded.rejections) == 1
    assert all(isinstance(r.reason, RejectReason) for r in decoded.rejections)


@HYPOTHESIS
@given(payload=st.binary(max_size=200))
def test_any_bytes_decode_without_raising(payload):
    decoded = decode(payload)
    assert decoded.events or decoded.rejections


@HYPOTHESIS
@given(
    kind=st.sampled_from(["panic", "fall"]),
    body=st.dictionaries(
        st.sampled_from([n for n in FIELD_NAMES if n != "kind"]) | st.text(max_size=5),
        json_values,
        max_size=8,
    ),
)
def test_any_panic_or_fall_object_is_kept_whatever_its_fields(kind, body):
    event = only_event({**body, "kind": kind})
    assert event.kind is Kind(kind)
    assert event.is_life_safety
    assert event.observed_at.tzinfo is not None


# --- the heart-rate fast path gives the model's answers -------------------------------------

from devices import canonical as canonical_module  # noqa: E402

_HR_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, 300, 300.0, 300.0000001, 1e-9, True, False, None, "72", [72]]),
)
_HR_TS = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "", True, 1.5]),
)
_HR_ITEMS = st.fixed_dictionaries(
    {"kind": st.just("heart_rate")},
    optional={
        "ts": _HR_TS,
        "bpm": _HR_VALUES,
        "msg_id": st.one_of(st.none(), st.text(max_size=70), st.integers()),
        "extra": st.integers(),
        "battery_pct": st.integers(),
    },
)


def _through_the_model(item, received_at):
    original = canonical_module._plain_heart_rate
    canonical_module._plain_heart_rate = lambda _item: None
    try:
        return canonical_module.decode_canonical(
            json.dumps(item, allow_nan=True).encode(),
            device_id="d",
            received_at=received_at,
            policy=TimePolicy(),
        )
    finally:
        canonical_module._plain_heart_rate = original


@settings(max_examples=400, deadline=None)
@given(item=_HR_ITEMS)
def test_the_heart_rate_fast_path_answers_exactly_as_the_model(item):
    received_at = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    fast = canonical_module.decode_canonical(
        json.dumps(item, allow_nan=True).encode(), device_id="d", received_at=received_at, policy=TimePolicy()
    )
    assert fast == _through_the_model(item, received_at)


def test_the_fast_path_takes_plain_heart_rates_and_declines_the_rest():
    plain = canonical_module._plain_heart_rate
    assert plain({"kind": "heart_rate", "ts": 0, "bpm": 72}) is not None
    assert plain({"kind": "heart_rate", "ts": 0, "bpm": 72, "msg_id": "m"}) is not None
    for declined in (
        {"kind": "heart_rate", "bpm": 72},
        {"kind": "heart_rate", "ts": 0, "bpm": True},
        {"kind": "heart_rate", "ts": 0, "bpm": 0},
        {"kind": "heart_rate", "ts": 0, "bpm": math.nan},
        {"kind": "heart_rate", "ts": 0, "bpm": 72, "msg_id": ""},
        {"kind": "heart_rate", "ts": 0, "bpm": 72, "note": "x"},
        {"kind": "heart_rate", "ts": "yesterday", "bpm": 72},
    ):
        assert plain(declined) is None, declined
