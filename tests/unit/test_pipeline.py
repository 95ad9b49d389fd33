import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from devices import Kind, RejectReason, TimePolicy
from ingest.envelope import Envelope
from ingest.pipeline import Pipeline, PipelineSettings

RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DEVICE_TIME = RECEIVED_AT - timedelta(minutes=1)
TS = "2025-06-01T11:59:00Z"
TOPIC = "carewatch/v1/gw-1/dev-1/json"


def envelope(payload, *, topic=TOPIC, dup=False) -> Envelope:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Envelope(
        topic=topic, payload=raw, packet_id=7, dup=dup, received_at=RECEIVED_AT, received_mono=0.0
    )


def process(payload, *, topic=TOPIC, dup=False, settings=None):
    pipeline = Pipeline(settings or PipelineSettings())
    return pipeline.process(envelope(payload, topic=topic, dup=dup))


def only_quarantine(rows):
    assert len(rows.quarantine) == 1
    return rows.quarantine[0]


# --- messages that never reach a codec ----------------------------------------------------


def test_bad_topic_is_quarantined_without_gateway_or_device():
    rows = process({"ts": TS, "kind": "panic"}, topic="carewatch/v1/gw/d+v/json")
    row = only_quarantine(rows)
    assert row[4] == "bad_topic"
    assert (row[6], row[7]) == (None, None)
    assert rows.reasons == [RejectReason.BAD_TOPIC]


def test_bad_topic_message_produces_no_readings_or_events():
    rows = process({"ts": TS, "kind": "panic"}, topic="carewatch/v1/gw/dev")
    assert (rows.readings, rows.events, rows.decoded) == ([], [], [])
    assert not rows.life_safety


def test_oversized_payload_is_quarantined_with_its_gateway_and_device():
    settings = PipelineSettings(max_payload_bytes=16)
    row = only_quarantine(process(b"x" * 17, settings=settings))
    assert row[4] == "payload_too_large"
    assert (row[6], row[7]) == ("gw-1", "dev-1")
    assert "17 bytes" in row[5]


def test_oversized_panic_is_not_decoded():
    payload = json.dumps({"ts": TS, "kind": "panic", "button": "x" * 40}).encode()
    rows = process(payload, settings=PipelineSettings(max_payload_bytes=len(payload) - 1))
    assert rows.events == []
    assert rows.reasons == [RejectReason.PAYLOAD_TOO_LARGE]


def test_payload_of_exactly_the_limit_is_decoded():
    payload = json.dumps({"ts": TS, "kind": "cancel"}).encode()
    rows = process(payload, settings=PipelineSettings(max_payload_bytes=len(payload)))
    assert rows.quarantine == []
    assert len(rows.events) == 1


def test_default_payload_limit_is_64_kib():
    assert process(b"x" * (64 * 1024 + 1)).reasons == [RejectReason.PAYLOAD_TOO_LARGE]


def test_payload_of_64_kib_reaches_the_codec():
    assert process(b"x" * (64 * 1024)).reasons == [RejectReason.MALFORMED_JSON]


def test_unsupported_channel_is_quarantined_with_its_gateway_and_device():
    row = only_quarantine(process(b"\x01\x02", topic="carewatch/v1/gw-1/dev-1/binary_v2"))
    assert row[4] == "unsupported_channel"
    assert (row[6], row[7]) == ("gw-1", "dev-1")
    assert "binary_v2" in row[5]


def test_outbound_alerts_topic_is_ignored_not_quarantined():
    rows = process({"ts": TS, "kind": "panic"}, topic="carewatch/v1/alerts/resident-7/panic")
    assert rows.ignored
    assert (rows.quarantine, rows.reasons, rows.events, rows.readings) == ([], [], [], [])


def test_garbage_on_the_alerts_topic_is_still_only_ignored():
    rows = process(b"\xff" * 100_000, topic="carewatch/v1/alerts/x")
    assert rows.ignored
    assert rows.quarantine == []


def test_device_message_is_not_marked_ignored():
    assert not process({"ts": TS, "kind": "cancel"}).ignored


