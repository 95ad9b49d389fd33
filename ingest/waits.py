"""The one way the service's background loops pause between rounds."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_stop(stop: asyncio.Event, timeout_s: float) -> bool:
    """Sleep up to ``timeout_s``, waking at once when ``stop`` is set; True when it is.

    Every periodic task (escalation, supervision, retention, probes, the rules'
    clock, reconnect back-off) waits this way, so a SIGTERM never waits out a
    sleep before the drain begins.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await stop.wait()
    return stop.is_set()
