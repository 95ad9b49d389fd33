"""How long the intake waits before reconnecting, and what it logs and counts on each loss.

It joins the pure parts: :class:`ingest.reconnect.Backoff` (capped,
jittered, exponential), :class:`ingest.reconnect.TakeoverSuspicion` and the
reason-code table of :mod:`ingest.reasons`, and it owns their side
effects (one log line per loss, the connect and disconnect counters), so
``Intake.run`` is only the connect loop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ingest.reasons import SUSPECTED_TAKEOVER, TAKEOVER, Action, action_for_error
from ingest.reconnect import HEALTHY_AFTER_S, Backoff, TakeoverSuspicion

if TYPE_CHECKING:
    from ingest.metrics import IngestMetrics

logger = logging.getLogger(__name__)


class ReconnectPolicy:
    """One per intake: call :meth:`connected` on success, and a ``*_delay_s`` after each failure or loss."""

    def __init__(self, metrics: IngestMetrics, backoff: Backoff | None = None) -> None:
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._suspicion = TakeoverSuspicion()
        self._logged_errors: set[str] = set()
        self._connected_at = 0.0

    def connect_failed_delay_s(self, exc: BaseException) -> float:
        """Count and log a failed connect or subscribe; the wait before the next attempt."""
        action = action_for_error(exc)
        self._suspicion.connect_failed()
        self._metrics.mqtt_connects.labels(outcome=action.label).inc()
        return self._retry_in(action, exc, "connection failed")

    def connected(self) -> None:
        """A session is up and subscribed."""
        self._connected_at = time.monotonic()
        self._metrics.mqtt_connects.labels(outcome="connected").inc()
        self._metrics.mqtt_connected.set(1)

    def session_ended_delay_s(self, cause: BaseException | None) -> float:
        """Count and log the end of an established session; the wait before reconnecting.

        The backoff restarts only if the session stayed up ``HEALTHY_AFTER_S``.
        """
        self._metrics.mqtt_connected.set(0)
        lasted_s = time.monotonic() - self._connected_at
        if lasted_s >= HEALTHY_AFTER_S:
            self._backoff.reset()
        action = action_for_error(cause)
        if self._suspicion.session_ended(lasted_s=lasted_s, with_reason=cause is not None):
            action = SUSPECTED_TAKEOVER
        self._metrics.mqtt_disconnects.labels(reason=action.label).inc()
        if action.label == TAKEOVER:
            self._metrics.mqtt_session_takeovers.inc()
        return self._retry_in(action, cause, "session ended")

    def _retry_in(self, action: Action, cause: BaseException | None, what: str) -> float:
        delay = self._backoff.next_delay_s(action.retry_after_s)
        # An error is logged as an error once per kind; its repeats are warnings.
        level = action.level
        if level >= logging.ERROR and action.label in self._logged_errors:
            level = logging.WARNING
        self._logged_errors.add(action.label)
        detail = f" ({cause})" if cause is not None and str(cause) not in action.message else ""
        logger.log(
            level,
            "mqtt %s: %s%s; retrying in %.1fs",
            what,
            action.message,
            detail,
            delay,
            extra={"event": "mqtt_retry", "reason": action.label},
        )
        return delay
