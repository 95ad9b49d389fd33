"""Codec for Zigbee2MQTT (z2m) device messages.

Framing:
    z2m publishes one JSON object per message on ``zigbee2mqtt/<friendly_name>``: the
    device's whole cached state, not a delta, so every message repeats the keys it
    published before. The friendly name is the identity (the IEEE address, e.g.
    ``0xa4c13899607febd1``, unless the installer renamed it; it may contain ``/``). The
    routing layer passes it as ``context.device_id``; when it does not, it is taken from
    ``context.topic`` (``zigbee2mqtt/<name>``, ``zigbee2mqtt/<name>/availability`` or
    ``zigbee2mqtt/<name>/action``; the ``bridge`` subtree is z2m itself, not a device).
    Only the default base topic ``zigbee2mqtt`` is recognised there. The attribute output
    mode (one topic per key) is not supported, apart from the legacy action topic.

Availability:
    ``zigbee2mqtt/<name>/availability`` carries ``{"state":"online"|"offline"}``, or in
    legacy mode the bare word. z2m marks a battery device offline after 25 h of silence,
    a mains device after about 10 min and a failed ping. Both forms become ``online`` /
    ``offline`` at the receive time. An object whose only key is ``state`` with one of
    those words is recognised without the topic too (a switch's ``state`` is ``ON``/``OFF``
    and always comes with other keys).

Panic buttons:
    ``action`` is a momentary event: z2m publishes ``"emergency"`` (IAS ACE
    commandEmergency: Tuya TS0215A_sos, TS0601_sos...), ``"panic"`` (IAS ACE commandPanic:
    keypads such as frient KEYZB-110) or ``"sos"``, optionally with an endpoint suffix
    (``panic_l1``), and right afterwards ``""`` or ``null``, which is the reset and must not
    trigger again. Every other action (``single``, ``double``, ``hold``, arm/disarm, Heiman
    HS1EB's buttons...) is not an alarm. ``action: "fall"`` comes from Aqara cubes: an
    object falling, not a person, so it is ignored. With the legacy action sensor enabled
    the same press is also published as plain text on ``.../action``; it is decoded too
    (a panic seen twice beats a panic missed), so the JSON press and the legacy one yield
    two panics with different identities: de-duplicating them is left downstream (the rules
    engine, or the installer disabling ``legacy_action_sensor``).

IAS zone booleans:
    ``sos``, ``alarm_1``, ``alarm_2`` and ``tamper`` mirror the IAS zone status bits. What
    ``alarm_1``/``alarm_2`` mean depends on the model and no mapping is known, so they become
    an ``alarm`` labelled with the key; ``sos: true`` is a panic. ``false`` is the normal
    state. ``tamper`` (the case was opened) has no canonical kind and is skipped. Because
    z2m republishes its cached state, a zone bit that stays ``true`` is emitted again with
    every message until the device clears it: rules must treat it as a level, not an edge.

Fall sensors:
    Tuya MIR-HE200-TY ``fall_down_status`` (``fall`` -> fall alarm, ``maybe_fall`` -> fall
    warning), Heiman HS2FD ``fall_status`` (``fall_alarm`` / ``fall_warning``; ``normal`` and
    ``unknown`` are nothing) and OWON FDS315 ``status: "falling"`` (fall alarm). Their other
    values are occupancy states, not events.

Other keys:
    ``battery`` (percent, ``null`` until first reported) becomes a battery reading;
    ``battery_low`` alone carries no level and is ignored, as are ``voltage``,
    ``linkquality`` and the ``device``/``update`` sub-objects.

Time:
    The payload has no event time. ``last_seen`` (only when enabled in z2m: ISO 8601 with an
    offset or ``Z``, or epoch milliseconds) is when z2m heard the device, i.e. the time of
    this message, and is used when present; otherwise events are filed under the receive
    time. An unreadable ``last_seen`` falls back to the receive time with a
    ``bad_timestamp`` flag. Without ``last_seen`` two presses are byte-identical
    (``{"action":"emergency","battery":null,"linkquality":90}``), so the key of an event
    filed under the receive time includes that time: a second real press must never be
    taken for a redelivery of the first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from devices.canonical import Decoded, Rejection
from devices.codec import EventSink, guarded, rejected
from devices.errors import RejectReason
from devices.events import FieldValue, Kind
from devices.text import load_json
from devices.timing import TimestampError, parse_ts

if TYPE_CHECKING:
    from collections.abc import Callable

    from devices.codec import DecodeContext

    _Add = Callable[[Kind, dict[str, FieldValue]], None]

_BASE_TOPIC = "zigbee2mqtt/"
_AVAILABILITY = "availability"
_ACTION = "action"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Actions that are a person asking for help (an endpoint suffix may follow: ``panic_l1``).
#: What z2m action names look like; the empty string is the reset after a press.
_PLAIN_ACTION_RE = re.compile(r"[A-Za-z0-9_:.-]*")
#: ``state`` values of switches, plugs, locks and covers: the device's own state, not availability.
_SWITCH_STATES = frozenset(
    {"on", "off", "toggle", "open", "close", "closed", "stop", "lock", "unlock", "locked"}
)
_PANIC_ACTION_RE = re.compile(r"(?:emergency|panic|sos)(?:_[a-z0-9]+)?")
#: IAS zone booleans whose meaning per model is unknown: an alarm labelled with the key.
_IAS_ALARM_KEYS = ("alarm_1", "alarm_2")
_FALL_STAGES: dict[str, dict[str, str]] = {
    "fall_down_status": {"fall": "alarm", "maybe_fall": "warning"},
    "fall_status": {"fall_alarm": "alarm", "fall_warning": "warning"},
    "status": {"falling": "alarm"},
}
_AVAILABILITY_KINDS = {"online": Kind.ONLINE, "offline": Kind.OFFLINE}
_MAX_PERCENT = 100


@dataclass(slots=True)
class _Sink(EventSink):
    """A z2m event is identified by the payload's text and its place in it."""

    source: str = ""
    emitted: set[tuple[Kind, tuple[tuple[str, FieldValue], ...]]] = field(default_factory=set)

    def add(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        *,
        device_time: datetime | None = None,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        """Build one event; the same kind and fields twice in a payload yield it once."""
        signature = (kind, tuple(sorted(fields.items())))
        if signature in self.emitted:
            return
        self.emitted.add(signature)
        identity: dict[str, object] = {
            "payload": self.source,
            "index": len(self.emitted) - 1,
            "kind": kind.value,
        }
        self.emit(kind, fields, device_time=device_time, identity=identity, flags=flags)


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode one Zigbee2MQTT message (state, availability or legacy action).

    Never raises: any unexpected failure becomes an ``invalid_structure`` rejection.

    Args:
        payload: the MQTT payload.
        context: receive time, the friendly name (``device_id``) and/or the topic.

    Returns:
        The events and rejections the payload yields.
    """
    return guarded(_decode, payload, context, detail="unexpected error while decoding a z2m payload")


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    name, subtopic = _split_topic(context.topic)
    device_id = context.device_id or name
    if not device_id:
        return rejected(RejectReason.MISSING_FIELD, "no device identity")
    sink = _Sink(device_id, context, source=payload.decode("utf-8", errors="replace"))
    if subtopic == _ACTION:
        # The legacy action sensor publishes the bare action name, never JSON.
        _decode_word(sink, sink.source.strip().strip('"').strip(), subtopic)
        return sink.result()
    rejection = _decode_document(sink, payload, subtopic)
    return sink.result() if rejection is None else Decoded([], [rejection])


def _decode_document(sink: _Sink, payload: bytes, subtopic: str | None) -> Rejection | None:
    """Decode a state or availability payload into ``sink``; a rejection of the whole payload."""
    try:
        document: object = load_json(payload)
    except (ValueError, RecursionError):
        if _decode_word(sink, sink.source.strip(), subtopic):
            return None
        return Rejection(RejectReason.MALFORMED_JSON, "z2m payload is not JSON")
    if isinstance(document, dict):
        if subtopic == _AVAILABILITY or set(document) == {"state"}:
            _decode_availability(sink, document, required=subtopic == _AVAILABILITY)
        else:
            _decode_state(sink, document)
        return None
    # A JSON string is the same bare word, quoted (some bridges re-publish it that way).
    if isinstance(document, str) and _decode_word(sink, document.strip(), subtopic):
        return None
    return Rejection(RejectReason.INVALID_STRUCTURE, "z2m payload must be a JSON object")


def _split_topic(topic: str | None) -> tuple[str | None, str | None]:
    """Return the friendly name and the sub-topic (``availability``/``action``) of a z2m topic."""
    if topic is None or not topic.startswith(_BASE_TOPIC):
        return None, None
    rest = topic[len(_BASE_TOPIC) :]
    subtopic = None
    head, separator, tail = rest.rpartition("/")
    if separator and tail in {_AVAILABILITY, _ACTION}:
        rest, subtopic = head, tail
    if not rest or rest == "bridge" or rest.startswith("bridge/"):
        return None, subtopic
    return rest, subtopic


def _decode_word(sink: _Sink, text: str, subtopic: str | None) -> bool:
    """Decode a bare word (legacy availability or legacy action); False if it is neither."""
    word = text.lower()
    if word in _AVAILABILITY_KINDS and subtopic != _ACTION:
        sink.add(_AVAILABILITY_KINDS[word], {})
        return True
    if _PANIC_ACTION_RE.fullmatch(word):
        sink.add(Kind.PANIC, {})
        return True
    # Any other word on the legacy action topic is a non-alarm action, or the empty reset.
    return subtopic == _ACTION


def _decode_availability(sink: _Sink, document: dict[str, object], *, required: bool) -> None:
    state = document.get("state")
    word = state.strip().lower() if isinstance(state, str) else None
    if word in _AVAILABILITY_KINDS:
        sink.add(_AVAILABILITY_KINDS[word], {})
    elif required:
        sink.reject(RejectReason.INVALID_STRUCTURE, "availability state must be online or offline")
    elif word not in _SWITCH_STATES:
        # Neither availability nor a switch's own state: a garbled word must not vanish.
        sink.reject(RejectReason.UNSUPPORTED_FRAME, "state is neither availability nor a switch state")


def _decode_state(sink: _Sink, document: dict[str, object]) -> None:
    device_time, flags = _last_seen(document.get("last_seen"))

    def add(kind: Kind, fields: dict[str, FieldValue]) -> None:
        sink.add(kind, fields, device_time=device_time, flags=flags)

    action = document.get("action")
    if isinstance(action, str) and _PANIC_ACTION_RE.fullmatch(action.strip().lower()):
        add(Kind.PANIC, {})
    elif action is not None and not isinstance(action, str):
        sink.reject(RejectReason.WRONG_TYPE, "action must be a string")
    elif isinstance(action, str) and not _PLAIN_ACTION_RE.fullmatch(action.strip()):
        # z2m actions are plain words (single, double_left, emergency_1...): anything else
        # is a garbled or unknown payload, kept for an operator rather than ignored.
        sink.reject(RejectReason.UNSUPPORTED_FRAME, "action is not a plain word")
    if document.get("sos") is True:
        add(Kind.PANIC, {})
    for key in _IAS_ALARM_KEYS:
        if document.get(key) is True:
            add(Kind.ALARM, {"label": key})
    for key, stages in _FALL_STAGES.items():
        value = document.get(key)
        stage = stages.get(value.strip().lower()) if isinstance(value, str) else None
        if stage is not None:
            add(Kind.FALL, {"stage": stage})
    _decode_battery(sink, document.get("battery"), add)


def _decode_battery(sink: _Sink, value: object, add: _Add) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        sink.reject(RejectReason.WRONG_TYPE, "battery must be a number")
    elif isinstance(value, float) and not math.isfinite(value):
        sink.reject(RejectReason.NON_FINITE_NUMBER, "battery must be finite")
    elif not 0 <= value <= _MAX_PERCENT:
        sink.reject(RejectReason.OUT_OF_RANGE, "battery must be between 0 and 100 %")
    else:
        add(Kind.BATTERY, {"pct": float(value)})


def _last_seen(value: object) -> tuple[datetime | None, frozenset[str]]:
    """Parse ``last_seen``; an unreadable one falls back to the receive time, flagged."""
    if value is None:
        return None, frozenset()
    unreadable: tuple[datetime | None, frozenset[str]] = (None, frozenset({"bad_timestamp"}))
    if isinstance(value, float):
        # Epoch milliseconds that went through a float somewhere on the way.
        if not math.isfinite(value):
            return unreadable
        try:
            return _EPOCH + timedelta(milliseconds=value), frozenset()
        except OverflowError:
            return unreadable
    try:
        return parse_ts(value), frozenset()
    except TimestampError:
        return unreadable
