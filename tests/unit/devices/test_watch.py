"""The "3G*" watch codec: golden fixtures plus framing, every frame type and every status bit."""

import json
import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, Rejection, RejectReason, TimePolicy, TimeSource, watch
from devices.canonical import decode_canonical
from tests.unit.devices.helpers import (
    HYPOTHESIS,
    as_bytes,
    clean,
    decoder,
    kinds,
    load_cases,
    of_kind,
    reasons,
)

CASES = load_cases("watch")
RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FRAME_TIME = datetime(2025, 6, 1, 11, 59, 30, tzinfo=UTC)
DEVICE = "8800000015"

# A real frame with an SSID holding brackets and a leading-space longitude, 9-digit id
# (traccar/traccar: src/test/java/org/traccar/protocol/WatchFrameDecoderTest.java, hex decoded).
SSID_BRACKETS = (
    "[3G*880900242*013D*UD,120623,140020,A,48.949273,N, 4.3783060,E,18.56,43.8,0.0,12,100,76,226120,0,"
    "00000000,2,255,204,8,3110,55025,146,3130,49297,124,5,BangingWifi,34:a1:ed:e1:91:4f,-71,BAR WiFi,"
    "36:a2:e1:ed:a1:de,-72,NetworkWifi,26:de:a1:ed:e1:a0,-73,Fiber,36:a1:ed:e1:91:4f,-75,"
    "[LG_Wall-Mount A/C]e725,66:a1:ed:e1:e7:25,-82,15.0]"
)
# Real ZJ frames (index before LEN), same Traccar test files.
ZJ_AL = (
    "[ZJ*014111001332708*0075*0064*AL,040418,052156,A,22.536207,N,113.938673,E,0,0,0,5,100,82,1000,50,"
    "00100000,1,255,460,0,9340,3663,35]"
)
ZJ_LK = "[ZJ*014111001350304*0034*0009*LK,0,0,19]"
ZJ_BLOOD = "[ZJ*357653059860416*0007*000c*BLOOD,109,68]"
# Voice frame: binary AMR with all five 0x7D escapes (}, [, ], comma, star) and a raw 0xFF.
VOICE = b"[CS*1234567890*000e*TK,#!AMR}\x01}\x02}\x03}\x04}\x05\xff]"
STREAM_4 = next(case["raw"] for case in CASES if case["id"] == "watch-stream-4frames")


def frame(content: str, *, maker: str = "3G", device: str = DEVICE, index: str | None = None) -> str:
    length = f"{len(content.encode()):04X}"
    middle = f"{index}*{length}" if index is not None else length
    return f"[{maker}*{device}*{middle}*{content}]"


def position(
    kind: str = "UD",
    *,
    date: str = "010625",
    time: str = "115930",
    validity: str = "A",
    lat: str = "22.570733",
    ns: str = "N",
    lon: str = "113.8626083",
    ew: str = "E",
    battery: str = "60",
    steps: str = "0",
    status: str = "00000000",
    tail: str = "0,0,40.7",
    **frame_options: str,
) -> str:
    fields = [kind, date, time, validity, lat, ns, lon, ew, "0.00", "249.5", "0.0", "6", "100"]
    fields += [battery, steps, "0", status]
    content = ",".join(fields) + (f",{tail}" if tail else "")
    return frame(content, **frame_options)


decode = decoder(watch.decode, as_bytes, received_at=RECEIVED_AT)


# --- golden fixtures ---------------------------------------------------------------------------

KIND_OF = {
    "panic": Kind.PANIC,
    "fall": Kind.FALL,
    "removed": Kind.WORN,
    "alarm": Kind.ALARM,
    "heart_rate": Kind.HEART_RATE,
    "blood_pressure": Kind.BLOOD_PRESSURE,
    "spo2": Kind.SPO2,
    "temperature": Kind.BODY_TEMP,
    "steps": Kind.STEPS,
    "battery": Kind.BATTERY,
    "heartbeat": Kind.HEARTBEAT,
}


def reading_fields(kind: Kind, value) -> dict:
    if kind is Kind.BLOOD_PRESSURE:
        return {"systolic": value["systolic"], "diastolic": value["diastolic"]}
    name = {Kind.HEART_RATE: "bpm", Kind.SPO2: "pct", Kind.BODY_TEMP: "celsius", Kind.BATTERY: "pct"}
    if kind is Kind.STEPS:
        return {"count": value}
    return {name[kind]: value}


def expected_events(expect: dict, received_at: datetime) -> list[tuple]:
    """What the codec must emit for one expectation (or one sub-event of a ``multiple``)."""
    when = datetime.fromisoformat(expect["time"]) if expect.get("time") else received_at
    label = expect["kind"]
    secondary = expect.get("secondary", [])
    out: list[tuple] = []
    if label in {"none", "location"}:
        pass
    elif label == "heartbeat":
        battery = [item["value"] for item in secondary if item["kind"] == "battery"]
        out.append((Kind.HEARTBEAT, {"battery_pct": battery[0]} if battery else {}, when))
        secondary = [item for item in secondary if item["kind"] != "battery"]
    elif label == "panic":
        out.append((Kind.PANIC, {}, when))
    elif label == "fall":
        out.append((Kind.FALL, {"stage": "alarm"}, when))
    elif label == "removed":
        out.append((Kind.WORN, {"on": False}, when))
    elif label == "alarm":
        out.append((Kind.ALARM, {"label": expect["alarm"]}, when))
    else:
        kind = KIND_OF[label]
        out.append((kind, reading_fields(kind, expect["value"]), when))
    location = expect.get("location")
    # A V (no fix) position is the last known one: emitted with gps_valid false, except 0/0 (no fix ever).
    if location and (location["lat"], location["lon"]) != (0.0, 0.0):
        fields = {"lat": location["lat"], "lon": location["lon"]}
        if not location["gps_valid"]:
            fields["gps_valid"] = False
        out.append((Kind.LOCATION, fields, when))
    for item in secondary:
        kind = KIND_OF[item["kind"]]
        out.append((kind, reading_fields(kind, item["value"]), when))
    return out


