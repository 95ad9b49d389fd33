"""Codec for the "3G*" watch protocol (SeTracker / Beesure / Wonlex-type GPS watches).

Sources: the vendor document *Beesure GPS SeTracker Server Protocol* (4P-Touch, rev. Aug 2025,
with its status-bit table "Appendix I") and Traccar's ``WatchProtocolDecoder`` and its tests;
``shared/reference/device-formats.md`` section 1 summarises both and is authoritative here.

Framing
    The watch speaks text over one long-lived TCP connection; the gateway forwards what it read
    as one MQTT payload, which may hold one or several frames back to back (a TCP read is not a
    frame). Every frame is ``[MM*ID*LEN*CONTENT]``:

    * ``MM`` is a two-character maker code (``3G``, ``SG``, ``CS``, ``ZJ``); it only names the
      firmware family, so any two upper-case letters or digits are accepted.
    * ``ID`` is the device id (normally the last 10 IMEI digits, 9 and 15 digits also occur). It
      is the event's device id; only an empty ``ID`` falls back to ``context.device_id``.
    * ``ZJ`` firmware adds a 4-hex message index before ``LEN``. It is recognised by shape (two
      hex fields in a row), as Traccar does, not by the maker code.
    * ``LEN`` (hex) is the length of CONTENT, but it is wrong in many real frames, so it is never
      used to cut a frame and never a reason to reject one.
    * The end of a frame is found by bracket depth, because WiFi SSIDs in position frames carry
      raw ``[`` and ``]`` (``[LG_Wall-Mount A/C]e725``). An SSID can also hold a lone bracket,
      so a closing bracket only ends a frame where the payload ends or the next frame's header
      starts: the depth-balanced one when it is such a boundary, else the first one that is. A
      new frame header met before any end means the frame was cut short (a TCP read split by the
      gateway): that frame is rejected and decoding resumes at the new header. A frame cut
      short (by the next header or the end of the payload) is rejected (``malformed_frame``);
      when it is an ``AL`` frame it is still an alarm (see :mod:`devices.watch_alarms`): the
      alarms of its status word when that word and a comma after it arrived, else ``alarm``
      ``general``, flagged ``malformed_frame``. No other event is read from a cut frame.
    * Binary contents (voice ``TK``/``JXTK``, images) escape ``}`` ``[`` ``]`` ``,`` ``*`` as
      ``0x7D`` followed by ``0x01``..``0x05``, so escaped bytes are never delimiters and the
      framing above holds; those frames are not telemetry and are not decoded further.

    The codec is stateless (one payload at a time): a frame split across two payloads yields
    a rejection on both halves, so the gateway must forward whole frames (it reads up to the
    matching ``]`` anyway, because it must echo ``LK`` and ``AL`` frames or the watch reboots).

Content ``TYPE[,field,...]``; the type is matched case-insensitively. Non-printable bytes a
gateway left around the type (a NUL before ``AL_LTE``) are stripped so the frame is still decoded;
its events are flagged ``malformed_frame`` and the frame rejected as such (bytes kept).

    * Position frames: every type starting with ``UD`` (``UD``, ``UD2`` = fixes buffered while
      offline, ``UD_LTE``...), ``AL`` (alarm: ``AL``, ``AL_LTE``, ``ALCUSTOMER1``...) or ``WT``:
      ``date ddmmyy, time hhmmss, A/V, lat, N/S, lon, E/W, speed, course, altitude, satellites,
      gsm, battery %, steps, tumbles, STATUS (hex), cells..., wifi..., accuracy``. The time is
      the device's (UTC according to the vendor; firmware with a local clock is caught by the
      timestamp plausibility check) and may be old for ``UD2``; a date of ``000000`` or an
      impossible date means "no time": an alarm is then filed under the receive time and
      flagged, readings are rejected. Coordinates may be signed *and* carry a hemisphere
      letter, or an empty one: only ``S``/``W`` make a value negative, an existing sign is
      kept. ``V`` means no GPS fix (the coordinates are zero or stale): the coordinates are
      kept as the last known position marked ``gps_valid: false`` (never 0/0), and the cell
      towers and WiFi access points the frame lists are added as ``position_source: network``
      with ``cells`` and ``wifi`` (see :mod:`devices.watch_network`): indoors they are all
      responders can go by. A frame without a fix, coordinates or networks yields no location
      (see below for one with nothing at all);
      its alarms never depend on any of it. The trailing accuracy is not used: its position
      depends on cell and WiFi lists whose layout varies by firmware (with zero cells some omit
      the timing advance, MCC and MNC) and whose SSIDs may hold commas, so it cannot be located
      reliably. Every position
      frame also yields its battery level and, when positive, its step count.
    * The status word (8 hex digits, or 4 on some firmware: then only state bits exist) is a
      set of flags, all of them decoded (an SOS and a fall in one frame are two events). The
      high 16 bits are alarms, the low 16 are states (low battery, fence, "not moving",
      Traccar's power cut at bit 14): states make no event. Alarms: bit 16 SOS -> ``panic``
      (some 4G watches also raise it when lifted off the charger, Traccar PR #4801: it is still
      a panic); bit 21 fall-down -> ``fall`` (stage ``alarm``); bit 20 taken off the wrist ->
      ``worn`` ``on=False``; bit 17 low-battery alarm -> nothing beyond the frame's battery
      reading; bits 18/19 (fence out/in) and 22 (abnormal heart rate according to the vendor,
      fall according to Traccar) have no canonical kind and make no event. An ``AL`` frame with
      none of the documented alarm bits 16-22 set (status ``00000000``, a state-only 4-digit
      word, an undocumented high bit, an unreadable word or a truncated frame) is an alarm whose
      cause is unknown: ``alarm`` with label ``general`` (Traccar's name), never dropped.
    * ``LK`` keep-alive: bare, or ``LK,steps,tumbles,battery%`` -> ``heartbeat`` with
      ``battery_pct`` (and ``steps`` when positive). With fewer than three values the meaning is
      ambiguous: a heartbeat without battery. No time: filed under the receive time.
    * Health frames carry no time and are filed under the receive time. A value of 0 means "no
      valid reading" and yields nothing: ``heart,N`` / ``PULSE,N``; ``bphrt,SYS,DIA,HR,...``
      (blood pressure and heart rate); ``BLOOD,SYS,DIA``; ``oxygen,type,SpO2``;
      ``btemp2,mode,temp`` (mode is forehead/wrist, not validity; a temperature of exactly 0 or
      1 flags a measuring error); ``TEMP,t``.
    * Frames that are known not to be telemetry (``TKQ``/``TKQ2`` voice requests, ``CONFIG``,
      ``img``, ``TK``, ``JXTK``, ``rcapture``, ``INIT``) yield no event and no rejection: voice
      and images must not be copied into the quarantine. A type this codec does not know is
      quarantined (``unsupported_frame``, naming the type when it is a plain word).

A telemetry frame that yields nothing (a health frame whose value is 0, "no valid reading"; a
position frame without fix, networks, battery or steps) is rejected as ``no_events`` rather than
being silent. Rejections name the frame by its ordinal and a category of ours, never payload
bytes or values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeAlias

from devices import watch_network
from devices.canonical import Decoded, Rejection
from devices.codec import MALFORMED_FRAME_FLAG, EventSink, guarded
from devices.errors import RejectReason
from devices.events import Event, FieldValue, Kind
from devices.watch_alarms import DATE, STATUS_WORD, TIME, frame_time, status_events, truncated_alarm
from devices.watch_framing import Broken, Frame, frame_type
from devices.watch_framing import split as _split

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from devices.codec import DecodeContext

__all__ = ["decode"]


_NUMBER: Final = re.compile(rb"[+-]?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})")
_INTEGER: Final = re.compile(rb"[+-]?\d{1,18}")
#: A type named in a rejection: a plain word, never digits that could be a value.
_TYPE_NAME: Final = re.compile(r"[A-Z][A-Z_]{0,15}")
#: Types known not to be telemetry (voice, images, configuration): no event, no quarantine.
_NOT_TELEMETRY: Final = frozenset({"TKQ", "TKQ2", "TK", "JXTK", "CONFIG", "IMG", "RCAPTURE", "INIT"})

#: Indexes of the position layout (after the type; date, time and status: devices.watch_alarms).
_VALIDITY, _LAT, _LAT_HEMI, _LON, _LON_HEMI = 2, 3, 4, 5, 6
_BATTERY, _STEPS = 12, 13
_POSITION_FIELDS: Final = 16

_MAX_BPM: Final = 300.0
_MAX_MMHG: Final = 300.0
_MIN_CELSIUS: Final = 20.0
_MAX_CELSIUS: Final = 46.0
_BTEMP_ERRORS: Final = frozenset({0.0, 1.0})


class _FieldError(Exception):
    """One field of a frame cannot be used (its reading is rejected, the rest of the frame is not)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode one payload of 3G* watch frames into canonical events.

    Args:
        payload: the bytes the gateway read from the watch: one or several whole frames.
        context: the receive time, the session's device id (used only when a frame's id is
            empty) and the timestamp policy.

    Returns:
        The events of every frame, in frame order, and the rejected parts. Never raises.
    """
    return guarded(
        lambda data, ctx: _decode(bytes(data), ctx),
        payload,
        context,
        detail="watch payload could not be decoded",
    )


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    events: list[Event] = []
    rejections: list[Rejection] = []
    seen: dict[bytes, int] = {}
    items = list(_split(payload))
    if not items:
        return Decoded([], [Rejection(RejectReason.NO_EVENTS, "no watch frame in payload")])
    for ordinal, item in enumerate(items, start=1):
        frame = item.partial if isinstance(item, Broken) else item
        if isinstance(item, Broken):
            rejections.append(Rejection(item.reason, f"frame {ordinal}: {item.detail}"))
        if frame is None:
            continue
        occurrence = seen.get(frame.raw, 0)
        seen[frame.raw] = occurrence + 1
        frame_decoder = _FrameDecoder(
            frame.device_id or context.device_id or "",
            context,
            prefix=f"frame {ordinal}: ",
            frame=frame,
            ordinal=ordinal,
            occurrence=occurrence,
            truncated=frame is not item,
        )
        try:
            frame_decoder.run()
        except Exception:  # noqa: BLE001 - one bad frame must not lose the others
            frame_decoder.reject(RejectReason.INVALID_STRUCTURE, "frame could not be decoded")
        events.extend(frame_decoder.events)
        rejections.extend(frame_decoder.rejections)
    return Decoded(events, rejections)


# --- one frame -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _FrameDecoder(EventSink):
    """Turns one frame into events; collects the rejections of its unusable parts.

    Rejections name the frame by ordinal and, once known, by category (``frame 2 (heart rate):``),
    each distinct one once (a frame's fields can fail alike). An event is identified by its
    frame's bytes and their occurrence in the payload, never by the receive time. A frame
    that was cut short (``truncated``, already rejected by the framing) or whose type is
    wrapped in non-printable bytes flags every event ``malformed_frame`` (``frame_flags``).
    """

    frame: Frame = field(kw_only=True)
    ordinal: int = field(kw_only=True)
    occurrence: int = field(kw_only=True)
    truncated: bool = field(default=False, kw_only=True)
    frame_flags: frozenset[str] = field(default=frozenset(), kw_only=True)
    stamp_receive_time: bool = field(default=False, kw_only=True)
    distinct: bool = field(default=True, kw_only=True)

    def run(self) -> None:
        """Decode the frame."""
        raw_type, *values = self.frame.content.split(b",")
        type_name, garbled = frame_type(raw_type)
        if garbled or self.truncated:
            self.frame_flags = frozenset({MALFORMED_FRAME_FLAG})
        if self.truncated:
            # An AL frame is an alarm however it was cut; any other cut frame is only rejected.
            if type_name.startswith("AL") and (self.frame.device_id or self.context.device_id):
                self.prefix = f"frame {self.ordinal} (alarm): "
                truncated_alarm(self, values)
            return
        if not self.frame.content:
            self.reject(RejectReason.MALFORMED_FRAME, "empty frame content")
            return
        if garbled:
            self.reject(RejectReason.MALFORMED_FRAME, "stray bytes around the frame type")
        handler = _handler(type_name)
        if handler is None:
            if type_name not in _NOT_TELEMETRY:
                named = type_name if _TYPE_NAME.fullmatch(type_name) else "that is not a plain word"
                self.reject(RejectReason.UNSUPPORTED_FRAME, f"watch frame type {named} is not supported")
            return
        category = handler.__name__.removeprefix("_").replace("_", " ")
        self.prefix = f"frame {self.ordinal} ({category}): "
        if not self.frame.device_id and self.context.device_id is None:
            self.reject(RejectReason.MISSING_FIELD, "no device identity")
            return
        handler(self, values, type_name)
        if not self.events and not self.rejections:
            # A 0 or empty reading is the watch's "no valid reading": said, not silent.
            self.reject(RejectReason.NO_EVENTS, "frame holds no valid reading")

    def add(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        device_time: datetime | None,
        *,
        time_required: bool = True,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        """Build one event through :func:`make_event`, or record why it was refused."""
        identity: dict[str, object] = {
            "frame": self.frame.raw.decode("latin-1"),
            "occurrence": self.occurrence,
            "kind": kind.value,
        }
        flags |= self.frame_flags
        self.emit(
            kind, fields, device_time=device_time, identity=identity, time_required=time_required, flags=flags
        )

    def attempt(self, reading: str, parse: _Parse) -> float | None:
        """Run one field parser; a bad field becomes a rejection and None."""
        try:
            return parse()
        except _FieldError as exc:
            self.reject(exc.reason, f"{reading}: {exc.detail}")
            return None


_Parse: TypeAlias = "Callable[[], float | None]"
_Handler: TypeAlias = "Callable[[_FrameDecoder, list[bytes], str], None]"


def _handler(type_name: str) -> _Handler | None:
    if type_name.startswith(("UD", "AL", "WT")):
        return _position_frame
    return _HANDLERS.get(type_name)


# --- position frames -----------------------------------------------------------------------------


def _position_frame(frame: _FrameDecoder, values: list[bytes], type_name: str) -> None:
    alarm_frame = type_name.startswith("AL")
    device_time = frame_time(values[DATE], values[TIME]) if len(values) > TIME else None
    if len(values) < _POSITION_FIELDS:
        frame.reject(RejectReason.MISSING_FIELD, "position frame is truncated")
        if alarm_frame:
            frame.add(Kind.ALARM, {"label": "general"}, device_time, flags=frozenset({"invalid_fields"}))
        return
    status_events(frame, values[STATUS_WORD], device_time, alarm_frame=alarm_frame)
    _location(frame, values, device_time, gps_valid=values[_VALIDITY].strip().upper() == b"A")
    battery = frame.attempt("battery", lambda: _percent(values[_BATTERY]))
    if battery is not None:
        frame.add(Kind.BATTERY, {"pct": _tidy(battery)}, device_time)
    steps = frame.attempt("steps", lambda: _count(values[_STEPS]))
    if steps:
        frame.add(Kind.STEPS, {"count": int(steps)}, device_time)


def _location(
    frame: _FrameDecoder, values: list[bytes], device_time: datetime | None, *, gps_valid: bool
) -> None:
    """A position; with ``V`` (no fix) it is the last known one, marked ``gps_valid: false``."""
    lat = frame.attempt("latitude", lambda: _coordinate(values[_LAT], values[_LAT_HEMI], 90.0))
    lon = frame.attempt("longitude", lambda: _coordinate(values[_LON], values[_LON_HEMI], 180.0))
    # Without a fix, the towers and access points the watch heard are what responders can go by.
    network = {} if gps_valid else watch_network.position_fields(values)
    fields: dict[str, FieldValue] = {}
    if lat is not None and lon is not None and (lat != 0 or lon != 0):  # 0/0 is not a fix
        fields = {"lat": lat, "lon": lon}
        if not gps_valid:
            fields["gps_valid"] = False
    fields |= network
    if fields:
        frame.add(Kind.LOCATION, fields, device_time)


def _coordinate(raw: bytes, hemisphere: bytes, limit: float) -> float | None:
    value = _number(raw)
    if value is None:
        raise _FieldError(RejectReason.MISSING_FIELD, "empty")
    if hemisphere.strip().upper() in {b"S", b"W"}:
        value = -abs(value)
    if abs(value) > limit:
        raise _FieldError(RejectReason.OUT_OF_RANGE, "out of range")
    return value


# --- keep-alive and health frames ----------------------------------------------------------------


def _keep_alive(frame: _FrameDecoder, values: list[bytes], _type_name: str) -> None:
    fields: dict[str, FieldValue] = {}
    steps: float | None = None
    if len(values) >= 3:  # noqa: PLR2004 - steps, tumbles, battery; fewer is ambiguous
        battery = frame.attempt("battery", lambda: _percent(values[2]))
        if battery is not None:
            fields["battery_pct"] = _tidy(battery)
        steps = frame.attempt("steps", lambda: _count(values[0]))
    frame.add(Kind.HEARTBEAT, fields, None, time_required=False)
    if steps:
        frame.add(Kind.STEPS, {"count": int(steps)}, None, time_required=False)


def _heart_rate(frame: _FrameDecoder, values: list[bytes], _type_name: str) -> None:
    _emit_bpm(frame, _value_at(values, 0))


def _blood_pressure_and_heart_rate(frame: _FrameDecoder, values: list[bytes], type_name: str) -> None:
    _emit_blood_pressure(frame, _value_at(values, 0), _value_at(values, 1))
    if type_name == "BPHRT":
        _emit_bpm(frame, _value_at(values, 2), required=False)


def _oxygen_saturation(frame: _FrameDecoder, values: list[bytes], _type_name: str) -> None:
    pct = frame.attempt("oxygen saturation", lambda: _measurement(_value_at(values, 1), 100.0))
    if pct:
        frame.add(Kind.SPO2, {"pct": _tidy(pct)}, None, time_required=False)


def _body_temperature(frame: _FrameDecoder, values: list[bytes], type_name: str) -> None:
    raw = _value_at(values, 1 if type_name == "BTEMP2" else 0)
    celsius = frame.attempt("temperature", lambda: _required(raw))
    if celsius is None or celsius == 0 or (type_name == "BTEMP2" and celsius in _BTEMP_ERRORS):
        return  # 0 = no reading; btemp2 flags a low/high measuring error with exactly 0 or 1
    if not _MIN_CELSIUS < celsius < _MAX_CELSIUS:
        frame.reject(RejectReason.OUT_OF_RANGE, "temperature: out of range")
        return
    frame.add(Kind.BODY_TEMP, {"celsius": _tidy(celsius)}, None, time_required=False)


def _emit_bpm(frame: _FrameDecoder, raw: bytes | None, *, required: bool = True) -> None:
    if raw is None and not required:
        return
    bpm = frame.attempt("heart rate", lambda: _measurement(raw, _MAX_BPM))
    if bpm:
        frame.add(Kind.HEART_RATE, {"bpm": _tidy(bpm)}, None, time_required=False)


def _emit_blood_pressure(
    frame: _FrameDecoder, systolic_raw: bytes | None, diastolic_raw: bytes | None
) -> None:
    systolic = frame.attempt("systolic", lambda: _measurement(systolic_raw, _MAX_MMHG))
    diastolic = frame.attempt("diastolic", lambda: _measurement(diastolic_raw, _MAX_MMHG))
    if systolic and diastolic:  # 0 (or a rejected value) on either side: no reading
        fields: dict[str, FieldValue] = {"systolic": _tidy(systolic), "diastolic": _tidy(diastolic)}
        frame.add(Kind.BLOOD_PRESSURE, fields, None, time_required=False)


_HANDLERS: Final[dict[str, _Handler]] = {
    "LK": _keep_alive,
    "HEART": _heart_rate,
    "PULSE": _heart_rate,
    "BPHRT": _blood_pressure_and_heart_rate,
    "BLOOD": _blood_pressure_and_heart_rate,
    "OXYGEN": _oxygen_saturation,
    "BTEMP2": _body_temperature,
    "TEMP": _body_temperature,
}


# --- field parsers -------------------------------------------------------------------------------


def _value_at(values: list[bytes], index: int) -> bytes | None:
    return values[index] if index < len(values) else None


def _number(raw: bytes) -> float | None:
    """A decimal number (leading spaces and zero padding tolerated); None when empty.

    Raises:
        _FieldError: when the field holds something that is not a plain decimal.
    """
    text = raw.strip(b" \t")
    if not text:
        return None
    if _NUMBER.fullmatch(text) is None:
        raise _FieldError(RejectReason.WRONG_TYPE, "not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _FieldError(RejectReason.NON_FINITE_NUMBER, "not finite")
    return value


def _required(raw: bytes | None) -> float:
    """A value the frame's layout requires; an empty one is "no reading", returned as 0.

    Raises:
        _FieldError: when the frame is too short to hold the value, or it is not a number.
    """
    if raw is None:
        raise _FieldError(RejectReason.MISSING_FIELD, "missing")
    value = _number(raw)
    return 0.0 if value is None else value


def _measurement(raw: bytes | None, maximum: float) -> float:
    """A health value: 0 (or empty) means "no valid reading" (returned as 0, emitted as nothing)."""
    value = _required(raw)
    if not 0 <= value <= maximum:
        raise _FieldError(RejectReason.OUT_OF_RANGE, "out of range")
    return value


def _percent(raw: bytes) -> float | None:
    value = _number(raw)
    if value is not None and not 0 <= value <= 100:  # noqa: PLR2004 - a percentage
        raise _FieldError(RejectReason.OUT_OF_RANGE, "out of range")
    return value


def _count(raw: bytes) -> float | None:
    text = raw.strip(b" \t")
    if not text:
        return None
    if _INTEGER.fullmatch(text) is None:
        raise _FieldError(RejectReason.WRONG_TYPE, "not an integer")
    value = int(text)
    if value < 0:
        raise _FieldError(RejectReason.OUT_OF_RANGE, "negative")
    return value


def _tidy(value: float) -> int | float:
    """Integral readings stay integers (``72``, not ``72.0``) in stored event fields."""
    return int(value) if value.is_integer() else value
