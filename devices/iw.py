"""Codec for the IW watch protocol (``IWAPxx...#``; Wonlex / Vivistar-type elderly watches).

Framing: ASCII text over a long-lived TCP connection. Every device frame starts with
``IW`` + ``AP`` + a two-character type and ends with ``#`` (Traccar's tests and many
captures show it with the ``#`` stripped, so a missing terminator is accepted). The
gateway may hand over one TCP read holding several frames, so the payload is split on
``#`` (and on line breaks, which captures add) and each frame is decoded on its own, in
order. A frame cut in two by a TCP read cannot be reassembled by a pure function; both
halves are rejected (the gateway must buffer up to ``#``). Header letters are matched
case-insensitively.

TRV variant: the same protocol is spoken with the maker prefix ``TRV`` (``TRVAP00<IMEI>``,
``TRVAP01...``) and, on that firmware, with two more device-side direction letters: ``YP``
(``YP03``, ``YP14``: positions in the ``AP01`` layout) and ``CP`` (``CP01``: the heartbeat). It
arrives on the same ``iw`` channel. The server answers each frame with the next letter
(``AP`` -> ``BP``, ``YP`` -> ``ZP``, ``CP`` -> ``DP``); such a reply echoed into the stream is not
telemetry and is quarantined (``unsupported_frame``), like every well-formed frame of a type
this codec does not decode (``AP12`` phone book, ``APXL``...): the rejection names the frame
type only, so that an unknown type is seen instead of silently yielding nothing. Voice
(``AP07``) is the one exception: it is known not to be telemetry, and a recording must not be
copied into the quarantine, so it yields nothing. A frame that does not start with a header,
or whose fixed-width block is cut or damaged, is a ``malformed_frame``.

Identity: only the login frame ``IWAP00<IMEI>`` names the device (it yields an
``online`` event for that IMEI). Every later frame belongs to the TCP session, so the
gateway must put the IMEI in the topic (``context.device_id``). Frames that follow a
login in the same payload belong to that login's session and take its IMEI; any other
frame without ``context.device_id`` is rejected (``missing_field``, "no device identity").

Frames:

* ``AP01`` (position), ``AP10`` (alarm + position), and TRV's ``YP03`` / ``YP14`` start with a
  fixed-width block:
  date ``yymmdd``, validity ``A``/``V``, latitude ``ddmm.mmmm`` + ``N``/``S``, longitude
  ``dddmm.mmmm`` + ``E``/``W``, speed ``ddd.d`` (km/h, unused), time ``hhmmss``, course
  (six characters), then 3+3+3+1+2+2 digits: GSM signal, satellites, battery %, acc,
  arm state, working mode (some firmware appends a few more digits). Comma fields follow:
  ``MCC,MNC,LAC,CID``, and on ``AP10`` the alarm code, then language and WiFi data. The
  date and time have no zone in the vendor material; Traccar reads them as UTC and so do
  we. A GPS location is emitted only for a fix (``A``) that is not 0/0 (``V`` means the
  coordinates are stale or zero). Without one, the serving cell (``MCC,MNC,LAC,CID``) and the
  WiFi records (``SSID|MAC|rssi`` joined by ``&``) the frame carries become a location with
  ``position_source: network`` and no coordinates (see :mod:`devices.iw_network`): indoors that
  is all responders can go by. An alarm never depends on either. The battery level is emitted
  from the block either way (``000`` is read as "level unknown", like every other zero reading
  of these watches).
* ``AP10`` alarm codes (Traccar's reading): ``01`` SOS → ``panic``; ``05`` or ``06`` → ``fall``
  (stage ``alarm``); ``00`` → no alarm; any other code → ``alarm`` labelled ``iw <code>``,
  because an alarm we do not understand must still reach an operator. The alarm code is
  read from the comma fields independently of the fixed-width block, so a damaged block
  does not lose the alarm (it is then filed under the receive time and flagged); an
  ``AP10`` whose code cannot be read at all raises ``alarm`` labelled ``iw unknown`` (flagged
  ``invalid_fields``, plus a rejection recording the missing code), for the same life-safety
  reason. So does a lone ``0``: it may be ``00`` written short, or ``01`` (SOS) cut by a TCP
  read. A garbled cell field that swallowed or added a comma shifts the code: it is then
  found before the language field (see :mod:`devices.iw_alarm`), the alarm flagged
  ``malformed_frame`` and the frame rejected so that its bytes are kept; a shifted ``00``
  found that way is no alarm, a shifted frame without a findable code is ``iw unknown``.
  The TRV variant's ``TRVAP10`` is the same frame.
* ``AP03,<gsm/sat/battery block>,steps,rolls``: the keep-alive → ``heartbeat`` (with the
  battery level from the block) and ``steps`` (rolls, the tumble counter, has no kind). TRV's
  ``CP01,<gsm/gps/battery/acc/arm/mode block + settings>`` is the same heartbeat, without steps.
* ``AP02,language,reply,n,MCC,MNC,LAC|CID|rssi...,m,SSID|MAC|rssi&...``: the towers and access
  points of a watch without a fix → a network ``location`` under the receive time.
* Health frames carry no time, so they are filed under the receive time:
  ``AP49,HR`` → ``heart_rate``; ``APHT,HR,SYS,DIA`` → ``heart_rate`` + ``blood_pressure`` (note
  the order differs from the 3G ``bphrt`` frame); ``APHP,HR,SYS,DIA,SpO2,sugar,temp`` →
  ``heart_rate``, ``blood_pressure``, ``spo2``, ``body_temp`` (blood sugar has no canonical kind);
  ``AP50,temp,battery%`` → ``body_temp`` + ``battery``. A zero or empty value means "no valid
  reading" and yields nothing (a frame left with nothing at all, like a position without fix,
  networks or battery, is rejected as ``no_events`` rather than silent); a value that is not
  a number or is out of range is rejected on its own without losing the frame's other readings.

Rejection details name the frame and field, never payload bytes or health values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from devices import iw_alarm, iw_network
from devices.canonical import Decoded, Rejection
from devices.codec import MALFORMED_FRAME_FLAG, EventSink, guarded, rejected
from devices.errors import RejectReason
from devices.events import Event, FieldValue, Kind
from devices.topics import is_valid_id

if TYPE_CHECKING:
    from devices.codec import DecodeContext

_FRAME_SPLIT_RE = re.compile(r"[#\r\n\x00]+")
_HEADER_RE = re.compile(r"(IW|TRV)([A-Z])P([0-9A-Z]{2})", re.IGNORECASE)
#: Direction letters of frames a device sends; the server answers with the next letter
#: (``AP`` -> ``BP``, ``YP`` -> ``ZP``, ``CP`` -> ``DP``).
_DEVICE_DIRECTIONS = frozenset("AYC")
#: Frames known not to be telemetry whose bytes must not be copied into the quarantine (voice).
_NOT_TELEMETRY = frozenset({"AP07"})
_BLOCK_RE = re.compile(
    r"(?P<date>\d{6})(?P<valid>[AV])"
    r"(?P<lat_deg>\d{2})(?P<lat_min>\d{2}\.\d+)(?P<ns>[NS])"
    r"(?P<lon_deg>\d{3})(?P<lon_min>\d{2}\.\d+)(?P<ew>[EW])"
    r"(?P<speed>\d{1,3}\.\d)(?P<time>\d{6})(?P<course>[\d.]{6})"
    r"(?P<gsm>\d{3})(?P<satellites>\d{3})(?P<battery>\d{3})(?P<acc>\d)(?P<arm>\d{2})(?P<mode>\d{2})"
    r"\d{0,5}",
    re.IGNORECASE,
)
_STATUS_RE = re.compile(r"(?P<gsm>\d{3})(?P<satellites>\d{3})(?P<battery>\d{3})(?P<acc>\d)\d{4}\d*")
_LOGIN_TYPE = "AP00"
_ALARM_TYPE = "AP10"
_ALARM_CODE_RE = re.compile(r"\d{1,3}")
#: A lone ``0`` is ambiguous: "no alarm" written short, or ``01`` (SOS) cut by a TCP read. It is
#: read as an alarm of unknown cause: an operator dismisses a false one, a lost SOS is lost.
_AMBIGUOUS_CODE = "0"
_SOS_CODE = 1
_FALL_CODES = frozenset({5, 6})
_MAX_BPM = 300.0
_MAX_MMHG = 300.0
_MIN_BODY_C = 20.0
_MAX_BODY_C = 46.0
_MAX_PCT = 100.0
_MINUTES_PER_DEGREE = 60.0
_MAX_LAT = 90.0
_MAX_LON = 180.0
_MAX_STEPS_DIGITS = 9  # a step counter; also keeps int() away from huge digit strings


@dataclass(slots=True)
class _Frame(EventSink):
    """One frame being decoded: an IW event is identified by its frame's text and place in the payload.

    A frame yields several kinds (a position, a battery level...), so a rejection make_event
    decides on names the kind it is about.
    """

    text: str = field(kw_only=True)
    index: int = field(kw_only=True)
    kind_in_detail: bool = field(default=True, kw_only=True)

    def add(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        device_time: datetime | None,
        *,
        time_required: bool = False,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        """Build one event; ``device_time`` None means the frame carries no time."""
        identity: dict[str, object] = {"format": "iw", "frame": self.text, "index": self.index, "kind": kind}
        self.emit(
            kind, fields, device_time=device_time, identity=identity, time_required=time_required, flags=flags
        )


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode one payload of IW frames into canonical events.

    Never raises: an unexpected failure becomes an ``invalid_structure`` rejection.
    """
    return guarded(_decode, payload, context, detail="IW payload could not be decoded")


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    text = payload.decode("utf-8", errors="replace")
    frames = [part.strip() for part in _FRAME_SPLIT_RE.split(text)]
    frames = [part for part in frames if part]
    if not frames:
        return rejected(RejectReason.INVALID_STRUCTURE, "empty IW payload")
    many = len(frames) > 1
    events: list[Event] = []
    rejections: list[Rejection] = []
    session_id = context.device_id
    for index, frame_text in enumerate(frames):
        # Rejections name the frame only when there is more than one to tell apart.
        prefix = f"frame {index}: " if many else ""
        frame = _Frame(session_id or "", context, prefix=prefix, text=frame_text, index=index)
        session_id = _decode_frame(frame, session_id)
        events.extend(frame.events)
        rejections.extend(frame.rejections)
    return Decoded(events, rejections)