def comparable(kind: Kind, fields, when: datetime) -> tuple:
    rounded = {
        key: round(value, 7) if isinstance(value, float) else value for key, value in sorted(fields.items())
    }
    return (kind.value, json.dumps(rounded, sort_keys=True), when.isoformat())


NETWORK_KEYS = frozenset({"position_source", "cells", "wifi"})


def without_network(fields) -> dict:
    return {key: value for key, value in fields.items() if key not in NETWORK_KEYS}


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    parts = expect.get("events") or [expect]
    times = [part["time"] for part in [expect, *parts] if part.get("time")]
    # Life-safety frames older than 24 h are refiled under receive time: receive them 5 s after.
    received_at = datetime.fromisoformat(times[0]) + timedelta(seconds=5) if times else RECEIVED_AT
    decoded = decode(case["raw"], received_at=received_at)
    assert decoded.rejections == []
    assert {event.device_id for event in decoded.events} <= {expect["device_id"]}
    expected = [item for part in parts for item in expected_events(part, received_at)]
    # The network position of a frame without a fix is pinned by its own tests below.
    gps = [(event, without_network(event.fields)) for event in decoded.events]
    actual = [
        comparable(event.kind, fields, event.observed_at)
        for event, fields in gps
        if fields or event.kind is not Kind.LOCATION
    ]
    assert sorted(actual) == sorted(comparable(*item) for item in expected)
    for event in decoded.events:
        source = TimeSource.RECEIVED if event.observed_at == received_at else TimeSource.DEVICE
        assert event.time_source is source
        assert event.flags == frozenset()


def test_fixture_ids_are_the_shared_watch_cases():
    assert all(case["id"].startswith("watch-") for case in CASES)
    assert len({case["id"] for case in CASES}) == len(CASES) == 18


@pytest.mark.parametrize(
    "case_id", ["watch-ud2-southern-negative-sign", "watch-wt-type", "watch-al-general-sg-2"]
)
def test_no_fix_positions_are_emitted_as_last_known_and_marked_not_valid(case_id):
    raw = next(case["raw"] for case in CASES if case["id"] == case_id)
    decoded = decode(raw)
    assert of_kind(decoded, Kind.LOCATION).fields["gps_valid"] is False
    assert Kind.BATTERY in kinds(decoded)


@pytest.mark.parametrize(
    ("case_id", "cells", "wifi"),
    [
        (
            "watch-alcustomer-removed-lowbatt",
            "460,01,42308,101992452,100",
            (
                "44:56:e2:03:ea:2a,-69;30:0d:9e:bb:fa:4d,-70;88:c3:97:c1:f4:7f,-73;e8:84:c6:21:7c:dc,-77;"
                "30:45:96:10:14:5d,-79"
            ),
        ),
        (
            "watch-ud2-southern-negative-sign",
            "730,2,29731,54315,167;730,2,29731,54316,162;730,2,29731,54317,145",
            None,
        ),
        (
            "watch-wt-type",
            "404,22,10125,8301,141;404,22,10125,13921,122",
            (
                "28:c6:8e:be:87:c0,-60;4c:60:de:32:3d:38,-70;40:e3:d6:4a:d9:c2,-73;40:e3:d6:4a:d9:c4,-73;"
                "40:e3:d6:4a:d9:c3,-73"
            ),
        ),
    ],
)
def test_no_fix_positions_keep_the_towers_and_access_points_heard(case_id, cells, wifi):
    raw = next(case["raw"] for case in CASES if case["id"] == case_id)
    location = of_kind(decode(raw), Kind.LOCATION)
    assert location.fields["position_source"] == "network"
    assert location.fields["cells"] == cells
    assert location.fields.get("wifi") == wifi
    assert not any(ssid in raw and ssid in str(location.fields) for ssid in ("shizhou1", "FART3", "ChinaNet"))


def test_a_fix_does_not_carry_network_data():
    decoded = decode(SSID_BRACKETS)
    assert NETWORK_KEYS.isdisjoint(of_kind(decoded, Kind.LOCATION).fields)


def test_sos_without_a_fix_is_a_panic_with_the_network_position():
    raw = frame(
        "AL,251120,081821,V,0.0,N,0.0,E,2.58,317.462,35.147,14,100,2,0,0,00010000,1,1,460,01,42308,101992452,100,"
        "1,home,44:56:e2:03:ea:2a,-69,1.2"
    )
    decoded = decode(raw, received_at=datetime(2020, 11, 25, 8, 18, 30, tzinfo=UTC))
    assert kinds(decoded)[0] is Kind.PANIC
    assert of_kind(decoded, Kind.LOCATION).fields == {
        "position_source": "network",
        "cells": "460,01,42308,101992452,100",
        "wifi": "44:56:e2:03:ea:2a,-69",
    }


def test_uncertain_general_alarm_is_kept_as_an_alarm():
    """watch-al-general-sg-2 is marked uncertain: an AL frame with status 0 is still an alarm."""
    raw = next(case["raw"] for case in CASES if case["id"] == "watch-al-general-sg-2")
    event = of_kind(decode(raw, received_at=datetime(2017, 1, 12, 14, 56, 7, tzinfo=UTC)), Kind.ALARM)
    assert event.fields == {"label": "general"}
    assert event.observed_at == datetime(2017, 1, 12, 14, 56, 2, tzinfo=UTC)


