"""Sanitising at the devices/ boundary: hostile text and hostile JSON in every format.

Whatever the payload, every string that leaves devices/ holds none of the forbidden
characters and encodes to UTF-8; a panic or fall whose only defect is its text is still a
panic or fall; hostile JSON gets a reason, never an exception.
"""

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import (
    DecodeContext,
    Decoded,
    Event,
    Kind,
    Rejection,
    RejectReason,
    TimePolicy,
    decode_canonical,
    iw,
    make_event,
    owntracks,
    scaip,
    traccar,
    watch,
    z2m,
)
from devices.text import (
    FORBIDDEN,
    MAX_DEVICE_ID,
    MAX_TEXT_FIELD,
    JsonError,
    clean,
    is_clean,
    load_json,
)
from tests.unit.devices.helpers import HYPOTHESIS

RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TS = "2025-06-01T11:59:00Z"
DEVICE_ID = "dev-1"

#: One of each forbidden class, as Python text (JSON escapes them on the wire).
HOSTILE = {
    "nul": "a\u0000b",
    "c0": "a\u0007\u001bb",
    "newline": "a\nb\tc",
    "del": "a\u007fb",
    "c1": "a\u0085\u009bb",
    "lone_high_surrogate": "a\ud800b",
    "lone_low_surrogate": "\udc00",
    "bidi_override": "\u202egnp.exe",
    "bidi_isolate": "a\u2066b\u2069",
    "bidi_mark": "a\u200fb",
    "mixed": "\u202e\ud800\u0000",
}
HOSTILE_IDS = list(HOSTILE)
HOSTILE_TEXT = list(HOSTILE.values())


def strings_of(decoded: Decoded) -> list[str]:
    """Every string an event or rejection carries out of devices/."""
    found: list[str] = []
    for event in decoded.events:
        found += [event.device_id, event.event_key, *event.flags, *event.sanitised]
        found += [event.msg_id] if event.msg_id is not None else []
        found += list(event.fields)
        found += [value for value in event.fields.values() if isinstance(value, str)]
    found += [rejection.detail for rejection in decoded.rejections]
    return found


def assert_clean(decoded: Decoded) -> None:
    for text in strings_of(decoded):
        assert FORBIDDEN.search(text) is None, repr(text)
        text.encode("utf-8")  # no lone surrogate left
        assert "\x00" not in json.dumps(text, ensure_ascii=False)


def canonical(payload: object) -> Decoded:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    decoded = decode_canonical(raw, device_id=DEVICE_ID, received_at=RECEIVED_AT, policy=TimePolicy())
    assert_clean(decoded)
    return decoded


def one_event(decoded: Decoded, kind: Kind) -> Event:
    assert [event.kind for event in decoded.events] == [kind], decoded
    return decoded.events[0]


# --- the sanitiser ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_every_forbidden_class_is_replaced_one_for_one(text):
    cleaned = clean(text)
    assert not is_clean(text)
    assert is_clean(cleaned)
    assert len(cleaned) == len(text)
    assert "\ufffd" in cleaned
    cleaned.encode("utf-8")


@pytest.mark.parametrize("text", ["", "pendant", "Zürich €", "日本語", "emoji 😀", "\u00a0nbsp", "a\u200bb"])
def test_clean_text_is_returned_as_is(text):
    assert is_clean(text)
    assert clean(text) is text


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000, 0x7F), 0xDFFF])
def test_each_control_and_surrogate_code_point_is_forbidden(code):
    assert not is_clean(chr(code))


@pytest.mark.parametrize("code", [0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2069])
def test_bidi_controls_are_forbidden(code):
    assert not is_clean(chr(code))


def test_rejection_details_are_sanitised_when_built():
    assert Rejection(RejectReason.WRONG_TYPE, "bad \u202e\u0000 value").detail == "bad \ufffd\ufffd value"


# --- the JSON loader ----------------------------------------------------------------------------


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@pytest.mark.parametrize("depth", [33, 201, 10_000])
def test_deep_nesting_is_malformed_json_with_a_clear_detail(depth):
    with pytest.raises(JsonError) as caught:
        load_json(nested(depth))
    assert caught.value.reason is RejectReason.MALFORMED_JSON
    assert caught.value.detail == "nesting deeper than 32"


def test_nesting_of_32_is_accepted():
    assert load_json(nested(32)) is not None
    assert load_json(b'{"a":' * 31 + b'{"b":1}' + b"}" * 31) is not None


