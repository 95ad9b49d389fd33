"""From one MQTT message to the rows that must be committed before it is acknowledged.

The pipeline is synchronous and does no I/O. It never raises for bad input:
every message leaves it as rows for ``readings``/``device_events`` and/or a
``quarantine`` row with a reason. An unexpected exception in a codec is caught
here too and quarantined as ``internal_error``, so one poison message can
neither stop the service nor be redelivered forever.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devices import (
    READING_METRICS,
    TOPIC_ROOT,
    DecodeContext,
    DecodeError,
    Event,
    RejectReason,
    TimePolicy,
    TopicParts,
    is_outbound,
    parse_topic,
)
from devices.codecs import codec_for
from devices.registry import Registry
from devices.text import clean

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from alerts import AlertRequest
    from devices import FieldValue
    from devices.registry import Device
    from devices.routes import Route
    from ingest.envelope import Envelope

logger = logging.getLogger(__name__)

_OWN_PREFIX = f"{TOPIC_ROOT}/"
#: Parsed topics remembered; a fleet of this many devices never parses twice.
_TOPIC_CACHE_SIZE = 100_000

#: readings row: time, device_id, metric, value, received_at, msg_id
ReadingRow = tuple["datetime", str, str, float, "datetime", str]
#: device_events row: time, device_id, gateway_id, kind, detail (JSON text), event_key,
#: msg_id, time_source, device_time, flags, received_at, check_dup
EventRow = tuple[
    "datetime",
    str,
    str,
    str,
    str,
    str,
    str | None,
    str,
    "datetime | None",
    list[str],
    "datetime",
    bool,
]
#: quarantine row: received_at, topic, payload, payload_sha256, reason, detail,
#: gateway_id, device_id, duplicate_delivery
QuarantineRow = tuple["datetime", str, bytes, bytes, str, str, str | None, str | None, bool]


@dataclass(slots=True)
class MessageRows:
    """Everything one MQTT message turns into.

    Attributes:
        envelope: the message itself (its packet id is acknowledged after commit).
        readings: rows for ``readings``.
        events: rows for ``device_events``.
        quarantine: rows for ``quarantine`` (at most one per message).
        reasons: the quarantine reasons, for metrics.
        ignored: not device input (our own alert stream): acknowledged, not stored.
        synthetic: not a message at all: decisions of the rule engine's clock.
        life_safety: the message carries a panic or fall (or raised an
            emergency): commit it now, never behind telemetry.
        decoded: the canonical events, for the rule engine.
        alerts: the rule engine's decisions, committed with the rows.
        unverified: panic, fall and alarm events from devices the registry
            does not trust here (unknown, or under another gateway), with
            the reason: stored and put in front of an operator, never fed
            to the rules as the elder's own.
        gateway_id: the gateway of the topic ('' when the topic was invalid).
        channel: the format it was read as ('' when the topic was invalid).
        lane: who writes it: "" the batch; "queued" or "writing" the
            life-safety fast lane; "committed" the fast lane did (the batch
            still acknowledges it, in arrival order, without writing it
            again); "claimed" the batch took it back before the lane began.
    """

    envelope: Envelope
    readings: list[ReadingRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    reasons: list[RejectReason] = field(default_factory=list)
    ignored: bool = False
    synthetic: bool = False
    life_safety: bool = False
    decoded: list[Event] = field(default_factory=list)
    alerts: list[AlertRequest] = field(default_factory=list)
    unverified: list[tuple[Event, RejectReason]] = field(default_factory=list)
    gateway_id: str = ""
    channel: str = ""
    lane: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    """Input limits.

    Attributes:
        max_payload_bytes: larger payloads are quarantined (kept, not parsed);
            the broker's own ``max_packet_size`` sits above this so they reach us.
        time_policy: which device timestamps are believed.
        routes: other topic layouts the service reads (Zigbee2MQTT, OwnTracks...).
    """

    max_payload_bytes: int = 64 * 1024
    time_policy: TimePolicy = field(default_factory=TimePolicy)
    routes: tuple[Route, ...] = ()


class Pipeline:
    """Turns envelopes into rows.

    Attributes:
        registry: the device registry snapshot; the service swaps in a new
            one when the tables change (a plain attribute read per event).
    """

    def __init__(self, settings: PipelineSettings, registry: Registry | None = None) -> None:
        self._settings = settings
        self.registry = registry or Registry()
        self._topics: dict[str, TopicParts] = {}

    def process(self, envelope: Envelope) -> MessageRows:
        """Decode one message into the rows it must be stored as."""
        if is_outbound(envelope.topic):
            return MessageRows(envelope, ignored=True)
        rows = MessageRows(envelope)
        try:
            self._decode_into(rows)
        except Exception as exc:
            logger.exception(
                "unexpected error decoding a message",
                extra={"event": "decode_crashed", "topic": envelope.topic},
            )
            rows = MessageRows(envelope)
            quarantine(rows, RejectReason.INTERNAL_ERROR, type(exc).__name__, None, None)
        return rows

    @property
    def routes(self) -> tuple[Route, ...]:
        """The extra topic layouts this pipeline reads (the service subscribes to them too)."""
        return self._settings.routes

    def _topic_parts(self, topic: str) -> TopicParts:
        """The identity a topic carries: ``carewatch/v1/...``, else the first route that matches.

        Devices publish on the same few topics all day, so a valid topic is
        parsed once and remembered (up to :data:`_TOPIC_CACHE_SIZE` topics).
        """
        parts = self._topics.get(topic)
        if parts is None:
            parts = self._parse_topic(topic)
            if len(self._topics) >= _TOPIC_CACHE_SIZE:
                self._topics.clear()
            self._topics[topic] = parts
        return parts

    def _parse_topic(self, topic: str) -> TopicParts:
        if self._settings.routes and not topic.startswith(_OWN_PREFIX):
            for route in self._settings.routes:
                parts = route.match(topic)
                if parts is not None:
                    return parts
        return parse_topic(topic)

    def _decode_into(self, rows: MessageRows) -> None:
        envelope = rows.envelope
        try:
            parts = self._topic_parts(envelope.topic)
        except DecodeError as exc:
            quarantine(rows, exc.reason, exc.detail, None, None)
            return
        if len(envelope.payload) > self._settings.max_payload_bytes:
            detail = f"{len(envelope.payload)} bytes > limit {self._settings.max_payload_bytes}"
            quarantine(rows, RejectReason.PAYLOAD_TOO_LARGE, detail, parts.gateway_id, parts.device_id)
            return
        rows.gateway_id = parts.gateway_id
        rows.channel = parts.channel
        codec = codec_for(parts.channel)
        if codec is None:
            detail = f"no codec for channel {parts.channel!r}"
            quarantine(rows, RejectReason.UNSUPPORTED_CHANNEL, detail, parts.gateway_id, parts.device_id)
            return
        context = DecodeContext(
            received_at=envelope.received_at,
            device_id=parts.device_id,
            topic=envelope.topic,
            policy=self._settings.time_policy,
        )
        decoded = codec(envelope.payload, context)
        registry = self.registry
        untrusted: list[str] = []
        reason: RejectReason | None = None
        for event in decoded.events:
            verdict = registry.check(event.device_id, parts.gateway_id)
            if verdict.reason is None:
                add_event(rows, event, parts.gateway_id)
                continue
            reason = reason or verdict.reason
            untrusted.append(_untrusted_detail(event, verdict.reason, verdict.device))
            if event.is_life_safety:
                add_event(rows, event, parts.gateway_id, flag=verdict.reason.value)
                rows.unverified.append((event, verdict.reason))
        if decoded.rejections:
            reason = decoded.rejections[0].reason
        sanitised = _sanitised_detail(decoded.events)
        if reason is not None:
            detail = "; ".join([r.detail for r in decoded.rejections] + untrusted + sanitised)
            quarantine(rows, reason, detail, parts.gateway_id, parts.device_id)
        elif sanitised:
            # Stored and fed to the rules all the same; the row keeps the raw bytes.
            quarantine(rows, RejectReason.SANITISED_TEXT, sanitised[0], parts.gateway_id, parts.device_id)


def _sanitised_detail(events: list[Event]) -> list[str]:
    """Name the strings devices/ sanitised or cut short, if any (one detail, or none)."""
    names: dict[str, None] = {}
    for event in events:
        if event.sanitised:
            for name in event.sanitised:
                names.setdefault(f"{event.kind.value}.{name}")
    if not names:
        return []
    return [f"text sanitised, events stored: {', '.join(names)}"]


def _untrusted_detail(event: Event, reason: RejectReason, device: Device | None) -> str:
    kept = "; kept for an operator" if event.is_life_safety else ""
    if reason is RejectReason.GATEWAY_MISMATCH and device is not None:
        return f"{event.kind.value} of {event.device_id} (registered under {device.gateway_id}){kept}"
    return f"{event.kind.value} of unregistered {event.device_id}{kept}"


def add_event(rows: MessageRows, event: Event, gateway_id: str, *, flag: str | None = None) -> None:
    """Append the row an event is stored as.

    Args:
        rows: the message's rows.
        event: the canonical event.
        gateway_id: the gateway of the topic it came on.
        flag: set for an event the registry does not trust: stored with this
            flag and kept away from the rules.
    """
    envelope = rows.envelope
    if flag is None:
        rows.decoded.append(event)
    reading = READING_METRICS.get(event.kind)
    if reading is not None:
        metric, field_name = reading
        value = event.fields[field_name]
        assert isinstance(value, int | float)  # noqa: S101 - the codec validated it
        rows.readings.append(
            (
                event.observed_at,
                event.device_id,
                metric,
                float(value),
                envelope.received_at,
                _text(event.msg_id or ""),
            )
        )
        return
    if event.is_life_safety:
        rows.life_safety = True
    from_receipt = event.time_source.value == "received"
    rows.events.append(
        (
            event.observed_at,
            event.device_id,
            gateway_id,
            event.kind.value,
            _json(event.fields),
            _text(event.event_key),
            None if event.msg_id is None else _text(event.msg_id),
            event.time_source.value,
            event.device_time,
            sorted(event.flags if flag is None else {*event.flags, flag}),
            envelope.received_at,
            # A redelivered event filed under its receive time has no stable
            # identity; the writer checks for an earlier copy instead.
            envelope.dup and from_receipt,
        )
    )


def quarantine(
    rows: MessageRows,
    reason: RejectReason,
    detail: str,
    gateway_id: str | None,
    device_id: str | None,
) -> None:
    """Append the quarantine row for this message (keeping its raw bytes)."""
    envelope = rows.envelope
    rows.reasons.append(reason)
    rows.quarantine.append(
        (
            envelope.received_at,
            envelope.topic,
            envelope.payload,
            hashlib.sha256(envelope.payload).digest(),
            reason.value,
            clean(detail.replace("\x00", "\\0")),
            gateway_id,
            device_id,
            envelope.dup,
        )
    )


def _json(fields: Mapping[str, FieldValue]) -> str:
    return _text(json.dumps(fields, separators=(",", ":"), allow_nan=False))


def _text(value: str) -> str:
    """PostgreSQL text and jsonb cannot hold U+0000; valid JSON can.

    A last guard: devices/ already replaces U+0000 (devices/text.py) in every string of
    an event, so this only ever copies.
    """
    if "\x00" in value or "\\u0000" in value:
        return value.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")
    return value