# --- framing -----------------------------------------------------------------------------------


def test_ssid_with_brackets_does_not_end_the_frame():
    decoded = decode(SSID_BRACKETS + frame("LK", device="880900242"))
    assert kinds(clean(decoded)) == [Kind.LOCATION, Kind.BATTERY, Kind.STEPS, Kind.HEARTBEAT]
    location = of_kind(decoded, Kind.LOCATION)
    assert location.device_id == "880900242"
    assert location.fields == {"lat": 48.949273, "lon": 4.378306}
    assert of_kind(decoded, Kind.STEPS).fields == {"count": 226120}


@pytest.mark.parametrize("ssid", ["lone]bracket", "lone[bracket", "]", "[", "a]b[c]d", "x]]"])
def test_unbalanced_brackets_in_an_ssid(ssid):
    raw = position(tail=f"0,1,{ssid},aa:bb:cc:dd:ee:ff,-60,12.0")
    for payload in (raw, raw + frame("LK,0,0,90"), frame("LK") + raw + frame("TKQ")):
        decoded = decode(payload)
        assert decoded.rejections == []
        assert of_kind(decoded, Kind.LOCATION).fields == {"lat": 22.570733, "lon": 113.8626083}


def test_frames_may_be_separated_by_line_breaks():
    decoded = decode(f"  {frame('LK')}\r\n{frame('heart,70')}\n")
    assert kinds(clean(decoded)) == [Kind.HEARTBEAT, Kind.HEART_RATE]


@pytest.mark.parametrize("length", ["0000", "FFFF", "00ff", "1", "0002"])
def test_a_wrong_length_is_tolerated(length):
    decoded = decode(f"[3G*{DEVICE}*{length}*LK,10,0,77]")
    assert clean(decoded).events[0].fields == {"battery_pct": 77}


def test_zj_frames_carry_an_index_before_the_length():
    alarm = decode(ZJ_AL, received_at=datetime(2018, 4, 4, 5, 22, tzinfo=UTC))
    assert kinds(clean(alarm)) == [Kind.WORN, Kind.LOCATION, Kind.BATTERY, Kind.STEPS]
    assert {event.device_id for event in alarm.events} == {"014111001332708"}
    assert of_kind(alarm, Kind.STEPS).fields == {"count": 1000}
    assert clean(decode(ZJ_LK)).events[0].fields == {"battery_pct": 19}
    assert clean(decode(ZJ_BLOOD)).events[0].fields == {"systolic": 109, "diastolic": 68}


def test_index_is_recognised_by_shape_for_any_maker():
    decoded = decode(frame("heart,66", maker="SG", index="00a1"))
    assert of_kind(decoded, Kind.HEART_RATE).fields == {"bpm": 66}


def test_escaped_binary_voice_is_skipped_and_does_not_break_framing():
    decoded = decode(VOICE + frame("LK,0,0,40").encode() + VOICE)
    assert kinds(clean(decoded)) == [Kind.HEARTBEAT]


def test_voice_chunks_back_to_back():
    chunk = b"[ZJ*789468050042692*0034*0010*JXTK,0,watch_7,1,6,#!AMR\n\x0c}\x04\x00}\x05}\x02\xfe]"
    assert decode(chunk * 3) == Decoded([], [])


@pytest.mark.parametrize(
    "content",
    ["TKQ", "TKQ2", "CONFIG,TY:g_w,UL:60", "img,2706250912,\xff", "TK,1", "rcapture", "INIT"],
)
def test_non_telemetry_types_yield_nothing_and_are_not_quarantined(content):
    assert decode(frame(content).encode("latin-1")) == Decoded([], [])


@pytest.mark.parametrize(
    ("content", "named"),
    [("FOO,1,2", "FOO"), ("010625,1", "that is not a plain word"), ("X\u00e9Y", "that is not a plain word")],
)
def test_unknown_types_are_quarantined_naming_only_a_plain_type(content, named):
    assert decode(frame(content).encode("latin-1")) == Decoded(
        [], [Rejection(RejectReason.UNSUPPORTED_FRAME, f"frame 1: watch frame type {named} is not supported")]
    )


@pytest.mark.parametrize(
    "raw",
    [
        "[LK]",
        "[LK,0,0,100]",
        f"[3G*{DEVICE}*LK]",
        f"[3G*{DEVICE}*00G2*LK]",
        f"[3g*{DEVICE}*0002*LK]",
        f"[3G*{DEVICE}*0002*LK",
        f"[3G*{DEVICE}*0002*]",
        "LK,0,0,100",
        "[]",
        "]",
    ],
)
def test_malformed_structure_is_rejected(raw):
    decoded = decode(raw)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


@pytest.mark.parametrize("raw", [b"", b"  \r\n"])
def test_empty_payload_has_no_frame(raw):
    decoded = decode(raw)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.NO_EVENTS]


def test_a_cut_frame_followed_by_a_whole_one():
    decoded = decode(f"[3G*{DEVICE}*0009*LK,0,0{frame('LK,0,0,88')}")
    assert [event.fields for event in decoded.events] == [{"battery_pct": 88}]
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]
    assert "unterminated" in decoded.rejections[0].detail


def test_garbage_around_frames_is_rejected_but_frames_survive():
    decoded = decode(f"xx{frame('LK')}yy[zz{frame('heart,70')}tail")
    assert kinds(decoded) == [Kind.HEARTBEAT, Kind.HEART_RATE]
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME] * 3


