"""Database schema: versioned migrations and TimescaleDB detection.

The same schema runs on TimescaleDB (tables become hypertables) and on plain
PostgreSQL 14+ (managed clouds often lack the extension). Which one we are on,
and which licence the extension carries (the Apache build has hypertables but
no compression or continuous aggregates), is detected at start and reported,
so later features can use what is there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

logger = logging.getLogger(__name__)

#: Serialises concurrent migrations (two ingest instances starting together).
_MIGRATION_LOCK_ID = 0x0CA2E_0001

#: (table, time column, chunk interval) for every time-series table.
HYPERTABLES: tuple[tuple[str, str, str], ...] = (
    ("readings", "time", "1 day"),
    ("device_events", "time", "7 days"),
    ("quarantine", "received_at", "7 days"),
)

#: Packages whose ``sql/NNN_*.sql`` files are migrations. Migrations apply by
#: number across packages (``NNN``), then in this order, so a later number may
#: build on any package's earlier tables (dashboard views join all of them).
MIGRATION_PACKAGES: tuple[str, ...] = ("ingest", "devices", "alerts")


class TimescaleMode(StrEnum):
    """Whether to use the TimescaleDB extension."""

    AUTO = "auto"  # use it when the server has it
    REQUIRE = "require"  # fail when the server lacks it
    OFF = "off"  # plain PostgreSQL tables even where it exists


@dataclass(frozen=True, slots=True)
class StorageInfo:
    """What the database offers.

    Attributes:
        server_version: PostgreSQL's ``server_version_num``.
        timescaledb_version: the installed extension's version, None without it.
        license: ``timescaledb.license`` (``apache`` or ``timescale``), None without it.
    """

    server_version: int
    timescaledb_version: str | None
    license: str | None

    @property
    def backend(self) -> str:
        """``timescaledb`` or ``postgresql``."""
        return "timescaledb" if self.timescaledb_version else "postgresql"

    @property
    def has_community_features(self) -> bool:
        """Compression, continuous aggregates and policies (Community licence only)."""
        return self.license == "timescale"


class SchemaError(psycopg.Error):
    """The database cannot hold Carewatch's schema as asked."""


def migrations() -> list[tuple[str, str]]:
    """Every migration as (name, SQL), in the order they apply."""
    found: list[tuple[int, int, str, str]] = []
    for rank, package in enumerate(MIGRATION_PACKAGES):
        folder = resources.files(package) / "sql"
        found.extend(
            (int(entry.name[:3]), rank, f"{package}/{entry.name}", entry.read_text())
            for entry in folder.iterdir()
            if entry.name.endswith(".sql") and entry.name[:3].isdigit()
        )
    return [(name, text) for _, _, name, text in sorted(found)]


async def migrate(
    conn: AsyncConnection[TupleRow], *, timescale: TimescaleMode = TimescaleMode.AUTO
) -> StorageInfo:
    """Bring the schema up to date; safe to run any number of times, concurrently.

    Raises:
        SchemaError: TimescaleDB was required but is not available.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS carewatch_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        info = await _prepare_extension(conn, timescale)
        cursor = await conn.execute("SELECT name FROM carewatch_migrations")
        applied = {row[0] for row in await cursor.fetchall()}
        for name, text in migrations():
            if name in applied:
                continue
            logger.info("applying migration %s", name, extra={"event": "migration_applied"})
            await conn.execute(text.encode())
            await conn.execute("INSERT INTO carewatch_migrations (name) VALUES (%s)", (name,))
        if info.timescaledb_version:
            await _ensure_hypertables(conn)
    logger.info(
        "storage ready: %s (timescaledb %s, licence %s)",
        info.backend,
        info.timescaledb_version or "-",
        info.license or "-",
        extra={"event": "storage_ready"},
    )
    return info


async def detect(conn: AsyncConnection[TupleRow]) -> StorageInfo:
    """Report what the database offers, changing nothing."""
    cursor = await conn.execute(
        "SELECT current_setting('server_version_num')::int,"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
        " current_setting('timescaledb.license', true)"
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    version, ts_version, license_ = row
    return StorageInfo(int(version), ts_version, license_ if ts_version else None)


async def _prepare_extension(conn: AsyncConnection[TupleRow], mode: TimescaleMode) -> StorageInfo:
    info = await detect(conn)
    if mode is TimescaleMode.OFF or info.timescaledb_version:
        return StorageInfo(info.server_version, None, None) if mode is TimescaleMode.OFF else info
    cursor = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if await cursor.fetchone() is not None:
        try:
            async with conn.transaction():  # a savepoint: a refusal must not abort the migration
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            # Typically: not in shared_preload_libraries, or no privilege.
            logger.warning(
                "timescaledb is installed but cannot be enabled (%s); using plain PostgreSQL",
                exc.sqlstate,
                extra={"event": "timescaledb_unavailable"},
            )
        info = await detect(conn)
    if mode is TimescaleMode.REQUIRE and not info.timescaledb_version:
        raise SchemaError("TimescaleDB is required (--timescale require) but the server does not have it")
    return info


async def _ensure_hypertables(conn: AsyncConnection[TupleRow]) -> None:
    cursor = await conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
    existing = {row[0] for row in await cursor.fetchall()}
    for table, column, interval in HYPERTABLES:
        if table in existing:
            continue
        await conn.execute(
            sql.SQL(
                "SELECT create_hypertable({table}, {column}, chunk_time_interval => {interval}::interval,"
                " if_not_exists => TRUE, migrate_data => TRUE)"
            ).format(table=sql.Literal(table), column=sql.Literal(column), interval=sql.Literal(interval))
        )
