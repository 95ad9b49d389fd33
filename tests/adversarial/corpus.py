"""The adversarial corpus: hostile inputs for every channel, each with what it must lead to.

Every :class:`Case` concerns one device of its own (named in the topic and, for formats that
carry their own identity, in the frame), so accounting after a run is per device. See
README.md in this folder for the categories and how accounting works.

Not in the corpus because they cannot be published: topics with ``+``/``#`` (a PUBLISH topic
may not hold wildcards), with U+0000 (the broker refuses it and drops the connection, MQTT 5
section 1.5.4) or with invalid UTF-8 (paho encodes topics from ``str``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import count

from tests.adversarial.frames import frame, readdress, sos_variants

GATEWAY = "gw-adv"
#: Routes the corpus service runs with, as README.md writes them.
Z2M_ROUTE = "zigbee2mqtt/+=z2m@hub-1"
OWNTRACKS_ROUTE = "owntracks/+/+=owntracks@phones"
ROUTES = (Z2M_ROUTE, OWNTRACKS_ROUTE)
MAX_PAYLOAD = 64 * 1024

#: A recent device time (a life-safety event more than a day old is filed under its receive time).
NOW_MS = int(time.time() * 1000) - 60_000


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile input and what it must lead to.

    Attributes:
        category: which family of hostility (README.md lists them).
        channel: the codec the topic selects (``topic`` for cases about the topic itself).
        topic: where it is published.
        payload: its exact bytes.
        device: the device its rows must name ('' when the topic names none).
        life_safety: a panic, fall or alarm that must alert despite what is garbled.
        may_be_empty: its codec documents such a payload as meaning nothing (a z2m reset, an
            unknown z2m action...): it may leave no row at all.
    """

    category: str
    channel: str
    topic: str
    payload: bytes
    device: str
    life_safety: bool = False
    may_be_empty: bool = False


#: Strings that must never reach a row unchanged, or stop a batch: NUL, lone surrogates,
#: C0/C1 controls, bidi overrides and isolates, BOM, escape sequences.
HOSTILE_STRINGS = (
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff",
    "x\udc00y",
    "\u0001\u0002\u001f",
    "\u001b[2J\u001b[31m",
    "\u007f",
    "\u0085\u009b",
    "\u202e1234",
    "\u2066\u2069\u200f",
    "\ufeff",
)

#: Numbers JSON can spell that no sane field holds.
HOSTILE_NUMBERS = (
    "1e400",
    "-1e400",
    str(2**80),
    "9" * 10_000,
    "-0",
    "-0.0",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e-400",
)


class _Ids:
    def __init__(self) -> None:
        self._n = count(1)

    def __call__(self, prefix: str) -> str:
        return f"adv-{prefix}-{next(self._n):04d}"


def _topic(device: str, channel: str) -> str:
    return f"carewatch/v1/{GATEWAY}/{device}/{channel}"


def _fill(template: str, value: str) -> str:
    """``template`` with ``@TS@`` a recent device time and ``@V@`` the hostile text, verbatim."""
    return template.replace("@TS@", str(NOW_MS)).replace("@V@", value)


def _obj(**fields: object) -> str:
    return json.dumps(fields)


