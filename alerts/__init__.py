"""Who hears about an alert, and when.

The alert lifecycle (open, acknowledged, dispatched, resolved, or cleared),
its append-only audit trail, the Postgres dispatch queue (claimed with
``FOR UPDATE SKIP LOCKED``), escalation of unacknowledged emergencies and
the outbox of alerts to publish for dispatch consoles.
"""

from alerts.errors import AlertNotFoundError, AlertsError, InvalidTransitionError
from alerts.lifecycle import ACTIVE, State
from alerts.store import (
    ALERT_TOPIC_PREFIX,
    Alert,
    AlertPolicy,
    AlertRequest,
    active_alerts,
    alert_json,
    apply,
    claim_next,
    escalate_due,
    get,
    list_alerts,
    pending_holds,
    transition,
    wait_and_claim,
)

__all__ = [
    "ACTIVE",
    "ALERT_TOPIC_PREFIX",
    "Alert",
    "AlertNotFoundError",
    "AlertPolicy",
    "AlertRequest",
    "AlertsError",
    "InvalidTransitionError",
    "State",
    "active_alerts",
    "alert_json",
    "apply",
    "claim_next",
    "escalate_due",
    "get",
    "list_alerts",
    "pending_holds",
    "transition",
    "wait_and_claim",
]