def test_deep_nesting_in_an_object_is_refused_too():
    with pytest.raises(JsonError, match="nesting deeper than 32"):
        load_json(b'{"ts":1,"kind":"panic","x":' + nested(40) + b"}")


def test_deep_nesting_with_a_lone_surrogate_takes_the_slow_path_and_is_refused():
    with pytest.raises(JsonError, match="nesting deeper than 32"):
        load_json(nested(5_000, b'"\\ud800"'))


def test_an_integer_of_more_digits_than_python_converts_is_infinite_for_the_field_to_judge():
    assert load_json(b"1" * 10_000) == math.inf
    assert load_json(b"-" + b"1" * 10_000) == -math.inf
    assert load_json(b'{"a":' + b"7" * 4300 + b"}")["a"] == int("7" * 4300)


def test_invalid_utf8_is_malformed_json_saying_so():
    with pytest.raises(JsonError) as caught:
        load_json(b'{"a": "\xff"}')
    assert caught.value.reason is RejectReason.MALFORMED_JSON
    assert "not valid UTF-8" in caught.value.detail


def test_syntax_error_detail_does_not_quote_the_payload():
    with pytest.raises(JsonError) as caught:
        load_json(b'{"secret-bpm": 72,')
    assert "secret" not in caught.value.detail


def test_non_finite_and_huge_numbers_are_left_for_the_codec():
    values = load_json(b"[NaN, Infinity, -Infinity, 1e400, 1208925819614629174706176]")
    assert [str(v) for v in values] == ["nan", "inf", "-inf", "inf", str(2**80)]


def test_lone_surrogate_escapes_are_parsed():
    assert load_json(b'{"a": "\\ud800", "b": "\\udc00x"}') == {"a": "\ud800", "b": "\udc00x"}


def test_a_utf8_byte_order_mark_is_accepted_on_the_slow_path():
    assert load_json(b'\xef\xbb\xbf{"a": "\\ud800"}') == {"a": "\ud800"}


# --- canonical: hostile text --------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
@pytest.mark.parametrize("field", ["msg_id", "button"])
def test_canonical_panic_with_hostile_text_is_a_sanitised_panic(field, text):
    event = one_event(canonical({"ts": TS, "kind": "panic", field: text}), Kind.PANIC)
    assert "sanitised_text" in event.flags
    assert event.sanitised == (field,)
    value = event.msg_id if field == "msg_id" else event.fields["button"]
    assert value == clean(text)


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_canonical_fall_with_hostile_msg_id_is_a_sanitised_fall(text):
    event = one_event(canonical({"ts": TS, "kind": "fall", "stage": "alarm", "msg_id": text}), Kind.FALL)
    assert event.msg_id == clean(text)
    assert event.fields == {"stage": "alarm"}
    assert "sanitised_text" in event.flags


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_canonical_fall_with_hostile_stage_is_salvaged(text):
    event = one_event(canonical({"ts": TS, "kind": "fall", "stage": text}), Kind.FALL)
    assert "invalid_fields" in event.flags


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_canonical_alarm_label_is_sanitised(text):
    event = one_event(canonical({"ts": TS, "kind": "alarm", "label": text}), Kind.ALARM)
    assert event.fields == {"label": clean(text)}


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_canonical_heart_rate_with_hostile_msg_id_is_stored_sanitised(text):
    decoded = canonical({"ts": TS, "kind": "heart_rate", "bpm": 72, "msg_id": text})
    event = one_event(decoded, Kind.HEART_RATE)
    assert event.msg_id == clean(text)
    assert event.fields == {"bpm": 72.0}
    assert "sanitised_text" in event.flags


def test_hostile_text_sent_as_json_escapes_is_sanitised():
    payload = b'{"ts":"%s","kind":"panic","msg_id":"a\\u0000b","button":"\\u202e\\ud800"}' % TS.encode()
    event = one_event(canonical(payload), Kind.PANIC)
    assert (event.msg_id, event.fields) == ("a\ufffdb", {"button": "\ufffd\ufffd"})
    assert event.sanitised == ("msg_id", "button")
    assert event.flags == {"sanitised_text"}  # the fields are not invalid, only garbled


