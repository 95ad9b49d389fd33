"""What a 3G* watch's status word and ``AL`` frames raise (the rules are in :mod:`devices.watch`).

Apart from :mod:`devices.watch` so that a truncated ``AL`` frame, which never reaches the
position decoder, raises its alarms through the same code as a whole one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol

from devices.errors import RejectReason
from devices.events import FieldValue, Kind

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DATE", "STATUS_WORD", "TIME", "frame_time", "status_events", "truncated_alarm"]

#: Indexes of the date, time and status word in a position frame's values (after the type).
DATE: Final = 0
TIME: Final = 1
STATUS_WORD: Final = 15

_STATUS: Final = re.compile(rb"[0-9A-Fa-f]{1,8}")
_DIGITS6: Final = re.compile(rb"\d{6}")
_BIT_SOS: Final = 1 << 16
_BIT_REMOVED: Final = 1 << 20
_BIT_FALL: Final = 1 << 21
_BIT_FENCE_OUT_ALARM: Final = 1 << 18
#: Vendor: abnormal heart rate; Traccar reads it as a fall. Neither is ignored.
_BIT_ABNORMAL_HEART_RATE: Final = 1 << 22
#: Bits 16-22: the alarms the vendor documents. An AL frame with none of them is "general".
_DOCUMENTED_ALARMS: Final = 0x7F << 16
_GENERAL: Final[dict[str, FieldValue]] = {"label": "general"}


class Sink(Protocol):
    """Where a frame's events and rejections go (the watch codec's frame decoder)."""

    def add(
        self,
        kind: Kind,
        fields: dict[str, FieldValue],
        device_time: datetime | None,
        *,
        time_required: bool = True,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        """Build one event, or record why it was refused."""

    def reject(self, reason: RejectReason, detail: str) -> None:
        """Record a rejected part of the frame."""


def status_events(frame: Sink, raw: bytes, device_time: datetime | None, *, alarm_frame: bool) -> None:
    """Every alarm bit of the status word is its own event; state bits (0-15) make none."""
    status = _status(raw)
    if status is None:
        frame.reject(RejectReason.WRONG_TYPE, "status word is not hexadecimal")
        if alarm_frame:
            frame.add(Kind.ALARM, dict(_GENERAL), device_time, flags=frozenset({"invalid_fields"}))
        return
    if status & _BIT_SOS:
        frame.add(Kind.PANIC, {}, device_time)
    if status & _BIT_FALL:
        frame.add(Kind.FALL, {"stage": "alarm"}, device_time)
    # Alarms the watch raised that are not a person's emergency by themselves:
    # reported as labelled alarms so the call centre hears of them (a wearer
    # with dementia leaving the fence, a heart rate the watch found abnormal).
    if alarm_frame and status & _BIT_ABNORMAL_HEART_RATE:
        frame.add(Kind.ALARM, {"label": "abnormal_heart_rate"}, device_time)
    if alarm_frame and status & _BIT_FENCE_OUT_ALARM:
        frame.add(Kind.ALARM, {"label": "geofence_exit"}, device_time)
    if alarm_frame and not status & _DOCUMENTED_ALARMS:
        frame.add(Kind.ALARM, dict(_GENERAL), device_time)
    if status & _BIT_REMOVED:
        frame.add(Kind.WORN, {"on": False}, device_time)


def truncated_alarm(frame: Sink, values: Sequence[bytes]) -> None:
    """Raise the alarms of an ``AL`` frame that was cut short (its ``]`` never came).

    The last value may itself be cut (``0001`` of ``00010000`` reads as other bits), so only
    the values before it are believed: the status word's alarms when it is among them, else
    an alarm of unknown cause. Positions, battery and steps are not read from a cut frame.
    The caller flags every event ``malformed_frame`` and has rejected the frame already.
    """
    whole = values[:-1]
    device_time = frame_time(whole[DATE], whole[TIME]) if len(whole) > TIME else None
    if len(whole) > STATUS_WORD:
        status_events(frame, whole[STATUS_WORD], device_time, alarm_frame=True)
    else:
        frame.add(Kind.ALARM, dict(_GENERAL), device_time)


def frame_time(date: bytes, time: bytes) -> datetime | None:
    """``ddmmyy`` + ``hhmmss`` (UTC) -> aware datetime; None for ``000000`` or an impossible value."""
    date, time = date.strip(), time.strip()
    if not _DIGITS6.fullmatch(date) or not _DIGITS6.fullmatch(time):
        return None
    try:
        return datetime(
            2000 + int(date[4:6]),
            int(date[2:4]),
            int(date[0:2]),
            int(time[0:2]),
            int(time[2:4]),
            int(time[4:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _status(raw: bytes) -> int | None:
    text = raw.strip()
    return int(text, 16) if _STATUS.fullmatch(text) else None
