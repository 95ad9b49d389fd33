"""Codec for Carewatch's canonical JSON (topic channel ``json``).

A payload is one object or an array of objects. Every object has ``ts``
(RFC 3339 with offset, or integer epoch milliseconds) and ``kind``, an
optional ``msg_id`` (at most 64 characters, unique per device) and the kind's
value fields. Validation is strict (no type coercion, no NaN or infinity, no
unknown fields) because a threshold rule fed ``"NaN"`` or ``"72"`` silently
misbehaves; the one exception is life safety: a panic or fall with a broken
field or timestamp is salvaged and flagged, never rejected.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from devices.errors import RejectReason
from devices.events import LIFE_SAFETY_KINDS, READING_METRICS, Event, FieldValue, Kind, TimeSource
from devices.text import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEVICE_ID,
    MAX_EVENT_KEY,
    MAX_MSG_ID,
    MAX_TEXT_FIELD,
    SANITISED_TEXT,
    TRUNCATED_TEXT,
    JsonError,
    clean,
    is_clean,
    load_json,
    raw_utf8,
)
from devices.timing import TimePolicy, parse_ts, plausibility


def _ts(value: object) -> datetime:
    return parse_ts(value)


Timestamp = Annotated[datetime, BeforeValidator(_ts)]
MsgId = Annotated[str, Field(min_length=1, max_length=64)]
Percent = Annotated[float, Field(ge=0, le=100)]


class _Base(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)

    ts: Timestamp
    msg_id: MsgId | None = None


class HeartRate(_Base):
    """Heart rate in beats per minute."""

    kind: Literal["heart_rate"]
    bpm: Annotated[float, Field(gt=0, le=300)]


class Spo2(_Base):
    """Blood oxygen saturation."""

    kind: Literal["spo2"]
    pct: Percent


class BodyTemp(_Base):
    """Body temperature; the bounds exclude sensor garbage, not hypothermia."""

    kind: Literal["body_temp"]
    celsius: Annotated[float, Field(gt=20, lt=46)]


class Fall(_Base):
    """A detected fall; ``warning`` is a pre-alarm some detectors send first."""

    kind: Literal["fall"]
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    stage: Literal["warning", "alarm"] | None = None


class Panic(_Base):
    """A panic (SOS) button press."""

    kind: Literal["panic"]
    button: Annotated[str, Field(max_length=64)] | None = None


class Cancel(_Base):
    """The wearer's "I'm OK"."""

    kind: Literal["cancel"]


class Heartbeat(_Base):
    """A keep-alive, optionally with the battery level."""

    kind: Literal["heartbeat"]
    battery_pct: Percent | None = None


class Battery(_Base):
    """Battery level."""

    kind: Literal["battery"]
    pct: Percent


class Worn(_Base):
    """Whether the wearable is on the body."""

    kind: Literal["worn"]
    on: bool


class Location(_Base):
    """A position fix."""

    kind: Literal["location"]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(ge=0)] | None = None
    #: False for a device's last known position when it has no fix now.
    gps_valid: bool | None = None


class Alarm(_Base):
    """An alarm whose cause is unknown (``label`` is the source's own name for it)."""

    kind: Literal["alarm"]
    label: Annotated[str, Field(max_length=64)] | None = None


class BloodPressure(_Base):
    """Blood pressure in mmHg."""

    kind: Literal["blood_pressure"]
    systolic: Annotated[float, Field(gt=0, le=300)]
    diastolic: Annotated[float, Field(gt=0, le=300)]


class Steps(_Base):
    """A step counter reading."""

    kind: Literal["steps"]
    count: Annotated[int, Field(ge=0)]


class Online(_Base):
    """The device connected."""

    kind: Literal["online"]


class Offline(_Base):
    """The device went away."""

    kind: Literal["offline"]


CanonicalObject = Annotated[
    HeartRate
    | Spo2
    | BodyTemp
    | Fall
    | Panic
    | Cancel
    | Heartbeat
    | Battery
    | Worn
    | Location
    | Alarm
    | BloodPressure
    | Steps
    | Online
    | Offline,
    Field(discriminator="kind"),
]
#: Built once: a TypeAdapter compiles its validator on construction.
_ADAPTER: TypeAdapter[CanonicalObject] = TypeAdapter(CanonicalObject)
_COMMON_FIELDS = frozenset({"ts", "kind", "msg_id"})