@pytest.mark.parametrize("kind", ["cancel", "heartbeat", "online", "body_temp", "heart_rate"])
@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_other_kinds_with_hostile_msg_id_are_stored_sanitised_not_rejected(kind, text):
    values = {"body_temp": {"celsius": 36.6}, "heart_rate": {"bpm": 70}}.get(kind, {})
    payload = json.dumps({"ts": TS, "kind": kind, "msg_id": text, **values}).encode()
    event = one_event(canonical(payload), Kind(kind))
    assert event.msg_id == clean(text)
    assert event.flags == {"sanitised_text"}
    assert event.sanitised == ("msg_id",)


def test_two_msg_ids_garbled_by_different_surrogates_stay_two_keys():
    keys = {
        one_event(
            canonical(b'{"ts":"%s","kind":"cancel","msg_id":"x\\%s"}' % (TS.encode(), s)), Kind.CANCEL
        ).event_key
        for s in (b"ud800", b"udbff", b"udc00")
    }
    assert len(keys) == 3


@given(msg_id=st.text(min_size=1, max_size=64))
@HYPOTHESIS
def test_any_msg_id_of_a_cancel_is_one_clean_cancel(msg_id):
    payload = json.dumps({"ts": TS, "kind": "cancel", "msg_id": msg_id}).encode()
    assert [event.kind for event in canonical(payload).events] == [Kind.CANCEL]


def test_two_garbled_msg_ids_stay_two_panics():
    first = one_event(canonical({"ts": TS, "kind": "panic", "msg_id": "p\u00001"}), Kind.PANIC)
    second = one_event(canonical({"ts": TS, "kind": "panic", "msg_id": "p\u00011"}), Kind.PANIC)
    assert first.msg_id == second.msg_id == "p\ufffd1"
    assert first.event_key != second.event_key
    assert first.event_key.startswith("p\ufffd1~")


def test_the_key_of_a_garbled_msg_id_is_stable_on_redelivery():
    payload = {"ts": TS, "kind": "panic", "msg_id": "a\ud800"}
    assert canonical(payload).events[0].event_key == canonical(payload).events[0].event_key


def test_a_clean_event_is_not_flagged():
    event = one_event(canonical({"ts": TS, "kind": "panic", "msg_id": "m1", "button": "Zürich"}), Kind.PANIC)
    assert event.flags == frozenset()
    assert event.sanitised == ()
    assert event.event_key == "m1"


@given(msg_id=st.text(), button=st.text())
@HYPOTHESIS
def test_any_text_in_a_panic_yields_exactly_one_clean_panic(msg_id, button):
    decoded = canonical({"ts": TS, "kind": "panic", "msg_id": msg_id, "button": button})
    assert [event.kind for event in decoded.events] == [Kind.PANIC]
    assert decoded.rejections == []


@given(msg_id=st.text(), button=st.text())
@HYPOTHESIS
def test_any_text_sent_as_raw_json_escapes_yields_one_clean_panic(msg_id, button):
    # json.dumps writes a lone surrogate as a \\udxxx escape, as a device's encoder would.
    payload = json.dumps({"ts": TS, "kind": "panic", "msg_id": msg_id, "button": button}).encode()
    assert [event.kind for event in canonical(payload).events] == [Kind.PANIC]


# --- canonical: hostile numbers and documents ---------------------------------------------------


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_non_finite_heart_rate_is_non_finite_number(number):
    decoded = canonical(b'{"ts":"%s","kind":"heart_rate","bpm":%s}' % (TS.encode(), number))
    assert [r.reason for r in decoded.rejections] == [RejectReason.NON_FINITE_NUMBER]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_fall_with_non_finite_confidence_is_salvaged(number):
    decoded = canonical(b'{"ts":"%s","kind":"fall","confidence":%s}' % (TS.encode(), number))
    assert "invalid_fields" in one_event(decoded, Kind.FALL).flags


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        (b"NaN", "invalid_fields"),
        (b"1e400", "invalid_fields"),
        (b"1208925819614629174706176", "invalid_fields"),
        (b"[[[1]]]", "invalid_fields"),
        (b'"\\ud800"', "sanitised_text"),
    ],
)
def test_panic_with_garbage_in_a_side_field_is_salvaged(value, flag):
    decoded = canonical(b'{"ts":"%s","kind":"panic","button":%s}' % (TS.encode(), value))
    assert flag in one_event(decoded, Kind.PANIC).flags


