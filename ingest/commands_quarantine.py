"""``carewatch quarantine``: find quarantined messages, and export them for replay after a fix.

Quarantine keeps every refused message's exact bytes. Once the cause is
fixed (a codec learned a frame type, a registry entry was added), the
messages are exported as a recording (the JSON Lines ``carewatch record``
writes) and published again with ``carewatch replay FILE``: they then take
the normal path through the running service, in their original order, and
are acknowledged only after commit like any other message. Replay is
idempotent for everything with a device timestamp or message id; an export
marks the rows it wrote (``--mark``) so that a second export skips them.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from devices import RejectReason
from ingest.errors import ConfigError
from ingest.options import add_dsn
from ingest.schema import migrate

if TYPE_CHECKING:
    import argparse

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_SELECT = """
SELECT q.received_at, q.topic, q.payload, q.payload_sha256, q.reason, q.detail, q.device_id,
       r.exported_at
FROM quarantine q
LEFT JOIN quarantine_exports r
  ON r.payload_sha256 = q.payload_sha256 AND r.topic = q.topic AND r.received_at = q.received_at
WHERE q.received_at >= %(since)s AND q.received_at < %(until)s
  AND (%(reason)s::text IS NULL OR q.reason = %(reason)s)
  AND (%(topic)s::text IS NULL OR q.topic LIKE %(topic)s)
  AND (%(include_exported)s OR r.exported_at IS NULL)
ORDER BY q.received_at, q.topic
LIMIT %(limit)s
"""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``carewatch quarantine ...``."""
    quarantine = commands.add_parser(
        "quarantine", help="find quarantined messages; export them for replay after a fix"
    )
    sub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="QUARANTINE_COMMAND")

    listing = sub.add_parser("list", help="quarantined messages, oldest first (reason, topic, detail, size)")
    _add_filters(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=lambda a: asyncio.run(_list(a)))

    summary = sub.add_parser("summary", help="counts by reason over the period")
    _add_filters(summary)
    summary.set_defaults(handler=lambda a: asyncio.run(_summary(a)))

    export = sub.add_parser(
        "export",
        help="write the selected messages as a recording for `carewatch replay`",
        description="Writes the exact bytes and topics in their original order; "
        "publish them again with `carewatch replay FILE --speed 1000`.",
    )
    _add_filters(export)
    export.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl")
    export.add_argument(
        "--mark", action="store_true", help="record the export: later exports skip these rows"
    )
    export.set_defaults(handler=lambda a: asyncio.run(_export(a)))


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", choices=[r.value for r in RejectReason], help="only this reason")
    parser.add_argument("--since", default="24h", help="ISO time or a duration back from now (30m, 24h, 7d)")
    parser.add_argument("--until", help="ISO time (default: now)")
    parser.add_argument("--topic", help="SQL LIKE pattern on the topic, e.g. 'carewatch/v1/gw-7/%%'")
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many messages")
    parser.add_argument(
        "--include-exported", action="store_true", help="also rows an earlier --mark export wrote"
    )
    add_dsn(parser)


def parse_moment(text: str, *, now: datetime) -> datetime:
    """An ISO time (UTC when it has no offset), or a duration back from ``now``.

    Raises:
        ConfigError: neither.
    """
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNITS_S[match.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not a time or duration: {text!r} (use 2026-12-01T08:00Z or 24h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "since": parse_moment(args.since, now=now),
        "until": parse_moment(args.until, now=now) if args.until else now + timedelta(seconds=1),
        "reason": args.reason,
        "topic": args.topic,
        "limit": args.limit,
        "include_exported": args.include_exported,
    }


async def _rows(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(args.dsn, connect_timeout=10) as conn:
        await migrate(conn)
        cursor = await conn.execute(_SELECT, _params(args))
        return await cursor.fetchall()


async def _list(args: argparse.Namespace) -> int:
    for received_at, topic, payload, digest, reason, detail, device_id, exported_at in await _rows(args):
        record = {
            "received_at": received_at.isoformat(),
            "reason": reason,
            "topic": topic,
            "device_id": device_id,
            "bytes": len(payload),
            "sha256": bytes(digest).hex(),
            "detail": detail,
            "exported_at": exported_at.isoformat() if exported_at else None,
        }
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            exported = " (exported)" if exported_at else ""
            print(f"{record['received_at']}  {reason:<20} {topic}  {len(payload)} B  {detail}{exported}")
    return 0


async def _summary(args: argparse.Namespace) -> int:
    counts: dict[str, int] = {}
    for row in await _rows(args):
        counts[row[4]] = counts.get(row[4], 0) + 1
    for reason, number in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"{number:>8}  {reason}")
    print(f"{sum(counts.values()):>8}  in all")
    return 0


async def _export(args: argparse.Namespace) -> int:
    # The recording format belongs to the simulator: one definition of it.
    from simulator.recording import Record  # noqa: PLC0415 - only this command needs the simulator

    rows = await _rows(args)
    first = rows[0][0] if rows else None
    with args.out.open("w", encoding="utf-8") as out:
        for received_at, topic, payload, *_ in rows:
            offset_s = (received_at - first).total_seconds()
            record = Record(t_offset_s=offset_s, topic=topic, payload=bytes(payload), qos=1, retain=False)
            out.write(record.to_json_line() + "\n")
    if args.mark and rows:
        async with await psycopg.AsyncConnection.connect(args.dsn, connect_timeout=10) as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO quarantine_exports (received_at, topic, payload_sha256, exported_at, file)"
                    " VALUES (%s, %s, %s, now(), %s) ON CONFLICT DO NOTHING",
                    [(row[0], row[1], row[3], str(args.out)) for row in rows],
                )
            await conn.commit()
    print(
        f"exported {len(rows)} messages to {args.out}; publish them with: carewatch replay {args.out}",
        file=sys.stderr,
    )
    return 0
