"""Heart rate: sustained high/low runs on device time, upgrades, hysteresis, gaps, late data."""

from __future__ import annotations

import math

import pytest

from rules import RulesConfig
from tests.unit.rules.timeline import CLEAR, CRITICAL, MAJOR, MINUTE, RAISE, Timeline, at, every, summary


def hr(timeline: Timeline, samples: list[tuple[float, float]]) -> list:
    return timeline.readings("heart_rate", "bpm", samples)


# -- thresholds -------------------------------------------------------------------


def test_120_bpm_sustained_for_ten_minutes_does_not_fire_major_high():
    timeline = Timeline()
    assert hr(timeline, every(0, 20 * MINUTE, MINUTE, 120)) == []


def test_above_120_bpm_sustained_for_ten_minutes_fires_major_high():
    timeline = Timeline()
    hits = hr(timeline, every(0, 10 * MINUTE, MINUTE, 120.5))
    assert summary(hits) == [(RAISE, "heart_rate_high", MAJOR)]
    assert hits[0].triggered_at == at(10 * MINUTE)
    assert hits[0].emergency is False
    assert hits[0].evidence["bpm"] == 120.5


def test_131_bpm_sustained_for_two_minutes_fires_critical_high():
    timeline = Timeline()
    hits = hr(timeline, every(0, 2 * MINUTE, 30, 131))
    assert summary(hits) == [(RAISE, "heart_rate_high", CRITICAL)]
    assert hits[0].emergency is True


def test_130_bpm_for_two_minutes_fires_nothing():
    timeline = Timeline()
    assert hr(timeline, every(0, 2 * MINUTE, 30, 130)) == []


def test_45_bpm_sustained_for_ten_minutes_does_not_fire_major_low():
    timeline = Timeline()
    assert hr(timeline, every(0, 20 * MINUTE, MINUTE, 45)) == []


def test_below_45_bpm_sustained_for_ten_minutes_fires_major_low():
    timeline = Timeline()
    assert summary(hr(timeline, every(0, 10 * MINUTE, MINUTE, 44.5))) == [(RAISE, "heart_rate_low", MAJOR)]


def test_40_bpm_sustained_for_two_minutes_fires_critical_low():
    timeline = Timeline()
    assert summary(hr(timeline, every(0, 2 * MINUTE, 30, 40))) == [(RAISE, "heart_rate_low", CRITICAL)]


def test_41_bpm_for_two_minutes_fires_nothing():
    timeline = Timeline()
    assert hr(timeline, every(0, 2 * MINUTE, 30, 41)) == []


# -- durations --------------------------------------------------------------------


def test_major_run_of_599_9_seconds_does_not_fire_and_600_seconds_does():
    timeline = Timeline()
    assert hr(timeline, [(0, 125), (299.9, 125), (599.9, 125)]) == []
    assert summary(hr(timeline, [(600, 125)])) == [(RAISE, "heart_rate_high", MAJOR)]


def test_critical_run_of_119_999_seconds_does_not_fire_and_120_seconds_does():
    timeline = Timeline()
    assert hr(timeline, [(0, 135), (60, 135), (119.999, 135)]) == []
    assert summary(hr(timeline, [(120, 135)])) == [(RAISE, "heart_rate_high", CRITICAL)]


def test_a_reading_that_fails_the_condition_restarts_the_run():
    timeline = Timeline()
    samples = [
        *every(0, 5 * MINUTE, MINUTE, 125),
        (6 * MINUTE, 110),
        *every(7 * MINUTE, 16 * MINUTE, MINUTE, 125),
    ]
    assert hr(timeline, samples) == []
    assert summary(hr(timeline, [(17 * MINUTE, 125)])) == [(RAISE, "heart_rate_high", MAJOR)]


def test_durations_are_configurable():
    config = RulesConfig.from_mapping({"defaults": {"hr_high_major_bpm": 100.0, "hr_high_major_s": 60.0}})
    timeline = Timeline(config)
    assert summary(hr(timeline, [(0, 105), (60, 105)])) == [(RAISE, "heart_rate_high", MAJOR)]