_REASON_BY_ERROR = {
    "missing": RejectReason.MISSING_FIELD,
    "union_tag_not_found": RejectReason.MISSING_FIELD,
    "union_tag_invalid": RejectReason.UNKNOWN_KIND,
    "extra_forbidden": RejectReason.UNEXPECTED_FIELD,
    "finite_number": RejectReason.NON_FINITE_NUMBER,
    "greater_than": RejectReason.OUT_OF_RANGE,
    "greater_than_equal": RejectReason.OUT_OF_RANGE,
    "less_than": RejectReason.OUT_OF_RANGE,
    "less_than_equal": RejectReason.OUT_OF_RANGE,
    "string_too_long": RejectReason.OUT_OF_RANGE,
    "string_too_short": RejectReason.OUT_OF_RANGE,
    "literal_error": RejectReason.OUT_OF_RANGE,
    "model_attributes_type": RejectReason.INVALID_STRUCTURE,
    "model_type": RejectReason.INVALID_STRUCTURE,
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why (part of) a payload was not turned into events.

    The detail is stored and shown to operators: it is sanitised when built, like every
    string that leaves ``devices/`` (see :mod:`devices.text`).
    """

    reason: RejectReason
    detail: str

    def __post_init__(self) -> None:
        if not is_clean(self.detail):
            object.__setattr__(self, "detail", clean(self.detail))


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a payload yielded: events to keep and the parts to quarantine."""

    events: list[Event]
    rejections: list[Rejection]


def decode_canonical(payload: bytes, *, device_id: str, received_at: datetime, policy: TimePolicy) -> Decoded:
    """Decode a canonical JSON payload into events.

    Never raises for bad input: every problem becomes a :class:`Rejection`.
    """
    try:
        # NaN/Infinity are accepted by the parser on purpose so that the model
        # rejects them per field, and a panic carrying one is still salvaged.
        document = load_json(payload)
    except JsonError as exc:
        if exc.not_utf8:
            return _decode_lossy(payload, exc, device_id=device_id, received_at=received_at, policy=policy)
        return Decoded([], [Rejection(exc.reason, _short(exc.detail))])
    items: list[Any]
    if isinstance(document, dict):
        items = [document]
    elif isinstance(document, list):
        items = document
        if not items:
            return Decoded([], [Rejection(RejectReason.NO_EVENTS, "empty array")])
    else:
        detail = "payload must be a JSON object or an array of objects"
        return Decoded([], [Rejection(RejectReason.INVALID_STRUCTURE, detail)])
    events: list[Event] = []
    rejections: list[Rejection] = []
    many = len(items) > 1
    for index, item in enumerate(items):
        outcome = _decode_item(item, device_id=device_id, received_at=received_at, policy=policy)
        if isinstance(outcome, Event):
            events.append(outcome)
        else:
            detail = f"item {index}: {outcome.detail}" if many else outcome.detail
            rejections.append(Rejection(outcome.reason, detail))
    return Decoded(events, rejections)


def _decode_lossy(
    payload: bytes, error: JsonError, *, device_id: str, received_at: datetime, policy: TimePolicy
) -> Decoded:
    """Salvage the panics and falls of a payload that is not valid UTF-8; reject the rest.

    The bytes that are not UTF-8 are read as U+FFFD and the events flagged
    ``sanitised_text``; the raw bytes stay in quarantine (the pipeline keeps them).
    """
    try:
        document = load_json(payload.decode("utf-8", errors="replace"))
    except JsonError:
        return Decoded([], [Rejection(error.reason, error.detail)])
    items = document if isinstance(document, list) else [document]
    decoded = Decoded([], [])
    for item in items:
        outcome = _decode_item(item, device_id=device_id, received_at=received_at, policy=policy)
        if isinstance(outcome, Event) and outcome.is_life_safety:
            flags = outcome.flags | {SANITISED_TEXT}
            sanitised = (*outcome.sanitised, "payload")
            decoded.events.append(replace(outcome, flags=flags, sanitised=sanitised))
    if not decoded.events or len(decoded.events) < len(items):
        decoded.rejections.append(Rejection(error.reason, error.detail))
    return decoded


_HEART_RATE_KEYS = frozenset({"ts", "kind", "bpm", "msg_id"})
_MSG_ID_MAX = 64
_BPM_MAX = 300


def _plain_heart_rate(item: dict[str, Any]) -> tuple[datetime, float, str | None] | None:
    """A well-formed heart-rate object, checked by hand; None sends it down the full path.

    Heart rate is most of the traffic, and the model validator is a fifth of
    the ingest's CPU. This accepts exactly what :class:`HeartRate` accepts
    (strict types, ``0 < bpm <= 300``, finite, ``msg_id`` of 1 to 64
    characters, no other key) and declines everything else, so every
    rejection still comes from the model with its usual reason; a property
    test holds the two paths to the same answers.
    """
    if not item.keys() <= _HEART_RATE_KEYS or "ts" not in item:
        return None
    bpm: Any = item.get("bpm")
    # Strict as the model: int or float, never bool or text; the range check is false for NaN.
    if type(bpm) not in (int, float) or not (0 < bpm <= _BPM_MAX):
        return None
    msg_id = item.get("msg_id")
    if msg_id is not None and (type(msg_id) is not str or not 1 <= len(msg_id) <= _MSG_ID_MAX):
        return None
    try:
        ts = parse_ts(item["ts"])
    except ValueError:
        return None
    return ts, float(bpm), msg_id


def _decode_item(
    item: object, *, device_id: str, received_at: datetime, policy: TimePolicy
) -> Event | Rejection:
    if type(item) is dict and item.get("kind") == "heart_rate":
        plain = _plain_heart_rate(item)
        if plain is not None:
            ts, bpm, msg_id = plain
            return make_event(
                device_id=device_id,
                kind=Kind.HEART_RATE,
                device_time=ts,
                fields={"bpm": bpm},
                msg_id=msg_id,
                event_key=msg_id or "",  # readings: see event_key()
                flags=frozenset(),
                received_at=received_at,
                policy=policy,
            )
    unsurrogated: tuple[str, ...] = ()
    try:
        model = _ADAPTER.validate_python(item)
    except ValidationError as exc:
        retry = _without_surrogates(item, exc)
        failure: ValidationError | None = exc
        if retry is not None:
            unsurrogated = retry[1]
            try:
                model = _ADAPTER.validate_python(retry[0])
                failure = None
            except ValidationError as again:
                failure = again
        if failure is not None:
            kind = item.get("kind") if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(kind, str) and kind in LIFE_SAFETY_KINDS:
                return _salvage(item, Kind(kind), failure, device_id, received_at, policy)
            return _rejection_from(failure)
    kind = Kind(model.kind)
    fields: dict[str, FieldValue] = {
        name: value
        for name, value in model.__dict__.items()
        if name not in _COMMON_FIELDS and value is not None
    }
    assert isinstance(item, dict)  # noqa: S101 - the model validated an object
    # The key comes from the msg_id as sent: two garbled ids must stay two keys.
    raw_msg_id = item.get("msg_id") if model.msg_id is not None else None
    return make_event(
        device_id=device_id,
        kind=kind,
        device_time=model.ts,
        fields=fields,
        msg_id=model.msg_id,
        event_key=event_key(kind, raw_msg_id if isinstance(raw_msg_id, str) else model.msg_id, item),
        flags=frozenset({SANITISED_TEXT}) if unsurrogated else frozenset(),
        received_at=received_at,
        policy=policy,
        sanitised=unsurrogated,
    )


_SURROGATES = re.compile("[\ud800-\udfff]")


def _without_surrogates(item: object, exc: ValidationError) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    r"""The object with lone surrogates replaced, when only they made a string invalid.

    pydantic refuses a lone surrogate in a ``str`` field (``string_unicode``), which a
    JSON escape (``"\ud800"``) delivers; they are replaced here, the rest of the
    sanitising is make_event's. Returns the object and the names of the fields changed.
    """
    if type(item) is not dict or all(error["type"] != "string_unicode" for error in exc.errors()):
        return None
    names = tuple(
        name for name, value in item.items() if type(value) is str and _SURROGATES.search(value) is not None
    )
    if not names:
        return None
    cleaned = {
        name: _SURROGATES.sub("\ufffd", value) if name in names else value for name, value in item.items()
    }
    return cleaned, names


def make_event(
    *,
    device_id: str,
    kind: Kind,
    device_time: datetime | None,
    fields: dict[str, FieldValue],
    msg_id: str | None,
    event_key: str,
    flags: frozenset[str],
    received_at: datetime,
    policy: TimePolicy,
    time_required: bool = True,
    sanitised: tuple[str, ...] = (),
) -> Event | Rejection:
    """Build an event, deciding which time it is filed under, or reject an unbelievable reading.

    Args:
        device_id: the device.
        kind: the canonical kind.
        device_time: the device's timestamp, None when the payload has none.
        fields: the kind's value fields.
        msg_id: the sender's message id, if any.
        event_key: stable identity (see :func:`event_key`).
        flags: problems already found.
        received_at: when we received it.
        policy: which device times are believed.
        time_required: False for formats whose frames carry no time at all
            (watch health frames, Zigbee state): they are filed under the
            receive time without being flagged.
        sanitised: strings the codec already sanitised (names for :attr:`Event.sanitised`).
    """
    life_safety = kind in LIFE_SAFETY_KINDS
    problem: str | None = None
    if device_time is None:
        problem = "missing" if time_required else None
    else:
        problem = plausibility(device_time, received_at, policy)
        if (
            problem is None
            and life_safety
            and (received_at - device_time).total_seconds() > policy.max_life_safety_age_s
        ):
            problem = "too_old"
    if problem is not None and not life_safety:
        reason = RejectReason.CLOCK_SKEW if problem == "in_future" else RejectReason.BAD_TIMESTAMP
        return Rejection(reason, f"device timestamp {problem}")
    trusted = problem is None and device_time is not None
    if problem is not None:
        flags |= {"bad_timestamp" if problem == "missing" else "clock_skew"}
    if not _plain(device_id, fields, msg_id, event_key):
        vetted = _vet(device_id, kind, fields, msg_id, event_key, flags)
        if isinstance(vetted, Rejection):
            return vetted
        device_id, fields, msg_id, event_key, flags, names = vetted
        sanitised = (*names, *(name for name in sanitised if name not in names))
    return Event(
        device_id=device_id,
        kind=kind,
        observed_at=device_time if trusted and device_time is not None else received_at,
        fields=fields,
        event_key=event_key,
        msg_id=msg_id,
        time_source=TimeSource.DEVICE if trusted else TimeSource.RECEIVED,
        device_time=None if trusted else device_time,
        flags=flags,
        sanitised=sanitised,
    )


def _plain(device_id: str, fields: dict[str, FieldValue], msg_id: str | None, event_key: str) -> bool:
    """Tell whether an event needs no vetting: the fast path of (nearly) every event.

    Printable text holds no forbidden character (see :func:`devices.text.is_clean`); the
    ids are checked in one call, and anything else goes to :func:`_vet`, which decides.
    """
    if msg_id is None:
        ids = device_id + event_key
        if len(device_id) > MAX_DEVICE_ID or len(event_key) > MAX_EVENT_KEY or not ids.isprintable():
            return False
    else:
        ids = device_id + event_key + msg_id
        if (
            len(device_id) > MAX_DEVICE_ID
            or len(event_key) > MAX_EVENT_KEY
            or len(msg_id) > MAX_MSG_ID
            or not ids.isprintable()
        ):
            return False
    for value in fields.values():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):  # type: ignore[arg-type]
                return False
        elif kind is str:
            if len(value) > MAX_TEXT_FIELD or not value.isprintable():  # type: ignore[arg-type,union-attr]
                return False
        elif kind is int and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return False
    return True