def test_rows_carry_their_envelope_for_acknowledgement():
    env = envelope({"ts": TS, "kind": "cancel"})
    assert Pipeline(PipelineSettings()).process(env).envelope is env


# --- readings vs events -------------------------------------------------------------------


def test_heart_rate_becomes_a_reading_row():
    rows = process({"ts": TS, "kind": "heart_rate", "bpm": 72})
    assert rows.readings == [(DEVICE_TIME, "dev-1", "heart_rate_bpm", 72.0, RECEIVED_AT, "")]
    assert rows.events == []


def test_reading_row_carries_the_msg_id():
    rows = process({"ts": TS, "kind": "spo2", "pct": 97, "msg_id": "m-1"})
    assert rows.readings[0][5] == "m-1"


@pytest.mark.parametrize(
    ("body", "metric", "value"),
    [
        ({"kind": "heart_rate", "bpm": 61}, "heart_rate_bpm", 61.0),
        ({"kind": "spo2", "pct": 95.5}, "spo2_pct", 95.5),
        ({"kind": "body_temp", "celsius": 37.2}, "body_temp_c", 37.2),
        ({"kind": "battery", "pct": 12}, "battery_pct", 12.0),
    ],
)
def test_each_single_value_kind_is_stored_under_its_metric(body, metric, value):
    (row,) = process({"ts": TS, **body}).readings
    assert (row[2], row[3]) == (metric, value)


def test_reading_value_is_stored_as_float():
    (row,) = process({"ts": TS, "kind": "battery", "pct": 40}).readings
    assert type(row[3]) is float


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "cancel"},
        {"kind": "heartbeat", "battery_pct": 50},
        {"kind": "worn", "on": False},
        {"kind": "location", "lat": 1.5, "lon": 2.5},
        {"kind": "panic"},
        {"kind": "fall"},
    ],
    ids=str,
)
def test_non_reading_kinds_become_event_rows(body):
    rows = process({"ts": TS, **body})
    assert rows.readings == []
    assert [row[3] for row in rows.events] == [body["kind"]]


def test_event_row_has_the_documented_column_layout():
    rows = process({"ts": TS, "kind": "panic", "button": "bed", "msg_id": "p-1"})
    assert rows.events == [
        (
            DEVICE_TIME,
            "dev-1",
            "gw-1",
            "panic",
            '{"button":"bed"}',
            "p-1",
            "p-1",
            "device",
            None,
            [],
            RECEIVED_AT,
            False,
        )
    ]


def test_event_row_detail_is_the_fields_as_json():
    (row,) = process({"ts": TS, "kind": "location", "lat": 1.5, "lon": 2.5}).events
    assert json.loads(row[4]) == {"lat": 1.5, "lon": 2.5}


def test_event_row_without_msg_id_has_digest_key_and_null_msg_id():
    (row,) = process({"ts": TS, "kind": "cancel"}).events
    assert row[5].startswith("h:")
    assert row[6] is None


def test_salvaged_event_row_records_receive_time_source_device_time_and_sorted_flags():
    ahead = (RECEIVED_AT + timedelta(hours=1)).isoformat()
    (row,) = process({"ts": ahead, "kind": "panic", "button": 5}).events
    assert row[0] == RECEIVED_AT
    assert row[7] == "received"
    assert row[8] == RECEIVED_AT + timedelta(hours=1)
    assert row[9] == ["clock_skew", "invalid_fields"]


def test_decoded_events_are_kept_for_the_rule_engine():
    rows = process([{"ts": TS, "kind": "heart_rate", "bpm": 70}, {"ts": TS, "kind": "panic"}])
    assert [e.kind for e in rows.decoded] == [Kind.HEART_RATE, Kind.PANIC]


def test_nul_in_event_field_is_replaced_for_postgres():
    (row,) = process({"ts": TS, "kind": "panic", "button": "a\u0000b"}).events
    assert "\\u0000" not in row[4]
    assert json.loads(row[4]) == {"button": "a\ufffdb"}


