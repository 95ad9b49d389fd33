"""Device timestamps: parsing and plausibility.

Devices have bad clocks (never set, drifting, buffered for hours). A reading
with an implausible time is quarantined because it would corrupt trends; a
life-safety event is never dropped for it: it is filed under the time we
received it and flagged, with the device's own time kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimePolicy:
    """Which device timestamps are believed.

    Attributes:
        max_future_skew_s: a timestamp further ahead of our clock than this is
            a skewed device clock, not the future.
        earliest: timestamps before this come from a clock that was never set.
        max_life_safety_age_s: a panic or fall stamped further in the past than
            this is filed under its receive time (flagged), so the dispatch
            timeline shows it now rather than days ago.
    """

    max_future_skew_s: float = 300.0
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_life_safety_age_s: float = 86_400.0


class TimestampError(ValueError):
    """A ``ts`` value that cannot be a point in time."""


def parse_ts(value: object) -> datetime:
    """Turn a canonical ``ts`` (RFC 3339 with offset, or epoch ms) into aware UTC.

    Raises:
        TimestampError: for any other type, a naive time, or an out-of-range value.
    """
    if isinstance(value, bool):
        raise TimestampError("ts must be RFC 3339 text or integer epoch milliseconds")
    if isinstance(value, int):
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise TimestampError("epoch milliseconds out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise TimestampError("ts is not RFC 3339") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise TimestampError("ts must carry a UTC offset")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            # e.g. 0001-01-01T00:30:00+01:00: in UTC it falls before year 1.
            raise TimestampError("ts is outside the representable calendar") from None
    raise TimestampError("ts must be RFC 3339 text or integer epoch milliseconds")


def plausibility(device_time: datetime, received_at: datetime, policy: TimePolicy) -> str | None:
    """Say what is wrong with ``device_time``, or None when it is believable."""
    if device_time < policy.earliest:
        return "clock_not_set"
    if (device_time - received_at).total_seconds() > policy.max_future_skew_s:
        return "in_future"
    return None
