"""Byte-level mutations of real frames (hypothesis strategies), and the payloads that may mean nothing.

A mutation never touches the device identity a frame carries (``identity_span``), so the
accounting can still be done per device: if the mutation breaks the frame so badly that no
identity can be read, the codec falls back to the topic's device, which is the same one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.adversarial.corpus import NOW_MS, Case
from tests.adversarial.frames import (
    VENDOR_CHANNELS,
    Frame,
    fixture_frames,
    identity_span,
    readdress,
    sos_variants,
)

#: Hostile fragments spliced into frames: framing characters of every format, NUL, lone
#: surrogates (raw and escaped), C1, bidi, absurd numbers, XML declarations and entities.
HOSTILE_FRAGMENTS = (
    b"\x00", b"[", b"]", b"*", b"#", b",", b"<", b">", b"&", b'"', b"\\", b"{", b"}", b"\r\n",
    b"\\u0000", b"\\ud800", "\u202e".encode(), b"\xc2\x85", b"\xff", b"\xed\xa0\x80", b"\x1b[2J",
    b"1e400", b"NaN", b"-Infinity", str(2**80).encode(), b"9" * 400, b"-0",
    b"<!DOCTYPE x [<!ENTITY e 'e'>]>", b"&e;", b"&#0;", b"]]>", b"}\x01",
)  # fmt: skip

_POSITION = st.integers(min_value=0, max_value=1 << 20)
_BYTES = st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.binary(min_size=1, max_size=4))
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _POSITION, _BYTES),
        st.tuples(st.just("replace"), _POSITION, _BYTES),
        st.tuples(st.just("delete"), _POSITION, st.integers(min_value=1, max_value=16)),
        st.tuples(st.just("truncate"), _POSITION, st.none()),
    ),
    min_size=1,
    max_size=4,
)


def mutate(channel: str, raw: bytes, device: str, operations: list[tuple[str, int, Any]]) -> bytes:
    """Apply ``operations`` to ``raw``, sparing the identity ``device`` it carries."""
    data = raw
    for name, where, arg in operations:
        span = identity_span(channel, data, device)
        at = where % (len(data) + 1)
        if span is not None and span[0] < at < span[1]:
            at = span[1]
        if name == "insert":
            data = data[:at] + arg + data[at:]
        elif name == "truncate":
            data = data[: max(1, at)]
        else:
            size = len(arg) if name == "replace" else arg
            if span is not None and at < span[1] and at + size > span[0]:
                continue
            data = data[:at] + (arg if name == "replace" else b"") + data[at + size :]
    return data


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same ones on every run (derandomised)."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def gather(example: Any) -> None:
        found.append(example)

    gather()
    return found


def canonical_frames() -> tuple[Frame, ...]:
    """Canonical JSON bases: the README's own example and one object of each life-safety kind."""
    example = (
        b'[{"ts": "2026-11-22T07:30:00+01:00", "kind": "heart_rate", "bpm": 72, "msg_id": "w17-9913"},'
        b' {"ts": 1795329000000, "kind": "panic", "button": "pendant"}]'
    )
    return (
        Frame("json", "readme-example", example, life_safety=True),
        Frame("json", "panic", b'{"ts":%d,"kind":"panic","button":"pendant","msg_id":"p-1"}' % NOW_MS, True),
        Frame("json", "fall", b'{"ts":%d,"kind":"fall","confidence":0.9,"stage":"alarm"}' % NOW_MS, True),
        Frame(
            "json",
            "location",
            b'{"ts":%d,"kind":"location","lat":48.85,"lon":2.29,"accuracy_m":5}' % NOW_MS,
            False,
        ),
    )


def base_frames(channel: str) -> tuple[Frame, ...]:
    if channel == "json":
        return canonical_frames()
    frames = fixture_frames(channel)
    if channel == "iw":
        frames = (*frames, sos_variants()["iw-sos"])
    return frames


def life_safety_frames(channel: str) -> tuple[Frame, ...]:
    """The frames whose garbling must still alert (SCAIP stc 67 may be a technical code: left out)."""
    names = {name for name, found in sos_variants().items() if found.channel == channel}
    variants = [found for name, found in sos_variants().items() if name in names]
    extra = [f for f in base_frames(channel) if f.life_safety and f.channel in {"z2m", "json"}]
    return tuple({f.name: f for f in [*variants, *extra]}.values())


def mutated_cases(channel: str, count: int, *, prefix: str) -> list[Case]:
    """``count`` mutated frames of ``channel``, each for a device of its own."""
    bases = base_frames(channel)
    examples = collect(st.tuples(st.sampled_from(bases), OPERATIONS), count)
    cases = []
    for index, (base, operations) in enumerate(examples):
        device = f"{prefix}-{index:04d}"
        raw = mutate(channel, readdress(channel, base.raw, device), device, operations)
        topic = f"carewatch/v1/gw-adv-m/{device}/{channel}"
        if channel == "z2m" and index % 2:
            topic = f"zigbee2mqtt/{device}"
        elif channel == "owntracks" and index % 2:
            user, phone = device.rsplit("-", 1)
            topic, device = f"owntracks/{user}/{phone}", f"{user}-{phone}"
        cases.append(
            Case(
                f"mutated-{channel}", channel, topic, raw, device, may_be_empty=may_mean_nothing(channel, raw)
            )
        )
    return cases


