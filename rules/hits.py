"""What the rule engine tells the rest of the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

#: One piece of evidence: a threshold, a reading, a delay.
EvidenceValue = float | int | str | bool | None


class Severity(StrEnum):
    """How bad a condition is; critical conditions are emergencies (15 min SLA)."""

    CRITICAL = "critical"
    MAJOR = "major"
    WARNING = "warning"


class Action(StrEnum):
    """What to do with the alert a hit names."""

    #: Open an alert, or add an occurrence to the open one with the same key.
    RAISE = "raise"
    #: The condition ended by itself: close the open alert as ``cleared``.
    CLEAR = "clear"
    #: Start holding an event (a fall) for its cancel window; no alert yet.
    HOLD = "hold"
    #: The wearer cancelled a held event: record it, raise nothing.
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHit:
    """One decision of the engine.

    Attributes:
        action: what to do.
        rule: the rule's name (``panic``, ``fall``, ``heart_rate_high``...).
        device_id: the device concerned.
        severity: how bad; may rise on later hits of the same episode.
        emergency: True for the 15-minute on-site promise, False for the
            30-minute general-help one.
        dedup_key: identifies the episode: hits with the same key while an
            alert is open add to it instead of opening another.
        occurrence_key: identity of the triggering event, so a redelivered
            event is never counted twice.
        triggered_at: device time of the trigger.
        due_at: for ``HOLD``, when the cancel window closes (device time).
        evidence: what made the rule fire (never raw payloads).
    """

    action: Action
    rule: str
    device_id: str
    severity: Severity
    emergency: bool
    dedup_key: str
    occurrence_key: str
    triggered_at: datetime
    due_at: datetime | None = None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)
