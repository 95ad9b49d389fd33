"""Keeping the registry snapshot fresh and writing supervision state, beside the message path.

One loop on its own connection: it swaps in a new registry snapshot when
the tables change (so ``carewatch devices add`` needs no restart) and
flushes :class:`ingest.presence.Presence`. Neither may delay a message: a
failure here is logged and retried, never raised into ingest.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg

from ingest import registry as registry_db
from ingest.waits import wait_for_stop

if TYPE_CHECKING:
    import asyncio

    from devices.registry import Enforcement
    from ingest.pipeline import Pipeline
    from ingest.presence import Presence
    from rules import RuleEngine

logger = logging.getLogger(__name__)

#: How often presence is written.
FLUSH_INTERVAL_S = 5.0


class Supervision:
    """Owns the registry reloads and presence flushes of one service."""

    def __init__(
        self, pipeline: Pipeline, engine: RuleEngine, presence: Presence, *, enforcement: Enforcement
    ) -> None:
        self._pipeline = pipeline
        self._engine = engine
        self._presence = presence
        self._enforcement = enforcement
        self._fingerprint: tuple[object, ...] | None = None

    async def reload(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Load the registry if it changed; returns True when a new snapshot was swapped in."""
        fingerprint = await registry_db.fingerprint(conn)
        if fingerprint == self._fingerprint:
            return False
        new = await registry_db.load(conn, enforcement=self._enforcement)
        old, self._pipeline.registry = self._pipeline.registry, new
        self._fingerprint = fingerprint
        for device_id in registry_db.changed_devices(old, new, self._engine.device_ids):
            self._engine.refresh(device_id)
        logger.info(
            "device registry loaded: %d devices, %s",
            len(new),
            "enforced" if new.enforced else "not enforced",
            extra={"event": "registry_loaded"},
        )
        return True

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Reload and flush until stopped; a last flush happens on the way out."""
        conn: psycopg.AsyncConnection[Any] | None = None
        next_reload = 0.0
        while True:
            stopping = stop.is_set()
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10, autocommit=True)
                if not stopping and time.monotonic() >= next_reload:
                    await self.reload(conn)
                    next_reload = time.monotonic() + registry_db.RELOAD_INTERVAL_S
                await self._presence.flush(conn)
            except psycopg.Error as exc:
                logger.warning(
                    "supervision: database error (%s); retrying",
                    exc.sqlstate or type(exc).__name__,
                    extra={"event": "supervision_retry"},
                )
                if conn is not None:
                    await conn.close()
                conn = None
            if stopping:
                break
            await wait_for_stop(stop, FLUSH_INTERVAL_S)
        if conn is not None:
            await conn.close()