# -- the gap rule -------------------------------------------------------------------


def test_a_gap_longer_than_five_minutes_breaks_the_run():
    timeline = Timeline()
    samples = [(0, 125), (300.001, 125), (600.001, 125)]
    assert hr(timeline, samples) == []
    assert hr(timeline, [(900, 125)]) == []  # the run starts at 300.001 s


def test_a_gap_of_exactly_five_minutes_keeps_the_run():
    timeline = Timeline()
    assert summary(hr(timeline, [(0, 125), (300, 125), (600, 125)])) == [(RAISE, "heart_rate_high", MAJOR)]


def test_a_gap_breaks_a_critical_run_too():
    timeline = Timeline()
    assert hr(timeline, [(0, 140), (400, 140), (460, 140)]) == []
    assert summary(hr(timeline, [(520, 140)])) == [(RAISE, "heart_rate_high", CRITICAL)]


# -- severity within an episode ---------------------------------------------------


def test_major_then_critical_raises_twice_under_one_dedup_key():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 125))
    hr(timeline, every(11 * MINUTE, 13 * MINUTE, MINUTE, 135))
    assert timeline.actions() == [(RAISE, "heart_rate_high", MAJOR), (RAISE, "heart_rate_high", CRITICAL)]
    assert len({hit.dedup_key for hit in timeline.hits}) == 1


def test_critical_then_major_raises_nothing_more():
    timeline = Timeline()
    hr(timeline, every(0, 2 * MINUTE, MINUTE, 135))
    hr(timeline, every(3 * MINUTE, 30 * MINUTE, MINUTE, 125))
    assert timeline.actions() == [(RAISE, "heart_rate_high", CRITICAL)]


def test_critical_low_then_major_low_raises_nothing_more():
    timeline = Timeline()
    hr(timeline, every(0, 2 * MINUTE, MINUTE, 38))
    hr(timeline, every(3 * MINUTE, 30 * MINUTE, MINUTE, 43))
    assert timeline.actions() == [(RAISE, "heart_rate_low", CRITICAL)]


# -- clearing and hysteresis ------------------------------------------------------


def test_high_clears_once_readings_stay_at_or_below_115_for_five_minutes():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 125))
    assert hr(timeline, [(11 * MINUTE, 115), (13 * MINUTE, 115), (15 * MINUTE + 59.999, 115)]) == []
    hits = hr(timeline, [(16 * MINUTE, 115)])
    assert summary(hits) == [(CLEAR, "heart_rate_high", MAJOR)]
    assert hits[0].dedup_key == timeline.hits[0].dedup_key


def test_a_clear_carries_the_severity_reached_in_the_episode():
    timeline = Timeline()
    hr(timeline, every(0, 2 * MINUTE, MINUTE, 135))
    hr(timeline, every(3 * MINUTE, 8 * MINUTE, MINUTE, 100))
    assert timeline.actions() == [(RAISE, "heart_rate_high", CRITICAL), (CLEAR, "heart_rate_high", CRITICAL)]


def test_high_hysteresis_band_neither_clears_nor_re_raises():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 125))
    assert hr(timeline, every(11 * MINUTE, 60 * MINUTE, MINUTE, 118)) == []
    assert hr(timeline, every(61 * MINUTE, 65 * MINUTE, MINUTE, 115.5)) == []


def test_low_clears_once_readings_stay_at_or_above_50_for_five_minutes():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 44))
    assert summary(hr(timeline, every(11 * MINUTE, 16 * MINUTE, MINUTE, 50))) == [
        (CLEAR, "heart_rate_low", MAJOR)
    ]


def test_low_hysteresis_band_neither_clears_nor_re_raises():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 44))
    assert hr(timeline, every(11 * MINUTE, 60 * MINUTE, MINUTE, 47)) == []
    assert hr(timeline, every(61 * MINUTE, 65 * MINUTE, MINUTE, 49.5)) == []


