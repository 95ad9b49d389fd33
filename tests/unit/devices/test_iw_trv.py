"""The TRV variant of the IW protocol and the network positions of IW frames without a fix.

Frames are Traccar's ``TrvProtocolDecoderTest`` samples (see tests/fixtures/devices/README.md);
where a test needs a frame without a fix, it is one of those with its ``A`` turned into ``V``.
"""

from datetime import UTC, datetime

import pytest

from devices import Decoded, Kind, Rejection, RejectReason, TimeSource, iw
from tests.unit.devices.helpers import as_bytes, decoder, emitted, kinds, of_kind, reasons

IMEI = "353456789012345"
RECEIVED_AT = datetime(2022, 2, 17, 13, 9, 25, tzinfo=UTC)
YP14 = (
    "TRVYP14220217A5235.7885N00724.1840E000.0130919177.561000050660000200004,262,01,14635,52789,"
    "FritzBox7|DC-39-8F-7E-94-73|-89&FritzBox7|24-4E-5D-71-C3-9C|-90&MY_IOT|80-B4-F7-77-9C-7C|-81&"
    "MYAP|44-D4-F7-77-9C-7C|-80#"
)
YP14_WIFI = "dc:39:8f:7e:94:73,-89;24:4e:5d:71:c3:9c,-90;80:b4:f7:77:9c:7c,-81;44:d4:f7:77:9c:7c,-80"
AP02 = (
    "IWAP02,zh_cn,0,7,460,0,9520|3671|13,9520|3672|12,9520|3673|11,9520|3674|10,9520|3675|9,9520|3676|8,"
    "9520|3677|7,4,1|D8-24-BD-79-FA-1F|59&2|3C-46-D8-6D-CE-01|81&3|0C-4C-39-1A-7C-65|69&4|70-A8-E3-5D-D7-C0|65"
)
TRV_AP10 = "TRVAP10080524A2232.9806N11404.9355E000.1061830323.8706000908000502,460,0,9520,3671,01,zh-cn,00"

decode = decoder(iw.decode, as_bytes, device_id=IMEI, received_at=RECEIVED_AT)


def test_trv_login_then_position_in_one_read_belong_to_the_login():
    decoded = decode(f"TRVAP00{IMEI}#{YP14}", device_id=None)
    assert decoded.rejections == []
    assert kinds(decoded) == [Kind.ONLINE, Kind.LOCATION, Kind.BATTERY]
    assert {event.device_id for event in decoded.events} == {IMEI}


def test_yp14_with_a_fix_is_a_gps_location_and_battery():
    decoded = decode(YP14)
    assert emitted(decoded) == [
        (Kind.LOCATION, {"lat": round(52 + 35.7885 / 60, 7), "lon": round(7 + 24.1840 / 60, 7)}),
        (Kind.BATTERY, {"pct": 66}),
    ]
    assert decoded.events[0].observed_at == datetime(2022, 2, 17, 13, 9, 19, tzinfo=UTC)


def test_yp14_without_a_fix_keeps_towers_and_access_point_macs_but_no_ssid():
    decoded = decode(YP14.replace("A5235", "V5235"))
    assert emitted(decoded) == [
        (Kind.LOCATION, {"position_source": "network", "cells": "262,01,14635,52789,", "wifi": YP14_WIFI}),
        (Kind.BATTERY, {"pct": 66}),
    ]
    assert not any("FritzBox" in str(value) for event in decoded.events for value in event.fields.values())


@pytest.mark.parametrize(
    ("raw", "battery"),
    [
        ("TRVCP01,07800010010000602001206001120124", 100),
        ("TRVCP01,06000908000102", 80),
        ("TRVCP01,100007100000001020151060011", 100),
    ],
)
def test_cp01_is_a_heartbeat_with_battery(raw, battery):
    decoded = decode(raw)
    assert emitted(decoded) == [(Kind.HEARTBEAT, {"battery_pct": battery})]
    assert decoded.events[0].time_source is TimeSource.RECEIVED


def test_cp01_with_a_broken_block_is_still_a_heartbeat():
    decoded = decode("TRVCP01,07x")
    assert kinds(decoded) == [Kind.HEARTBEAT]
    assert decoded.rejections == [Rejection(RejectReason.MALFORMED_FRAME, "CP01 status block is malformed")]


def test_trv_sos_without_a_fix_is_still_a_panic_with_its_network_position():
    decoded = decode(TRV_AP10.replace("A2232", "V2232"))
    assert kinds(decoded) == [Kind.PANIC, Kind.LOCATION, Kind.BATTERY]
    assert decoded.events[1].fields == {"position_source": "network", "cells": "460,0,9520,3671,"}


def test_ap02_is_a_network_location_under_the_receive_time():
    decoded = decode(AP02)
    location = of_kind(decoded, Kind.LOCATION)
    assert decoded.rejections == []
    assert location.fields == {
        "position_source": "network",
        "cells": ";".join(f"460,0,9520,{3671 + i},{13 - i}" for i in range(7)),
        "wifi": "d8:24:bd:79:fa:1f,59;3c:46:d8:6d:ce:01,81;0c:4c:39:1a:7c:65,69;70:a8:e3:5d:d7:c0,65",
    }
    assert location.observed_at == RECEIVED_AT


def test_ap02_needs_the_session_identity():
    assert decode(AP02, device_id=None) == Decoded(
        [], [Rejection(RejectReason.MISSING_FIELD, "no device identity")]
    )


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("IWAP02,zh_cn,0", "AP02 network list is cut short"),
        ("IWAP02,zh_cn,0,7,460,0,9520|3671|13", "AP02 network list is cut short"),
        ("IWAP02,zh_cn,0,x,460,0,9520|3671|13,0", "AP02 network list header is malformed"),
        ("IWAP02,zh_cn,0,65,460,0" + ",1|2|3" * 65 + ",0", "AP02 network list header is malformed"),
        ("IWAP02,zh_cn,0,1,460,0,9520|36x1|13,0", "AP02 cell record is malformed"),
    ],
)
def test_broken_ap02_is_a_malformed_frame(raw, detail):
    assert decode(raw) == Decoded([], [Rejection(RejectReason.MALFORMED_FRAME, detail)])


def test_ap02_listing_nothing_usable_is_rejected_not_silent():
    decoded = decode("IWAP02,zh_cn,0,1,0,0,0|0|0,1,a|not-a-mac|50")
    assert decoded.events == []
    assert reasons(decoded) == [RejectReason.MISSING_FIELD]


def test_ssid_with_separators_does_not_lose_the_mac():
    decoded = decode("IWAP02,zh_cn,0,0,460,0,2,my,net|work|74-DE-2B-44-88-8C|-70&x|0C-4C-39-1A-7C-65|-60")
    assert of_kind(decoded, Kind.LOCATION).fields == {
        "position_source": "network",
        "wifi": "74:de:2b:44:88:8c,-70;0c:4c:39:1a:7c:65,-60",
    }
