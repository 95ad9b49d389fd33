"""Durations as scenario authors write them: ``90``, ``"90s"``, ``"5m"``, ``"2h30m"``, ``"1d"``."""

from __future__ import annotations

import re

_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration_s(value: object) -> float:
    """Seconds of a duration: a non-negative number (seconds) or text like ``2h30m``.

    Raises:
        ValueError: for any other shape; the message says the accepted forms.
    """
    if isinstance(value, bool):
        # ValueError, not TypeError: pydantic turns only ValueError into a located validation error.
        raise ValueError("a duration is a number of seconds or text like '90s', '5m', '2h30m'")  # noqa: TRY004
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        position = 0
        total = 0.0
        for match in _PART_RE.finditer(text):
            if match.start() != position:
                break
            total += float(match.group(1)) * _UNIT_S[match.group(2)]
            position = match.end()
        if text and position == len(text):
            return total
    raise ValueError("a duration is a number of seconds or text like '90s', '5m', '2h30m'")


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m00s``: how progress lines show sim time."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"