def test_nul_in_msg_id_is_replaced_in_event_and_reading_rows():
    rows = process(
        [
            {"ts": TS, "kind": "panic", "msg_id": "p\u00001"},
            {"ts": TS, "kind": "heart_rate", "bpm": 70, "msg_id": "r\u00001"},
        ]
    )
    # The key keeps a digest of the raw msg_id: "p\u00001" and "p\u00011" stay two panics.
    assert rows.events[0][5].startswith("p\ufffd1~")
    assert rows.events[0][6] == "p\ufffd1"
    assert rows.readings[0][5] == "r\ufffd1"


# --- quarantine rows ----------------------------------------------------------------------


def test_quarantine_row_keeps_the_raw_payload_and_its_sha256():
    payload = b'{"ts": "' + TS.encode() + b'", "kind": "heart_rate", "bpm": "72"}'
    row = only_quarantine(process(payload))
    assert row[:4] == (RECEIVED_AT, TOPIC, payload, hashlib.sha256(payload).digest())


def test_quarantine_row_has_reason_detail_gateway_and_device():
    row = only_quarantine(process({"ts": TS, "kind": "heart_rate", "bpm": "72"}))
    assert row[4:8] == ("wrong_type", "bpm: Input should be a valid number", "gw-1", "dev-1")


def test_malformed_json_is_quarantined_as_malformed_json():
    assert process(b"{not json").reasons == [RejectReason.MALFORMED_JSON]


def test_partially_rejected_array_stores_good_items_and_one_quarantine_row():
    rows = process(
        [
            {"ts": TS, "kind": "heart_rate", "bpm": 70},
            {"ts": TS, "kind": "heart_rate", "bpm": -1},
            {"ts": TS, "kind": "cancel"},
        ]
    )
    assert len(rows.readings) == 1
    assert len(rows.events) == 1
    assert only_quarantine(rows)[4] == "out_of_range"


def test_message_with_several_rejections_gets_one_row_with_first_reason_and_all_details():
    rows = process(
        [
            {"ts": TS, "kind": "heart_rate", "bpm": "x"},
            {"ts": TS, "kind": "nope"},
        ]
    )
    row = only_quarantine(rows)
    assert row[4] == "wrong_type"
    assert row[5].startswith("item 0: ")
    assert "; item 1: " in row[5]
    assert rows.reasons == [RejectReason.WRONG_TYPE]


def test_nul_in_quarantine_detail_is_escaped():
    row = only_quarantine(process({"ts": TS, "kind": "bad\u0000kind"}))
    assert "\x00" not in row[5]


# --- duplicate delivery -------------------------------------------------------------------


def test_dup_flag_is_recorded_on_the_quarantine_row():
    assert only_quarantine(process(b"{", dup=True))[8] is True


def test_quarantine_row_of_first_delivery_is_not_marked_duplicate():
    assert only_quarantine(process(b"{", dup=False))[8] is False


def test_redelivered_receive_time_event_is_marked_for_duplicate_check():
    (row,) = process({"kind": "panic"}, dup=True).events
    assert row[7] == "received"
    assert row[11] is True


def test_redelivered_device_time_event_is_not_marked_for_duplicate_check():
    (row,) = process({"ts": TS, "kind": "panic"}, dup=True).events
    assert row[7] == "device"
    assert row[11] is False


def test_first_delivery_of_receive_time_event_is_not_marked_for_duplicate_check():
    (row,) = process({"kind": "panic"}, dup=False).events
    assert row[11] is False


# --- life safety --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["panic", "fall"])
def test_life_safety_event_marks_the_message_for_immediate_commit(kind):
    assert process({"ts": TS, "kind": kind}).life_safety


def test_salvaged_panic_marks_the_message_life_safety():
    assert process({"kind": "panic", "button": []}).life_safety


def test_panic_inside_an_array_marks_the_message_life_safety():
    rows = process([{"ts": TS, "kind": "heart_rate", "bpm": 70}, {"ts": TS, "kind": "fall"}])
    assert rows.life_safety


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "cancel"},
        {"kind": "heartbeat"},
        {"kind": "heart_rate", "bpm": 70},
        {"kind": "worn", "on": True},
    ],
    ids=str,
)
def test_other_kinds_do_not_mark_the_message_life_safety(body):
    assert not process({"ts": TS, **body}).life_safety


