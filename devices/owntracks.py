"""Codec for OwnTracks phone-app messages.

Framing:
    Each MQTT message (or HTTP POST body) is one JSON object whose ``_type`` says what it
    is. The app publishes on ``owntracks/<user>/<device>`` (locations and the broker's
    last will) and on sub-topics of it (``/event`` for region transitions, ``/info``,
    ``/waypoint``, ``/cmd``...).

Identity:
    ``context.device_id`` when the routing layer gives one; otherwise ``<user>/<device>``
    from ``context.topic`` and, failing that, from the ``topic`` field newer apps put in
    HTTP bodies (the MQTT topic is checked by the broker's ACL, the body is only what the
    app claims, hence that order). Only the default base topic ``owntracks/`` is
    recognised. The result keeps the ``/`` (``jane/nokia``), which is not a valid Carewatch
    device id (``[A-Za-z0-9_-]{1,64}``): the routing layer maps it to the stored device id.
    ``tid`` is a 2-character display label chosen by the user, not unique, and is never
    used as an identity.

``_type: "location"``:
    ``lat``/``lon`` (degrees, may be integers), ``tst`` (time of the fix, epoch seconds;
    ``created_at`` is when the message was built, minutes later for a queued fix), ``acc``
    (accuracy, metres), ``batt`` (battery percent) and metadata that has no canonical
    field (``alt``, ``vel``, ``bs``, ``conn``, ``t`` trigger, ``SSID``, ``inregions``...).
    It yields a ``location`` at ``tst`` and, when ``batt`` is present, a ``battery``
    reading at the same time. A 0/0 position is a phone without a fix: no location (and, without
    ``batt`` either, a ``no_events`` rejection rather than silence). An
    unusable ``acc`` (negative, not a number) is dropped rather than rejecting the fix.

``_type: "lwt"``:
    The last will the broker publishes when the app's connection drops: ``offline`` at the
    receive time. Its ``tst`` is when the app *first connected* (and is missing since
    Android 2.5.0), so it is not the event time (nor part of the event key, which uses the
    receive time because every LWT of a phone is byte-identical). Phones drop connections
    all the time: rules must debounce ``offline`` before alerting.

``_type: "transition"``:
    The phone entered or left one of its regions (published on ``.../event``): ``event``
    (``enter``/``leave``), ``desc`` (the region's name, e.g. "Home"), ``tst`` (when it
    happened), ``lat``/``lon``/``acc`` where it happened (optional), ``wtst`` and ``rid`` (the
    region's creation time and id, which identify a region but mean nothing to an operator).
    It yields a ``location`` at ``tst`` with ``transition`` (``enter``/``leave``) and ``region``
    (the name, when it is short printable text) besides the coordinates: the raw material of
    a later "left home" rule. An ``event`` other than enter/leave is rejected (``wrong_type``).

``_type: "steps"``:
    A step-counter report for ``from``..``to`` (epoch seconds), answering the ``reportSteps``
    command: a ``steps`` reading at ``to`` (``tst`` when ``to`` is missing). The app sends
    ``-1`` when the phone has no step counter: that is quarantined (``unsupported_frame``).

Everything else is quarantined, so that no message silently produces nothing:
    ``encrypted`` (a payload encrypted with the app's shared secret cannot be read here: the
    device is misconfigured for us) and the app-management messages ``waypoint``,
    ``waypoints``, ``card``, ``cmd``, ``configuration``, ``status``, ``request``, ``beacon``...
    are rejected as ``unsupported_frame``, naming the type when it is a plain word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeGuard

from devices.codec import EventSink, guarded, rejected
from devices.errors import RejectReason
from devices.events import FieldValue, Kind
from devices.text import JsonError, load_json

if TYPE_CHECKING:
    from devices.canonical import Decoded
    from devices.codec import DecodeContext

_BASE_TOPIC = "owntracks"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LAT = 90
_MAX_LON = 180
_MAX_PERCENT = 100
_MAX_REGION_LENGTH = 64
_MAX_STEPS = 10**9  # a day's steps, with room; keeps absurd integers out of storage
_TYPE_NAME = re.compile(r"[a-z]{1,24}")
_TRANSITIONS = frozenset({"enter", "leave"})


class _FieldError(Exception):
    """A field that cannot be used; becomes a rejection."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class _Sink(EventSink):
    """An OwnTracks event is identified by the payload's text and its place in it."""

    source: str = ""

    def add(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        *,
        device_time: datetime | None,
        time_required: bool,
    ) -> None:
        """Build one event (or the rejection make_event decides on)."""
        index = len(self.events) + len(self.rejections)
        identity: dict[str, object] = {"payload": self.source, "index": index, "kind": kind.value}
        self.emit(kind, fields, device_time=device_time, identity=identity, time_required=time_required)


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode one OwnTracks message.

    Never raises: any unexpected failure becomes an ``invalid_structure`` rejection.

    Args:
        payload: the MQTT payload or HTTP body.
        context: receive time, and the identity (``device_id``) and/or the topic.

    Returns:
        The events and rejections the payload yields.
    """
    return guarded(_decode, payload, context, detail="unexpected error in an OwnTracks payload")


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    try:
        document: object = load_json(payload)
    except JsonError as exc:
        return rejected(exc.reason, f"OwnTracks payload is not JSON: {exc.detail}")
    if not isinstance(document, dict):
        return rejected(RejectReason.INVALID_STRUCTURE, "OwnTracks payload must be a JSON object")
    device_id = context.device_id or _identity(context.topic) or _identity(document.get("topic"))
    if not device_id:
        return rejected(RejectReason.MISSING_FIELD, "no device identity")
    message_type = document.get("_type")
    if message_type is None:
        return rejected(RejectReason.MISSING_FIELD, "_type is missing")
    if not isinstance(message_type, str):
        return rejected(RejectReason.WRONG_TYPE, "_type must be a string")
    sink = _Sink(device_id, context, source=payload.decode("utf-8", errors="replace"))
    _dispatch(sink, message_type.strip().lower(), document)
    return sink.result()


def _dispatch(sink: _Sink, message_type: str, document: dict[str, object]) -> None:
    match message_type:
        case "location":
            _decode_location(sink, document)
        case "lwt":
            sink.add(Kind.OFFLINE, {}, device_time=None, time_required=False)
        case "transition":
            _decode_transition(sink, document)
        case "steps":
            _decode_steps(sink, document)
        case "encrypted":
            sink.reject(RejectReason.UNSUPPORTED_FRAME, "encrypted OwnTracks payloads cannot be decoded")
        case other:
            named = other if _TYPE_NAME.fullmatch(other) else "that is not a plain word"
            sink.reject(RejectReason.UNSUPPORTED_FRAME, f"OwnTracks message type {named} is not supported")


def _identity(topic: object) -> str | None:
    """Return ``<user>/<device>`` from ``owntracks/<user>/<device>[/...]``."""
    if not isinstance(topic, str):
        return None
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != _BASE_TOPIC or not parts[1] or not parts[2]:  # noqa: PLR2004
        return None
    return f"{parts[1]}/{parts[2]}"


def _decode_location(sink: _Sink, document: dict[str, object]) -> None:
    try:
        fix_time = _epoch_seconds(document.get("tst"))
    except _FieldError as exc:
        sink.reject(exc.reason, exc.detail)
        return
    try:
        lat = _number(document, "lat", _MAX_LAT)
        lon = _number(document, "lon", _MAX_LON)
    except _FieldError as exc:
        sink.reject(exc.reason, exc.detail)
    else:
        if lat != 0 or lon != 0:
            fields: dict[str, FieldValue] = {"lat": lat, "lon": lon}
            accuracy = document.get("acc")
            if _is_number(accuracy) and accuracy >= 0:
                fields["accuracy_m"] = float(accuracy)
            sink.add(Kind.LOCATION, fields, device_time=fix_time, time_required=True)
    if document.get("batt") is None:
        if not sink.events and not sink.rejections:
            sink.reject(RejectReason.NO_EVENTS, "location has no fix (0/0) and no battery level")
        return
    try:
        battery = _number(document, "batt", _MAX_PERCENT, low=0)
    except _FieldError as exc:
        sink.reject(exc.reason, exc.detail)
    else:
        sink.add(Kind.BATTERY, {"pct": battery}, device_time=fix_time, time_required=True)


def _decode_transition(sink: _Sink, document: dict[str, object]) -> None:
    event = document.get("event")
    if event is None:
        sink.reject(RejectReason.MISSING_FIELD, "event is missing")
        return
    if not isinstance(event, str) or event.strip().lower() not in _TRANSITIONS:
        sink.reject(RejectReason.WRONG_TYPE, "event must be enter or leave")
        return
    try:
        when = _epoch_seconds(document.get("tst"))
    except _FieldError as exc:
        sink.reject(exc.reason, exc.detail)
        return
    fields: dict[str, FieldValue] = {"transition": event.strip().lower()}
    region = document.get("desc")
    if isinstance(region, str) and 0 < len(region) <= _MAX_REGION_LENGTH and region.isprintable():
        fields["region"] = region
    try:
        lat = _number(document, "lat", _MAX_LAT)
        lon = _number(document, "lon", _MAX_LON)
    except _FieldError:
        pass  # where it happened is optional: the transition itself is the news
    else:
        if lat != 0 or lon != 0:
            fields |= {"lat": lat, "lon": lon}
            accuracy = document.get("acc")
            if _is_number(accuracy) and accuracy >= 0:
                fields["accuracy_m"] = float(accuracy)
    sink.add(Kind.LOCATION, fields, device_time=when, time_required=True)


def _decode_steps(sink: _Sink, document: dict[str, object]) -> None:
    count = document.get("steps")
    if count == -1:
        sink.reject(RejectReason.UNSUPPORTED_FRAME, "the phone has no step counter")
        return
    if count is None:
        sink.reject(RejectReason.MISSING_FIELD, "steps is missing")
        return
    if isinstance(count, bool) or not isinstance(count, int):
        sink.reject(RejectReason.WRONG_TYPE, "steps must be a whole number")
        return
    if not 0 <= count <= _MAX_STEPS:
        sink.reject(RejectReason.OUT_OF_RANGE, "steps is out of range")
        return
    key = "to" if document.get("to") is not None else "tst"
    try:
        until = _epoch_seconds(document.get(key), key)
    except _FieldError as exc:
        sink.reject(exc.reason, exc.detail)
        return
    sink.add(Kind.STEPS, {"count": count}, device_time=until, time_required=True)


def _is_number(value: object) -> TypeGuard[int | float]:
    """Tell whether ``value`` is a finite JSON number (a bool is not one; an int always is)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _number(document: dict[str, object], key: str, high: float, *, low: float | None = None) -> float:
    """Return ``document[key]`` as a finite float within ``[low, high]`` (``low`` defaults to ``-high``)."""
    value = document.get(key)
    if value is None:
        raise _FieldError(RejectReason.MISSING_FIELD, f"{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(RejectReason.WRONG_TYPE, f"{key} must be a number")
    if not _is_number(value):
        raise _FieldError(RejectReason.NON_FINITE_NUMBER, f"{key} must be finite")
    bottom = -high if low is None else low
    if not bottom <= value <= high:
        raise _FieldError(RejectReason.OUT_OF_RANGE, f"{key} is out of range")
    return float(value)


def _epoch_seconds(value: object, key: str = "tst") -> datetime:
    if value is None:
        raise _FieldError(RejectReason.MISSING_FIELD, f"{key} is missing")
    if not _is_number(value):
        raise _FieldError(RejectReason.BAD_TIMESTAMP, f"{key} must be epoch seconds")
    try:
        return _EPOCH + timedelta(seconds=value)
    except OverflowError:
        raise _FieldError(RejectReason.BAD_TIMESTAMP, f"{key} is out of range") from None
