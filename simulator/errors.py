"""The simulator's one exception family: every error carries the data an operator needs to fix it."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error raised by the simulator package."""


class ScenarioError(SimulatorError):
    """A scenario file cannot be used: its place in the file and what is wrong.

    Attributes:
        path: the scenario file (or ``<text>`` for an in-memory scenario).
        line: 1-based line of the offending table or key, None when unknown.
        key: dotted key of the offending value (``incident[2].kind``), "" for the whole file.
        message: what is wrong, in words an author can act on.
    """

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.path = path
        self.line = line
        self.key = key
        self.message = message


class RecordingError(SimulatorError):
    """A recording file cannot be read.

    Attributes:
        path: the JSON Lines file.
        line: 1-based line of the bad record.
        message: what is wrong.
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class BrokerError(SimulatorError):
    """The broker refused or dropped the connection, or did not acknowledge in time."""


class ManifestError(SimulatorError):
    """A manifest file is unreadable or of another format version."""