def _decode_frame(frame: _Frame, session_id: str | None) -> str | None:
    """Decode one frame into ``frame``; return the session's device id after it (a login sets it)."""
    header = _HEADER_RE.match(frame.text)
    if header is None:
        frame.reject(RejectReason.MALFORMED_FRAME, "not an IW frame")
        return session_id
    maker, direction = header.group(1).upper(), header.group(2).upper()
    frame_type = f"{direction}P{header.group(3).upper()}"
    body = frame.text[header.end() :]
    if direction not in _DEVICE_DIRECTIONS:
        frame.reject(RejectReason.UNSUPPORTED_FRAME, f"{maker}{frame_type} is a server reply, not telemetry")
        return session_id
    if frame_type == _LOGIN_TYPE:
        login_id = _login(frame, body)
        if login_id is None:
            return session_id
        session_id = frame.device_id = login_id
    handler = _HANDLERS.get(frame_type)
    if handler is None:
        if frame_type not in _NOT_TELEMETRY:
            # Only the header is named: it is the type, never payload data.
            frame.reject(
                RejectReason.UNSUPPORTED_FRAME, f"IW frame type {maker}{frame_type} is not supported"
            )
        return session_id
    if session_id is None:
        frame.reject(RejectReason.MISSING_FIELD, "no device identity")
        return session_id
    handler(frame, frame_type, body)
    if not frame.events and not frame.rejections:
        # A 0 or empty reading is the watch's "no valid reading": said, not silent.
        frame.reject(RejectReason.NO_EVENTS, f"{frame_type} holds no valid reading")
    return session_id


