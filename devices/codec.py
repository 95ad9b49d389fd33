"""What every device-format codec looks like.

A codec is a pure function from one payload (one MQTT message, which may hold
several frames) to canonical events plus rejections. It never raises for bad
input, never does I/O, never logs payloads. Identity comes from the payload
when the format carries it, else from ``context.device_id`` (the topic or
the gateway's session).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from devices.timing import TimePolicy

if TYPE_CHECKING:
    from datetime import datetime

    from devices.canonical import Decoded


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
