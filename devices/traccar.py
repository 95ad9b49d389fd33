"""Codec for JSON forwarded by a Traccar server (``event.forward.url`` / ``forward.url`` / MQTT forwarders).

Traccar decodes hundreds of tracker protocols and can forward the result as JSON, over
HTTP or MQTT, in two shapes:

* event forwarding: ``{"event": {...}, "position": {...}?, "device": {...}, "geofence"?,
  "maintenance"?}``; until 2022 it also carried a ``users`` array, which is ignored;
* position forwarding: ``{"position": {...}, "device": {...}}``.

Identity: ``device.uniqueId`` (usually the IMEI). ``deviceId`` / ``device.id`` is Traccar's
internal database key and is never used. Without a usable ``uniqueId`` the identity comes
from ``context.device_id`` (the topic); with neither the payload is rejected
(``missing_field``, "no device identity").

Events (``event.type``):

* ``alarm``: the cause is ``event.attributes.alarm``. ``sos`` → ``panic``; ``fallDown`` →
  ``fall`` (stage ``alarm``); ``removing`` → ``worn`` with ``on=False``; ``lowBattery`` → a
  ``battery`` reading, but only when the attached position says the level
  (``batteryLevel``); ``powerCut`` (taken off the charger, or a vehicle's supply cut) has
  no canonical kind and yields nothing; ``general`` and every value this codec does not
  know → ``alarm`` with the source's label, because an alarm must never be dropped.
  An alarm event without any cause is still an ``alarm`` (no label).
* ``deviceOnline`` → ``online``; ``deviceOffline`` and ``deviceInactive`` → ``offline``.
* ``deviceUnknown``, geofence, motion, maintenance and every other type → no event.

Event time: ``event.eventTime`` (since March 2021), else ``event.serverTime`` (older
servers). Positions: a location is filed under ``fixTime`` (else ``deviceTime``); readings
and alarms found on a position under ``deviceTime`` (else ``fixTime``), because for a report
without a fresh fix Traccar copies the *last* fix time into ``fixTime``. ``serverTime`` is
never used for a position: buffered records arrive months late. Times carry an offset;
one without is read as UTC.

A position (forwarded alone, or attached to an event) yields:

* ``location`` only when ``valid`` is true and the fix is not 0/0, with ``accuracy_m`` from
  ``accuracy`` when it is positive;
* readings from ``attributes``: ``batteryLevel`` (%) → ``battery`` (``battery`` is a voltage
  and is ignored); ``heartRate`` → ``heart_rate``; ``steps`` → ``steps``; ``temp1`` →
  ``body_temp`` only when plausible for a body (20 < t < 46, since trackers also use it
  for ambient or engine sensors); ``bloodOxygen`` → ``spo2``; ``pressureHigh`` /
  ``pressureLow`` → ``blood_pressure``. A zero means "no reading" and yields nothing.
* on a forwarded position, ``attributes.alarm`` may list several alarms separated by
  commas (``"sos,lowBattery"``): each maps as above. On an event-forward payload the
  event's own alarm is used instead, because Traccar raised that event *from* the
  position's alarm attribute and reading both would double it.

Alarm keys are built from the device, the alarm and its time, not from the envelope, so
the same alarm arriving through both the event and the position forwarder collapses into
one event.

Rejection details never contain payload values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from devices.canonical import Decoded, Rejection
from devices.codec import EventSink, guarded, rejected
from devices.errors import RejectReason
from devices.events import LIFE_SAFETY_KINDS, FieldValue, Kind
from devices.text import JsonError, load_json
from devices.timing import TimestampError, parse_ts
from devices.topics import is_valid_id

if TYPE_CHECKING:
    from devices.codec import DecodeContext

_ALARM_EVENT = "alarm"
_ONLINE_EVENTS = frozenset({"deviceOnline"})
_OFFLINE_EVENTS = frozenset({"deviceOffline", "deviceInactive"})
_NO_EVENT_ALARMS = frozenset({"lowbattery", "powercut"})
_MAX_LABEL = 64
_MAX_BPM = 300.0
_MAX_MMHG = 300.0
_MAX_PCT = 100.0
_MIN_BODY_C = 20.0
_MAX_BODY_C = 46.0
_MAX_LAT = 90.0
_MAX_LON = 180.0
_MAX_STEPS = 2**31 - 1  # a step counter, not a number store


class _MalformedError(ValueError):
    """A field of the wrong type."""


class _NonFiniteError(_MalformedError):
    """A number that is NaN or infinite (Python's JSON parser accepts them)."""


@dataclass(frozen=True, slots=True)
class _When:
    """A payload time: ``time`` None with ``bad`` False means the payload had none."""

    time: datetime | None = None
    bad: bool = False


@dataclass(slots=True)
class _Builder(EventSink):
    """A Traccar event is identified by its device, kind and time plus what the caller names.

    The time is always part of the identity (the receive time when the payload has none),
    so the sink does not add one; a make_event rejection names the kind it is about.
    """

    kind_in_detail: bool = field(default=True, kw_only=True)
    stamp_receive_time: bool = field(default=False, kw_only=True)

    def add(
        self, kind: Kind, fields: dict[str, FieldValue], when: _When, identity: dict[str, object]
    ) -> None:
        """Build one event; ``identity`` names it for :func:`event_key`."""
        if when.bad and kind not in LIFE_SAFETY_KINDS:
            self.reject(RejectReason.BAD_TIMESTAMP, f"{kind}: time is not a valid timestamp")
            return
        item: dict[str, object] = {"format": "traccar", "device": self.device_id, "kind": kind, **identity}
        item["time"] = (when.time or self.context.received_at).isoformat()
        self.emit(kind, fields, device_time=when.time, identity=item, time_required=True)


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode one Traccar-forwarded JSON payload into canonical events.

    Never raises: an unexpected failure becomes an ``invalid_structure`` rejection.
    """
    return guarded(_decode, payload, context, detail="payload could not be decoded")


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    try:
        document = load_json(payload)
    except JsonError as exc:
        return rejected(exc.reason, f"payload is not valid JSON: {exc.detail}")
    shape = _shape(document)
    if isinstance(shape, Rejection):
        return Decoded([], [shape])
    event, position = shape
    device_id, problem = _identity(document.get("device"), context)
    if device_id is None:
        return Decoded([], [problem or Rejection(RejectReason.MISSING_FIELD, "no device identity")])
    builder = _Builder(device_id, context)
    if event is not None:
        _event(builder, event)
    if position is not None:
        _position(builder, position, with_alarms=event is None)
    return builder.result()


def _shape(document: object) -> tuple[dict[str, object] | None, dict[str, object] | None] | Rejection:
    """Split the payload into its event and position, or say why it is neither shape."""
    if not isinstance(document, dict):
        return Rejection(RejectReason.INVALID_STRUCTURE, "payload must be a JSON object")
    event = document.get("event")
    position = document.get("position")
    if event is not None and not isinstance(event, dict):
        return Rejection(RejectReason.INVALID_STRUCTURE, "event must be an object")
    if position is not None and not isinstance(position, dict):
        return Rejection(RejectReason.INVALID_STRUCTURE, "position must be an object")
    if event is None and position is None:
        return Rejection(RejectReason.INVALID_STRUCTURE, "payload has neither an event nor a position")
    return event, position


def _identity(device: object, context: DecodeContext) -> tuple[str | None, Rejection | None]:
    unique_id: object = device.get("uniqueId") if isinstance(device, dict) else None
    if isinstance(unique_id, int) and not isinstance(unique_id, bool):
        unique_id = str(unique_id)
    if isinstance(unique_id, str):
        unique_id = unique_id.strip()
        if is_valid_id(unique_id):
            return unique_id, None
        if context.device_id is None:
            return None, Rejection(RejectReason.WRONG_TYPE, "device.uniqueId is not a usable device id")
    return context.device_id, None


def _event(builder: _Builder, event: dict[str, object]) -> None:
    event_type = event.get("type")
    if not isinstance(event_type, str):
        builder.reject(RejectReason.MISSING_FIELD, "event.type missing or not text")
        return
    when = _event_time(event)
    identity: dict[str, object] = {"type": event_type}
    if event_type == _ALARM_EVENT:
        attributes = event.get("attributes")
        raw = attributes.get("alarm") if isinstance(attributes, dict) else None
        labels = _alarm_labels(raw)
        if not labels:
            # An alarm event whose cause is lost is still an alarm.
            builder.add(Kind.ALARM, {}, when, identity)
            return
        for label in labels:
            _alarm(builder, label, when)
    elif event_type in _ONLINE_EVENTS:
        builder.add(Kind.ONLINE, {}, when, identity)
    elif event_type in _OFFLINE_EVENTS:
        builder.add(Kind.OFFLINE, {}, when, identity)


def _event_time(event: dict[str, object]) -> _When:
    return _first_time(event, ("eventTime", "serverTime"))


def _first_time(record: dict[str, object], keys: tuple[str, ...]) -> _When:
    """The first of ``keys`` present in ``record``, parsed."""
    for key in keys:
        value = record.get(key)
        if value is not None:
            parsed = _parse_time(value)
            return _When(parsed, bad=parsed is None)
    return _When()


def _alarm_labels(raw: object) -> list[str]:
    if not isinstance(raw, str):
        return [] if raw is None else [str(raw)[:_MAX_LABEL]]
    return [label.strip()[:_MAX_LABEL] for label in raw.split(",") if label.strip()]


def _alarm(builder: _Builder, label: str, when: _When) -> None:
    identity: dict[str, object] = {"alarm": label}
    name = label.casefold()  # Traccar's names are camelCase; other forwarders vary the case
    if name == "sos":
        builder.add(Kind.PANIC, {}, when, identity)
    elif name == "falldown":
        builder.add(Kind.FALL, {"stage": "alarm"}, when, identity)
    elif name == "removing":
        builder.add(Kind.WORN, {"on": False}, when, identity)
    elif name in _NO_EVENT_ALARMS:
        # lowBattery: the level is the reading, and it is emitted from the position's
        # batteryLevel when one is known (never invented). powerCut: no canonical kind.
        return
    else:
        builder.add(Kind.ALARM, {"label": label}, when, identity)


#: A position forward carries at least one of these; one with none is not a position.
_POSITION_KEYS = ("fixTime", "deviceTime", "valid", "latitude", "longitude", "attributes")


def _position(builder: _Builder, position: dict[str, object], *, with_alarms: bool) -> None:
    if not any(key in position for key in _POSITION_KEYS):
        builder.reject(RejectReason.MISSING_FIELD, "position carries no time, fix or attributes")
        return
    fix_time = _first_time(position, ("fixTime", "deviceTime"))
    report_time = _first_time(position, ("deviceTime", "fixTime"))
    attributes = position.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        builder.reject(RejectReason.WRONG_TYPE, "position.attributes must be an object")
        attributes = None
    if with_alarms and attributes is not None:
        for label in _alarm_labels(attributes.get("alarm")):
            _alarm(builder, label, report_time)
    _location(builder, position, fix_time)
    if attributes is not None:
        _readings(builder, attributes, report_time)


def _location(builder: _Builder, position: dict[str, object], when: _When) -> None:
    if position.get("valid") is not True:
        return
    try:
        lat = _number(position.get("latitude"))
        lon = _number(position.get("longitude"))
        accuracy = _number(position.get("accuracy"))
    except _MalformedError:
        builder.reject(RejectReason.WRONG_TYPE, "position coordinates are not numbers")
        return
    if lat is None or lon is None:
        builder.reject(RejectReason.MISSING_FIELD, "valid position without coordinates")
        return
    if abs(lat) > _MAX_LAT or abs(lon) > _MAX_LON:
        builder.reject(RejectReason.OUT_OF_RANGE, "position coordinates out of range")
        return
    if lat == 0 and lon == 0:
        return  # 0/0 is a missing fix, not the Gulf of Guinea
    fields: dict[str, FieldValue] = {"lat": lat, "lon": lon}
    if accuracy is not None and accuracy > 0:
        fields["accuracy_m"] = accuracy
    builder.add(Kind.LOCATION, fields, when, {"lat": lat, "lon": lon})


def _readings(builder: _Builder, attributes: dict[str, object], when: _When) -> None:
    level = _percent(builder, attributes.get("batteryLevel"), "batteryLevel")
    if level is not None:
        builder.add(Kind.BATTERY, {"pct": level}, when, {})
    bpm = _bounded(builder, attributes.get("heartRate"), "heartRate", _MAX_BPM)
    if bpm is not None:
        builder.add(Kind.HEART_RATE, {"bpm": bpm}, when, {})
    _steps(builder, attributes.get("steps"), when)
    _body_temp(builder, attributes.get("temp1"), when)
    spo2 = _percent(builder, attributes.get("bloodOxygen"), "bloodOxygen")
    if spo2 is not None:
        builder.add(Kind.SPO2, {"pct": spo2}, when, {})
    systolic = _bounded(builder, attributes.get("pressureHigh"), "pressureHigh", _MAX_MMHG)
    diastolic = _bounded(builder, attributes.get("pressureLow"), "pressureLow", _MAX_MMHG)
    if systolic is not None and diastolic is not None:
        builder.add(
            Kind.BLOOD_PRESSURE,
            {"systolic": systolic, "diastolic": diastolic},
            when,
            {"systolic": systolic, "diastolic": diastolic},
        )


def _steps(builder: _Builder, raw: object, when: _When) -> None:
    try:
        count = _number(raw)
    except _MalformedError:
        builder.reject(RejectReason.WRONG_TYPE, "steps is not a number")
        return
    if count is None:
        return
    if count < 0 or count > _MAX_STEPS or (isinstance(count, float) and not count.is_integer()):
        builder.reject(RejectReason.OUT_OF_RANGE, "steps is not a whole non-negative number")
        return
    builder.add(Kind.STEPS, {"count": int(count)}, when, {})


def _body_temp(builder: _Builder, raw: object, when: _When) -> None:
    try:
        celsius = _number(raw)
    except _MalformedError:
        return  # temp1 is a generic sensor slot: not a body reading we can use
    if celsius is not None and _MIN_BODY_C < celsius < _MAX_BODY_C:
        builder.add(Kind.BODY_TEMP, {"celsius": celsius}, when, {})


def _percent(builder: _Builder, raw: object, name: str) -> float | int | None:
    return _bounded(builder, raw, name, _MAX_PCT)


def _bounded(builder: _Builder, raw: object, name: str, high: float) -> float | int | None:
    """A positive reading up to ``high``; None (and maybe a rejection) otherwise. 0 = no reading."""
    try:
        value = _number(raw)
    except _NonFiniteError:
        builder.reject(RejectReason.NON_FINITE_NUMBER, f"{name} is not finite")
        return None
    except _MalformedError:
        builder.reject(RejectReason.WRONG_TYPE, f"{name} is not a number")
        return None
    if value is None or value == 0:
        return None
    if not 0 < value <= high:
        builder.reject(RejectReason.OUT_OF_RANGE, f"{name} out of range")
        return None
    return value


def _number(raw: object) -> float | int | None:
    """A finite number (numeric text accepted, as some decoders store text), or None if absent."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _MalformedError
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise _MalformedError from None
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _NonFiniteError
        return int(raw) if raw.is_integer() and abs(raw) < 2**53 else raw
    raise _MalformedError


def _parse_time(value: object) -> datetime | None:
    """Traccar writes ISO 8601 with an offset; a naive time is read as UTC, a number as epoch ms."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return None
    try:
        return parse_ts(value)
    except TimestampError:
        return None