def _login(frame: _Frame, body: str) -> str | None:
    """The IMEI a login frame names, or None (and a rejection) when it names none usable."""
    imei = body.split(",", 1)[0].strip()
    if not imei:
        frame.reject(RejectReason.MISSING_FIELD, "AP00 login without IMEI")
        return None
    if not is_valid_id(imei):
        frame.reject(RejectReason.WRONG_TYPE, "AP00 IMEI is not a usable id")
        return None
    return imei


def _on_login(frame: _Frame, _type: str, _body: str) -> None:
    frame.add(Kind.ONLINE, {}, None)


def _on_position(frame: _Frame, frame_type: str, body: str) -> None:
    fields = body.split(",")
    is_alarm_frame = frame_type == _ALARM_TYPE
    block = _BLOCK_RE.fullmatch(fields[0].strip())
    device_time = _block_time(block) if block is not None else None
    if is_alarm_frame:
        _alarm(frame, fields, device_time)
    if block is None:
        frame.reject(RejectReason.MALFORMED_FRAME, f"{frame_type} position block is malformed")
        return
    if device_time is None:
        frame.reject(RejectReason.BAD_TIMESTAMP, f"{frame_type} date/time is not a valid date")
        return
    fixed = block["valid"].upper() == "A" and _location(frame, block, device_time)
    if not fixed:
        # No GPS fix: the towers and access points it heard are all responders can go by.
        network = iw_network.position_fields(fields)
        if network:
            frame.add(Kind.LOCATION, network, device_time)
    battery = int(block["battery"])
    if battery > _MAX_PCT:
        frame.reject(RejectReason.OUT_OF_RANGE, "battery level out of range")
    elif battery > 0:  # 000 is the watch's "level unknown"
        frame.add(Kind.BATTERY, {"pct": battery}, device_time)


