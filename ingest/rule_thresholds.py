"""The ``rule_thresholds`` table: the thresholds in force, for dashboards to draw.

Written from the loaded :class:`rules.RulesConfig` at every start, so a line on
the Elder-detail panel is the number the rules really compare against, per
device, elder and profile override, and not a copy of the defaults that drifts
when someone edits the TOML file.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rules.config import Thresholds

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from psycopg import AsyncConnection

    from rules import RulesConfig


def threshold_rows(config: RulesConfig, written_at: datetime) -> list[tuple[str, str, str, float, datetime]]:
    """(scope, scope_id, name, value, written_at) rows for ``config``.

    ``defaults`` carries every threshold (built-in defaults with the file's
    ``[defaults]`` applied); the other scopes carry only what they override.
    """
    defaults = {**asdict(Thresholds()), **config.defaults}
    rows = [("defaults", "", name, float(value), written_at) for name, value in sorted(defaults.items())]
    scoped: tuple[tuple[str, Mapping[str, Mapping[str, float | int]]], ...] = (
        ("profile", config.profiles),
        ("elder", config.elders),
        ("device", config.devices),
    )
    for scope, sections in scoped:
        for scope_id, values in sorted(sections.items()):
            rows.extend(
                (scope, scope_id, name, float(value), written_at) for name, value in sorted(values.items())
            )
    return rows


async def write_thresholds(conn: AsyncConnection[Any], config: RulesConfig, *, now: datetime) -> int:
    """Replace the table's contents with ``config``'s thresholds; return the row count.

    One transaction, under an advisory lock: a dashboard never sees a half-written
    set, and concurrent writers (several ingest processes) take turns.
    """
    rows = threshold_rows(config, now)
    async with conn.transaction():
        # Two services starting together on one database would each delete, then
        # insert the same keys: serialise the rewrite instead of failing start-up.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('carewatch.rule_thresholds'))")
        await conn.execute("DELETE FROM rule_thresholds")
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO rule_thresholds (scope, scope_id, name, value, written_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
    return len(rows)
