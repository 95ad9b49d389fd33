"""Group messages into transactions and acknowledge them only after COMMIT.

This is where ingest decides *when it is safe to forget an MQTT message*:
the PUBACK of every message in a batch is written after the batch's
transaction commits, never before. A crash before that point means the
broker redelivers, and the writer's idempotent inserts make the second copy
harmless.

Batches close when they reach ``max_messages``, when their oldest message is
``max_delay_s`` old, or at once when a panic or fall arrives, so a life-safety
event never waits behind telemetry. One batch commits at a time, in arrival
order; the next one fills meanwhile, so batches grow with load by
themselves. Memory is bounded upstream: the broker sends at most the
session's Receive Maximum of unacknowledged messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ingest.db_errors import ErrorClass
from ingest.storage import StorageError, TelemetryWriter, WriteResult

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ingest.metrics import IngestMetrics
    from ingest.pipeline import MessageRows

logger = logging.getLogger(__name__)

#: The acknowledgement-lag histogram takes one message in 16 (and every
#: batch's first, its oldest): a histogram update per message costs more
#: than the extra precision is worth.
_LAG_SAMPLE_MASK = 15


class Acknowledger(Protocol):
    """Whatever delivered a message and must be told it is safe (an MQTT session)."""

    def ack(self, packet_ids: list[int]) -> bool:
        """Acknowledge; return False if that is no longer possible."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSettings:
    """How messages are grouped into transactions.

    Attributes:
        max_messages: close a batch at this many messages.
        max_delay_s: close a batch when its oldest message is this old.
        retry_initial_s: first wait after a failed commit.
        retry_max_s: longest wait between commit attempts while the database is down.
        max_attempts: a batch that failed this many times while the database
            was reachable (deadlocks, timeouts, an error nobody classified) is
            written message by message, and whatever still fails on its own
            is quarantined: no message is retried forever. An unreachable
            database counts no attempt: then no message is at fault, and the
            batch waits, unacknowledged, for as long as the outage lasts.
    """

    max_messages: int = 5000
    max_delay_s: float = 0.05
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    max_attempts: int = 5