def test_stream_split_at_a_frame_boundary_decodes_like_the_whole():
    whole = decode(STREAM_4, received_at=RECEIVED_AT)
    cut = STREAM_4.index("][") + 1
    first, second = decode(STREAM_4[:cut]), decode(STREAM_4[cut:])
    assert first.rejections == second.rejections == whole.rejections == []
    pieces = [(event.kind, dict(event.fields)) for event in first.events + second.events]
    assert pieces == [(event.kind, dict(event.fields)) for event in whole.events]
    assert kinds(whole) == [Kind.HEARTBEAT, Kind.LOCATION, Kind.BATTERY, Kind.HEARTBEAT]


def test_stream_split_inside_a_frame_rejects_both_halves_only():
    cut = STREAM_4.index("36.815109")
    first, second = decode(STREAM_4[:cut]), decode(STREAM_4[cut:])
    assert kinds(first) == [Kind.HEARTBEAT]
    assert reasons(first) == [RejectReason.MALFORMED_FRAME]
    assert kinds(second) == [Kind.HEARTBEAT]  # the trailing LK; TKQ yields nothing
    assert reasons(second) == [RejectReason.MALFORMED_FRAME]


# --- identity ----------------------------------------------------------------------------------


def test_the_frame_id_beats_the_session_id():
    decoded = decode(frame("LK", device="1234567890"), device_id="topic-id")
    assert decoded.events[0].device_id == "1234567890"


def test_an_empty_frame_id_falls_back_to_the_session():
    decoded = decode("[3G**0002*LK]", device_id="topic-id")
    assert decoded.events[0].device_id == "topic-id"


def test_no_identity_at_all_is_rejected():
    decoded = decode("[3G**0002*LK]")
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]
    assert "no device identity" in decoded.rejections[0].detail


# --- position frames ---------------------------------------------------------------------------


def test_live_position_yields_location_battery_and_steps_at_device_time():
    decoded = decode(position(steps="1234"))
    assert kinds(clean(decoded)) == [Kind.LOCATION, Kind.BATTERY, Kind.STEPS]
    assert {event.observed_at for event in decoded.events} == {FRAME_TIME}
    assert {event.time_source for event in decoded.events} == {TimeSource.DEVICE}
    assert of_kind(decoded, Kind.BATTERY).fields == {"pct": 60}


@pytest.mark.parametrize(
    "kind", ["UD", "UD2", "UD3", "UD_LTE", "UD_WCDMA", "WT", "ud", "AL", "AL_LTE", "ALCUSTOMER1"]
)
def test_every_position_type_shares_the_layout(kind):
    decoded = decode(position(kind))
    assert of_kind(decoded, Kind.LOCATION).fields == {"lat": 22.570733, "lon": 113.8626083}
    assert (Kind.ALARM in kinds(decoded)) is kind.upper().startswith("AL")


@pytest.mark.parametrize(
    ("lat", "ns", "lon", "ew", "expected"),
    [
        ("33.5", "S", "70.25", "W", (-33.5, -70.25)),
        ("-33.480366", "N", "-70.7630692", "E", (-33.480366, -70.7630692)),
        ("38.000000", "N", "-9.000000", "W", (38.0, -9.0)),
        ("-12.5", "S", "9.5", "w", (-12.5, -9.5)),
        ("16.479064", "S", "68.119072", "", (-16.479064, 68.119072)),
        ("52.745450", "N", "0.369512", "", (52.74545, 0.369512)),
        (" 48.779045", "N", " 9.1574736", "E", (48.779045, 9.1574736)),
        ("41.46500", "N", "081.53128", "W", (41.465, -81.53128)),
        ("+10.5", "N", "+20.5", "E", (10.5, 20.5)),
    ],
)
def test_coordinates_only_s_and_w_make_negative(lat, ns, lon, ew, expected):
    event = of_kind(decode(position(lat=lat, ns=ns, lon=lon, ew=ew)), Kind.LOCATION)
    assert (event.fields["lat"], event.fields["lon"]) == pytest.approx(expected)


@pytest.mark.parametrize(("lat", "lon"), [("0.0", "0.0"), ("00.000000", "000.000000"), ("-0.0", "0")])
def test_a_fix_at_zero_zero_is_not_a_location(lat, lon):
    decoded = decode(position(lat=lat, lon=lon))
    assert kinds(clean(decoded)) == [Kind.BATTERY]


@pytest.mark.parametrize("validity", ["V", "v", "", "X"])
def test_without_a_fix_the_last_known_position_is_marked_not_valid(validity):
    decoded = decode(position(validity=validity))
    assert sorted(kinds(clean(decoded))) == sorted([Kind.LOCATION, Kind.BATTERY])
    assert of_kind(decoded, Kind.LOCATION).fields["gps_valid"] is False


def test_lowercase_a_is_a_fix():
    assert Kind.LOCATION in kinds(decode(position(validity="a")))


@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [
        ("95.0", "10.0", RejectReason.OUT_OF_RANGE),
        ("10.0", "-181.0", RejectReason.OUT_OF_RANGE),
        ("ten", "10.0", RejectReason.WRONG_TYPE),
        ("nan", "10.0", RejectReason.WRONG_TYPE),
        ("1e5", "10.0", RejectReason.WRONG_TYPE),
        ("", "10.0", RejectReason.MISSING_FIELD),
    ],
)
def test_a_bad_coordinate_rejects_the_location_only(lat, lon, reason):
    decoded = decode(position(lat=lat, lon=lon))
    assert kinds(decoded) == [Kind.BATTERY]
    assert reasons(decoded) == [reason]


def test_the_trailing_cell_and_wifi_lists_do_not_matter():
    for tail in ["", "0,0", "0,1,,,,00", "7,255,460,1,9529,21809,158,0,40.7", "junk,,[,],x"]:
        assert kinds(clean(decode(position(tail=tail)))) == [Kind.LOCATION, Kind.BATTERY]


