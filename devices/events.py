"""The canonical vocabulary every device format is normalised into.

Plain frozen dataclasses, not pydantic: these are built once per message on
the hot path, after the edge has validated the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

#: A value field of an event (``bpm``, ``stage``, ``on``...).
FieldValue = float | int | str | bool | None


class Kind(StrEnum):
    """What an event is about."""

    HEART_RATE = "heart_rate"
    SPO2 = "spo2"
    BODY_TEMP = "body_temp"
    FALL = "fall"
    PANIC = "panic"
    CANCEL = "cancel"
    HEARTBEAT = "heartbeat"
    BATTERY = "battery"
    WORN = "worn"
    LOCATION = "location"
    #: An alarm whose cause the device did not say (e.g. a watch AL frame with
    #: no status bit): treated like a panic, because it most often is one.
    ALARM = "alarm"
    BLOOD_PRESSURE = "blood_pressure"
    STEPS = "steps"
    #: The device (or its app) connected / went away, as its gateway saw it.
    ONLINE = "online"
    OFFLINE = "offline"
    #: The device reports a technical fault of its own (low battery of a unit or a trigger,
    #: mains failure, a failed supervision): maintenance work, never an emergency.
    DEVICE_FAULT = "device_fault"
    #: A carer's visit as the alarm unit saw it (presence, assistance, intervention done):
    #: part of handling an incident, never an alarm by itself.
    CARE = "care"


class TimeSource(StrEnum):
    """Which clock an event's ``observed_at`` comes from."""

    DEVICE = "device"
    #: The device's timestamp was missing or implausible; only life-safety
    #: events are kept this way, stamped with the time we received them.
    RECEIVED = "received"


#: Events that are kept whatever is wrong with their timestamp or fields.
LIFE_SAFETY_KINDS = frozenset({Kind.PANIC, Kind.FALL, Kind.ALARM})

#: Kinds that are a single number, stored as readings: kind -> (metric, field).
READING_METRICS: Mapping[Kind, tuple[str, str]] = {
    Kind.HEART_RATE: ("heart_rate_bpm", "bpm"),
    Kind.SPO2: ("spo2_pct", "pct"),
    Kind.BODY_TEMP: ("body_temp_c", "celsius"),
    Kind.BATTERY: ("battery_pct", "pct"),
    Kind.STEPS: ("steps_count", "count"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One canonical event from one device.

    Attributes:
        device_id: the device the event belongs to.
        kind: what happened or was measured.
        observed_at: the time the event is filed under (device time unless
            ``time_source`` says otherwise), aware UTC.
        fields: the kind's value fields.
        event_key: stable identity for idempotent storage: the sender's
            ``msg_id`` when given, else a digest of the event's content.
        msg_id: the sender's message id, if any.
        time_source: which clock ``observed_at`` comes from.
        device_time: the device's own timestamp when it was not used.
        flags: what was wrong but tolerated (``clock_skew``, ``invalid_fields``,
            ``sanitised_text``, ``truncated_text``...).
        sanitised: the strings whose characters were replaced or that were cut short
            (``msg_id``, ``device_id``, a field name), for the quarantine detail that keeps
            the raw bytes of such a message; empty for a clean event.
    """

    device_id: str
    kind: Kind
    observed_at: datetime
    fields: Mapping[str, FieldValue]
    event_key: str
    msg_id: str | None = None
    time_source: TimeSource = TimeSource.DEVICE
    device_time: datetime | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    sanitised: tuple[str, ...] = ()

    @property
    def is_life_safety(self) -> bool:
        """Tell whether this event must never be filtered out."""
        return self.kind in LIFE_SAFETY_KINDS