def _alarm(frame: _Frame, fields: list[str], device_time: datetime | None) -> None:
    raw, shifted = iw_alarm.locate_code(fields)
    flags = frozenset({MALFORMED_FRAME_FLAG}) if shifted else frozenset()
    if shifted:
        # Kept in quarantine: the code was not where the layout puts it (a garbled cell field).
        frame.reject(RejectReason.MALFORMED_FRAME, "AP10 fields are shifted")
    if _ALARM_CODE_RE.fullmatch(raw) is None or raw == _AMBIGUOUS_CODE:
        # AP10 is the alarm upload: an unreadable code must still reach an operator.
        if not shifted:
            frame.reject(RejectReason.MISSING_FIELD, "AP10 alarm code missing or not numeric")
        _emit_alarm(frame, Kind.ALARM, {"label": "iw unknown"}, device_time, flags | {"invalid_fields"})
        return
    code = int(raw)
    if code == 0:
        return
    if code == _SOS_CODE:
        _emit_alarm(frame, Kind.PANIC, {}, device_time, flags)
    elif code in _FALL_CODES:
        _emit_alarm(frame, Kind.FALL, {"stage": "alarm"}, device_time, flags)
    else:
        _emit_alarm(frame, Kind.ALARM, {"label": f"iw {raw}"}, device_time, flags)


def _emit_alarm(
    frame: _Frame,
    kind: Kind,
    fields: dict[str, FieldValue],
    device_time: datetime | None,
    flags: frozenset[str],
) -> None:
    # A None time here means the block's time is damaged, not absent: make_event files the
    # alarm under the receive time and flags it (life-safety kinds are never rejected).
    frame.add(kind, fields, device_time, time_required=True, flags=flags)


