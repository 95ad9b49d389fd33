"""The device registry in the database: loading snapshots, importing fleets, supervision views.

The pipeline reads an in-memory :class:`devices.registry.Registry`; this
module fills it from the ``devices`` and ``elders`` tables and notices
changes cheaply (one aggregate query), so ``carewatch devices add`` takes
effect in a running service within :data:`RELOAD_INTERVAL_S` without a
restart or a lock on the hot path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devices.registry import Device, Elder, Enforcement, ImportRow, Registry, RiskTier
from rules import DeviceContext

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    import psycopg

    from rules import RulesConfig

logger = logging.getLogger(__name__)

#: How often a running service looks for registry changes.
RELOAD_INTERVAL_S = 10.0

#: Fingerprint of the registry tables: changes whenever a row is added, changed or removed.
_FINGERPRINT_SQL = (
    "SELECT (SELECT count(*) FROM devices), (SELECT max(updated_at) FROM devices),"
    " (SELECT count(*) FROM elders), (SELECT max(updated_at) FROM elders)"
)


async def fingerprint(conn: psycopg.AsyncConnection[Any]) -> tuple[object, ...]:
    """A value that changes whenever the registry tables change."""
    cursor = await conn.execute(_FINGERPRINT_SQL)
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return tuple(row)


async def load(conn: psycopg.AsyncConnection[Any], *, enforcement: Enforcement) -> Registry:
    """Read the whole registry into a lookup snapshot."""
    cursor = await conn.execute(
        "SELECT device_id, gateway_id, profile, elder_id, model, heartbeat_interval_s FROM devices"
    )
    devices = [
        Device(
            device_id=d,
            gateway_id=g,
            profile=p,
            elder_id=e,
            model=m,
            heartbeat_interval_s=h,
        )
        for d, g, p, e, m, h in await cursor.fetchall()
    ]
    cursor = await conn.execute(
        "SELECT elder_id, display_name, living_alone, birth_year, risk_tier, timezone FROM elders"
    )
    elders = [
        Elder(
            elder_id=i,
            display_name=n,
            living_alone=a,
            birth_year=b,
            risk_tier=RiskTier(r),
            timezone=t,
        )
        for i, n, a, b, r, t in await cursor.fetchall()
    ]
    return Registry(devices, elders, enforcement=enforcement)


def context_resolver(
    registry: Callable[[], Registry], config: RulesConfig, now: Callable[[], datetime]
) -> Callable[[str], DeviceContext]:
    """How the rule engine learns a device's profile, elder and risk from the registry.

    Devices missing from the registry (allowed while it is not enforced)
    keep the profile the rules file names, else ``wearable``.
    """

    def resolve(device_id: str) -> DeviceContext:
        snapshot = registry()
        device = snapshot.device(device_id)
        if device is None:
            return DeviceContext(profile=config.device_profiles.get(device_id, "wearable"))
        elder = snapshot.elder(device.elder_id)
        return DeviceContext(
            profile=device.profile,
            elder_id=device.elder_id,
            living_alone=elder is not None and elder.living_alone,
            high_risk=elder is not None and elder.high_risk(year=now().year),
            heartbeat_interval_s=None
            if device.heartbeat_interval_s is None
            else float(device.heartbeat_interval_s),
        )

    return resolve


def changed_devices(old: Registry, new: Registry, device_ids: Iterable[str]) -> list[str]:
    """The devices whose rule context may differ between two snapshots."""
    changed: list[str] = []
    for device_id in device_ids:
        before, after = old.device(device_id), new.device(device_id)
        if before != after or (after is not None and old.elder(after.elder_id) != new.elder(after.elder_id)):
            changed.append(device_id)
    return changed


async def import_rows(conn: psycopg.AsyncConnection[Any], rows: Iterable[ImportRow], *, now: datetime) -> int:
    """Upsert a validated import file in the caller's transaction; returns the device count."""
    count = 0
    for row in rows:
        if row.elder is not None:
            await upsert_elder(conn, row.elder, now=now)
        await upsert_device(conn, row.device, now=now)
        count += 1
    return count


async def upsert_elder(conn: psycopg.AsyncConnection[Any], elder: Elder, *, now: datetime) -> None:
    """Insert or replace one elder."""
    await conn.execute(
        "INSERT INTO elders"
        " (elder_id, display_name, living_alone, birth_year, risk_tier, timezone, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (elder_id) DO UPDATE SET display_name = excluded.display_name,"
        " living_alone = excluded.living_alone, birth_year = excluded.birth_year,"
        " risk_tier = excluded.risk_tier, timezone = excluded.timezone, updated_at = excluded.updated_at",
        (
            elder.elder_id,
            elder.display_name,
            elder.living_alone,
            elder.birth_year,
            elder.risk_tier.value,
            elder.timezone,
            now,
        ),
    )


async def upsert_device(conn: psycopg.AsyncConnection[Any], device: Device, *, now: datetime) -> None:
    """Insert or replace one device (its elder must exist already)."""
    await conn.execute(
        "INSERT INTO devices"
        " (device_id, gateway_id, profile, model, elder_id, heartbeat_interval_s, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET gateway_id = excluded.gateway_id,"
        " profile = excluded.profile, model = excluded.model, elder_id = excluded.elder_id,"
        " heartbeat_interval_s = excluded.heartbeat_interval_s, updated_at = excluded.updated_at",
        (
            device.device_id,
            device.gateway_id,
            device.profile,
            device.model,
            device.elder_id,
            device.heartbeat_interval_s,
            now,
        ),
    )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One line of ``carewatch devices list``: registration and supervision."""

    device_id: str
    registered: bool
    gateway_id: str
    profile: str | None
    elder_id: str | None
    elder_name: str | None
    status: str  # online | silent | offline | never_seen
    last_seen_at: datetime | None
    silence_timeout_s: float | None
    battery_pct: float | None
    battery_at: datetime | None
    worn: bool | None


async def device_statuses(conn: psycopg.AsyncConnection[Any]) -> list[DeviceStatus]:
    """Every registered or seen device, most worrying first (silent, offline, never seen, online)."""
    cursor = await conn.execute(
        "SELECT device_id, registered, gateway_id, profile, elder_id, elder_name, status, last_seen_at,"
        " silence_timeout_s, battery_pct, battery_at, worn FROM device_status"
        " ORDER BY array_position(ARRAY['silent', 'offline', 'never_seen', 'online'], status), device_id"
    )
    return [DeviceStatus(*row) for row in await cursor.fetchall()]
