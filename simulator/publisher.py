"""Publishing a plan at QoS 1, paced by the sim clock, counting what the broker acknowledged.

The time model: the sim clock runs ``speed`` times faster than the wall
clock and is set so that the run ENDS at about the wall time it started
(``sim_t0 = wall_start - duration``): device timestamps are then never in the
future, whatever the speed, and rules on device time (the fall cancel window,
sustained heart rate) judge a run at speed 50 as they would at speed 1.

aiomqtt's ``publish(qos=1)`` returns after the broker's PUBACK, so a run keeps
a bounded number of publications in flight as tasks, started in plan order
(paho writes them to the socket in that order), and counts acknowledgements
as the tasks finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiomqtt

from simulator.broker import BrokerAddress
from simulator.errors import BrokerError
from simulator.manifest import Manifest, ManifestBuilder

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulator.timeline import Plan

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real wall clock; library code receives it as a parameter."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Where a run is, for progress lines and dashboards.

    Attributes:
        planned: messages in the plan.
        sent: handed to the broker connection.
        acknowledged: confirmed by the broker (PUBACK).
        duplicates: deliberate second sends among ``sent``.
        elapsed_s: wall seconds since the start.
        rate_per_s: sent per wall second over the last interval.
        sim_elapsed_s: sim seconds since the start.
        sim_total_s: sim seconds the run lasts.
        done: the last report of the run.
    """

    planned: int
    sent: int
    acknowledged: int
    duplicates: int
    elapsed_s: float
    rate_per_s: float
    sim_elapsed_s: float
    sim_total_s: float
    done: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """How a run went; its manifest is the ground truth to score it against."""

    manifest: Manifest
    sent: int
    acknowledged: int
    stopped_early: bool


def sim_start_for(wall_start: datetime, duration_s: float) -> datetime:
    """The sim clock's start so that the run ends at about ``wall_start`` (never in the future)."""
    return wall_start - timedelta(seconds=duration_s)


async def run_simulation(
    plan: Plan,
    *,
    mqtt_url: str,
    speed: float,
    clock: Callable[[], datetime] = utc_now,
    stop: asyncio.Event | None = None,
    progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 2.0,
    client_id: str = "carewatch-sim",
    max_inflight: int = 200,
    sim_t0: datetime | None = None,
) -> RunResult:
    """Publish ``plan`` to the broker at ``mqtt_url``, ``speed`` times faster than real time.

    Args:
        plan: what to send (see :func:`simulator.timeline.build_plan`).
        mqtt_url: ``mqtt://[user:pass@]host:port``.
        speed: sim seconds per wall second.
        clock: the wall clock (aware UTC); read once at the start, then advanced by monotonic time.
        stop: set it to end the run early (the manifest then covers what was sent).
        progress: called every ``progress_interval_s`` and once at the end.
        progress_interval_s: how often ``progress`` is called.
        client_id: MQTT client id.
        max_inflight: publications awaiting their PUBACK at once.
        sim_t0: pin the sim start (reproducible payload bytes); default: ``wall_start - duration``.

    Raises:
        BrokerError: the broker cannot be reached or the connection broke.
        ValueError: a speed that is not positive.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or asyncio.Event()
    address = BrokerAddress.from_url(mqtt_url)
    duration_s = plan.duration_ms / 1000
    try:
        async with address.client(client_id, max_inflight=max_inflight) as client:
            wall_start = clock()
            mono_start = time.monotonic()
            start = sim_t0 or sim_start_for(wall_start, duration_s)
            builder = ManifestBuilder(plan=plan, sim_t0=start, speed=speed, wall_start=wall_start)
            counters = _Counters()
            window = asyncio.Semaphore(max_inflight)
            tasks: set[asyncio.Task[None]] = set()
            reporter = asyncio.create_task(
                _report(progress, progress_interval_s, plan, counters, builder, mono_start, speed, stop)
            )
            stopped = False
            try:
                for message in plan.render(start):
                    if stop.is_set():
                        stopped = True
                        break
                    delay = mono_start + message.send_ms / 1000 / speed - time.monotonic()
                    if delay > 0 and await _stopped_within(stop, delay):
                        stopped = True
                        break
                    await window.acquire()
                    published_at = wall_start + timedelta(seconds=time.monotonic() - mono_start)
                    task = asyncio.create_task(
                        _publish(client, message.topic, message.payload, window, counters)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    builder.add(message, published_at=published_at)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                reporter.cancel()
                for task in tasks:
                    task.cancel()
            if counters.failure is not None:
                raise BrokerError(f"the broker did not acknowledge a message: {counters.failure}")
            wall_end = wall_start + timedelta(seconds=time.monotonic() - mono_start)
            manifest = builder.build(
                wall_end=wall_end, acknowledged=counters.acknowledged, stopped_early=stopped
            )
            if progress is not None:
                progress(_progress(plan, counters, builder, mono_start, speed, rate=0.0, done=True))
            return RunResult(
                manifest=manifest,
                sent=builder.published,
                acknowledged=counters.acknowledged,
                stopped_early=stopped,
            )
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker at {address.host}:{address.port}: {exc}") from exc


@dataclass(slots=True)
class _Counters:
    acknowledged: int = 0
    failure: str | None = None


async def _publish(
    client: aiomqtt.Client, topic: str, payload: bytes, window: asyncio.Semaphore, counters: _Counters
) -> None:
    try:
        await client.publish(topic, payload, qos=1)
        counters.acknowledged += 1
    except aiomqtt.MqttError as exc:
        counters.failure = str(exc)
    finally:
        window.release()


async def _stopped_within(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` unless ``stop`` is set first; tell whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
    except TimeoutError:
        return False
    return True


def _progress(
    plan: Plan,
    counters: _Counters,
    builder: ManifestBuilder,
    mono_start: float,
    speed: float,
    *,
    rate: float,
    done: bool = False,
) -> Progress:  # fmt: skip
    elapsed = time.monotonic() - mono_start
    return Progress(
        planned=len(plan.messages),
        sent=builder.published,
        acknowledged=counters.acknowledged,
        duplicates=builder.duplicates,
        elapsed_s=elapsed,
        rate_per_s=rate,
        sim_elapsed_s=min(plan.duration_ms / 1000, elapsed * speed),
        sim_total_s=plan.duration_ms / 1000,
        done=done,
    )


async def _report(  # noqa: PLR0917 - private
    progress: Callable[[Progress], None] | None,
    interval_s: float,
    plan: Plan,
    counters: _Counters,
    builder: ManifestBuilder,
    mono_start: float,
    speed: float,
    stop: asyncio.Event,
) -> None:
    if progress is None:
        return
    last_sent, last_at = 0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        now = time.monotonic()
        rate = (builder.published - last_sent) / max(1e-9, now - last_at)
        last_sent, last_at = builder.published, now
        progress(_progress(plan, counters, builder, mono_start, speed, rate=rate))