@pytest.mark.parametrize(
    ("kind", "field"), [("heart_rate", "bpm"), ("steps", "count"), ("battery", "pct"), ("spo2", "pct")]
)
def test_two_to_the_eightieth_is_out_of_range(kind, field):
    decoded = canonical({"ts": TS, "kind": kind, field: 2**80})
    assert [r.reason for r in decoded.rejections] == [RejectReason.OUT_OF_RANGE]


def test_steps_beyond_64_bits_names_the_field():
    (rejection,) = canonical({"ts": TS, "kind": "steps", "count": 2**63}).rejections
    assert rejection.reason is RejectReason.OUT_OF_RANGE
    assert "count" in rejection.detail


def test_an_integer_too_large_for_a_float_is_out_of_range():
    decoded = canonical(b'{"ts":"%s","kind":"heart_rate","bpm":1%s}' % (TS.encode(), b"0" * 400))
    assert [r.reason for r in decoded.rejections] == [RejectReason.OUT_OF_RANGE]


def test_a_ten_thousand_digit_integer_costs_only_its_field():
    panic = canonical(b'{"ts":"%s","kind":"panic","button":1%s}' % (TS.encode(), b"0" * 10_000))
    assert [(e.kind, "invalid_fields" in e.flags) for e in panic.events] == [(Kind.PANIC, True)]
    reading = canonical(b'{"ts":"%s","kind":"heart_rate","bpm":1%s}' % (TS.encode(), b"0" * 10_000))
    assert reading.events == []
    assert [r.reason for r in reading.rejections] == [RejectReason.NON_FINITE_NUMBER]


@pytest.mark.parametrize("depth", [33, 10_000])
def test_deeply_nested_canonical_payload_is_malformed_json(depth):
    decoded = canonical(nested(depth, b'{"ts":1,"kind":"panic"}'))
    assert [(r.reason, r.detail) for r in decoded.rejections] == [
        (RejectReason.MALFORMED_JSON, "nesting deeper than 32")
    ]


def test_invalid_utf8_heart_rate_is_malformed_json():
    decoded = canonical(b'{"ts":"%s","kind":"heart_rate","bpm":72,"msg_id":"\xff"}' % TS.encode())
    assert decoded.events == []
    assert [r.reason for r in decoded.rejections] == [RejectReason.MALFORMED_JSON]
    assert "UTF-8" in decoded.rejections[0].detail


def test_invalid_utf8_panic_is_kept_and_flagged():
    decoded = canonical(b'{"ts":"%s","kind":"panic","button":"\xff\xed\xa0\x80"}' % TS.encode())
    event = one_event(decoded, Kind.PANIC)
    assert event.fields == {"button": "\ufffd\ufffd\ufffd\ufffd"}
    assert "sanitised_text" in event.flags
    assert decoded.rejections == []


def test_invalid_utf8_array_keeps_the_panic_and_rejects_the_reading():
    payload = b'[{"ts":"%s","kind":"panic","button":"\xff"},{"ts":"%s","kind":"heart_rate","bpm":72}]' % (
        TS.encode(),
        TS.encode(),
    )
    decoded = canonical(payload)
    assert [event.kind for event in decoded.events] == [Kind.PANIC]
    assert [r.reason for r in decoded.rejections] == [RejectReason.MALFORMED_JSON]


# --- length limits ------------------------------------------------------------------------------


def test_over_long_msg_id_of_a_reading_is_out_of_range():
    (rejection,) = canonical({"ts": TS, "kind": "heart_rate", "bpm": 72, "msg_id": "m" * 65}).rejections
    assert rejection.reason is RejectReason.OUT_OF_RANGE
    assert "msg_id" in rejection.detail


def test_over_long_text_in_a_panic_is_still_a_panic():
    decoded = canonical({"ts": TS, "kind": "panic", "msg_id": "m" * 10_000, "button": "b" * 10_000})
    assert "invalid_fields" in one_event(decoded, Kind.PANIC).flags


def build(kind: Kind, fields: dict, *, device_id: str = DEVICE_ID, msg_id: str | None = None):
    return make_event(
        device_id=device_id,
        kind=kind,
        device_time=RECEIVED_AT - timedelta(minutes=1),
        fields=fields,
        msg_id=msg_id,
        event_key="k",
        flags=frozenset(),
        received_at=RECEIVED_AT,
        policy=TimePolicy(),
    )


