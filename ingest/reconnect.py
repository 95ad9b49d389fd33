"""When to try the broker again: capped exponential backoff with jitter.

A pure policy (no clock, no sleeping, randomness injected) so every delay
it produces is unit-tested. The session's owner asks it for the next delay
after every kind of loss and tells it when a connection stayed healthy.

Why "healthy for some seconds" rather than "connected": a broker that
accepts us and then kicks us at once (a second process with our client id,
MQTT 5 reason 0x8E) would otherwise reset the backoff on every CONNACK and
the two processes would reconnect in a tight loop.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

#: A connection must stay up this long before the backoff starts again from
#: its initial delay.
HEALTHY_AFTER_S = 10.0


@dataclass(slots=True, kw_only=True)
class Backoff:
    """Delays of ``initial_s * multiplier**n``, capped at ``max_s``, each shortened by jitter.

    Attributes:
        initial_s: the first delay.
        max_s: the cap of the exponential part.
        multiplier: growth per failed attempt.
        jitter: each delay is multiplied by a factor in ``[1 - jitter, 1]``,
            so processes that lost the broker together do not return together.
        random: source of ``[0, 1)`` floats (injected for tests).
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.25
    random: Callable[[], float] = field(default=_random.random, repr=False)
    _attempt: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and self.multiplier >= 1 and 0 <= self.jitter < 1):
            raise ValueError("backoff needs 0 < initial_s <= max_s, multiplier >= 1, 0 <= jitter < 1")

    @property
    def attempt(self) -> int:
        """Failed attempts since the last :meth:`reset`."""
        return self._attempt

    def next_delay_s(self, floor_s: float = 0.0) -> float:
        """The delay before the next attempt; at least ``floor_s`` before jitter.

        ``floor_s`` is a reason code's own minimum (a takeover or a refused
        login waits longer than a dropped socket); jitter applies to it too.
        """
        base = min(self.max_s, self.initial_s * self.multiplier**self._attempt)
        if base < self.max_s:
            self._attempt += 1  # stop counting at the cap: the power cannot overflow
        return max(base, floor_s) * (1.0 - self.jitter * self.random())

    def reset(self) -> None:
        """Start from ``initial_s`` again (after a connection stayed healthy)."""
        self._attempt = 0


@dataclass(slots=True, kw_only=True)
class TakeoverSuspicion:
    """Spots a session taken over when the broker does not say so.

    Mosquitto 2.0.11 (the shipped broker) closes the older of two
    connections with the same client id without the MQTT 5 DISCONNECT 0x8E
    (its log says "already connected, closing old connection"). Seen from
    the client, that is a session that ends without a reason soon after a
    connect that succeeded at once. ``threshold`` such sessions in a row are
    treated as a takeover. A broker restart does not look like that: the
    reconnect that follows it usually fails first (the broker is still
    starting), which clears the count, and so does a session that ended
    with any error at all (a reset connection, a DISCONNECT): only a socket
    the broker closed cleanly counts. A broker that restarts twice within
    ``healthy_after_s`` and is back before our first retry still matches;
    it then costs one longer wait, and the log line says so.

    Attributes:
        healthy_after_s: a session that lasted this long is not suspicious.
        threshold: short, reasonless sessions in a row that make a suspicion.
    """

    healthy_after_s: float = HEALTHY_AFTER_S
    threshold: int = 2
    _short_sessions: int = field(default=0, init=False)

    def connect_failed(self) -> None:
        """The broker was unreachable or refused us: whatever ended the last session, it was not a rival."""
        self._short_sessions = 0

    def session_ended(self, *, lasted_s: float, with_reason: bool) -> bool:
        """Record how a session ended; True if it was most likely taken over."""
        if with_reason or lasted_s >= self.healthy_after_s:
            self._short_sessions = 0
            return False
        self._short_sessions += 1
        return self._short_sessions >= self.threshold