# Status word: every alarm bit is its own event; state bits (0-15) make none.
#: Fence-out (18) and abnormal heart rate (22): alarms the watch raised, reported with a label.
LABELLED_ALARM_BITS = 1 << 18 | 1 << 22

STATUS_CASES = [
    ("00000000", set()),
    ("00010000", {Kind.PANIC}),
    ("00200000", {Kind.FALL}),
    ("00100000", {Kind.WORN}),
    ("00020000", set()),  # low-battery alarm: the battery reading says it
    ("00040000", set()),  # fence out alarm: a labelled alarm on AL frames only
    ("00080000", set()),  # fence in alarm: no canonical kind
    ("00400000", set()),  # abnormal heart rate (vendor) / fall (Traccar): a labelled alarm on AL frames
    ("00310000", {Kind.PANIC, Kind.FALL, Kind.WORN}),
    ("00200010", {Kind.FALL}),
    ("0000FFFF", set()),  # every state bit, including bit 14 (power cut)
    ("00004000", set()),
    ("0000", set()),  # 4-digit word: states only
    ("0001", set()),
    ("10", set()),
    ("00ff0000", {Kind.PANIC, Kind.FALL, Kind.WORN}),
]


@pytest.mark.parametrize(("status", "alarms"), STATUS_CASES)
def test_status_bits_of_a_live_position(status, alarms):
    decoded = decode(position(status=status))
    assert set(kinds(clean(decoded))) == alarms | {Kind.LOCATION, Kind.BATTERY}


@pytest.mark.parametrize(("status", "alarms"), STATUS_CASES)
def test_status_bits_of_an_alarm_frame(status, alarms):
    decoded = decode(position("AL", status=status))
    documented = int(status, 16) & 0x007F0000
    general = set() if documented else {Kind.ALARM}
    labelled = {Kind.ALARM} if int(status, 16) & LABELLED_ALARM_BITS else set()
    assert set(kinds(clean(decoded))) == alarms | general | labelled | {Kind.LOCATION, Kind.BATTERY}
    if general:
        assert of_kind(decoded, Kind.ALARM).fields == {"label": "general"}


@pytest.mark.parametrize("status", ["80000000", "01000000", "00800000"])
def test_undocumented_alarm_bits_on_an_al_frame_are_a_general_alarm(status):
    decoded = decode(position("AL", status=status))
    assert of_kind(decoded, Kind.ALARM).fields == {"label": "general"}


def test_alarm_events_come_first_and_carry_their_fields():
    decoded = decode(position("AL", status="00310000", steps="12"))
    assert kinds(clean(decoded)) == [
        Kind.PANIC,
        Kind.FALL,
        Kind.WORN,
        Kind.LOCATION,
        Kind.BATTERY,
        Kind.STEPS,
    ]
    assert of_kind(decoded, Kind.PANIC).fields == {}
    assert of_kind(decoded, Kind.FALL).fields == {"stage": "alarm"}
    assert of_kind(decoded, Kind.WORN).fields == {"on": False}
    assert all(event.observed_at == FRAME_TIME for event in decoded.events)


def test_unreadable_status_on_an_alarm_frame_is_still_an_alarm():
    decoded = decode(position("AL", status="zz"))
    alarm = of_kind(decoded, Kind.ALARM)
    assert alarm.fields == {"label": "general"}
    assert alarm.flags == {"invalid_fields"}
    assert Kind.LOCATION in kinds(decoded)
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


def test_unreadable_status_on_a_live_position_keeps_the_readings():
    decoded = decode(position(status="123456789"))
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


def test_truncated_alarm_frame_is_still_an_alarm_at_its_time():
    decoded = decode(frame("AL,010625,115930,A,22.5,N"))
    alarm = of_kind(decoded, Kind.ALARM)
    assert (alarm.fields, alarm.observed_at, alarm.flags) == (
        {"label": "general"},
        FRAME_TIME,
        {"invalid_fields"},
    )
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


def test_bare_alarm_frame_is_an_alarm_under_receive_time():
    decoded = decode(frame("AL"))
    alarm = of_kind(decoded, Kind.ALARM)
    assert alarm.observed_at == RECEIVED_AT
    assert alarm.time_source is TimeSource.RECEIVED
    assert alarm.flags == {"invalid_fields", "bad_timestamp"}


# --- AL frames cut short or garbled (issue 11: a garbled alarm still alerts) ------------------

SOS_AL = position("AL_LTE", status="00010000", validity="V")


def unterminated(text: str) -> str:
    assert text.endswith("]")
    return text[:-1]


def test_al_frame_cut_in_half_is_an_alarm_of_unknown_cause():
    decoded = decode(SOS_AL[: SOS_AL.index("115930,") + len("115930,")])
    (alarm,) = decoded.events
    assert (alarm.kind, dict(alarm.fields), alarm.device_id) == (Kind.ALARM, {"label": "general"}, DEVICE)
    assert alarm.observed_at == FRAME_TIME
    assert "malformed_frame" in alarm.flags
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


@pytest.mark.parametrize(("status", "kind"), [("00010000", Kind.PANIC), ("00200000", Kind.FALL)])
def test_al_frame_without_its_bracket_raises_what_its_status_word_says(status, kind):
    decoded = decode(unterminated(position("AL_LTE", status=status)))
    assert [(event.kind, event.flags >= {"malformed_frame"}) for event in decoded.events] == [(kind, True)]
    assert decoded.events[0].observed_at == FRAME_TIME
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_al_frame_cut_inside_its_status_word_is_an_alarm_not_a_guess():
    # "0001" of "00010000" would read as state bits: the last, maybe cut, value is not believed.
    decoded = decode(position("AL", status="00210000", tail="")[: -len("0000]")])
    assert [(event.kind, dict(event.fields)) for event in decoded.events] == [
        (Kind.ALARM, {"label": "general"})
    ]


