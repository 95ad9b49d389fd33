"""Per-device time-ordered windows of readings, in numpy.

Timestamps are int64 epoch milliseconds of *device* time; readings may
arrive out of order and are inserted in place. Only what the longest rule
needs is kept, so a window stays a few dozen to a few hundred points.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


class Window:
    """Sorted (time, value) pairs over a bounded horizon of device time."""

    __slots__ = ("_horizon_ms", "_ts", "_values")

    def __init__(self, horizon_ms: int) -> None:
        self._horizon_ms = horizon_ms
        self._ts: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._values: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return int(self._ts.size)

    def add(self, ts_ms: int, value: float) -> None:
        """Insert a reading in time order; non-finite values never enter."""
        if not math.isfinite(value):
            return
        index = int(np.searchsorted(self._ts, ts_ms, side="right"))
        self._ts = np.insert(self._ts, index, ts_ms)
        self._values = np.insert(self._values, index, value)
        cutoff = int(self._ts[-1]) - self._horizon_ms
        if self._ts[0] < cutoff:
            keep = int(np.searchsorted(self._ts, cutoff, side="left"))
            self._ts = self._ts[keep:]
            self._values = self._values[keep:]

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The values, oldest first (a view: do not modify)."""
        return self._values

    def run_length_at(self, ts_ms: int, condition: npt.NDArray[np.bool_]) -> int:
        """How many consecutive readings (in device time) meet ``condition`` around ``ts_ms``.

        0 when the reading at ``ts_ms`` does not meet it. Counting around the
        reading just added, not at the newest one, lets an out-of-order
        reading complete a run.
        """
        index = int(np.searchsorted(self._ts, ts_ms, side="right")) - 1
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
        failed = np.flatnonzero(~condition)
        start = int(failed[-1]) + 1 if failed.size else 0
        gaps = np.flatnonzero(np.diff(self._ts[start:]) > max_gap_ms)
        if gaps.size:
            start += int(gaps[-1]) + 1
        return int(self._ts[-1] - self._ts[start])
