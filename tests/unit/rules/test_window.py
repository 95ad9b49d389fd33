"""The per-device reading window and its "held for" measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.window import Window

GAP_MS = 300_000


def window_of(*samples: tuple[int, float], horizon_ms: int = 900_000) -> Window:
    window = Window(horizon_ms)
    for ts_ms, value in samples:
        window.add(ts_ms, value)
    return window


def held_above(window: Window, threshold: float, gap_ms: int = GAP_MS) -> int:
    return window.held_for_ms(window.values > threshold, gap_ms)


def test_empty_window_holds_nothing():
    window = Window(900_000)
    assert window.held_for_ms(window.values > 0, GAP_MS) == -1


def test_newest_reading_failing_the_condition_means_not_held():
    window = window_of((0, 130.0), (60_000, 130.0), (120_000, 100.0))
    assert held_above(window, 120) == -1


def test_single_reading_meeting_the_condition_is_held_for_zero_ms():
    assert held_above(window_of((5_000, 130.0)), 120) == 0


def test_run_spans_from_first_to_newest_reading_when_all_meet_the_condition():
    window = window_of((0, 130.0), (60_000, 125.0), (120_000, 140.0))
    assert held_above(window, 120) == 120_000


def test_run_starts_after_the_last_failing_reading():
    window = window_of((0, 130.0), (60_000, 100.0), (120_000, 130.0), (180_000, 130.0))
    assert held_above(window, 120) == 60_000


def test_gap_longer_than_max_breaks_the_run():
    window = window_of((0, 130.0), (300_001, 130.0), (360_001, 130.0))
    assert held_above(window, 120) == 60_000


def test_gap_of_exactly_max_does_not_break_the_run():
    window = window_of((0, 130.0), (300_000, 130.0), (360_000, 130.0))
    assert held_above(window, 120) == 360_000


def test_out_of_order_insert_lands_in_time_order():
    window = window_of((0, 1.0), (120_000, 3.0), (60_000, 2.0))
    assert window.values.tolist() == [1.0, 2.0, 3.0]


def test_out_of_order_insert_can_bridge_a_gap():
    window = window_of((0, 130.0), (400_000, 130.0))
    assert held_above(window, 120) == 0
    window.add(200_000, 130.0)
    assert held_above(window, 120) == 400_000


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_never_enter_the_window(value):
    window = window_of((0, 130.0), (60_000, value))
    assert len(window) == 1
    assert window.values.tolist() == [130.0]


def test_readings_older_than_the_horizon_are_dropped_and_the_cutoff_itself_is_kept():
    window = window_of((0, 1.0), (100_000, 2.0), (1_000_000, 3.0), horizon_ms=900_000)
    assert window.values.tolist() == [2.0, 3.0]


def test_late_reading_beyond_the_horizon_is_dropped_at_once():
    window = window_of((1_000_000, 3.0), (50_000, 1.0), horizon_ms=900_000)
    assert window.values.tolist() == [3.0]


def _reference_held_for(samples: list[tuple[int, float]], threshold: float, gap_ms: int) -> int:
    """Walk back from the newest reading, one reading at a time."""
    ordered = sorted(samples, key=lambda s: s[0])  # stable: equal times keep arrival order
    if not ordered or not ordered[-1][1] > threshold:
        return -1
    start = len(ordered) - 1
    while (
        start > 0
        and ordered[start - 1][1] > threshold
        and ordered[start][0] - ordered[start - 1][0] <= gap_ms
    ):
        start -= 1
    return ordered[-1][0] - ordered[start][0]


@given(
    samples=st.lists(
        st.tuples(st.integers(0, 2_000_000), st.sampled_from([100.0, 119.0, 121.0, 140.0])),
        max_size=40,
    ),
    gap_ms=st.integers(1, 600_000),
)
def test_held_for_ms_matches_a_walk_back_over_the_readings(samples, gap_ms):
    window = Window(10**9)  # horizon wider than any sample: nothing is dropped
    for ts_ms, value in samples:
        window.add(ts_ms, value)
    assert window.held_for_ms(window.values > 120, gap_ms) == _reference_held_for(samples, 120, gap_ms)


@given(st.lists(st.integers(0, 10**7), max_size=60))
def test_window_stays_sorted_and_within_its_horizon(times):
    window = Window(900_000)
    for ts_ms in times:
        window.add(ts_ms, 1.0)
    ts = window._ts
    assert bool(np.all(np.diff(ts) >= 0))
    if times:
        assert int(ts[-1]) == max(times)
        assert int(ts[0]) >= max(times) - 900_000