def _canonical_strings(ids: _Ids) -> list[Case]:
    cases = []
    for hostile in HOSTILE_STRINGS:
        text = json.dumps(hostile)  # ASCII escapes: lone surrogates and NUL stay expressible
        bodies = {
            ("panic", True): [
                _fill('{"ts":@TS@,"kind":"panic","msg_id":@V@}', text),
                _fill('{"ts":@TS@,"kind":"panic","button":@V@}', text),
            ],
            ("fall", True): [
                _fill('{"ts":@TS@,"kind":"fall","stage":@V@,"msg_id":@V@}', text),
            ],
            ("reading", False): [
                _fill('{"ts":@TS@,"kind":"heart_rate","bpm":72,"msg_id":@V@}', text),
                _fill('{"ts":@TS@,"kind":@V@,"bpm":72}', text),
                _fill('{"ts":@TS@,"kind":"heart_rate","bpm":72,@V@:1}', text),
                _fill('{"ts":@V@,"kind":"battery","pct":50}', text),
            ],
        }
        for (_, life_safety), texts in bodies.items():
            for body in texts:
                device = ids("j")
                cases.append(
                    Case("json-string", "json", _topic(device, "json"), body.encode(), device, life_safety)
                )
    # The same characters as raw UTF-8 bytes (and a raw NUL, which JSON forbids inside strings).
    # A raw C0 byte inside a JSON string is malformed JSON (RFC 8259 section 7): a correct
    # implementation may refuse the whole object, so only the valid-UTF-8 ones must alert.
    for raw in (b"\x00", "\u0085".encode(), "\u202e".encode(), b"\x1b", "\u2028".encode()):
        for kind, must_alert in (("panic", raw not in {b"\x00", b"\x1b"}), ("heart_rate", False)):
            life_safety = must_alert
            device = ids("j")
            extra = b"" if kind == "panic" else b',"bpm":72'
            body = b'{"ts":%d,"kind":"%s"%s,"msg_id":"m' % (NOW_MS, kind.encode(), extra) + raw + b'"}'
            cases.append(Case("json-raw-char", "json", _topic(device, "json"), body, device, life_safety))
    return cases


def _canonical_numbers(ids: _Ids) -> list[Case]:
    cases = []
    for number in HOSTILE_NUMBERS:
        templates = (
            (_fill('{"ts":@TS@,"kind":"heart_rate","bpm":@V@}', number), False),
            (_fill('{"ts":@V@,"kind":"heart_rate","bpm":72}', number), False),
            (_fill('{"ts":@V@,"kind":"panic"}', number), True),
            (_fill('{"ts":@TS@,"kind":"fall","confidence":@V@}', number), True),
            (_fill('{"ts":@TS@,"kind":"location","lat":@V@,"lon":@V@}', number), False),
        )
        for body, life_safety in templates:
            device = ids("n")
            cases.append(
                Case("json-number", "json", _topic(device, "json"), body.encode(), device, life_safety)
            )
    return cases