_Vetted = tuple[str, dict[str, FieldValue], str | None, str, frozenset[str], tuple[str, ...]]


def _vet(  # noqa: C901, PLR0917 - one check per kind of string or number, in order
    device_id: str,
    kind: Kind,
    fields: dict[str, FieldValue],
    msg_id: str | None,
    key: str,
    flags: frozenset[str],
) -> _Vetted | Rejection:
    """Sanitise an event's strings and hold its values to the limits (see :mod:`devices.text`).

    An over-long string, an integer beyond 64 bits or a non-finite float rejects a
    non-life-safety event; a panic, fall or alarm is kept instead: the string is cut to
    its limit (flag ``truncated_text``), the number dropped (flag ``invalid_fields``).
    Forbidden characters are replaced, never rejected (flag ``sanitised_text``).
    """
    life_safety = kind in LIFE_SAFETY_KINDS
    added: set[str] = set()
    names: list[str] = []

    def text(name: str, value: str, limit: int) -> str | Rejection:
        if len(value) > limit:
            if not life_safety:
                return Rejection(RejectReason.OUT_OF_RANGE, f"{name} longer than {limit} characters")
            value = value[:limit]
            added.add(TRUNCATED_TEXT)
            names.append(name)
        if not is_clean(value):
            value = clean(value)
            added.add(SANITISED_TEXT)
            if name not in names:
                names.append(name)
        return value

    outcome = text("device_id", device_id, MAX_DEVICE_ID)
    if isinstance(outcome, Rejection):
        return outcome
    device_id = outcome
    if msg_id is not None:
        outcome = text("msg_id", msg_id, MAX_MSG_ID)
        if isinstance(outcome, Rejection):
            return outcome
        msg_id = outcome
    if len(key) > MAX_EVENT_KEY or not is_clean(key):
        # Not only replaced character by character: two different garbled msg_ids must
        # stay two events (the alert store never raises one key twice), so a digest of the
        # raw text follows the readable part. Stable on redelivery.
        digest = hashlib.blake2b(raw_utf8(key), digest_size=8).hexdigest()
        key = f"{clean(key[: MAX_EVENT_KEY - 17])}~{digest}"
    vetted: dict[str, FieldValue] = {}
    for name, value in fields.items():
        value_type = type(value)
        if value_type is str:
            outcome = text(name, value, MAX_TEXT_FIELD)  # type: ignore[arg-type]
            if isinstance(outcome, Rejection):
                return outcome
            vetted[name] = outcome
            continue
        if value_type is float and not math.isfinite(value):  # type: ignore[arg-type]
            problem = Rejection(RejectReason.NON_FINITE_NUMBER, f"{name} is not a finite number")
        elif value_type is int and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            problem = Rejection(RejectReason.OUT_OF_RANGE, f"{name} does not fit in a 64-bit integer")
        else:
            vetted[name] = value
            continue
        if not life_safety:
            return problem
        added.add("invalid_fields")
    return device_id, vetted, msg_id, key, flags | added, tuple(names)