def test_make_event_rejects_an_over_long_field_of_an_ordinary_event():
    outcome = build(Kind.LOCATION, {"lat": 1.0, "lon": 2.0, "ssid": "x" * (MAX_TEXT_FIELD + 1)})
    assert outcome == Rejection(RejectReason.OUT_OF_RANGE, "ssid longer than 256 characters")


def test_make_event_truncates_an_over_long_field_of_a_panic():
    outcome = build(Kind.PANIC, {"button": "\u0000" + "x" * 1000})
    assert isinstance(outcome, Event)
    assert outcome.fields["button"] == "\ufffd" + "x" * (MAX_TEXT_FIELD - 1)
    assert {"truncated_text", "sanitised_text"} <= outcome.flags
    assert outcome.sanitised == ("button",)


def test_make_event_limits_device_ids():
    too_long = "d" * (MAX_DEVICE_ID + 1)
    assert build(Kind.HEARTBEAT, {}, device_id=too_long) == Rejection(
        RejectReason.OUT_OF_RANGE, "device_id longer than 128 characters"
    )
    panic = build(Kind.PANIC, {}, device_id=too_long)
    assert isinstance(panic, Event)
    assert panic.device_id == too_long[:MAX_DEVICE_ID]
    assert "truncated_text" in panic.flags


def test_make_event_limits_msg_ids():
    assert build(Kind.CANCEL, {}, msg_id="m" * 65) == Rejection(
        RejectReason.OUT_OF_RANGE, "msg_id longer than 64 characters"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), RejectReason.NON_FINITE_NUMBER),
        (float("inf"), RejectReason.NON_FINITE_NUMBER),
        (2**80, RejectReason.OUT_OF_RANGE),
        (-(2**63) - 1, RejectReason.OUT_OF_RANGE),
    ],
)
def test_make_event_holds_numbers_to_int64_and_finite(value, reason):
    outcome = build(Kind.STEPS, {"count": value})
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert "count" in outcome.detail
    fall = build(Kind.FALL, {"confidence": value, "stage": "alarm"})
    assert isinstance(fall, Event)
    assert fall.fields == {"stage": "alarm"}
    assert "invalid_fields" in fall.flags


def test_make_event_keeps_the_largest_int64():
    assert isinstance(build(Kind.STEPS, {"count": 2**63 - 1}), Event)


# --- the other JSON codecs ----------------------------------------------------------------------


def context(**kwargs) -> DecodeContext:
    return DecodeContext(received_at=RECEIVED_AT, **kwargs)


def vendor(codec, payload: bytes, **kwargs) -> Decoded:
    decoded = codec(payload, context(**kwargs))
    assert_clean(decoded)
    return decoded


Z2M = {"topic": "zigbee2mqtt/sos_button"}
OWNTRACKS = {"topic": "owntracks/jane/nokia"}
TRACCAR_EVENT_TIME = "2025-06-01T11:59:00.000+00:00"


def traccar_alarm(alarm: str) -> bytes:
    document = {
        "event": {"type": "alarm", "attributes": {"alarm": alarm}, "eventTime": TRACCAR_EVENT_TIME},
        "device": {"uniqueId": "861585043200862"},
    }
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("codec", "kwargs"), [(z2m.decode, Z2M), (traccar.decode, {}), (owntracks.decode, OWNTRACKS)]
)
@pytest.mark.parametrize("depth", [33, 10_000])
def test_vendor_json_nesting_is_malformed_json(codec, kwargs, depth):
    decoded = vendor(codec, nested(depth, b"{}"), **kwargs)
    assert decoded.events == []
    assert [r.reason for r in decoded.rejections] == [RejectReason.MALFORMED_JSON]


@pytest.mark.parametrize(("codec", "kwargs"), [(traccar.decode, {}), (owntracks.decode, OWNTRACKS)])
@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (nested(40, b"{}"), "nesting deeper than 32"),
        (b'{"a": "\xff"}', "UTF-8"),
    ],
)
def test_vendor_json_rejections_say_why(codec, kwargs, payload, words):
    (rejection,) = vendor(codec, payload, **kwargs).rejections
    assert rejection.reason is RejectReason.MALFORMED_JSON
    assert words in rejection.detail


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_z2m_panic_with_hostile_friendly_name_is_a_panic(text):
    decoded = vendor(z2m.decode, b'{"action": "sos"}', topic=f"zigbee2mqtt/sos{text}button")
    event = one_event(decoded, Kind.PANIC)
    assert event.device_id == f"sos{clean(text)}button"
    assert "sanitised_text" in event.flags