def test_al_frame_cut_by_the_next_frame_still_alarms_and_the_next_one_decodes():
    decoded = decode(unterminated(position("AL", status="00010000")) + frame("LK,0,0,88"))
    assert kinds(decoded) == [Kind.PANIC, Kind.HEARTBEAT]
    assert "malformed_frame" in decoded.events[0].flags
    assert "malformed_frame" not in decoded.events[1].flags
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


@pytest.mark.parametrize("content", ["UD,010625,115930,A,22.5,N", "LK,0,0,88", "heart,72", "XAL,010625"])
def test_a_cut_frame_that_is_no_alarm_raises_nothing(content):
    decoded = decode(unterminated(frame(content)))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_a_cut_al_frame_without_any_identity_is_only_rejected():
    decoded = decode(unterminated(position("AL", status="00010000", device="")), device_id=None)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


@pytest.mark.parametrize("garbage", [b"\x00", b"\x00\x01", b"\xff", b" \x00"])
def test_non_printable_bytes_before_the_type_do_not_hide_an_alarm(garbage):
    raw = SOS_AL.encode().replace(b"*AL_LTE,", b"*" + garbage + b"AL_LTE,")
    decoded = decode(raw)
    panic = of_kind(decoded, Kind.PANIC)
    assert "malformed_frame" in panic.flags
    assert panic.observed_at == FRAME_TIME
    assert RejectReason.MALFORMED_FRAME in reasons(decoded)


def test_non_printable_bytes_inside_a_type_are_not_guessed_away():
    decoded = decode(frame("L\x00K,0,0,88"))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.UNSUPPORTED_FRAME]


def test_truncated_live_position_is_rejected():
    decoded = decode(frame("UD,010625,115930,A,22.5,N,113.8,E,0,0,0,6,100,60"))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


@pytest.mark.parametrize(
    ("battery", "steps", "expected", "rejected"),
    [
        ("60", "0", [Kind.BATTERY], []),
        ("0", "5", [Kind.BATTERY, Kind.STEPS], []),
        ("100", "", [Kind.BATTERY], []),
        ("", "7", [Kind.STEPS], []),
        ("101", "7", [Kind.STEPS], [RejectReason.OUT_OF_RANGE]),
        ("-1", "7", [Kind.STEPS], [RejectReason.OUT_OF_RANGE]),
        ("x", "7", [Kind.STEPS], [RejectReason.WRONG_TYPE]),
        ("50", "1.5", [Kind.BATTERY], [RejectReason.WRONG_TYPE]),
        ("50", "-3", [Kind.BATTERY], [RejectReason.OUT_OF_RANGE]),
        ("50", "9" * 30, [Kind.BATTERY], [RejectReason.WRONG_TYPE]),
    ],
)
def test_battery_and_steps(battery, steps, expected, rejected):
    decoded = decode(position(validity="V", lat="0", lon="0", battery=battery, steps=steps))
    assert kinds(decoded) == expected
    assert reasons(decoded) == rejected


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "time"), [("000000", "000000"), ("320125", "101010"), ("010625", "25"), ("", "")]
)
def test_unusable_time_keeps_alarms_and_rejects_readings(date, time):
    decoded = decode(position("AL", date=date, time=time, status="00010000", steps="3"))
    panic = of_kind(decoded, Kind.PANIC)
    assert panic.observed_at == RECEIVED_AT
    assert panic.device_time is None
    assert panic.flags == {"bad_timestamp"}
    assert kinds(decoded) == [Kind.PANIC]
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]  # one per frame, not one per reading


def test_unusable_time_on_a_live_position_yields_only_a_rejection():
    decoded = decode(position(date="000000"))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]


def test_buffered_position_keeps_its_old_time():
    decoded = decode(position("UD2", date="280525"))
    assert {event.observed_at for event in clean(decoded).events} == {FRAME_TIME - timedelta(days=4)}


def test_old_buffered_sos_is_filed_now_with_its_device_time():
    decoded = decode(position("UD2", date="280525", status="00010000"))
    panic = of_kind(decoded, Kind.PANIC)
    assert panic.observed_at == RECEIVED_AT
    assert panic.device_time == FRAME_TIME - timedelta(days=4)
    assert panic.flags == {"clock_skew"}
    assert of_kind(decoded, Kind.LOCATION).observed_at == FRAME_TIME - timedelta(days=4)


def test_future_time_rejects_readings_but_keeps_the_fall():
    decoded = decode(position("AL", date="020625", status="00200000"))
    assert kinds(decoded) == [Kind.FALL]
    assert of_kind(decoded, Kind.FALL).flags == {"clock_skew"}
    assert reasons(decoded) == [RejectReason.CLOCK_SKEW]


def test_unset_clock_rejects_readings():
    policy = TimePolicy(earliest=datetime(2010, 1, 1, tzinfo=UTC))
    context = DecodeContext(received_at=RECEIVED_AT, policy=policy)
    decoded = watch.decode(position(date="010100").encode(), context)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]