def _salvage(  # noqa: PLR0917 - private helper, called once
    item: dict[str, Any],
    kind: Kind,
    exc: ValidationError,
    device_id: str,
    received_at: datetime,
    policy: TimePolicy,
) -> Event | Rejection:
    """Keep a panic or fall whose fields are broken: the press itself is the message."""
    device_time: datetime | None
    try:
        device_time = parse_ts(item.get("ts"))
    except ValueError:
        device_time = None
    flags = {"invalid_fields"} if any(err["loc"][1:] != ("ts",) for err in exc.errors()) else set()
    raw_msg_id = item.get("msg_id")
    msg_id = raw_msg_id if isinstance(raw_msg_id, str) and 0 < len(raw_msg_id) <= 64 else None  # noqa: PLR2004
    fields: dict[str, FieldValue] = {}
    if kind is Kind.ALARM:
        label = item.get("label")
        if isinstance(label, str) and len(label) <= 64:  # noqa: PLR2004
            fields["label"] = label
    elif kind is Kind.FALL:
        stage = item.get("stage")
        if stage in ("warning", "alarm"):
            fields["stage"] = stage
        confidence = item.get("confidence")
        if _is_number(confidence) and 0 <= confidence <= 1:
            fields["confidence"] = float(confidence)
    else:
        button = item.get("button")
        if isinstance(button, str) and len(button) <= 64:  # noqa: PLR2004
            fields["button"] = button
    return make_event(
        device_id=device_id,
        kind=kind,
        device_time=device_time,
        fields=fields,
        msg_id=msg_id,
        event_key=event_key(kind, msg_id, item),
        flags=frozenset(flags),
        received_at=received_at,
        policy=policy,
    )


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def event_key(kind: Kind, msg_id: str | None, item: object) -> str:
    """Identity used to make redelivery harmless.

    Readings are identified by (device, metric, time) plus the ``msg_id`` when
    one is sent; events by ``msg_id`` or else a digest of their content, so that
    two different presses at the same millisecond are both kept.
    """
    if msg_id is not None:
        return msg_id
    if kind in READING_METRICS:
        return ""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "h:" + hashlib.blake2b(canonical.encode(), digest_size=10).hexdigest()


def _rejection_from(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    error_type = first["type"]
    location = [str(part) for part in first["loc"]]
    if error_type == "value_error" and location[-1:] == ["ts"]:
        reason = RejectReason.BAD_TIMESTAMP
    elif error_type == "float_type" and type(exc.errors()[0].get("input")) is int:
        # An integer too large for a float (10**400): a number, just out of range.
        reason = RejectReason.OUT_OF_RANGE
    else:
        reason = _REASON_BY_ERROR.get(error_type, RejectReason.WRONG_TYPE)
    # The first loc element is the union tag (the kind); the field is what matters.
    field = ".".join(location[1:]) or ".".join(location) or "payload"
    extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return Rejection(reason, _short(f"{field}: {first['msg']}{extra}"))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