def _canonical_structure(ids: _Ids) -> list[Case]:
    panic = _obj(ts=NOW_MS, kind="panic").encode()
    bodies: list[tuple[bytes, bool]] = [
        (b"[" * 10_000 + b"]" * 10_000, False),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, False),
        (b'{"ts":%d,"kind":"panic","button":' % NOW_MS + b"[" * 10_000 + b"]" * 10_000 + b"}", True),
        (b"[" + b",".join([b"{}"] * 10_000) + b"]", False),
        (b"[" + b",".join([b"0"] * 10_000) + b"]", False),
        (b"[" + b",".join([b'{"ts":%d,"kind":"cancel"}' % NOW_MS] * 2_000) + b"]", False),
        (b"", False),
        (b" \t\r\n", False),
        (b"\xef\xbb\xbf", False),
        (b"\xef\xbb\xbf" + panic, True),
        (b"\xff\xfe" + panic.decode().encode("utf-16-le"), False),
        (b"\xc0\x80", False),
        (b'{"ts":%d,"kind":"panic","button":"\xed\xa0\x80"}' % NOW_MS, True),
        (b'{"ts":%d,"kind":"panic","button":"\xc3"}' % NOW_MS, True),
        (b'{"ts":%d,"kind":"panic","msg_id":"\xff\xfe"}' % NOW_MS, True),
        (b"null", False),
        (b"true", False),
        (b'"panic"', False),
        (b'[null,1,"x"]', False),
        (b'{"ts":%d,"kind":"panic","kind":"panic"}' % NOW_MS, True),
        (b'{"ts":%d,"kind":"heart_rate","bpm":72,"bpm":400}' % NOW_MS, False),
        (b'{"ts":%d,"ts":"garbage","kind":"heart_rate","bpm":72}' % NOW_MS, False),
        (_obj(ts=NOW_MS, kind="panic", button={"nested": ["x"]}).encode(), True),
        (_obj(ts=NOW_MS, kind="panic", button=7).encode(), True),
        (_obj(ts=NOW_MS, kind="panic", msg_id="m" * 65).encode(), True),
        (_obj(ts=NOW_MS, kind="panic", msg_id="m" * 60_000).encode(), True),
        (_obj(ts=NOW_MS, kind="fall", confidence="high", stage=["alarm"]).encode(), True),
        (_obj(ts=NOW_MS, kind="fall", colour="red").encode(), True),
        (_obj(ts=[NOW_MS], kind="heart_rate", bpm=72).encode(), False),
        (_obj(ts=NOW_MS, kind=7, bpm=72).encode(), False),
        (_obj(ts=NOW_MS, kind="worn", on="yes").encode(), False),
        (_obj(ts=NOW_MS, kind="teleport").encode(), False),
        (_obj(ts=NOW_MS, kind="PANIC").encode(), False),
        (_obj(ts=NOW_MS, kind="").encode(), False),
        (
            b"["
            + panic
            + b","
            + b'{"ts":%d,"kind":"heart_rate","bpm":1e400,"msg_id":"\\u0000"}' % NOW_MS
            + b"]",
            True,
        ),
        (
            b"["
            + b'{"ts":%d,"kind":"heart_rate","bpm":72,"msg_id":"\\ud800"}' % NOW_MS
            + b","
            + panic
            + b"]",
            True,
        ),
        (panic + b" " * (MAX_PAYLOAD + 1 - len(panic)), False),
        (panic + b" " * (MAX_PAYLOAD - len(panic)), True),
        (b"x" * (MAX_PAYLOAD + 1), False),
    ]
    bodies += [(panic[:cut], False) for cut in (1, 10, 25, len(panic) - 1)]
    bodies.append((panic + b"garbage", False))
    for stamp in (
        '"0001-01-01T00:00:00Z"',
        '"9999-12-31T23:59:59Z"',
        "100000000000000000000",
        "-1",
        "-62135596800000",
        '"2026-13-45T25:61:61Z"',
        '"2026-11-22T07:30:00"',
        '""',
        "true",
    ):
        bodies.append(((b'{"ts":%s,"kind":"heart_rate","bpm":72}' % stamp.encode()), False))
        bodies.append(((b'{"ts":%s,"kind":"panic"}' % stamp.encode()), True))
        bodies.append(((b'{"ts":%s,"kind":"fall","stage":"alarm"}' % stamp.encode()), True))
    cases = []
    for body, life_safety in bodies:
        device = ids("s")
        cases.append(Case("json-structure", "json", _topic(device, "json"), body, device, life_safety))
    return cases


# --- vendor frames -------------------------------------------------------------------------------


