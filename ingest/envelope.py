"""What the ingest pipeline knows about one MQTT message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """An MQTT message as received, before any decoding.

    Attributes:
        topic: the MQTT topic.
        payload: the raw bytes, kept verbatim for quarantine.
        packet_id: the MQTT packet id to acknowledge (0 at QoS 0).
        dup: the broker's DUP flag: this message may have been delivered to
            us before, so rows without a stable identity must be checked.
        received_at: our clock when it arrived (aware UTC).
        received_mono: ``time.monotonic()`` at arrival, for acknowledgement lag.
    """

    topic: str
    payload: bytes
    packet_id: int
    dup: bool
    received_at: datetime
    received_mono: float
