"""What the MQTT session does when its publish callback raises: contain, count, redeliver.

No exception from a codec, a rule or the alert path may reach the
session's receive loop (it would stop reading for good). The guard turns
one into a counted, logged failure and leaves the message unacknowledged.
MQTT 5 resends an unacknowledged message only on a new connection (4.4), so
the guard also asks the session to end itself (normally; the broker keeps
it) ``redeliver_after_s`` after the first failure: at most one such
reconnect per interval, and a failed panic is retried within a minute
rather than at some unrelated reconnect days later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest import wire

logger = logging.getLogger(__name__)

#: Told the exception type's name each time the publish callback raises.
FailureHook = Callable[[str], None]

#: How long after a callback failure the session ends itself for redelivery.
REDELIVER_AFTER_S = 60.0


class CallbackGuard:
    """Counts and logs callback failures, once per exception type, and schedules the redelivery."""

    def __init__(
        self,
        on_failure: FailureHook | None,
        redeliver: Callable[[], None],
        redeliver_after_s: float = REDELIVER_AFTER_S,
    ) -> None:
        self.failures = 0
        self._on_failure = on_failure
        self._redeliver = redeliver
        self._redeliver_after_s = redeliver_after_s
        self._timer: asyncio.TimerHandle | None = None
        self._kinds_logged: set[str] = set()

    def failed(self, packet: wire.Publish, exc: Exception) -> None:
        """Record that the callback raised ``exc`` on ``packet``; the message stays unacknowledged.

        Neither the payload nor the exception's text is logged (either may
        quote device data); the exception's type and where it was raised are.
        """
        kind = type(exc).__name__
        self.failures += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._redeliver_after_s, self._redeliver)
        if self._on_failure is not None:
            with contextlib.suppress(Exception):
                self._on_failure(kind)
        if kind in self._kinds_logged:
            return
        self._kinds_logged.add(kind)
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        logger.error(
            "publish handler raised %s at %s; message (qos %d) left unacknowledged for redelivery; "
            "further %s failures are only counted",
            kind,
            where,
            packet.qos,
            kind,
            extra={"event": "mqtt_callback_failed"},
        )

    def cancel(self) -> None:
        """The session is gone: no redelivery to ask for."""
        if self._timer is not None:
            self._timer.cancel()