def _watch(ids: _Ids) -> list[Case]:
    sos = frame("watch", "watch-al-lte-sos-1").raw
    fall = frame("watch", "watch-al-fall-motion").raw
    position = frame("watch", "watch-ud-lte-wifi").raw
    lk = frame("watch", "watch-lk-vendor").raw
    pulse = frame("watch", "watch-pulse-72").raw
    garbage_ssid = b",\x00\xc2\x85\xe2\x80\xae\x1b[2J,44:56:e2:03:ea:2a,-69"
    bodies: list[tuple[bytes, bool]] = [
        (sos[:-1] + garbage_ssid + b"]", True),
        (fall[:-1] + garbage_ssid + b"]", True),
        (sos[:-1] + b",[[[[" + b"]", True),
        (sos[:-1] + b",]]]]" + b"]", True),
        (sos.replace(b"*003e*", b"*FFFFFFFF*"), True),
        (sos.replace(b"*003e*", b"*0*"), True),
        (sos.replace(b"*003e*", b"*zzzz*"), False),
        (sos.replace(b",0,0,0]", b",0,0,\x00\x00]"), True),
        (sos.replace(b"00010000", b"FFFFFFFF"), True),
        (sos.replace(b"00010000", b"GGGGGGGG"), True),
        (sos.replace(b"00010000", b"000100001"), True),
        (sos.replace(b"170525,214118", b"000000,999999"), True),
        (sos.replace(b"V,0,N,0,E", b"A,1e400,N,99999999999999999999999,E"), True),
        (sos[: len(sos) // 2], True),
        (sos[:-1], True),
        (sos + sos[:20], True),
        (sos.replace(b",", b"*", 3), False),
        (sos.replace(b",", b"#"), False),
        (fall.replace(b"47.083950", b"4" * 5000), True),
        (fall.replace(b"00200010", b"\x00\x00\x00\x00"), True),
        (position.replace(b"32.162652", b"1e400"), False),
        (position.replace(b"32.162652", b"-" + b"9" * 300), False),
        (position.replace(b"100,83", b"100,99999999999999999999"), False),
        (position[:-1] + b"[" * 5000 + b"]" * 5000 + b"]", False),
        (position.replace(b",", b"}\x01", 5), False),
        (lk.replace(b"100,100", b"100,1e400"), False),
        (lk.replace(b"LK", b"L\x00K"), False),
        (lk * 1000, False),
        (pulse.replace(b"72", b"99999999999999999999"), False),
        (pulse.replace(b"72", b"-72"), False),
        (pulse.replace(b"72", b"NaN"), False),
        (pulse.replace(b"PULSE", b"XPULSE"), False),
        (b"[" * 10_000, False),
        (b"]" * 10_000, False),
        (b"[3G*", False),
        (b"\x00" * 1000, False),
    ]
    cases = []
    for body, life_safety in bodies:
        device = ids("w")
        cases.append(
            Case(
                "watch",
                "watch",
                _topic(device, "watch"),
                readdress("watch", body, device),
                device,
                life_safety,
            )
        )
    return cases


def _iw(ids: _Ids) -> list[Case]:
    sos = sos_variants()["iw-sos"].raw
    login = frame("iw", "iw-login").raw
    ht = frame("iw", "iw-apht-hr-bp").raw
    ap50 = frame("iw", "iw-ap50-temp-batt").raw
    bodies: list[tuple[bytes, bool]] = [
        (sos + b"#", True),
        (sos.replace(b"HOME|", b"\x00\xc2\x85\xe2\x80\xae|", 2) + b"#", True),
        (sos.replace(b"2232.9806N", b"9999.9999X") + b"#", True),
        (sos.replace(b"2232.9806N11404.9355E", b"1e400N1e400E") + b"#", True),
        (sos[:40], False),
        (sos[:-30], True),
        (sos.replace(b",01,zh-cn,", b",01\x00,zh-cn,") + b"#", True),
        (sos.replace(b",01,zh-cn,", b",0001,zh-cn,") + b"#", True),
        (sos.replace(b"IWAP10", b"IWAP10" + b"9" * 5000) + b"#", True),
        (sos + b"#" * 5000, True),
        (b"IWAP00" + b"\x00", False),
        (ht.replace(b"60", b"1e400", 1), False),
        (ht.replace(b"60", b"9" * 10_000, 1), False),
        (ht.replace(b",85", b",-85"), False),
        (ap50.replace(b"36.7", b"NaN"), False),
        (ap50.replace(b"36.7", b"Infinity"), False),
        (b"IWAP49," + b"\xff\xfe" + b"#", False),
        (b"IWAPZZ,\x1b[2J#", False),
        (b"#" * 10_000, False),
        (b"IW" * 1000, False),
        (login, False),  # a login with the device's own IMEI: the online event must be stored
    ]
    cases = []
    for body, life_safety in bodies:
        device = ids("i")
        cases.append(
            Case("iw", "iw", _topic(device, "iw"), readdress("iw", body, device), device, life_safety)
        )
    return cases


def _z2m_bodies() -> list[tuple[bytes, bool]]:
    seen = b'"last_seen":"2026-04-17T23:33:22+08:00"'
    return [
        (b'{"action":"emergency","battery":1e400}', True),
        (b'{"action":"emergency","battery":NaN}', True),
        (b'{"action":"emergency","battery":' + b"9" * 10_000 + b"}", True),
        (b'{"action":"emergency","battery":-0,"linkquality":' + str(2**80).encode() + b"}", True),
        (b'{"action":"emergency","battery":"\\u0000\\ud800"}', True),
        (b'{"action":"emergency","last_seen":"0001-01-01T00:00:00Z"}', True),
        (b'{"action":"emergency","last_seen":100000000000000000000}', True),
        (b'{"action":"emergency","last_seen":-1}', True),
        (b'{"action":"emergency","device":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", True),
        (b'{"action":"emergency","\\u0000":1,"\\u202e":"\\ud800"}', True),
        (b'{"action":"emergency","action":"emergency",' + seen + b"}", True),
        (b'{"sos":true,"battery":"full","voltage":1e400}', True),
        (b'{"fall_down_status":"fall","battery":NaN}', True),
        (b'{"fall_status":"fall_alarm","linkquality":"\\u0085\\u009b"}', True),
        (b'{"action":"emergency\\u0000"}', False),
        (b'{"action":"\\u202eycnegreme"}', False),
        (b'{"action":["emergency"]}', False),
        (b'{"action":"emergency"', False),
        (b"[" * 10_000 + b"]" * 10_000, False),
        (b'{"battery":1e400}', False),
        (b'{"battery":' + str(2**80).encode() + b"}", False),
        (b'{"state":"\\u0000"}', False),
        (b"\xff\xfe\x00", False),
        (b"", False),
    ]


def _z2m(ids: _Ids) -> list[Case]:
    cases = []
    for body, life_safety in _z2m_bodies():
        device = ids("z")
        cases.append(Case("z2m", "z2m", _topic(device, "z2m"), body, device, life_safety))
    for body, life_safety in _z2m_bodies()[:16]:
        device = ids("zr")
        cases.append(Case("route-z2m", "z2m", f"zigbee2mqtt/{device}", body, device, life_safety))
    return cases


def _traccar(ids: _Ids) -> list[Case]:
    sos = frame("traccar", "traccar-event-sos").raw
    position = frame("traccar", "traccar-position-forward").raw
    bodies: list[tuple[bytes, bool]] = [
        (sos.replace(b'"name":"Meitrack: ', b'"name":"\\u0000\\ud800\\u202e'), True),
        (sos.replace(b'"name":"Meitrack: ', b'"name":"\x00\xc2\x85'), True),
        (
            sos.replace(
                b'"eventTime":"2022-02-07T08:10:15.992+00:00"', b'"eventTime":"0001-01-01T00:00:00Z"'
            ),
            True,
        ),
        (sos.replace(b'"eventTime":"2022-02-07T08:10:15.992+00:00"', b'"eventTime":1e400'), True),
        (sos.replace(b'"eventTime":"2022-02-07T08:10:15.992+00:00"', b'"eventTime":"\\u0000"'), True),
        (sos.replace(b'"id":173', b'"id":' + b"9" * 10_000), True),
        (sos.replace(b'"positionId":0', b'"positionId":NaN'), True),
        (sos.replace(b'"groupId":0', b'"groupId":' + b"[" * 5000 + b"]" * 5000), True),
        (sos.replace(b'"alarm":"sos"', b'"alarm":"sos\\u0000"'), True),
        (sos.replace(b'"alarm":"sos"', b'"alarm":"fallDown","x":"\\udfff"'), True),
        (sos[: len(sos) // 2], False),
        (sos.replace(b"{", b"[", 1), False),
        (position.replace(b'"latitude":', b'"latitude":1e400,"x":', 1), False),
        (position.replace(b'"io200":0', b'"heartRate":' + str(2**80).encode()), False),
        (position.replace(b'"io200":0', b'"heartRate":NaN'), False),
        (position.replace(b'"io200":0', b'"batteryLevel":-0'), False),
        (
            position.replace(
                b'"deviceTime":"2019-12-20T06:28:42.000+00:00"', b'"deviceTime":"9999-12-31T23:59:59Z"'
            ),
            False,
        ),
        (position.replace(b'"io200":0', b'"alarm":"sos,\\u0000,\\ud800"'), True),
        (b'{"event":' * 5000 + b"{}" + b"}" * 5000, False),
        (b'{"position":{},"device":{"uniqueId":"\\u0000"}}', False),
    ]
    cases = []
    for body, life_safety in bodies:
        device = ids("t")
        cases.append(
            Case(
                "traccar",
                "traccar",
                _topic(device, "traccar"),
                readdress("traccar", body, device),
                device,
                life_safety,
            )
        )
    return cases


def _scaip(ids: _Ids) -> list[Case]:
    base = (
        b"<mrq><ref>r1</ref><cid>CID</cid><dty>0004</dty><mty>ME</mty><stc>0010</stc>%s<crd>gsm:</crd></mrq>"
    )
    alarm = frame("scaip", "scaip-possum-alarm-dty4").raw
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        )
        + b"]><mrq><cid>CID</cid><mty>ME</mty><stc>10</stc><lco>&lol9;</lco></mrq>"
    )
    bodies: list[tuple[bytes, bool]] = [
        (base % b"<lco>\x01\x02\x1b[2J</lco>", True),
        (base % b"<lco>&#0;&#x1;&#xD800;</lco>", True),
        (base % "<lco>\u0085\u202e\u2066</lco>".encode(), True),
        (base % b"<lco>\xff\xfe\xc3</lco>", True),
        (base % (b"<lco>" + b"x" * 60_000 + b"</lco>"), True),
        (base % (b"<x>" * 5000 + b"</x>" * 5000), True),
        (base % b"<ref>\x00</ref>", True),
        ((base % b"").replace(b"<stc>0010</stc>", b"<stc>" + b"0" * 5000 + b"10</stc>"), True),
        ((base % b"").replace(b"<dty>0004</dty>", b"<dty>99999999999999999999</dty>"), True),
        ((base % b"").replace(b"<mty>ME</mty>", b"<mty>\x00</mty>"), True),
        (alarm.replace(b"<crd>gsm:</crd>", b"<crd>gsm:\x00</crd><!-- \x1b -->"), True),
        (alarm + b"<mrq>", True),
        (laughs, False),
        (
            (
                b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b"<mrq><cid>CID</cid><stc>10</stc><lco>&x;</lco></mrq>"
            ),
            False,
        ),
        (
            b'<!DOCTYPE m [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><mrq><cid>CID</cid></mrq>',
            False,
        ),
        (b'<?xml version="1.0" encoding="UTF-7"?><mrq><cid>CID</cid>+ADw-!DOCTYPE</mrq>', False),
        (b"<mrq>" * 10_000, False),
        (b"<mrq><cid>CID</cid><stc>10</st", False),
        (b"<mrq><cid>CID</cid><stc>10</stc></mrq" + b"\x00" * 100, False),
        (b"<mrq><cid>CID</cid><mty>PI</mty><stc>0067</stc><lco>\x00</lco></mrq>", False),
        (b"<mrq><cid>CID</cid><dty>2</dty><mty>ME</mty><stc>0066</stc><lco>\x1b</lco></mrq>", False),
        (b"<html><body>not scaip</body></html>", False),
        (b"", False),
    ]
    cases = []
    for body, life_safety in bodies:
        device = ids("c")
        payload = body.replace(b"CID", device.encode())
        cases.append(
            Case(
                "scaip",
                "scaip",
                _topic(device, "scaip"),
                readdress("scaip", payload, device),
                device,
                life_safety,
            )
        )
    return cases


def _owntracks_bodies() -> list[bytes]:
    raw = frame("owntracks", "owntracks-location-booklet").raw
    return [
        raw.replace(b'"lat":48.856826', b'"lat":1e400'),
        raw.replace(b'"lat":48.856826', b'"lat":NaN'),
        raw.replace(b'"lon":2.292713', b'"lon":' + b"9" * 10_000),
        raw.replace(b'"tst":1706856298', b'"tst":100000000000000000000'),
        raw.replace(b'"tst":1706856298', b'"tst":-1'),
        raw.replace(b'"batt":53', b'"batt":' + str(2**80).encode()),
        raw.replace(b'"tid":"j1"', b'"tid":"\\u0000\\ud800"'),
        raw.replace(b'"SSID":"mywifi"', b'"SSID":"\x00\xc2\x85\xe2\x80\xae"'),
        raw.replace(b'"_type":"location"', b'"_type":"\\u0000location"'),
        raw.replace(b'"alt":154', b'"alt":' + b"[" * 5000 + b"]" * 5000),
        raw[:40],
        b'{"_type":"encrypted","data":"\\u0000"}',
        b'{"_type":"lwt","tst":1e400}',
        b"[" * 10_000,
    ]


def _owntracks(ids: _Ids) -> list[Case]:
    cases = []
    for body in _owntracks_bodies():
        device = ids("o")
        cases.append(Case("owntracks", "owntracks", _topic(device, "owntracks"), body, device))
    for body in _owntracks_bodies():
        user, phone = ids("ou"), "ph"
        cases.append(
            Case("route-owntracks", "owntracks", f"owntracks/{user}/{phone}", body, f"{user}-{phone}")
        )
    return cases


def _topics(ids: _Ids) -> list[Case]:
    body = _obj(ts=NOW_MS, kind="heart_rate", bpm=72).encode()
    panic = _obj(ts=NOW_MS, kind="panic").encode()
    topics = [
        f"carewatch/v1/{GATEWAY}/{ids('b')}",
        f"carewatch/v1/{GATEWAY}/{ids('b')}/json/extra",
        f"carewatch/v1/{GATEWAY}//json",
        f"carewatch/v1//{ids('b')}/json",
        f"carewatch/v1/{GATEWAY}/{'d' * 65}/json",
        f"carewatch/v1/{'g' * 10_000}/{ids('b')}/json",
        f"carewatch/v1/{GATEWAY}/{ids('b')}/{'c' * 1000}",
        f"carewatch/v1/{GATEWAY}/dév-{ids('b')}/json",
        f"carewatch/v1/{GATEWAY}/\u202e{ids('b')}/json",
        f"carewatch/v1/{GATEWAY}/{ids('b')}/JSON",
        f"carewatch/v1/{GATEWAY}/{ids('b')}/xml",
        f"carewatch/v1/{GATEWAY}/{ids('b')} /json",
        f"carewatch/v2/{GATEWAY}/{ids('b')}/json",
        f"zigbee2mqtt/{'z' * 65}",
        "zigbee2mqtt/bad name",
        f"owntracks/{ids('b')}/{'p' * 64}",
    ]
    cases = [Case("topic", "topic", topic, body, "") for topic in topics]
    # carewatch/v2 is not ours and not routed: the service does not subscribe to it at all.
    cases = [case for case in cases if not case.topic.startswith("carewatch/v2/")]
    cases += [Case("topic", "topic", f"carewatch/v1/{GATEWAY}/{'p' * 65}/json", panic, "")]
    return cases


def build_corpus() -> list[Case]:
    """Every hostile input, in the order they are published."""
    ids = _Ids()
    cases = [
        *_canonical_strings(ids),
        *_canonical_numbers(ids),
        *_canonical_structure(ids),
        *_watch(ids),
        *_iw(ids),
        *_z2m(ids),
        *_traccar(ids),
        *_scaip(ids),
        *_owntracks(ids),
        *_topics(ids),
    ]
    assert len({(c.topic, c.payload) for c in cases}) == len(cases), "every case must be unique"
    return cases