# --- keep-alive --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fields", "steps"),
    [
        ("LK", {}, None),
        ("lk", {}, None),
        ("LK,", {}, None),
        ("LK,0,100", {}, None),  # two values: ambiguous, no battery
        ("LK,50,100,100", {"battery_pct": 100}, 50),
        ("LK,0,0,53", {"battery_pct": 53}, None),
        ("LK,7,0,0", {"battery_pct": 0}, 7),
        ("LK,0,0,,", {}, None),
        ("LK,1,2,3,4,5", {"battery_pct": 3}, 1),
    ],
)
def test_keep_alive(content, fields, steps):
    decoded = decode(frame(content))
    heartbeat = clean(decoded).events[0]
    assert (heartbeat.kind, heartbeat.fields) == (Kind.HEARTBEAT, fields)
    assert heartbeat.observed_at == RECEIVED_AT
    assert heartbeat.time_source is TimeSource.RECEIVED
    assert heartbeat.flags == frozenset()
    if steps is None:
        assert len(decoded.events) == 1
    else:
        assert of_kind(decoded, Kind.STEPS).fields == {"count": steps}


@pytest.mark.parametrize(
    ("content", "reason"), [("LK,0,0,101", RejectReason.OUT_OF_RANGE), ("LK,0,0,x", RejectReason.WRONG_TYPE)]
)
def test_keep_alive_with_a_bad_battery_is_still_a_heartbeat(content, reason):
    decoded = decode(frame(content))
    assert [(event.kind, event.fields) for event in decoded.events] == [(Kind.HEARTBEAT, {})]
    assert reasons(decoded) == [reason]


# --- health frames -----------------------------------------------------------------------------


NO_READING = "): frame holds no valid reading"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("heart,71", [(Kind.HEART_RATE, {"bpm": 71})]),
        ("HEART,72", [(Kind.HEART_RATE, {"bpm": 72})]),
        ("PULSE,72", [(Kind.HEART_RATE, {"bpm": 72})]),
        ("pulse, 072", [(Kind.HEART_RATE, {"bpm": 72})]),
        ("Heart,300", [(Kind.HEART_RATE, {"bpm": 300})]),
        ("heart,0", []),
        ("heart,", []),
        (
            "bphrt,112,73,67,,,,",
            [(Kind.BLOOD_PRESSURE, {"systolic": 112, "diastolic": 73}), (Kind.HEART_RATE, {"bpm": 67})],
        ),
        (
            "BPHRT,120,79,73,170,1,60,70",
            [(Kind.BLOOD_PRESSURE, {"systolic": 120, "diastolic": 79}), (Kind.HEART_RATE, {"bpm": 73})],
        ),
        ("bphrt,0,0,67", [(Kind.HEART_RATE, {"bpm": 67})]),
        ("bphrt,120,0,67", [(Kind.HEART_RATE, {"bpm": 67})]),
        ("bphrt,120,79,0", [(Kind.BLOOD_PRESSURE, {"systolic": 120, "diastolic": 79})]),
        ("bphrt,120,79", [(Kind.BLOOD_PRESSURE, {"systolic": 120, "diastolic": 79})]),
        ("bphrt,0,0,0,,,,", []),
        ("BLOOD,109,68", [(Kind.BLOOD_PRESSURE, {"systolic": 109, "diastolic": 68})]),
        ("blood,109,68,70", [(Kind.BLOOD_PRESSURE, {"systolic": 109, "diastolic": 68})]),
        ("oxygen,0,97", [(Kind.SPO2, {"pct": 97})]),
        ("OXYGEN,1,98.5", [(Kind.SPO2, {"pct": 98.5})]),
        ("oxygen,0,0", []),
        ("btemp2,1,35.29", [(Kind.BODY_TEMP, {"celsius": 35.29})]),
        ("btemp2,0,36.6", [(Kind.BODY_TEMP, {"celsius": 36.6})]),  # mode 0 = forehead, not "invalid"
        ("btemp2,1,0", []),  # low measuring error
        ("btemp2,0,1", []),  # high measuring error
        ("btemp2,1,1.0", []),
        ("TEMP,36.8", [(Kind.BODY_TEMP, {"celsius": 36.8})]),
        ("temp,0", []),
    ],
)
def test_health_frames_are_filed_under_receive_time(content, expected):
    decoded = decode(frame(content))
    if not expected:  # "no valid reading": said as no_events, never silent
        assert decoded.events == []
        assert [(r.reason, r.detail.endswith(NO_READING)) for r in decoded.rejections] == [
            (RejectReason.NO_EVENTS, True)
        ]
        return
    assert [(event.kind, dict(event.fields)) for event in clean(decoded).events] == expected
    for event in decoded.events:
        assert event.observed_at == RECEIVED_AT
        assert event.time_source is TimeSource.RECEIVED
        assert event.device_time is None
        assert event.flags == frozenset()
        assert event.device_id == DEVICE


@pytest.mark.parametrize(
    ("content", "expected", "reason"),
    [
        ("heart,987", [], RejectReason.OUT_OF_RANGE),
        ("heart,-5", [], RejectReason.OUT_OF_RANGE),
        ("heart,abc", [], RejectReason.WRONG_TYPE),
        ("heart,inf", [], RejectReason.WRONG_TYPE),
        ("heart," + "9" * 400, [], RejectReason.WRONG_TYPE),
        ("heart", [], RejectReason.MISSING_FIELD),
        ("PULSE", [], RejectReason.MISSING_FIELD),
        ("bphrt,400,79,61", [Kind.HEART_RATE], RejectReason.OUT_OF_RANGE),
        ("bphrt,120,79,999", [Kind.BLOOD_PRESSURE], RejectReason.OUT_OF_RANGE),
        ("bphrt,120", [], RejectReason.MISSING_FIELD),
        ("BLOOD,109", [], RejectReason.MISSING_FIELD),
        ("oxygen,97", [], RejectReason.MISSING_FIELD),
        ("oxygen,0,101", [], RejectReason.OUT_OF_RANGE),
        ("btemp2,1", [], RejectReason.MISSING_FIELD),
        ("btemp2,1,50.5", [], RejectReason.OUT_OF_RANGE),
        ("btemp2,1,12.5", [], RejectReason.OUT_OF_RANGE),
        ("TEMP,hot", [], RejectReason.WRONG_TYPE),
    ],
)
def test_bad_health_values_are_rejected_without_leaking_them(content, expected, reason):
    decoded = decode(frame(content))
    assert kinds(decoded) == expected
    assert reasons(decoded) == [reason]
    detail = decoded.rejections[0].detail
    value = content.partition(",")[2]
    assert not any(part and part in detail.removeprefix("frame 1") for part in value.split(","))