# --- payloads a codec documents as meaning nothing ------------------------------------------------

_WATCH_TYPE = re.compile(
    rb"\[[0-9A-Z]{2}\*[0-9A-Za-z_-]{0,64}\*(?:[0-9A-Fa-f]{4}\*)?[0-9A-Fa-f]{1,8}\*([0-9A-Za-z_]*)"
)
_WATCH_NOTHING = {b"TKQ", b"TKQ2", b"CONFIG", b"IMG", b"TK", b"JXTK", b"RCAPTURE", b"INIT"}
_IW_HEADER = re.compile(rb"^(?:IW|TRV)([A-Z])P([0-9A-Z]{2})", re.IGNORECASE)
_IW_HEALTH = {b"49", b"HT", b"HP", b"50"}
_IW_DECODED = {b"00", b"01", b"03", b"10", b"49", b"HT", b"HP", b"50"}
_Z2M_ALARM_ACTION = re.compile(r"^(emergency|panic|sos)(_.*)?$")
_OWNTRACKS_NOTHING = {
    "transition",
    "waypoint",
    "waypoints",
    "card",
    "cmd",
    "status",
    "configuration",
    "steps",
}


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _iw_frame_nothing(frame: bytes) -> bool:
    header = _IW_HEADER.match(frame)
    if header is None:
        return False
    kind = header.group(2).upper()
    if header.group(1).upper() != b"A" or kind not in _IW_DECODED:
        return True  # a server reply echoed, or an AP type that is not telemetry
    # A health frame whose values are all empty or zero: "no valid reading yields nothing".
    values = frame[header.end() :].split(b",")[1:]
    return kind in _IW_HEALTH and all(re.fullmatch(rb"\s*0*(\.0*)?\s*", value) for value in values)


def _z2m_nothing(raw: bytes) -> bool:
    doc = _json(raw)
    if not isinstance(doc, dict):
        return False
    action = doc.get("action")
    return (
        (action in {None, ""} or (isinstance(action, str) and not _Z2M_ALARM_ACTION.match(action)))
        and all(doc.get(key) is not True for key in ("sos", "alarm_1", "alarm_2"))
        and doc.get("fall_down_status") not in {"fall", "maybe_fall"}
        and doc.get("fall_status") not in {"fall_alarm", "fall_warning"}
        and doc.get("status") != "falling"
        and doc.get("battery") is None
        and doc.get("state") in {None, "ON", "OFF"}
    )


def _traccar_nothing(raw: bytes) -> bool:
    doc = _json(raw)
    if not isinstance(doc, dict) or doc.get("position") is not None or not isinstance(doc.get("event"), dict):
        return False
    event = doc["event"]
    attributes = event.get("attributes")
    if event.get("type") == "alarm":
        return isinstance(attributes, dict) and attributes.get("alarm") == "powerCut"
    return isinstance(event.get("type"), str) and event["type"] not in {
        "deviceOnline",
        "deviceOffline",
        "deviceInactive",
    }


def _scaip_nothing(raw: bytes) -> bool:
    text = raw.decode("utf-8", errors="replace")
    if re.search(r"<mty>\s*IN\s*</mty>", text, re.IGNORECASE):
        return True
    code = re.search(r"<stc>\s*(\d{1,6})\s*</stc>", text, re.IGNORECASE)
    return (
        code is not None
        and int(code.group(1)) == 70
        and not re.search(r"<mty>\s*(PI|RE)\s*</mty>", text, re.IGNORECASE)
    )


NOTHING: dict[str, Callable[[bytes], bool]] = {
    "json": lambda _raw: False,  # every canonical object becomes a row or a rejection
    "watch": lambda raw: (
        bool(types := _WATCH_TYPE.findall(raw)) and all(t.upper() in _WATCH_NOTHING for t in types)
    ),
    "iw": lambda raw: (
        bool(frames := [f for f in re.split(rb"[#\r\n\x00]+", raw) if f.strip()])
        and all(_iw_frame_nothing(f) for f in frames)
    ),
    "z2m": _z2m_nothing,
    "traccar": _traccar_nothing,
    "scaip": _scaip_nothing,
    "owntracks": lambda raw: isinstance(doc := _json(raw), dict) and doc.get("_type") in _OWNTRACKS_NOTHING,
}


def may_mean_nothing(channel: str, raw: bytes) -> bool:
    """Whether ``raw`` is a payload its codec documents as yielding no event (and no rejection)."""
    return NOTHING[channel](raw)


CHANNELS = ("json", *VENDOR_CHANNELS)


def alarm_key_gone(channel: str, raw: bytes) -> bool:
    """A z2m state that still parses but no longer carries its alarm key: a valid message without alarm.

    z2m ignores keys it does not know (``"ction"``), so such a payload is telemetry, not a
    garbled alarm; every other format's mutated alarm must alert or be rejected.
    """
    if channel != "z2m":
        return False
    doc = _json(raw)
    return isinstance(doc, dict) and not (
        (isinstance(doc.get("action"), str) and _Z2M_ALARM_ACTION.match(doc["action"]))
        or any(doc.get(key) is True for key in ("sos", "alarm_1", "alarm_2"))
    )