def test_rejected_message_is_not_life_safety():
    assert not process(b"[]").life_safety


def test_panic_with_timestamp_outside_the_calendar_is_stored_not_quarantined():
    rows = process({"ts": "0001-01-01T00:30:00+01:00", "kind": "panic"})
    assert rows.life_safety
    assert rows.quarantine == []


# --- a codec crash ------------------------------------------------------------------------


def _crash(*_args, **_kwargs):
    raise RuntimeError("codec bug")


def test_exception_inside_the_codec_becomes_internal_error(monkeypatch):
    monkeypatch.setattr("ingest.pipeline.codec_for", lambda _channel: _crash)
    rows = process({"ts": TS, "kind": "panic"})
    row = only_quarantine(rows)
    assert row[4:8] == ("internal_error", "RuntimeError", None, None)
    assert rows.reasons == [RejectReason.INTERNAL_ERROR]


def test_codec_crash_keeps_the_raw_payload_for_replay(monkeypatch):
    monkeypatch.setattr("ingest.pipeline.codec_for", lambda _channel: _crash)
    payload = b'{"kind": "panic"}'
    row = only_quarantine(process(payload, dup=True))
    assert (row[2], row[3], row[8]) == (payload, hashlib.sha256(payload).digest(), True)


def test_codec_crash_discards_partial_rows(monkeypatch):
    monkeypatch.setattr("ingest.pipeline.codec_for", lambda _channel: _crash)
    rows = process({"ts": TS, "kind": "panic"})
    assert (rows.readings, rows.events, rows.decoded, rows.life_safety) == ([], [], [], False)


def test_codec_crash_is_logged(monkeypatch, caplog):
    monkeypatch.setattr("ingest.pipeline.codec_for", lambda _channel: _crash)
    with caplog.at_level(logging.ERROR, logger="ingest.pipeline"):
        process({"ts": TS, "kind": "panic"})
    assert [r.event for r in caplog.records] == ["decode_crashed"]


def test_pipeline_passes_its_time_policy_to_the_codec():
    ahead = (RECEIVED_AT + timedelta(seconds=30)).isoformat()
    settings = PipelineSettings(time_policy=TimePolicy(max_future_skew_s=10))
    rows = process({"ts": ahead, "kind": "heart_rate", "bpm": 70}, settings=settings)
    assert rows.reasons == [RejectReason.CLOCK_SKEW]


# --- the device registry -------------------------------------------------------------------

from devices.registry import Device, Registry  # noqa: E402

REGISTRY = Registry([Device(device_id="dev-1", gateway_id="gw-1", profile="wearable")])


def process_registered(payload, *, topic=TOPIC):
    pipeline = Pipeline(PipelineSettings(), REGISTRY)
    return pipeline.process(envelope(payload, topic=topic))


def test_a_registered_device_under_its_own_gateway_is_accepted():
    rows = process_registered({"ts": TS, "kind": "heart_rate", "bpm": 72})
    assert (len(rows.readings), rows.quarantine, rows.unverified) == (1, [], [])
    assert rows.gateway_id == "gw-1"


def test_an_unknown_device_is_quarantined_with_its_raw_bytes_and_feeds_no_rule():
    rows = process_registered(
        {"ts": TS, "kind": "heart_rate", "bpm": 72}, topic="carewatch/v1/gw-1/dev-9/json"
    )
    row = only_quarantine(rows)
    assert (row[4], row[6], row[7]) == ("unknown_device", "gw-1", "dev-9")
    assert "unregistered dev-9" in row[5]
    assert row[2] == json.dumps({"ts": TS, "kind": "heart_rate", "bpm": 72}).encode()
    assert (rows.readings, rows.events, rows.decoded, rows.unverified) == ([], [], [], [])


def test_a_device_under_another_gateway_is_quarantined_as_a_mismatch():
    rows = process_registered({"ts": TS, "kind": "cancel"}, topic="carewatch/v1/gw-2/dev-1/json")
    row = only_quarantine(rows)
    assert row[4] == "gateway_mismatch"
    assert "registered under gw-1" in row[5]
    # A spoofed cancel must never reach the rules: it could hide a real fall.
    assert (rows.events, rows.decoded) == ([], [])