def _block_time(block: re.Match[str]) -> datetime | None:
    date, clock = block["date"], block["time"]
    try:
        return datetime(
            2000 + int(date[0:2]),
            int(date[2:4]),
            int(date[4:6]),
            int(clock[0:2]),
            int(clock[2:4]),
            int(clock[4:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _location(frame: _Frame, block: re.Match[str], device_time: datetime) -> bool:
    """Emit the block's fix; tell whether there was one (False for 0/0 or a rejected one)."""
    lat_min, lon_min = float(block["lat_min"]), float(block["lon_min"])
    lat = int(block["lat_deg"]) + lat_min / _MINUTES_PER_DEGREE
    lon = int(block["lon_deg"]) + lon_min / _MINUTES_PER_DEGREE
    if block["ns"].upper() == "S":
        lat = -lat
    if block["ew"].upper() == "W":
        lon = -lon
    if lat_min >= _MINUTES_PER_DEGREE or lon_min >= _MINUTES_PER_DEGREE or abs(lat) > _MAX_LAT:
        frame.reject(RejectReason.OUT_OF_RANGE, "coordinates out of range")
        return False
    if abs(lon) > _MAX_LON:
        frame.reject(RejectReason.OUT_OF_RANGE, "coordinates out of range")
        return False
    if lat == 0 and lon == 0:
        return False  # a "fix" at 0/0 is no fix
    frame.add(Kind.LOCATION, {"lat": round(lat, 7), "lon": round(lon, 7)}, device_time)
    return True


def _on_keepalive(frame: _Frame, frame_type: str, body: str) -> None:
    fields = body.lstrip(",").split(",")
    status = _STATUS_RE.fullmatch(fields[0].strip())
    heartbeat: dict[str, FieldValue] = {}
    if status is None:
        frame.reject(RejectReason.MALFORMED_FRAME, f"{frame_type} status block is malformed")
    elif int(status["battery"]) > _MAX_PCT:
        frame.reject(RejectReason.OUT_OF_RANGE, "battery level out of range")
    elif int(status["battery"]) > 0:  # 000 is the watch's "level unknown"
        heartbeat["battery_pct"] = int(status["battery"])
    frame.add(Kind.HEARTBEAT, heartbeat, None)
    steps = fields[1].strip() if len(fields) > 1 else ""
    if not steps:
        return
    if not steps.isdecimal() or not steps.isascii():
        frame.reject(RejectReason.WRONG_TYPE, "steps is not a whole number")
        return
    if len(steps) > _MAX_STEPS_DIGITS:
        frame.reject(RejectReason.OUT_OF_RANGE, "steps out of range")
        return
    frame.add(Kind.STEPS, {"count": int(steps)}, None)


def _health_fields(body: str) -> list[str]:
    return [part.strip() for part in body.lstrip(",").split(",")]


def _on_heart_rate(frame: _Frame, _type: str, body: str) -> None:
    values = _health_fields(body)
    _heart_rate(frame, values, 0)


def _on_heart_pressure(frame: _Frame, _type: str, body: str) -> None:
    values = _health_fields(body)
    _heart_rate(frame, values, 0)
    _blood_pressure(frame, values, 1)


def _on_health_panel(frame: _Frame, _type: str, body: str) -> None:
    values = _health_fields(body)
    _heart_rate(frame, values, 0)
    _blood_pressure(frame, values, 1)
    spo2 = _reading(frame, values, 3, "SpO2", 0.0, _MAX_PCT)
    if spo2 is not None:
        frame.add(Kind.SPO2, {"pct": spo2}, None)
    _body_temp(frame, values, 5)


def _on_temperature(frame: _Frame, _type: str, body: str) -> None:
    values = _health_fields(body)
    _body_temp(frame, values, 0)
    battery = _reading(frame, values, 1, "battery level", 0.0, _MAX_PCT)
    if battery is not None:
        frame.add(Kind.BATTERY, {"pct": battery}, None)


def _heart_rate(frame: _Frame, values: list[str], position: int) -> None:
    bpm = _reading(frame, values, position, "heart rate", 0.0, _MAX_BPM)
    if bpm is not None:
        frame.add(Kind.HEART_RATE, {"bpm": bpm}, None)


def _blood_pressure(frame: _Frame, values: list[str], position: int) -> None:
    systolic = _reading(frame, values, position, "systolic pressure", 0.0, _MAX_MMHG)
    diastolic = _reading(frame, values, position + 1, "diastolic pressure", 0.0, _MAX_MMHG)
    if systolic is not None and diastolic is not None:
        frame.add(Kind.BLOOD_PRESSURE, {"systolic": systolic, "diastolic": diastolic}, None)


def _body_temp(frame: _Frame, values: list[str], position: int) -> None:
    celsius = _reading(frame, values, position, "body temperature", _MIN_BODY_C, _MAX_BODY_C, inclusive=False)
    if celsius is not None:
        frame.add(Kind.BODY_TEMP, {"celsius": celsius}, None)


def _reading(  # noqa: PLR0917 - private helper with a fixed call shape
    frame: _Frame,
    values: list[str],
    position: int,
    name: str,
    low: float,
    high: float,
    *,
    inclusive: bool = True,
) -> float | int | None:
    """Parse one health value: None for "no reading" (missing, empty, 0) or a rejected one."""
    raw = values[position] if position < len(values) else ""
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        frame.reject(RejectReason.WRONG_TYPE, f"{name} is not a number")
        return None
    if not math.isfinite(value):
        frame.reject(RejectReason.NON_FINITE_NUMBER, f"{name} is not finite")
        return None
    if value == 0:
        return None  # the watch's "no valid reading"
    in_range = low < value <= high if inclusive else low < value < high
    if not in_range:
        frame.reject(RejectReason.OUT_OF_RANGE, f"{name} out of range")
        return None
    return int(value) if value.is_integer() else value


def _on_network_list(frame: _Frame, frame_type: str, body: str) -> None:
    outcome = iw_network.list_fields(body)
    if isinstance(outcome, str):
        frame.reject(RejectReason.MALFORMED_FRAME, f"{frame_type} {outcome}")
    elif not outcome:
        frame.reject(RejectReason.MISSING_FIELD, f"{frame_type} lists no usable cell tower or access point")
    else:
        frame.add(Kind.LOCATION, outcome, None)


_HANDLERS = {
    _LOGIN_TYPE: _on_login,
    "AP01": _on_position,
    _ALARM_TYPE: _on_position,
    # TRV firmware: YP03 / YP14 are positions in the AP01 layout, CP01 is the heartbeat.
    "YP03": _on_position,
    "YP14": _on_position,
    "AP03": _on_keepalive,
    "CP01": _on_keepalive,
    "AP02": _on_network_list,
    "AP49": _on_heart_rate,
    "APHT": _on_heart_pressure,
    "APHP": _on_health_panel,
    "AP50": _on_temperature,
}
