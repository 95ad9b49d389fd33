"""Scripted timelines for the rule engine: events and clock ticks at explicit times.

Times are seconds after :data:`T0` (a fixed, aware UTC instant). ``device_s``
is the device's clock (``observed_at``); ``received_s`` is the service clock
(``received_at`` / ``tick(now)``). Nothing here reads the wall clock.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from devices import Event, Kind
from rules import Action, DeviceContext, RuleEngine, RuleHit, RulesConfig, Severity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from devices import FieldValue

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
DEVICE = "w1"
MINUTE = 60.0
HOUR = 3600.0

_serial = itertools.count(1)


def at(seconds: float) -> datetime:
    """The instant ``seconds`` after :data:`T0`."""
    return T0 + timedelta(seconds=seconds)


def event(
    kind: Kind | str,
    device_s: float,
    *,
    device: str = DEVICE,
    key: str | None = None,
    **fields: FieldValue,
) -> Event:
    """A canonical event observed at ``device_s`` on the device's clock."""
    kind = Kind(kind)
    return Event(
        device_id=device,
        kind=kind,
        observed_at=at(device_s),
        fields=fields,
        event_key=key if key is not None else f"{kind.value}-{next(_serial)}",
    )


class Timeline:
    """A rule engine driven by a script; every decision is kept in :attr:`hits`."""

    def __init__(
        self,
        config: RulesConfig | None = None,
        *,
        context: DeviceContext | Callable[[str], DeviceContext] | None = None,
    ) -> None:
        if isinstance(context, DeviceContext):
            fixed = context

            def context_of(_device_id: str) -> DeviceContext:
                return fixed

            self.engine = RuleEngine(config, context=context_of)
        elif context is not None:
            self.engine = RuleEngine(config, context=context)
        else:
            self.engine = RuleEngine(config)
        self.hits: list[RuleHit] = []

    def send(
        self,
        kind: Kind | str,
        device_s: float,
        *,
        received_s: float | None = None,
        device: str = DEVICE,
        key: str | None = None,
        **fields: FieldValue,
    ) -> list[RuleHit]:
        """Deliver one event; by default it is received when it was observed."""
        return self.deliver(
            event(kind, device_s, device=device, key=key, **fields),
            received_s=device_s if received_s is None else received_s,
        )

    def deliver(self, ev: Event, *, received_s: float) -> list[RuleHit]:
        """Deliver a prepared event at ``received_s`` on the service clock."""
        hits = self.engine.observe(ev, received_at=at(received_s))
        self.hits.extend(hits)
        return hits

    def tick(self, now_s: float) -> list[RuleHit]:
        """Advance the service clock to ``now_s``."""
        hits = self.engine.tick(at(now_s))
        self.hits.extend(hits)
        return hits

    def readings(
        self, kind: Kind | str, field: str, samples: Iterable[tuple[float, float]], **extra: FieldValue
    ) -> list[RuleHit]:
        """Deliver ``(device_s, value)`` readings in order, each on time."""
        hits: list[RuleHit] = []
        for device_s, value in samples:
            hits.extend(self.send(kind, device_s, **{field: value}, **extra))
        return hits

    def actions(self, rule: str | None = None) -> list[tuple[Action, str, Severity]]:
        """Every decision so far (except holds) as ``(action, rule, severity)``."""
        return [
            (hit.action, hit.rule, hit.severity)
            for hit in self.hits
            if hit.action is not Action.HOLD and (rule is None or hit.rule == rule)
        ]


def summary(hits: Iterable[RuleHit]) -> list[tuple[Action, str, Severity]]:
    """``(action, rule, severity)`` of each hit, in order."""
    return [(hit.action, hit.rule, hit.severity) for hit in hits]


def every(start_s: float, stop_s: float, step_s: float, value: float) -> list[tuple[float, float]]:
    """Readings of ``value`` from ``start_s`` to ``stop_s`` inclusive, every ``step_s``."""
    count = round((stop_s - start_s) / step_s)
    return [(start_s + i * step_s, value) for i in range(count + 1)]


RAISE = Action.RAISE
CLEAR = Action.CLEAR
HOLD = Action.HOLD
CANCEL = Action.CANCEL
CRITICAL = Severity.CRITICAL
MAJOR = Severity.MAJOR
WARNING = Severity.WARNING