def test_a_gap_breaks_the_clearing_run():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 125))
    assert hr(timeline, [(11 * MINUTE, 100), (16 * MINUTE + 0.001, 100)]) == []
    assert summary(hr(timeline, [(21 * MINUTE + 0.001, 100)])) == [(CLEAR, "heart_rate_high", MAJOR)]


def test_a_new_episode_after_a_clear_raises_again():
    timeline = Timeline()
    hr(timeline, every(0, 10 * MINUTE, MINUTE, 125))
    hr(timeline, every(11 * MINUTE, 16 * MINUTE, MINUTE, 100))
    hr(timeline, every(17 * MINUTE, 27 * MINUTE, MINUTE, 125))
    assert timeline.actions() == [
        (RAISE, "heart_rate_high", MAJOR),
        (CLEAR, "heart_rate_high", MAJOR),
        (RAISE, "heart_rate_high", MAJOR),
    ]


# -- out of order, late, not a number ----------------------------------------------


def test_an_out_of_order_insert_inside_the_grace_counts():
    timeline = Timeline()
    # 260 s -> 600 s is a 340 s gap: no run yet.
    assert hr(timeline, [(0, 125), (130, 125), (260, 125), (600, 125)]) == []
    # A reading from 40 s before the newest bridges the gap (and it is not late).
    hits = timeline.send("heart_rate", 560, bpm=125, received_s=601)
    assert summary(hits) == [(RAISE, "heart_rate_high", MAJOR)]


def test_an_out_of_order_insert_beyond_the_grace_never_fires_but_is_kept():
    timeline = Timeline()
    assert hr(timeline, [(0, 125), (130, 125), (260, 125), (600, 125)]) == []
    assert timeline.send("heart_rate", 539.999, bpm=125, received_s=601) == []
    # The late reading still bridges the gap for the next on-time reading.
    assert summary(hr(timeline, [(610, 125)])) == [(RAISE, "heart_rate_high", MAJOR)]


def test_a_reading_exactly_one_grace_older_than_the_newest_still_fires():
    timeline = Timeline()
    assert hr(timeline, [(0, 135), (360, 135)]) == []  # a 360 s gap: no run
    hits = timeline.send("heart_rate", 300, bpm=135, received_s=361)
    assert summary(hits) == [(RAISE, "heart_rate_high", CRITICAL)]


def test_a_reading_one_millisecond_beyond_the_grace_never_fires():
    timeline = Timeline()
    assert hr(timeline, [(0, 135), (360, 135)]) == []
    assert timeline.send("heart_rate", 299.999, bpm=135, received_s=361) == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_readings_never_fire_and_never_break_a_run(value):
    timeline = Timeline()
    assert hr(timeline, [(0, 135), (60, value)]) == []
    assert summary(hr(timeline, [(120, 135)])) == [(RAISE, "heart_rate_high", CRITICAL)]


def test_non_numeric_bpm_is_ignored():
    timeline = Timeline()
    assert timeline.send("heart_rate", 0, bpm="fast") == []
    assert timeline.send("heart_rate", 0) == []


def test_devices_have_separate_windows():
    timeline = Timeline()
    for second in (0, 60, 120):
        timeline.send("heart_rate", second, device="a", bpm=135)
        timeline.send("heart_rate", second, device="b", bpm=70)
    assert [(hit.device_id, hit.rule) for hit in timeline.hits] == [("a", "heart_rate_high")]


def test_a_critical_duration_longer_than_the_major_one_can_still_fire():
    config = RulesConfig.from_mapping({"defaults": {"hr_high_critical_s": 1200.0}})
    timeline = Timeline(config)
    hr(timeline, every(0, 20 * MINUTE, MINUTE, 140))
    assert (RAISE, "heart_rate_high", CRITICAL) in timeline.actions()
