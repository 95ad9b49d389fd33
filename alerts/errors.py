"""The alerts package's exceptions, each carrying what a caller branches on."""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error raised by the alerts package."""


class AlertNotFoundError(AlertsError):
    """No alert has this id.

    Attributes:
        alert_id: the id asked for.
    """

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert with id {alert_id}")
        self.alert_id = alert_id


class InvalidTransitionError(AlertsError):
    """The alert's state does not allow this action.

    Attributes:
        alert_id: the alert.
        state: its current state.
        action: what was asked (``acknowledge``, ``resolve``...).
    """

    def __init__(self, alert_id: int, state: str, action: str) -> None:
        super().__init__(f"alert {alert_id} is {state}: cannot {action} it")
        self.alert_id = alert_id
        self.state = state
        self.action = action
