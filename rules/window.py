"""Per-device time-ordered windows of readings.

Timestamps are int64 epoch milliseconds of *device* time. Readings mostly
arrive in order, so the window is kept as plain lists (an in-order append is
O(1)); an out-of-order reading is inserted in place. Whole-window questions
(how long has a condition held, how long is a run) are answered with numpy
over a view built on demand, which only the rare paths need: out-of-order
data, restores, SpO2.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import numpy.typing as npt


class Window:
    """Sorted (time, value) pairs over a bounded horizon of device time."""

    __slots__ = ("_horizon_ms", "_ts", "_values")

    def __init__(self, horizon_ms: int) -> None:
        self._horizon_ms = horizon_ms
        self._ts: list[int] = []
        self._values: list[float] = []

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def newest_ms(self) -> int | None:
        """Device time of the newest reading, None when empty."""
        return self._ts[-1] if self._ts else None

    def add(self, ts_ms: int, value: float) -> bool:
        """Insert a reading in time order; True when it was the newest (in order).

        Non-finite values never enter.
        """
        if not math.isfinite(value):
            return False
        in_order = not self._ts or ts_ms >= self._ts[-1]
        if in_order:
            self._ts.append(ts_ms)
            self._values.append(value)
        else:
            index = bisect.bisect_right(self._ts, ts_ms)
            self._ts.insert(index, ts_ms)
            self._values.insert(index, value)
        cutoff = self._ts[-1] - self._horizon_ms
        if self._ts[0] < cutoff:
            keep = bisect.bisect_left(self._ts, cutoff)
            del self._ts[:keep]
            del self._values[:keep]
        return in_order

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The values, oldest first, as a new array."""
        return np.asarray(self._values, dtype=np.float64)

    def run_length_at(self, ts_ms: int, condition: npt.NDArray[np.bool_]) -> int:
        """How many consecutive readings (in device time) meet ``condition`` around ``ts_ms``.

        0 when the reading at ``ts_ms`` does not meet it. Counting around the
        reading just added, not at the newest one, lets an out-of-order
        reading complete a run.
        """
        index = bisect.bisect_right(self._ts, ts_ms) - 1
        if index < 0 or not condition[index]:
            return 0
        failed = np.flatnonzero(~condition)
        before = failed[failed < index]
        after = failed[failed > index]
        start = int(before[-1]) + 1 if before.size else 0
        end = int(after[0]) if after.size else int(condition.size)
        return end - start

    def held_for_ms(self, condition: npt.NDArray[np.bool_], max_gap_ms: int) -> int:
        """How long ``condition`` has held up to the newest reading, in ms.

        The run ends at the newest reading and goes back to the last reading
        where the condition failed, or to a gap between readings longer than
        ``max_gap_ms`` (no data is not evidence). Returns -1 when the newest
        reading does not meet the condition.
        """
        if condition.size == 0 or not condition[-1]:
            return -1
        ts = np.asarray(self._ts, dtype=np.int64)
        failed = np.flatnonzero(~condition)
        start = int(failed[-1]) + 1 if failed.size else 0
        gaps = np.flatnonzero(np.diff(ts[start:]) > max_gap_ms)
        if gaps.size:
            start += int(gaps[-1]) + 1
        return int(ts[-1] - ts[start])


class Run:
    """How long a condition has held, kept up to date one in-order reading at a time.

    The O(1) twin of :meth:`Window.held_for_ms` for the common case; after an
    out-of-order reading it is reset from the window's answer.
    """

    __slots__ = ("last_ms", "start_ms")

    def __init__(self) -> None:
        self.start_ms: int | None = None
        self.last_ms: int | None = None

    def update(self, ts_ms: int, *, met: bool, max_gap_ms: int) -> int:
        """Account for the newest reading; return how long the condition has held (-1: not met)."""
        previous, self.last_ms = self.last_ms, ts_ms
        if not met:
            self.start_ms = None
            return -1
        if self.start_ms is None or (previous is not None and ts_ms - previous > max_gap_ms):
            self.start_ms = ts_ms
        return ts_ms - self.start_ms

    def reset(self, newest_ms: int, held_ms: int) -> None:
        """Take the window's answer after an out-of-order reading."""
        self.last_ms = newest_ms
        self.start_ms = None if held_ms < 0 else newest_ms - held_ms