@pytest.mark.parametrize("kind", ["panic", "fall", "alarm"])
@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("carewatch/v1/gw-1/dev-9/json", "unknown_device"),
        ("carewatch/v1/gw-2/dev-1/json", "gateway_mismatch"),
    ],
)
def test_an_untrusted_emergency_is_stored_flagged_surfaced_and_the_message_quarantined(kind, topic, reason):
    rows = process_registered({"ts": TS, "kind": kind}, topic=topic)
    assert only_quarantine(rows)[4] == reason
    assert "kept for an operator" in rows.quarantine[0][5]
    assert len(rows.events) == 1
    assert rows.events[0][3] == kind
    assert reason in rows.events[0][9]  # flags
    assert rows.decoded == []  # not the elder's own alert...
    assert [(e.kind.value, r.value) for e, r in rows.unverified] == [(kind, reason)]  # ...but an operator's
    assert rows.life_safety


def test_a_frame_naming_another_gateways_device_is_judged_by_the_frames_device():
    # A watch frame carries its own id; the topic's device id does not vouch for it.
    frame = b"[3G*dev-1*0002*LK]"
    pipeline = Pipeline(PipelineSettings(), REGISTRY)
    rows = pipeline.process(envelope(frame, topic="carewatch/v1/gw-2/relay/watch"))
    assert only_quarantine(rows)[4] == "gateway_mismatch"
    rows = pipeline.process(envelope(frame, topic="carewatch/v1/gw-1/relay/watch"))
    assert (rows.quarantine, [e.device_id for e in rows.decoded]) == ([], ["dev-1"])


# --- sanitised text ---------------------------------------------------------------------------


def test_sanitised_panic_is_stored_fed_to_the_rules_and_its_raw_bytes_kept():
    payload = b'{"ts":"%s","kind":"panic","msg_id":"a\\u0000b","button":"\\u202e\\ud800"}' % TS.encode()
    rows = process(payload)
    (event,) = rows.events
    assert event[3] == "panic"
    assert json.loads(event[4]) == {"button": "\ufffd\ufffd"}
    assert event[6] == "a\ufffdb"
    assert "sanitised_text" in event[9]
    assert rows.life_safety
    assert [e.kind for e in rows.decoded] == [Kind.PANIC]
    row = only_quarantine(rows)
    assert (row[2], row[4]) == (payload, "sanitised_text")
    assert row[5] == "text sanitised, events stored: panic.msg_id, panic.button"
    assert rows.reasons == [RejectReason.SANITISED_TEXT]


def test_every_stored_string_encodes_to_utf8():
    payload = (
        b'[{"ts":"%s","kind":"panic","button":"\\udc00"},'
        b'{"ts":"%s","kind":"heart_rate","bpm":70,"msg_id":"\\ud800"}]'
    )
    rows = process(payload % (TS.encode(), TS.encode()))
    for row in [*rows.events, *rows.readings]:
        for value in row:
            if isinstance(value, str):
                value.encode("utf-8")
    assert len(rows.events) == 1
    assert len(rows.readings) == 1


def test_a_message_rejected_in_part_keeps_one_quarantine_row_naming_the_sanitised_text():
    rows = process(
        [{"ts": TS, "kind": "panic", "button": "a\u0007"}, {"ts": TS, "kind": "heart_rate", "bpm": 0}]
    )
    row = only_quarantine(rows)
    assert row[4] == "out_of_range"
    assert row[5].endswith("; text sanitised, events stored: panic.button")
    assert len(rows.events) == 1


def test_a_clean_message_has_no_quarantine_row():
    assert process({"ts": TS, "kind": "panic", "button": "pendant \u00e9"}).quarantine == []


def test_quarantine_details_are_clean_text():
    rows = process(b"{}", topic="carewatch/v1/gw-1/dev-1/nope\u202e")
    for row in rows.quarantine:
        assert "\u202e" not in row[5]
