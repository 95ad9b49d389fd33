"""The rules package's exceptions."""

from __future__ import annotations


class RulesError(Exception):
    """Base of every error raised by the rules package."""


class RulesConfigError(RulesError):
    """The rules configuration cannot be used.

    Attributes:
        source: the file (or ``<config>``) it came from.
        problem: what is wrong, naming the key.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