@pytest.mark.parametrize("extra", [b'"\\ud800\\u0000"', b"NaN", b"1e400", b"1208925819614629174706176"])
def test_z2m_panic_with_garbage_beside_it_is_a_panic(extra):
    decoded = vendor(z2m.decode, b'{"action": "sos", "linkquality": %s, "x": "\\u202e"}' % extra, **Z2M)
    assert [event.kind for event in decoded.events] == [Kind.PANIC]


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_traccar_alarm_with_hostile_label_is_an_alarm(text):
    decoded = vendor(traccar.decode, traccar_alarm(f"x{text}"))
    event = one_event(decoded, Kind.ALARM)
    assert event.fields == {"label": clean(f"x{text}")}


def test_traccar_sos_with_hostile_device_id_falls_back_to_the_topic():
    document = json.loads(traccar_alarm("sos"))
    document["device"]["uniqueId"] = "86\u202e1"
    decoded = vendor(traccar.decode, json.dumps(document).encode(), device_id="dev-1")
    assert one_event(decoded, Kind.PANIC).device_id == "dev-1"


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_owntracks_location_with_hostile_topic_is_sanitised(text):
    payload = json.dumps({"_type": "location", "lat": 1.0, "lon": 2.0, "tst": 1748779140, "tid": text})
    decoded = vendor(owntracks.decode, payload.encode(), topic=f"owntracks/ja{text}ne/nokia")
    event = one_event(decoded, Kind.LOCATION)
    assert event.device_id == f"ja{clean(text)}ne/nokia"


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"1e400"])
def test_owntracks_non_finite_latitude_is_never_stored(number):
    payload = b'{"_type": "location", "lat": %s, "lon": 2.0, "tst": 1748779140}' % number
    assert vendor(owntracks.decode, payload, **OWNTRACKS).events == []


# --- the text codecs ----------------------------------------------------------------------------

IW_BLOCK = "250601A2232.9806N11404.9355E000.1115930323.8706000908000502,460,0,9520,3671"
IMEI = "353456789012345"


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_iw_sos_with_hostile_text_is_a_panic(text):
    frame = f"IWAP10{IW_BLOCK},01,zh-cn,00,HO{text}ME|74-DE-2B-44-88-8C|97#"
    decoded = vendor(iw.decode, raw(frame), device_id=IMEI)
    assert Kind.PANIC in [event.kind for event in decoded.events]


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=HOSTILE_IDS)
def test_watch_sos_with_hostile_text_is_a_panic(text):
    content = raw(
        f"AL,010625,115930,A,22.5,N,113.8,E,0,0,0,5,100,82,1000,50,00010000,1,255,460,0,9340,3663,3{text}5"
    )
    frame = b"[3G*8800000015*%04X*%s]" % (len(content), content)
    decoded = vendor(watch.decode, frame)
    assert Kind.PANIC in [event.kind for event in decoded.events]


#: What XML allows in character data (C0 controls make a SCAIP body not well-formed XML).
SCAIP_HOSTILE = ["del", "c1", "lone_high_surrogate", "lone_low_surrogate", "bidi_override", "bidi_isolate"]


@pytest.mark.parametrize("name", SCAIP_HOSTILE)
def test_scaip_alarm_with_hostile_ids_is_sanitised(name):
    text = HOSTILE[name]
    payload = raw(f"<mrq><cid>4{text}2</cid><ref>r{text}1</ref><stc>10</stc></mrq>")
    event = one_event(vendor(scaip.decode, payload), Kind.PANIC)
    assert "sanitised_text" in event.flags
    assert not event.device_id.isascii()


def test_scaip_latin1_fallback_with_c1_bytes_is_sanitised():
    decoded = vendor(scaip.decode, b"<mrq><cid>4\xed\xa0\x802</cid><stc>10</stc></mrq>")
    assert [event.kind for event in decoded.events] == [Kind.PANIC]
    assert "sanitised_text" in decoded.events[0].flags


@pytest.mark.parametrize("codec", [iw.decode, watch.decode, scaip.decode])
@given(payload=st.binary(max_size=200))
@HYPOTHESIS
def test_text_codecs_only_ever_emit_clean_strings(codec, payload):
    vendor(codec, payload, device_id=IMEI)
