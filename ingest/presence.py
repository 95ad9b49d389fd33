"""Supervision state for people: when each device was last heard, its battery, whether it is worn.

The rule engine decides silence from its own memory; this is the same
knowledge written down (``device_presence``) for ``carewatch devices list``,
the fleet dashboard and the silence clocks of the next start. It is written
a few seconds behind the messages in one statement per flush, never on the
per-message path: being a few seconds stale costs nothing, while a write per
message would halve ingest throughput.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devices import Kind

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import psycopg

    from devices import Event


@dataclass(slots=True)
class _Seen:
    gateway_id: str
    last_seen_at: datetime
    silence_timeout_s: float
    battery_pct: float | None = None
    battery_at: datetime | None = None
    worn: bool | None = None
    worn_at: datetime | None = None
    link: str | None = None
    link_at: datetime | None = None


class Presence:
    """Collects what changed since the last flush."""

    def __init__(self, silence_limit_s: Callable[[str], float]) -> None:
        self._silence_limit_s = silence_limit_s
        self._pending: dict[str, _Seen] = {}

    def note(self, event: Event, *, gateway_id: str, received_at: datetime) -> None:
        """Record that ``event`` arrived (called for every trusted event)."""
        seen = self._pending.get(event.device_id)
        if seen is None:
            seen = _Seen(gateway_id, received_at, self._silence_limit_s(event.device_id))
            self._pending[event.device_id] = seen
        else:
            seen.gateway_id = gateway_id
            seen.last_seen_at = max(seen.last_seen_at, received_at)
        kind = event.kind
        if kind is Kind.BATTERY or (kind is Kind.HEARTBEAT and "battery_pct" in event.fields):
            pct = event.fields.get("pct", event.fields.get("battery_pct"))
            if isinstance(pct, int | float) and (
                seen.battery_at is None or event.observed_at >= seen.battery_at
            ):
                seen.battery_pct, seen.battery_at = float(pct), event.observed_at
        elif kind is Kind.WORN:
            worn = event.fields.get("on")
            if isinstance(worn, bool) and (seen.worn_at is None or event.observed_at >= seen.worn_at):
                seen.worn, seen.worn_at = worn, event.observed_at
        elif kind in (Kind.ONLINE, Kind.OFFLINE) and (seen.link_at is None or received_at >= seen.link_at):
            seen.link, seen.link_at = kind.value, received_at
        elif seen.link == Kind.OFFLINE.value:
            # Anything but a last will means the device is talking again.
            seen.link, seen.link_at = Kind.ONLINE.value, received_at

    @property
    def pending(self) -> int:
        """Devices with changes not yet written."""
        return len(self._pending)

    async def flush(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Write what changed in one statement; returns the number of devices written.

        Newer values win over older ones already stored, so a flush from a
        restarted service can never move a device back in time.
        """
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        rows = [
            (
                device_id,
                s.gateway_id,
                s.last_seen_at,
                s.silence_timeout_s,
                s.battery_pct,
                s.battery_at,
                s.worn,
                s.worn_at,
                s.link,
                s.link_at,
            )
            for device_id, s in pending.items()
        ]
        try:
            async with conn.cursor() as cursor:
                await cursor.executemany(_UPSERT, rows)
        except BaseException:
            for device_id, seen in pending.items():  # not written: keep for the next flush
                self._pending.setdefault(device_id, seen)
            raise
        return len(rows)


_UPSERT = """
INSERT INTO device_presence AS p (device_id, gateway_id, last_seen_at, silence_timeout_s,
    battery_pct, battery_at, worn, worn_at, link, link_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET
    gateway_id = CASE WHEN excluded.last_seen_at >= p.last_seen_at
        THEN excluded.gateway_id ELSE p.gateway_id END,
    last_seen_at = greatest(p.last_seen_at, excluded.last_seen_at),
    silence_timeout_s = excluded.silence_timeout_s,
    battery_pct = CASE WHEN excluded.battery_at >= coalesce(p.battery_at, '-infinity')
        THEN excluded.battery_pct ELSE p.battery_pct END,
    battery_at = greatest(p.battery_at, excluded.battery_at),
    worn = CASE WHEN excluded.worn_at >= coalesce(p.worn_at, '-infinity') THEN excluded.worn ELSE p.worn END,
    worn_at = greatest(p.worn_at, excluded.worn_at),
    link = CASE WHEN excluded.link_at >= coalesce(p.link_at, '-infinity') THEN excluded.link ELSE p.link END,
    link_at = greatest(p.link_at, excluded.link_at)
"""
