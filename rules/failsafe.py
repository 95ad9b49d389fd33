"""When a rule itself fails: count it, and never let a life-safety event go unanswered.

A rule is our code meeting a device's data; a combination nobody foresaw can
make it raise. That must cost at most that rule's decision for that event,
never the message (it is still stored), never the other devices, and never
an emergency: a panic, fall or alarm whose evaluation failed still raises a
critical alert, flagged ``rule_failure``, straight away (a fall skips its
cancel window: a human checking a false alarm costs less than a missed
fall).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rules.hits import Action, EvidenceValue, RuleHit, Severity

if TYPE_CHECKING:
    from collections.abc import Callable

    from devices import Event

    #: Told about every contained failure: the rule's name and the exception.
    FailureHook = Callable[[str, BaseException], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def occurrence_key_of(event: Event) -> str:
    """Identity of the event that triggered a decision, stable across redelivery."""
    return f"{event.kind.value}:{event.event_key or (event.observed_at - _EPOCH) // _ONE_MS}"


def fail_safe_hit(event: Event, exc: BaseException) -> RuleHit:
    """The critical alert a life-safety event raises when its rule could not run."""
    rule = event.kind.value  # panic, fall or alarm: the operator sees what the device said
    evidence: dict[str, EvidenceValue] = {
        "flags": ",".join(sorted({*event.flags, "rule_failure"})),
        "rule_error": type(exc).__name__,
        "time_source": event.time_source.value,
    }
    return RuleHit(
        action=Action.RAISE,
        rule=rule,
        device_id=event.device_id,
        severity=Severity.CRITICAL,
        emergency=True,
        dedup_key=f"{event.device_id}:{rule}",
        occurrence_key=occurrence_key_of(event),
        triggered_at=event.observed_at,
        evidence=evidence,
    )


def ignore_failure(_rule: str, _exc: BaseException) -> None:
    """The default hook: the engine has no metrics of its own."""
