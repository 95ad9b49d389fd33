"""Whether an event matters: the streaming rule engine.

Pure code with no I/O: :class:`RuleEngine` turns canonical events (and the
passing of service time) into :class:`RuleHit` decisions that the service
hands to the alert store.
"""

from rules.config import RulesConfig, Thresholds
from rules.engine import DeviceContext, RuleEngine, unverified_alarm
from rules.errors import RulesConfigError, RulesError
from rules.failsafe import fail_safe_hit
from rules.hits import Action, EvidenceValue, RuleHit, Severity

__all__ = [
    "Action",
    "DeviceContext",
    "EvidenceValue",
    "RuleEngine",
    "RuleHit",
    "RulesConfig",
    "RulesConfigError",
    "RulesError",
    "Severity",
    "Thresholds",
    "fail_safe_hit",
    "unverified_alarm",
]