class Batcher:
    """Collects decoded messages and commits them in order."""

    def __init__(
        self,
        writer: TelemetryWriter,
        metrics: IngestMetrics,
        settings: BatchSettings,
        *,
        now: Callable[[], datetime],
        urgent_writer: TelemetryWriter | None = None,
        on_commit: Callable[[list[MessageRows], WriteResult], None] | None = None,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._settings = settings
        self._on_commit = on_commit
        self._now = now
        self._urgent_writer = urgent_writer
        self._urgent: list[MessageRows] = []
        self._urgent_ready = asyncio.Event()
        self._urgent_idle = asyncio.Event()
        self._urgent_idle.set()
        self._current: list[tuple[MessageRows, Acknowledger]] = []
        self._opened_mono = 0.0
        self._committing = 0
        self._has_data = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.database_ok = False

    @property
    def pending(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self._current) + self._committing

    def add(self, rows: MessageRows, source: Acknowledger) -> None:
        """Queue a decoded message for the next commit (never blocks)."""
        if not self._current:
            self._opened_mono = time.monotonic()
            self._has_data.set()
            self._idle.clear()
        self._current.append((rows, source))
        if rows.life_safety and self._urgent_writer is not None:
            rows.lane = "queued"
            self._urgent.append(rows)
            self._urgent_ready.set()
        if rows.life_safety or len(self._current) >= self._settings.max_messages:
            self._flush_now.set()

    async def run_urgent(self) -> None:
        """The life-safety fast lane: commit panic/fall/alarm messages at once.

        On its own connection, so an emergency never waits behind a telemetry
        COPY in flight. It never acknowledges: the message also stays in its
        normal batch, which skips writing it again and acknowledges it in
        arrival order after its own commit. If this lane fails (database
        down), the normal batch writes it; writes are idempotent either way.
        """
        writer = self._urgent_writer
        if writer is None:
            return
        while not self._stopping:
            await self._urgent_ready.wait()
            self._urgent_ready.clear()
            # Each message has one writer at a time: the batch may have claimed some already.
            pending = [rows for rows in self._urgent if rows.lane == "queued"]
            self._urgent = []
            if not pending:
                continue
            for rows in pending:
                rows.lane = "writing"
            self._urgent_idle.clear()
            try:
                await writer.write(pending, now=self._now())
            except Exception as exc:  # the lane must outlive any failure: the batch takes over
                cause = exc.cause.value if isinstance(exc, StorageError) else "unexpected"
                self._metrics.flush_failures.labels(cause=cause).inc()
                if not isinstance(exc, StorageError):
                    logger.exception("life-safety lane failed; the batch writes its messages")
                for rows in pending:
                    rows.lane = ""  # the batch writes them, with its retry policy
            else:
                for rows in pending:
                    rows.lane = "committed"
            finally:
                self._urgent_idle.set()

    def stop_urgent(self) -> None:
        """Let :meth:`run_urgent` return."""
        self._stopping = True
        self._urgent_ready.set()

    async def run(self) -> None:
        """Commit batches until :meth:`drain` has flushed the last one."""
        while True:
            await self._has_data.wait()
            if self._stopping and not self._current:
                return
            await self._wait_until_due()
            batch, self._current = self._current, []
            self._has_data.clear()
            self._flush_now.clear()
            self._committing = len(batch)
            try:
                await self._commit(batch)
            except StorageError:
                # Only raised while stopping: leave them unacknowledged; the
                # broker keeps them in our session and redelivers on restart.
                logger.warning(
                    "stopping with %d messages uncommitted; the broker will redeliver them",
                    len(batch) + len(self._current),
                    extra={"event": "shutdown_uncommitted"},
                )
                self._current.clear()
                self._idle.set()
                return
            finally:
                self._committing = 0
            if self._current:
                self._has_data.set()
            else:
                self._idle.set()
            if self._stopping and not self._current:
                return

    async def drain(self, timeout_s: float) -> bool:
        """Flush everything received so far; True if it all committed in time."""
        self._stopping = True
        self._flush_now.set()
        self._has_data.set()
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _wait_until_due(self) -> None:
        if self._flush_now.is_set() or self._stopping:
            return
        delay = self._opened_mono + self._settings.max_delay_s - time.monotonic()
        if delay <= 0:
            return
        try:
            async with asyncio.timeout(delay):
                await self._flush_now.wait()
        except TimeoutError:
            pass

    async def _commit(self, batch: list[tuple[MessageRows, Acknowledger]]) -> None:
        messages = [rows for rows, _ in batch]
        started = time.monotonic()
        if any(rows.lane == "writing" for rows in messages):
            await self._urgent_idle.wait()  # a few ms: never write the same message twice at once
        to_write = []
        for rows in messages:
            if rows.lane != "committed":
                rows.lane = "claimed"  # the fast lane skips it from now on
                to_write.append(rows)
        result = await self._write_until_committed(to_write)
        committed = time.monotonic()
        self._metrics.flush_duration.observe(committed - started)
        self._metrics.batch_messages.observe(len(batch))
        self._acknowledge(batch, committed)
        self._count(messages, result)
        if self._on_commit is not None:
            self._on_commit(messages, result)

    async def _write_until_committed(self, messages: list[MessageRows]) -> WriteResult:
        """Retry the same batch until it commits: a down database stalls, never drops.

        Errors are retried by what they mean (:mod:`ingest.db_errors`): an
        unreachable database for as long as it takes, anything else at most
        ``max_attempts`` times before the batch is isolated message by
        message. Data errors never get here: the writer isolates them at once.
        """
        settings = self._settings
        delay = settings.retry_initial_s
        attempts = 0
        while True:
            try:
                result = await self._writer.write(
                    messages, now=self._now(), isolate=attempts >= settings.max_attempts
                )
            except StorageError as exc:
                self._metrics.flush_failures.labels(cause=exc.cause.value).inc()
                if exc.cause in {ErrorClass.UNAVAILABLE, ErrorClass.CONFIGURATION}:
                    self._note_unavailable(exc, len(messages), first=delay == settings.retry_initial_s)
                    if self._stopping:
                        raise
                else:
                    attempts += 1
                    logger.warning(
                        "batch of %d messages not committed (%s, attempt %d of %d)",
                        len(messages),
                        exc.sqlstate or exc.cause.value,
                        attempts,
                        settings.max_attempts,
                        extra={"event": "batch_retry", "cause": exc.cause.value},
                    )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, settings.retry_max_s)
                continue
            if not self.database_ok:
                logger.info("database writes succeeding", extra={"event": "db_available"})
            self.database_ok = True
            self._metrics.db_up.set(1)
            return result

    def _note_unavailable(self, exc: StorageError, count: int, *, first: bool) -> None:
        if self.database_ok or first:
            level = logging.ERROR if exc.cause is ErrorClass.CONFIGURATION else logging.WARNING
            logger.log(
                level,
                "database unavailable (%s); holding %d messages unacknowledged",
                exc if exc.cause is ErrorClass.CONFIGURATION else exc.sqlstate or "connection",
                count,
                extra={"event": "db_unavailable", "cause": exc.cause.value},
            )
        self.database_ok = False
        self._metrics.db_up.set(0)

    def _acknowledge(self, batch: list[tuple[MessageRows, Acknowledger]], now_mono: float) -> None:
        by_source: dict[int, tuple[Acknowledger, list[int]]] = {}
        lag = self._metrics.ack_lag
        for index, (rows, source) in enumerate(batch):
            if rows.synthetic:
                continue
            packet_id = rows.envelope.packet_id
            if packet_id:
                entry = by_source.get(id(source))
                if entry is None:
                    entry = by_source[id(source)] = (source, [])
                entry[1].append(packet_id)
            if not index & _LAG_SAMPLE_MASK:  # the oldest message of a batch is always sampled
                lag.observe(now_mono - rows.envelope.received_mono)
        for source, packet_ids in by_source.values():
            if not source.ack(packet_ids):
                self._metrics.acks_lost.inc(len(packet_ids))

    def _count(self, messages: list[MessageRows], result: WriteResult) -> None:
        metrics = self._metrics
        metrics.messages_stored.inc(sum(1 for rows in messages if not rows.synthetic))
        metrics.rows_written.labels(table="readings").inc(result.readings_new)
        metrics.rows_written.labels(table="device_events").inc(result.events_new)
        metrics.rows_written.labels(table="quarantine").inc(result.quarantined_new)
        metrics.duplicate_rows.labels(table="readings").inc(result.readings_seen - result.readings_new)
        metrics.duplicate_rows.labels(table="device_events").inc(result.events_seen - result.events_new)
        for rows in messages:
            if rows.ignored:
                metrics.messages_ignored.inc()
            for reason in rows.reasons:
                metrics.messages_quarantined.labels(reason=reason.value).inc()
            for event in rows.decoded:
                for flag in event.flags:
                    metrics.salvaged_events.labels(flag=flag).inc()
