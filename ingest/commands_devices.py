"""``carewatch devices``: the device registry (import, add, remove, list with supervision)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from devices.errors import RegistryError
from devices.registry import CSV_COLUMNS, RiskTier, make_device, make_elder, parse_csv
from ingest import registry as registry_db
from ingest.options import add_dsn, add_rules
from ingest.schema import migrate
from rules import RulesConfig

if TYPE_CHECKING:
    import argparse


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``carewatch devices ...``."""
    devices = commands.add_parser("devices", help="the device registry: import, add, remove, list")
    sub = devices.add_subparsers(dest="devices_command", required=True, metavar="DEVICES_COMMAND")

    importing = sub.add_parser(
        "import",
        help="add or update devices (and their elders) from a CSV file",
        description=f"Columns: {', '.join(CSV_COLUMNS)} (device_id, gateway_id and profile are "
        "required; elder columns need elder_id and elder_name). The whole file is validated "
        "before anything is written; it is imported in one transaction.",
    )
    importing.add_argument("file", type=Path, metavar="FILE.csv")
    add_dsn(importing)
    add_rules(importing)
    importing.set_defaults(handler=lambda a: asyncio.run(_import(a)))

    adding = sub.add_parser("add", help="add or update one device")
    adding.add_argument("device_id", metavar="DEVICE_ID")
    adding.add_argument("--gateway", required=True, help="the gateway whose topics it arrives under")
    adding.add_argument("--profile", required=True, help="wearable, pendant, fixed_terminal, sensor...")
    adding.add_argument("--model", help="vendor and model, free text")
    adding.add_argument(
        "--heartbeat-interval-s", type=int, help="its check-in interval (default: the profile's)"
    )
    adding.add_argument("--elder", help="the elder id it belongs to")
    adding.add_argument("--elder-name", help="create or update the elder with this display name")
    adding.add_argument("--living-alone", action="store_true", help="the elder lives alone")
    adding.add_argument("--birth-year", type=int)
    adding.add_argument("--risk-tier", choices=[t.value for t in RiskTier], default=RiskTier.STANDARD.value)
    adding.add_argument("--timezone", default="UTC", help="the elder's IANA time zone")
    add_dsn(adding)
    add_rules(adding)
    adding.set_defaults(handler=lambda a: asyncio.run(_add(a)))

    removing = sub.add_parser("remove", help="remove a device from the registry")
    removing.add_argument("device_id", metavar="DEVICE_ID")
    add_dsn(removing)
    removing.set_defaults(handler=lambda a: asyncio.run(_remove(a)))

    listing = sub.add_parser(
        "list",
        help="registered and seen devices with last seen, online/offline and battery",
        description="Status: online; silent (nothing heard for longer than its silence limit: two "
        "missed check-ins); offline (the device or its gateway said so); never_seen (registered, "
        "no message yet). Worst first.",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_dsn(listing)
    listing.set_defaults(handler=lambda a: asyncio.run(_list(a)))


def _profiles(args: argparse.Namespace) -> frozenset[str]:
    config = RulesConfig.load(args.rules) if args.rules else RulesConfig.default()
    return frozenset(config.profiles)


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
    await migrate(conn)  # idempotent: the registry works on a fresh database
    return conn


def _fail(message: str) -> int:
    print(f"carewatch: {message}", file=sys.stderr)
    return 2


async def _import(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
        rows = parse_csv(text, source=str(args.file), profiles=_profiles(args))
    except OSError as exc:
        return _fail(f"{args.file}: {exc.strerror}")
    except RegistryError as exc:
        return _fail(str(exc))
    try:
        async with await _connect(args.dsn) as conn, conn.transaction():
            count = await registry_db.import_rows(conn, rows, now=datetime.now(UTC))
    except psycopg.Error as exc:
        return _fail(f"database error: {exc}")
    elders = len({row.elder.elder_id for row in rows if row.elder is not None})
    print(f"imported {count} devices and {elders} elders from {args.file}")
    return 0


async def _add(args: argparse.Namespace) -> int:
    try:
        device = make_device(
            device_id=args.device_id,
            gateway_id=args.gateway,
            profile=args.profile,
            model=args.model,
            heartbeat_interval_s=args.heartbeat_interval_s,
            elder_id=args.elder,
            profiles=_profiles(args),
        )
        elder = None
        if args.elder_name is not None:
            if args.elder is None:
                return _fail("--elder-name needs --elder")
            elder = make_elder(
                elder_id=args.elder,
                display_name=args.elder_name,
                living_alone=args.living_alone,
                birth_year=args.birth_year,
                risk_tier=args.risk_tier,
                timezone=args.timezone,
            )
    except RegistryError as exc:
        return _fail(exc.detail)
    now = datetime.now(UTC)
    try:
        async with await _connect(args.dsn) as conn, conn.transaction():
            if elder is not None:
                await registry_db.upsert_elder(conn, elder, now=now)
            await registry_db.upsert_device(conn, device, now=now)
    except psycopg.errors.ForeignKeyViolation:
        return _fail(f"no elder {args.elder!r}: give --elder-name to create it")
    except psycopg.Error as exc:
        return _fail(f"database error: {exc}")
    print(f"device {device.device_id} registered under gateway {device.gateway_id}")
    return 0


async def _remove(args: argparse.Namespace) -> int:
    try:
        async with await _connect(args.dsn) as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM devices WHERE device_id = %s RETURNING device_id", (args.device_id,)
            )
            removed = await cursor.fetchone()
    except psycopg.Error as exc:
        return _fail(f"database error: {exc}")
    if removed is None:
        return _fail(f"no device {args.device_id!r}")
    print(f"device {args.device_id} removed")
    return 0


async def _list(args: argparse.Namespace) -> int:
    try:
        async with await _connect(args.dsn) as conn:
            statuses = await registry_db.device_statuses(conn)
    except psycopg.Error as exc:
        return _fail(f"database error: {exc}")
    now = datetime.now(UTC)
    if not args.json:
        print(
            f"{'DEVICE':<22} {'GATEWAY':<14} {'PROFILE':<14} {'ELDER':<12} {'STATUS':<10}"
            f" {'LAST SEEN':<12} {'BATTERY':>7}  WORN"
        )
    for status in statuses:
        if args.json:
            print(json.dumps(_status_json(status), sort_keys=True))
        else:
            print(_status_line(status, now))
    return 0


def _status_json(status: registry_db.DeviceStatus) -> dict[str, object]:
    return {
        "device_id": status.device_id,
        "registered": status.registered,
        "gateway_id": status.gateway_id,
        "profile": status.profile,
        "elder_id": status.elder_id,
        "elder_name": status.elder_name,
        "status": status.status,
        "online": status.status == "online",
        "last_seen_at": _iso(status.last_seen_at),
        "silence_timeout_s": status.silence_timeout_s,
        "battery_pct": status.battery_pct,
        "battery_at": _iso(status.battery_at),
        "worn": status.worn,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _status_line(status: registry_db.DeviceStatus, now: datetime) -> str:
    seen = "-" if status.last_seen_at is None else _ago(now - status.last_seen_at)
    battery = "-" if status.battery_pct is None else f"{status.battery_pct:.0f}%"
    worn = {True: "yes", False: "no", None: "-"}[status.worn]
    device = status.device_id if status.registered else f"{status.device_id}*"
    return (
        f"{device:<22} {status.gateway_id:<14} {status.profile or '-':<14} {status.elder_id or '-':<12}"
        f" {status.status:<10} {seen:<12} {battery:>7}  {worn}"
    )


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:  # noqa: PLR2004
        return f"{seconds}s ago"
    if seconds < 7200:  # noqa: PLR2004
        return f"{seconds // 60}m ago"
    if seconds < 172_800:  # noqa: PLR2004
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86_400}d ago"
