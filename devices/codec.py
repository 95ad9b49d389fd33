"""What every device-format codec looks like.

A codec is a pure function from one payload (one MQTT message, which may hold
several frames) to canonical events plus rejections. It never raises for bad
input, never does I/O, never logs payloads. Identity comes from the payload
when the format carries it, else from ``context.device_id`` (the topic or
the gateway's session).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from devices.canonical import Decoded, Rejection, event_key, make_event
from devices.errors import RejectReason
from devices.events import Event, FieldValue, Kind
from devices.timing import TimePolicy

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

#: Event flag: the event was read from a frame whose framing or syntax is broken (cut short,
#: unterminated, not well-formed): a life-safety event a codec salvaged rather than lose. The
#: payload is also rejected (``malformed_frame``), so its raw bytes are kept in quarantine.
MALFORMED_FRAME_FLAG: Final = "malformed_frame"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeContext:
    """What the codec knows besides the payload.

    Attributes:
        received_at: when Carewatch received the payload (aware UTC); the
            time of events whose frames carry none.
        device_id: identity from the topic or session, for formats whose
            frames do not name the device (IW after login, Zigbee2MQTT, OwnTracks).
        topic: the MQTT topic, for formats that put meaning in it.
        policy: which device timestamps are believed.
    """

    received_at: datetime
    device_id: str | None = None
    topic: str | None = None
    policy: TimePolicy = field(default_factory=TimePolicy)


class Codec(Protocol):
    """Decode one payload of a device format."""

    def __call__(self, payload: bytes, context: DecodeContext) -> Decoded:
        """Return the events and rejections ``payload`` yields."""
        ...


@dataclass(slots=True)
class EventSink:
    """Collects the events and rejections of one payload (or frame); every event is built by make_event.

    Codecs wrap or subclass it to add what identifies an event within their format
    (the ``identity`` they pass to :meth:`emit` becomes its stable key). The keyword
    settings exist because the formats' rejection details and event keys are already
    stored and compared, so each codec keeps its own, rather than one shape for all.

    Attributes:
        device_id: the device every event belongs to.
        context: the receive time and timestamp policy.
        prefix: put before every rejection detail, to say which part of a payload it
            is about (``"frame 2: "``); a codec may change it between frames.
        kind_in_detail: put the event's kind before the detail of a rejection
            make_event decides on, for formats whose one part yields several kinds.
        stamp_receive_time: add the receive time to the identity of an event without
            a device time, so that two identical untimed presses stay two events.
            Formats whose identity already tells them apart turn it off.
        distinct: record each (reason, detail) once, for formats whose fields can
            repeat the same fault within one part.
    """

    device_id: str
    context: DecodeContext
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    _: KW_ONLY
    prefix: str = ""
    kind_in_detail: bool = False
    stamp_receive_time: bool = True
    distinct: bool = False

    def emit(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        *,
        device_time: datetime | None,
        identity: dict[str, object],
        time_required: bool = False,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        """Build one event, or record the rejection make_event decides on."""
        if device_time is None and self.stamp_receive_time:
            # The payload alone does not tell two identical presses apart (the alert
            # store never counts an occurrence key twice): the receive time does.
            identity["received_at"] = self.context.received_at.isoformat()
        outcome = make_event(
            device_id=self.device_id,
            kind=kind,
            device_time=device_time,
            fields=fields,
            msg_id=None,
            event_key=event_key(kind, None, identity),
            flags=flags,
            received_at=self.context.received_at,
            policy=self.context.policy,
            time_required=time_required,
        )
        if isinstance(outcome, Event):
            self.events.append(outcome)
        else:
            self.reject(
                outcome.reason, f"{kind}: {outcome.detail}" if self.kind_in_detail else outcome.detail
            )

    def reject(self, reason: RejectReason, detail: str) -> None:
        """Record a rejected part of the payload, after :attr:`prefix`."""
        rejection = Rejection(reason, f"{self.prefix}{detail}")
        if not (self.distinct and rejection in self.rejections):
            self.rejections.append(rejection)

    def result(self) -> Decoded:
        """Return what the payload yielded."""
        return Decoded(self.events, self.rejections)


def rejected(reason: RejectReason, detail: str) -> Decoded:
    """A payload that yields nothing but one rejection."""
    return Decoded([], [Rejection(reason, detail)])


def guarded(
    decoder: Callable[[bytes, DecodeContext], Decoded], payload: bytes, context: DecodeContext, *, detail: str
) -> Decoded:
    """Run a codec's decoder so that it never raises.

    A codec bug must not stop the pipeline nor lose the message: any
    unexpected exception becomes an ``invalid_structure`` rejection (with a
    fixed ``detail``, never the exception's text, which may quote the payload),
    and the payload is quarantined with its raw bytes.
    """
    try:
        return decoder(payload, context)
    except Exception:  # noqa: BLE001 - a codec never raises; the payload is quarantined instead
        return rejected(RejectReason.INVALID_STRUCTURE, detail)
