"""The alert state machine, as data.

open -> acknowledged -> dispatched -> resolved, with shortcuts a dispatcher
may take (resolve an open false alarm), plus ``cleared`` for conditions that
end by themselves. ``resolved`` and ``cleared`` are final.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where an alert is in its life."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLEARED = "cleared"


ACTIVE = frozenset({State.OPEN, State.ACKNOWLEDGED, State.DISPATCHED})

#: action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "acknowledge": (frozenset({State.OPEN}), State.ACKNOWLEDGED),
    "dispatch": (frozenset({State.OPEN, State.ACKNOWLEDGED}), State.DISPATCHED),
    "resolve": (ACTIVE, State.RESOLVED),
}

#: Queue priority by severity; presses and escalations add to it.
BASE_PRIORITY = {"critical": 300, "major": 200, "warning": 100}
OCCURRENCE_PRIORITY_STEP = 10
ESCALATION_PRIORITY_STEP = 25
