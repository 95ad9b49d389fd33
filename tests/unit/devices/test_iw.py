"""The IW (IWAPxx...#) watch codec: golden fixtures plus every frame type and alarm code."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Event, Kind, Rejection, RejectReason, TimeSource, iw
from tests.unit.devices.helpers import (
    HYPOTHESIS,
    VALUE_FIELD,
    as_bytes,
    canonical_kind,
    decoder,
    kinds,
    load_cases,
    of_kind,
    reasons,
)

CASES = load_cases("iw")
IMEI = "353456789012345"
RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# A position block for 2025-06-01 11:59:30 UTC: 22°32.9806'N 114°04.9355'E, battery 80 %.
BLOCK = "250601A2232.9806N11404.9355E000.1115930323.8706000908000502"
CELLS = ",460,0,9520,3671"
BLOCK_TIME = datetime(2025, 6, 1, 11, 59, 30, tzinfo=UTC)
LAT = 22 + 32.9806 / 60
LON = 114 + 4.9355 / 60

decode = decoder(iw.decode, as_bytes, device_id=IMEI, received_at=RECEIVED_AT)


def matches_value(event: Event, expected: object) -> bool:
    if event.kind is Kind.BLOOD_PRESSURE:
        assert isinstance(expected, dict)
        return event.fields == {"systolic": expected["systolic"], "diastolic": expected["diastolic"]}
    value = event.fields[VALUE_FIELD[event.kind]]
    assert isinstance(value, int | float)
    assert isinstance(expected, int | float)
    return math.isclose(value, expected)


# --- golden fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    received_at = RECEIVED_AT
    if expect["time"] is not None:
        received_at = datetime.fromisoformat(expect["time"]) + timedelta(seconds=5)
    device_id = expect["device_id"] or IMEI
    # Non-login frames name no device: the gateway's session supplies it.
    context_id = None if expect["device_id"] else IMEI
    decoded = decode(case["raw"], device_id=context_id, received_at=received_at)

    assert decoded.rejections == []
    assert decoded.events
    assert all(event.device_id == device_id for event in decoded.events)
    for event in decoded.events:
        if expect["time"] is None:
            assert event.observed_at == received_at
            assert event.time_source is TimeSource.RECEIVED
        else:
            assert event.observed_at == datetime.fromisoformat(expect["time"])
            assert event.time_source is TimeSource.DEVICE

    kind = canonical_kind(expect["kind"])
    primary = of_kind(decoded, kind)
    if "value" in expect:
        assert matches_value(primary, expect["value"])
    if expect.get("alarm") is None:
        assert not any(event.is_life_safety for event in decoded.events)
    location = expect.get("location")
    if location is not None and location["gps_valid"]:
        fix = of_kind(decoded, Kind.LOCATION)
        assert fix.fields["lat"] == pytest.approx(location["lat"], abs=1e-6)
        assert fix.fields["lon"] == pytest.approx(location["lon"], abs=1e-6)
    for secondary in expect.get("secondary", []):
        event = of_kind(decoded, canonical_kind(secondary["kind"]))
        assert matches_value(event, secondary["value"])


# --- login and identity ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["IWAP00353456789012345", "IWAP00353456789012345#", "iwap00353456789012345#\r\n"]
)
def test_login_is_online_for_its_imei(raw):
    decoded = decode(raw, device_id=None)
    assert decoded.rejections == []
    (event,) = decoded.events
    assert event.kind is Kind.ONLINE
    assert event.device_id == IMEI
    assert event.fields == {}
    assert event.observed_at == RECEIVED_AT


def test_login_imei_beats_the_topic_id():
    decoded = decode("IWAP00353456789012345#", device_id="864000000000001")
    assert [event.device_id for event in decoded.events] == [IMEI]


def test_frames_after_a_login_belong_to_that_session():
    decoded = decode("IWAP00353456789012345#IWAP49,68#", device_id=None)
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.ONLINE, Kind.HEART_RATE]
    assert {event.device_id for event in decoded.events} == {IMEI}


def test_login_without_imei_is_rejected():
    decoded = decode("IWAP00#", device_id=None)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


def test_login_with_an_unusable_imei_is_rejected():
    decoded = decode("IWAP00353456/78901#", device_id=None)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


@pytest.mark.parametrize(
    "raw",
    ["IWAP49,68", f"IWAP01{BLOCK}{CELLS}", f"IWAP10{BLOCK}{CELLS},01,zh-cn,00", "IWAP03,06000908000102,1,0"],
)
def test_frames_without_identity_are_rejected(raw):
    decoded = decode(raw, device_id=None)
    assert decoded.events == []
    assert [(r.reason, r.detail) for r in decoded.rejections] == [
        (RejectReason.MISSING_FIELD, "no device identity")
    ]


def test_frames_that_carry_no_event_need_no_identity():
    decoded = decode("IWBP49#", device_id=None)
    assert decoded.events == []
    assert [(r.reason, r.detail) for r in decoded.rejections] == [
        (RejectReason.UNSUPPORTED_FRAME, "IWBP49 is a server reply, not telemetry")
    ]


# --- AP01 / AP10 positions ---------------------------------------------------------------------


def test_ap01_position_yields_location_and_battery():
    decoded = decode(f"IWAP01{BLOCK}{CELLS},Home|74-DE-2B-44-88-8C|97#")
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    location, battery = decoded.events
    assert location.fields["lat"] == pytest.approx(LAT, abs=1e-7)
    assert location.fields["lon"] == pytest.approx(LON, abs=1e-7)
    assert set(location.fields) == {"lat", "lon"}
    assert location.observed_at == BLOCK_TIME
    assert battery.fields == {"pct": 80}
    assert battery.observed_at == BLOCK_TIME


def test_ap01_without_fix_keeps_its_network_position():
    decoded = decode(
        f"IWAP01{BLOCK.replace('A', 'V', 1)}{CELLS},Home|74-DE-2B-44-88-8C|97&Work|0C-4C-39-1A-7C-65|69"
    )
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    assert decoded.events[0].fields == {
        "position_source": "network",
        "cells": "460,0,9520,3671,",
        "wifi": "74:de:2b:44:88:8c,97;0c:4c:39:1a:7c:65,69",
    }
    assert decoded.events[0].observed_at == BLOCK_TIME


def test_ap01_without_fix_or_network_yields_no_location():
    decoded = decode(f"IWAP01{BLOCK.replace('A', 'V', 1)},0,0,0,0")
    assert kinds(decoded) == [Kind.BATTERY]


@pytest.mark.parametrize(
    ("north", "east", "lat_sign", "lon_sign"),
    [("N", "E", 1, 1), ("S", "E", -1, 1), ("N", "W", 1, -1), ("S", "W", -1, -1), ("s", "w", -1, -1)],
)
def test_hemispheres_sign_the_coordinates(north, east, lat_sign, lon_sign):
    block = BLOCK.replace("N", north).replace("E", east)
    location = of_kind(decode(f"IWAP01{block}{CELLS}"), Kind.LOCATION)
    assert location.fields["lat"] == pytest.approx(lat_sign * LAT, abs=1e-7)
    assert location.fields["lon"] == pytest.approx(lon_sign * LON, abs=1e-7)


def test_fix_at_zero_zero_is_no_location():
    block = "250601A0000.0000N00000.0000E000.0115930000.0006000908000502"
    decoded = decode(f"IWAP01{block}{CELLS}")
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    assert "lat" not in decoded.events[0].fields
    assert decoded.events[0].fields["position_source"] == "network"


def test_minutes_over_sixty_are_out_of_range():
    block = BLOCK.replace("2232.9806", "2272.9806")
    decoded = decode(f"IWAP01{block}{CELLS}")
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    assert decoded.events[0].fields["position_source"] == "network"
    assert reasons(decoded) == [RejectReason.OUT_OF_RANGE]


def test_battery_over_hundred_is_out_of_range_and_zero_is_unknown():
    over = decode(f"IWAP01{BLOCK.replace('060009080', '060009180')}{CELLS}")
    assert kinds(over) == [Kind.LOCATION]
    assert reasons(over) == [RejectReason.OUT_OF_RANGE]
    unknown = decode(f"IWAP01{BLOCK.replace('060009080', '060009000')}{CELLS}")
    assert kinds(unknown) == [Kind.LOCATION]
    assert unknown.rejections == []


def test_impossible_date_rejects_the_readings():
    decoded = decode(f"IWAP01{BLOCK.replace('250601', '251301')}{CELLS}")
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]


def test_unset_clock_rejects_readings():
    decoded = decode(f"IWAP01{BLOCK.replace('250601', '000000', 1)}{CELLS}")
    assert decoded.events == []
    assert RejectReason.BAD_TIMESTAMP in reasons(decoded)


def test_malformed_block_is_a_malformed_frame():
    decoded = decode("IWAP01250601A2232.98N11404.9355E" + CELLS)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_trv_prefix_uses_the_same_layout():
    raw = "TRVAP01250601A2544.5118N05553.7586E105.711185941.52010001010010000,424,030,3011,27003"
    decoded = decode(raw, received_at=datetime(2025, 6, 1, 11, 19, tzinfo=UTC))
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]
    assert of_kind(decoded, Kind.BATTERY).fields == {"pct": 100}


def test_buffered_position_in_the_future_is_clock_skew():
    decoded = decode(f"IWAP01{BLOCK}{CELLS}", received_at=BLOCK_TIME - timedelta(hours=1))
    assert decoded.events == []
    assert set(reasons(decoded)) == {RejectReason.CLOCK_SKEW}


# --- AP10 alarm codes --------------------------------------------------------------------------


def ap10(code: str, block: str = BLOCK) -> str:
    return f"IWAP10{block}{CELLS},{code},zh-cn,00,HOME|74-DE-2B-44-88-8C|97#"


def test_ap10_code_00_is_no_alarm():
    decoded = decode(ap10("00"))
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.LOCATION, Kind.BATTERY]


@pytest.mark.parametrize("code", ["01", "1"])
def test_ap10_code_01_is_panic_with_position(code):
    decoded = decode(ap10(code))
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    panic = decoded.events[0]
    assert panic.fields == {}
    assert panic.observed_at == BLOCK_TIME
    assert panic.time_source is TimeSource.DEVICE


def test_ap10_lone_zero_may_be_a_cut_sos_and_still_alarms():
    decoded = decode(f"IWAP10{BLOCK}{CELLS},0")
    assert kinds(decoded)[0] is Kind.ALARM
    assert decoded.events[0].fields == {"label": "iw unknown"}
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


@pytest.mark.parametrize("code", ["05", "06"])
def test_ap10_codes_05_and_06_are_falls(code):
    fall = of_kind(decode(ap10(code)), Kind.FALL)
    assert fall.fields == {"stage": "alarm"}
    assert fall.observed_at == BLOCK_TIME


@pytest.mark.parametrize("code", ["02", "03", "04", "07", "99"])
def test_other_ap10_codes_are_labelled_alarms(code):
    decoded = decode(ap10(code))
    alarm = of_kind(decoded, Kind.ALARM)
    assert alarm.fields == {"label": f"iw {code}"}
    assert not any(event.kind in {Kind.PANIC, Kind.FALL} for event in decoded.events)


def test_ap10_without_fix_still_alarms_at_device_time_with_its_network_position():
    decoded = decode(ap10("01", BLOCK.replace("A", "V", 1)))
    assert kinds(decoded) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    assert decoded.events[0].observed_at == BLOCK_TIME
    network = decoded.events[1].fields
    assert (network["position_source"], network["cells"]) == ("network", "460,0,9520,3671,")
    assert "lat" not in network


def test_ap10_with_unreadable_code_still_raises_an_alarm():
    decoded = decode(f"IWAP10{BLOCK}{CELLS}")
    assert kinds(decoded) == [Kind.ALARM, Kind.LOCATION, Kind.BATTERY]
    assert decoded.events[0].fields == {"label": "iw unknown"}
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


# --- AP10 whose comma fields shifted (issue 11: a garbled alarm still alerts) -----------------

SHIFTED_CELLS = {
    "one garbled field for MCC,MNC": ",\\u00009520,3671",
    "an escape byte for MCC,MNC": ",\x1b,9520,3671",
    "a swallowed comma": ",4600,9520,3671",
    "an added comma": ",4,60,0,9520,3671",
    "an extra garbled field": ",460,0,9520,3671,?",
}


def shifted_ap10(cells: str, code: str = "01", language: str = "zh-cn", prefix: str = "IW") -> str:
    return f"{prefix}AP10{BLOCK}{cells},{code},{language},00,HOME|74-DE-2B-44-88-8C|97#"


@pytest.mark.parametrize("cells", SHIFTED_CELLS.values(), ids=SHIFTED_CELLS.keys())
@pytest.mark.parametrize("language", ["zh-cn", "zhcn", "en"])
def test_ap10_with_shifted_fields_still_finds_its_sos(cells, language):
    decoded = decode(shifted_ap10(cells, language=language))
    panic = of_kind(decoded, Kind.PANIC)
    assert panic.observed_at == BLOCK_TIME
    assert "malformed_frame" in panic.flags
    assert RejectReason.MALFORMED_FRAME in reasons(decoded)
    assert not any(event.kind is Kind.ALARM for event in decoded.events)


@pytest.mark.parametrize("prefix", ["IW", "TRV"])
def test_the_mutation_that_read_the_reply_flag_as_no_alarm(prefix):
    # "460,0" replaced by one garbled field: the code position then holds the "00" after the language.
    decoded = decode(shifted_ap10(",\\u00009520,3671", prefix=prefix))
    assert [event.kind for event in decoded.events if event.is_life_safety] == [Kind.PANIC]


@pytest.mark.parametrize("code", ["05", "06"])
def test_ap10_with_shifted_fields_finds_a_fall(code):
    fall = of_kind(decode(shifted_ap10(",4600,9520,3671", code=code)), Kind.FALL)
    assert "malformed_frame" in fall.flags


def test_ap10_with_shifted_fields_and_no_code_to_find_is_an_unknown_alarm():
    decoded = decode(f"IWAP10{BLOCK},\x1b,9520,3671,x1,??,00#")
    alarm = of_kind(decoded, Kind.ALARM)
    assert alarm.fields == {"label": "iw unknown"}
    assert alarm.flags >= {"malformed_frame", "invalid_fields"}
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_ap10_with_shifted_fields_and_an_explicit_00_is_no_alarm_but_kept():
    decoded = decode(shifted_ap10(",4600,9520,3671", code="00"))
    assert not any(event.is_life_safety for event in decoded.events)
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_ap10_with_a_non_numeric_code_in_place_is_an_unknown_alarm_flagged():
    decoded = decode(ap10("x1"))
    alarm = of_kind(decoded, Kind.ALARM)
    assert alarm.fields == {"label": "iw unknown"}
    assert "invalid_fields" in alarm.flags


def test_trv_ap10_with_shifted_fields_still_finds_its_sos():
    decoded = decode(shifted_ap10(",4600,9520,3671", prefix="TRV"))
    assert "malformed_frame" in of_kind(decoded, Kind.PANIC).flags


def test_ap01_with_shifted_fields_raises_no_alarm():
    decoded = decode(f"IWAP01{BLOCK},4600,9520,3671,01,zh-cn,00#")
    assert not any(event.is_life_safety for event in decoded.events)


def test_ap10_with_damaged_block_keeps_the_alarm_under_receive_time():
    decoded = decode(f"IWAP10250601A22XX.9806N{CELLS},01,zh-cn,00#")
    (panic,) = decoded.events
    assert panic.kind is Kind.PANIC
    assert panic.observed_at == RECEIVED_AT
    assert panic.time_source is TimeSource.RECEIVED
    assert "bad_timestamp" in panic.flags
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_ap10_with_impossible_date_keeps_the_alarm_flagged():
    decoded = decode(ap10("01", BLOCK.replace("250601", "250632")))
    (panic,) = decoded.events
    assert panic.kind is Kind.PANIC
    assert panic.time_source is TimeSource.RECEIVED
    assert "bad_timestamp" in panic.flags
    assert reasons(decoded) == [RejectReason.BAD_TIMESTAMP]


def test_old_sos_is_filed_now_with_its_device_time_kept():
    decoded = decode(ap10("01"), received_at=BLOCK_TIME + timedelta(days=3))
    panic = of_kind(decoded, Kind.PANIC)
    assert panic.observed_at == BLOCK_TIME + timedelta(days=3)
    assert panic.device_time == BLOCK_TIME
    assert "clock_skew" in panic.flags


# --- health and keep-alive frames --------------------------------------------------------------


def test_ap49_heart_rate():
    (event,) = decode("IWAP49,68#").events
    assert event.kind is Kind.HEART_RATE
    assert event.fields == {"bpm": 68}
    assert event.observed_at == RECEIVED_AT
    assert event.time_source is TimeSource.RECEIVED
    assert event.flags == frozenset()


@pytest.mark.parametrize("raw", ["IWAP49,0", "IWAP49,", "IWAP49"])
def test_ap49_without_a_reading_is_said_not_silent(raw):
    assert decode(raw) == Decoded([], [Rejection(RejectReason.NO_EVENTS, "AP49 holds no valid reading")])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("IWAP49,400", RejectReason.OUT_OF_RANGE),
        ("IWAP49,-5", RejectReason.OUT_OF_RANGE),
        ("IWAP49,abc", RejectReason.WRONG_TYPE),
        ("IWAP49,nan", RejectReason.NON_FINITE_NUMBER),
    ],
)
def test_ap49_bad_values_are_rejected_without_leaking_them(raw, reason):
    decoded = decode(raw)
    assert decoded.events == []
    assert reasons(decoded) == [reason]
    value = raw.split(",")[1]
    assert value not in decoded.rejections[0].detail


def test_apht_is_heart_rate_then_systolic_then_diastolic():
    decoded = decode("IWAPHT,60,130,85#")
    assert kinds(decoded) == [Kind.HEART_RATE, Kind.BLOOD_PRESSURE]
    assert decoded.events[0].fields == {"bpm": 60}
    assert decoded.events[1].fields == {"systolic": 130, "diastolic": 85}


def test_apht_with_zero_pressure_keeps_the_heart_rate():
    decoded = decode("IWAPHT,60,0,0")
    assert kinds(decoded) == [Kind.HEART_RATE]
    assert decoded.rejections == []


def test_aphp_full_health_panel():
    decoded = decode("IWAPHP,60,130,85,95,90,36.5,,,,,,,#")
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.HEART_RATE, Kind.BLOOD_PRESSURE, Kind.SPO2, Kind.BODY_TEMP]
    assert [event.fields for event in decoded.events] == [
        {"bpm": 60},
        {"systolic": 130, "diastolic": 85},
        {"pct": 95},
        {"celsius": 36.5},
    ]
    assert all(event.observed_at == RECEIVED_AT for event in decoded.events)


def test_aphp_skips_zero_readings():
    decoded = decode("IWAPHP,0,0,0,97,0,0")
    assert kinds(decoded) == [Kind.SPO2]
    assert decoded.rejections == []


def test_aphp_rejects_implausible_values_one_by_one():
    decoded = decode("IWAPHP,72,130,85,120,90,52.0")
    assert kinds(decoded) == [Kind.HEART_RATE, Kind.BLOOD_PRESSURE]
    assert reasons(decoded) == [RejectReason.OUT_OF_RANGE, RejectReason.OUT_OF_RANGE]


def test_ap50_temperature_and_battery():
    decoded = decode("IWAP50,36.7,90#")
    assert kinds(decoded) == [Kind.BODY_TEMP, Kind.BATTERY]
    assert decoded.events[0].fields == {"celsius": 36.7}
    assert decoded.events[1].fields == {"pct": 90}


def test_ap50_zero_temperature_is_no_reading():
    decoded = decode("IWAP50,0,90")
    assert kinds(decoded) == [Kind.BATTERY]
    assert decoded.rejections == []


def test_ap03_keepalive_is_heartbeat_and_steps():
    decoded = decode("IWAP03,06000908000102,5555,30#")
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.HEARTBEAT, Kind.STEPS]
    assert decoded.events[0].fields == {"battery_pct": 80}
    assert decoded.events[1].fields == {"count": 5555}
    assert all(event.observed_at == RECEIVED_AT for event in decoded.events)


def test_ap03_without_steps_is_a_bare_heartbeat():
    decoded = decode("IWAP03,06000908000102")
    assert kinds(decoded) == [Kind.HEARTBEAT]


def test_ap03_with_broken_block_is_still_a_heartbeat():
    decoded = decode("IWAP03,06x,12,0")
    assert kinds(decoded) == [Kind.HEARTBEAT, Kind.STEPS]
    assert decoded.events[0].fields == {}
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_ap03_with_non_numeric_steps():
    decoded = decode("IWAP03,06000908000102,12a,0")
    assert kinds(decoded) == [Kind.HEARTBEAT]
    assert reasons(decoded) == [RejectReason.WRONG_TYPE]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("IWAP12,080835,+491773329827,+491773329826", "IW frame type IWAP12 is not supported"),
        ("IWAPXL,080835", "IW frame type IWAPXL is not supported"),
        ("TRVYP99,1#", "IW frame type TRVYP99 is not supported"),
        ("IWBP00,20250601120000,0#", "IWBP00 is a server reply, not telemetry"),
        ("TRVZP14#", "TRVZP14 is a server reply, not telemetry"),
    ],
)
def test_frames_not_understood_are_quarantined_naming_only_their_type(raw, detail):
    assert decode(raw) == Decoded([], [Rejection(RejectReason.UNSUPPORTED_FRAME, detail)])


@pytest.mark.parametrize("raw", ["IWAP07,20250601,1,1,1,AMR", "TRVAP07,20250601,1,1,1,AMR#"])
def test_voice_is_not_telemetry_and_is_not_quarantined(raw):
    assert decode(raw) == Decoded([], [])


# --- framing -----------------------------------------------------------------------------------


def test_several_frames_in_one_read_keep_their_order():
    raw = f"IWAP03,06000908000102,10,0#IWAP49,70#{ap10('01')}IWAP50,36.6,80#"
    decoded = decode(raw)
    assert decoded.rejections == []
    assert kinds(decoded) == [
        Kind.HEARTBEAT,
        Kind.STEPS,
        Kind.HEART_RATE,
        Kind.PANIC,
        Kind.LOCATION,
        Kind.BATTERY,
        Kind.BODY_TEMP,
        Kind.BATTERY,
    ]


def test_captured_frames_split_by_line_breaks():
    decoded = decode("IWAP49,70\r\nIWAP49,71\n")
    assert [event.fields["bpm"] for event in decoded.events] == [70, 71]


def test_rejections_in_a_multi_frame_read_name_the_frame():
    decoded = decode("IWAP49,70#IWAP49,999#")
    assert kinds(decoded) == [Kind.HEART_RATE]
    assert decoded.rejections[0].detail.startswith("frame 1: ")


@pytest.mark.parametrize("raw", [b"", b"#", b" # \r\n#"])
def test_empty_payload_is_invalid(raw):
    decoded = decode(raw)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


@pytest.mark.parametrize("raw", ["hello", "[3G*1234567890*0002*LK]", "IW", "IWAP"])
def test_non_iw_text_is_a_malformed_frame(raw):
    decoded = decode(raw)
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MALFORMED_FRAME]


def test_a_frame_split_across_two_reads_is_rejected_not_misread():
    whole = ap10("00")
    first, second = decode(whole[:20]), decode(whole[20:])
    assert not any(event.kind is Kind.LOCATION for event in first.events + second.events)
    assert RejectReason.MALFORMED_FRAME in reasons(first)
    assert reasons(second) == [RejectReason.MALFORMED_FRAME]
    assert second.events == []


def test_split_after_the_alarm_code_keeps_the_sos():
    whole = ap10("01")
    cut = whole.index(",zh-cn")
    assert kinds(decode(whole[:cut])) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    assert decode(whole[cut:]).events == []


def test_non_utf8_bytes_do_not_break_decoding():
    decoded = decode(b"IWAP49,72#IWAP02,\xff\xfe#")
    assert kinds(decoded) == [Kind.HEART_RATE]


# --- identity of events ------------------------------------------------------------------------


def test_event_keys_are_stable_and_distinct():
    raw = f"{ap10('01')}IWAPHT,60,130,85#IWAPHT,60,130,85#"
    first, again = decode(raw), decode(raw)
    assert [event.event_key for event in first.events] == [event.event_key for event in again.events]
    keyed = [event.event_key for event in first.events if event.event_key]
    assert len(keyed) == len(set(keyed))


def test_timeless_frames_at_different_times_get_different_keys():
    first = decode("IWAPHT,60,130,85")
    later = decode("IWAPHT,60,130,85", received_at=RECEIVED_AT + timedelta(minutes=5))
    assert of_kind(first, Kind.BLOOD_PRESSURE).event_key != of_kind(later, Kind.BLOOD_PRESSURE).event_key


# --- never raises ------------------------------------------------------------------------------


def test_unexpected_failure_becomes_a_rejection(monkeypatch):
    def explode(payload, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(iw, "_decode", explode)
    decoded = decode("IWAP49,70")
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.INVALID_STRUCTURE]


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_garbage_bytes_never_raise(payload):
    decoded = iw.decode(payload, DecodeContext(received_at=RECEIVED_AT, device_id=IMEI))
    assert isinstance(decoded, Decoded)


FRAME_TEXT = st.text(alphabet="0123456789.,#AVNSEWIPHTapxX-|&\r\n ", max_size=120)


@HYPOTHESIS
@given(
    st.sampled_from(["IWAP01", "IWAP10", "IWAP03", "IWAP49", "IWAPHT", "IWAPHP", "IWAP50", "IWAP00"]),
    FRAME_TEXT,
)
def test_frame_like_garbage_never_raises_and_stays_in_range(header, tail):
    decoded = iw.decode((header + tail).encode(), DecodeContext(received_at=RECEIVED_AT, device_id=IMEI))
    for event in decoded.events:
        for value in event.fields.values():
            if isinstance(value, float):
                assert math.isfinite(value)
        if event.kind is Kind.LOCATION:
            assert -90 <= event.fields["lat"] <= 90
            assert -180 <= event.fields["lon"] <= 180
        if event.kind is Kind.BATTERY:
            assert 0 <= event.fields["pct"] <= 100


def test_huge_step_counts_are_out_of_range_and_do_not_break_the_read():
    decoded = decode(f"IWAP03,06000908000102,{'9' * 5000},0#{ap10('01')}")
    assert kinds(decoded) == [Kind.HEARTBEAT, Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    assert reasons(decoded) == [RejectReason.OUT_OF_RANGE]
