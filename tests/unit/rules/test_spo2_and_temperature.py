"""SpO2 (consecutive low readings) and body temperature (single-reading thresholds)."""

from __future__ import annotations

import math

import pytest

from rules import RulesConfig
from tests.unit.rules.timeline import CLEAR, CRITICAL, MAJOR, RAISE, Timeline, summary


def spo2(timeline: Timeline, *samples: tuple[float, float]) -> list:
    return timeline.readings("spo2", "pct", samples)


def temp(timeline: Timeline, *samples: tuple[float, float]) -> list:
    return timeline.readings("body_temp", "celsius", samples)


# -- SpO2 -----------------------------------------------------------------------------


def test_two_consecutive_readings_at_91_fire_critical():
    timeline = Timeline()
    assert spo2(timeline, (0, 91)) == []
    hits = spo2(timeline, (60, 91))
    assert summary(hits) == [(RAISE, "spo2_low", CRITICAL)]
    assert hits[0].emergency is True
    assert hits[0].evidence == {"pct": 91.0, "consecutive": 2}


def test_readings_at_92_never_fire():
    timeline = Timeline()
    assert spo2(timeline, *[(60 * i, 92) for i in range(10)]) == []


def test_a_normal_reading_between_two_low_ones_breaks_the_run():
    timeline = Timeline()
    assert spo2(timeline, (0, 88), (60, 92), (120, 88)) == []


def test_a_long_low_run_raises_only_once():
    timeline = Timeline()
    spo2(timeline, *[(60 * i, 85) for i in range(10)])
    assert timeline.actions() == [(RAISE, "spo2_low", CRITICAL)]


def test_spo2_clears_at_94_but_not_at_93():
    timeline = Timeline()
    spo2(timeline, (0, 90), (60, 90))
    assert spo2(timeline, (120, 93)) == []
    assert summary(spo2(timeline, (180, 94))) == [(CLEAR, "spo2_low", CRITICAL)]


def test_spo2_between_the_clear_level_and_the_threshold_neither_clears_nor_re_raises():
    timeline = Timeline()
    spo2(timeline, (0, 90), (60, 90))
    assert spo2(timeline, *[(120 + 60 * i, 92.5) for i in range(10)]) == []


def test_spo2_raises_again_after_a_clear():
    timeline = Timeline()
    spo2(timeline, (0, 90), (60, 90), (120, 96), (180, 89), (240, 89))
    assert timeline.actions() == [
        (RAISE, "spo2_low", CRITICAL),
        (CLEAR, "spo2_low", CRITICAL),
        (RAISE, "spo2_low", CRITICAL),
    ]


def test_spo2_consecutive_count_is_configurable():
    config = RulesConfig.from_mapping({"defaults": {"spo2_consecutive": 3}})
    timeline = Timeline(config)
    assert spo2(timeline, (0, 90), (60, 90)) == []
    assert summary(spo2(timeline, (120, 90))) == [(RAISE, "spo2_low", CRITICAL)]


def test_a_late_low_spo2_reading_never_fires():
    timeline = Timeline()
    spo2(timeline, (600, 90))
    assert spo2(timeline, (0, 90)) == []


def test_an_out_of_order_low_spo2_reading_inside_the_grace_completes_a_device_time_run():
    timeline = Timeline()
    timeline.send("spo2", 10, pct=90, received_s=10)
    timeline.send("spo2", 30, pct=97, received_s=30)
    timeline.send("spo2", 20, pct=90, received_s=31)  # 10 s late: inside the grace
    assert timeline.actions() == [(RAISE, "spo2_low", CRITICAL)]


def test_a_nan_spo2_reading_does_not_break_a_run_of_low_readings():
    timeline = Timeline()
    spo2(timeline, (0, 90), (30, math.nan), (60, 90))
    assert timeline.actions() == [(RAISE, "spo2_low", CRITICAL)]


# -- body temperature ---------------------------------------------------------------


def test_body_temp_at_35_0_fires_critical_low():
    timeline = Timeline()
    hits = temp(timeline, (0, 35.0))
    assert summary(hits) == [(RAISE, "body_temp_low", CRITICAL)]
    assert hits[0].emergency is True


def test_body_temp_just_above_35_0_does_not_fire():
    timeline = Timeline()
    assert temp(timeline, (0, 35.01)) == []


def test_body_temp_at_39_1_fires_major_high():
    timeline = Timeline()
    hits = temp(timeline, (0, 39.1))
    assert summary(hits) == [(RAISE, "body_temp_high", MAJOR)]
    assert hits[0].emergency is False


def test_body_temp_just_below_39_1_does_not_fire():
    timeline = Timeline()
    assert temp(timeline, (0, 39.09)) == []


def test_low_temperature_in_the_hysteresis_band_neither_clears_nor_re_raises():
    timeline = Timeline()
    temp(timeline, (0, 34.5))
    assert temp(timeline, (60, 35.2), (120, 34.9), (180, 35.25)) == []
    assert summary(temp(timeline, (240, 35.4))) == [(CLEAR, "body_temp_low", CRITICAL)]


def test_high_temperature_in_the_hysteresis_band_neither_clears_nor_re_raises():
    timeline = Timeline()
    temp(timeline, (0, 39.5))
    assert temp(timeline, (60, 38.9), (120, 39.3), (180, 38.85)) == []
    assert summary(temp(timeline, (240, 38.7))) == [(CLEAR, "body_temp_high", MAJOR)]


def test_body_temp_raises_again_after_a_clear():
    timeline = Timeline()
    temp(timeline, (0, 39.2), (60, 37.0), (120, 39.2))
    assert timeline.actions() == [
        (RAISE, "body_temp_high", MAJOR),
        (CLEAR, "body_temp_high", MAJOR),
        (RAISE, "body_temp_high", MAJOR),
    ]


def test_a_late_abnormal_temperature_never_fires():
    timeline = Timeline()
    temp(timeline, (600, 36.8))
    assert temp(timeline, (0, 34.0)) == []


def test_nan_temperature_fires_nothing():
    timeline = Timeline()
    assert temp(timeline, (0, math.nan)) == []


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_temperature_never_fires(value):
    timeline = Timeline()
    assert temp(timeline, (0, value)) == []