# --- identity of events ------------------------------------------------------------------------


def test_event_keys_are_stable_and_distinct_per_frame():
    twice = decode(frame("LK") + frame("LK"))
    keys = [event.event_key for event in twice.events]
    assert len(set(keys)) == 2
    assert [event.event_key for event in decode(frame("LK") + frame("LK")).events] == keys


def test_a_retransmitted_alarm_has_the_same_key_alone_or_in_a_stream():
    alarm = position("AL", status="00010000")
    alone = of_kind(decode(alarm), Kind.PANIC)
    in_stream = of_kind(decode(frame("LK,0,0,80") + alarm), Kind.PANIC)
    assert alone.event_key == in_stream.event_key
    assert alone.event_key.startswith("h:")


def test_events_of_one_frame_have_distinct_keys():
    decoded = decode(position("AL", status="00310000"))
    life = [event.event_key for event in decoded.events if event.kind in {Kind.PANIC, Kind.FALL, Kind.WORN}]
    assert len(set(life)) == 3


# --- robustness --------------------------------------------------------------------------------


def test_an_unexpected_failure_becomes_a_rejection(monkeypatch):
    def explode(_payload):
        raise RuntimeError("boom")

    monkeypatch.setattr(watch, "_split", explode)
    decoded = decode(frame("LK"))
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


def test_a_failing_frame_does_not_lose_the_others(monkeypatch):
    def explode(_frame, _values, _type_name):
        raise RuntimeError("boom")

    monkeypatch.setitem(watch._HANDLERS, "HEART", explode)
    decoded = decode(frame("heart,70") + frame("LK"))
    assert kinds(decoded) == [Kind.HEARTBEAT]
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


DETAIL = re.compile(
    r"frame \d+( \([a-z ]+\))?: [A-Za-z ,:_\[\]*]+"
    r"|no watch frame in payload"
    r"|watch payload could not be decoded"
)


def assert_sound(decoded: Decoded) -> None:
    """Every event passes the canonical schema; every rejection detail is ours, not the payload's."""
    assert isinstance(decoded, Decoded)
    for event in decoded.events:
        item = {"ts": event.observed_at.isoformat(), "kind": event.kind.value, **event.fields}
        check = decode_canonical(
            json.dumps(item).encode(), device_id="d", received_at=event.observed_at, policy=TimePolicy()
        )
        assert check.rejections == [], (item, check.rejections)
        for value in event.fields.values():
            assert not isinstance(value, float) or math.isfinite(value)
    for rejection in decoded.rejections:
        assert DETAIL.fullmatch(rejection.detail), rejection.detail


@HYPOTHESIS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(payload):
    assert_sound(watch.decode(payload, DecodeContext(received_at=RECEIVED_AT)))


TOKENS = st.sampled_from(
    [
        "UD", "UD2", "AL", "WT", "LK", "heart", "PULSE", "bphrt", "BLOOD", "oxygen", "btemp2", "TEMP", "TK",
        "010625", "115930", "000000", "A", "V", "N", "S", "E", "W", "", " ", "0", "1", "-1", "72", "101",
        "22.5", "-33.4", "181.0", "00010000", "00310000", "ffffffff", "0001", "[", "]", "*", "}\x03", "}",
        "nan", "1e9", "99999999999999999999999", "\x00", "\xff", "é",
    ]
)  # fmt: skip


@st.composite
def frames(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        content = ",".join(draw(st.lists(TOKENS, min_size=1, max_size=24)))
        maker = draw(st.sampled_from(["3G", "SG", "CS", "ZJ"]))
        index = draw(st.sampled_from([None, "0001"]))
        parts.append(frame(content, maker=maker, index=index))
    joined = "".join(parts).encode("utf-8")
    cut = draw(st.integers(0, len(joined)))
    return joined[:cut] if draw(st.booleans()) else joined


@HYPOTHESIS
@given(frames())
def test_frame_shaped_garbage_never_raises(payload):
    assert_sound(watch.decode(payload, DecodeContext(received_at=RECEIVED_AT)))


@HYPOTHESIS
@given(st.integers(0, 0xFFFFFFFF))
def test_every_status_word_is_decoded_as_a_set(status):
    decoded = decode(position("AL", status=f"{status:08X}"))
    assert_sound(decoded)
    got = set(kinds(clean(decoded)))
    assert (Kind.PANIC in got) is bool(status & 1 << 16)
    assert (Kind.FALL in got) is bool(status & 1 << 21)
    assert (Kind.WORN in got) is bool(status & 1 << 20)
    assert (Kind.ALARM in got) is (not status & 0x007F0000 or bool(status & LABELLED_ALARM_BITS))


@pytest.mark.parametrize(
    ("status", "label"), [("00040000", "geofence_exit"), ("00400000", "abnormal_heart_rate")]
)
def test_alarm_frame_with_only_a_condition_bit_is_still_an_alarm_the_centre_hears_of(status, label):
    decoded = decode(position("AL", status=status))
    assert of_kind(decoded, Kind.ALARM).fields == {"label": label}
