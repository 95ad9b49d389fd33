"""Rebuilding rule state after a restart: open alerts, held falls, last seen, recent readings."""

from __future__ import annotations

from devices import Event, Kind
from rules import DeviceContext
from tests.unit.rules.timeline import (
    CANCEL,
    CLEAR,
    CRITICAL,
    DEVICE,
    HOUR,
    MAJOR,
    MINUTE,
    RAISE,
    WARNING,
    Timeline,
    at,
    every,
    summary,
)


def restored_reading(device_s: float, bpm: float) -> Event:
    """A reading as the service reloads it from the database (no event key)."""
    return Event(
        device_id=DEVICE, kind=Kind.HEART_RATE, observed_at=at(device_s), fields={"bpm": bpm}, event_key=""
    )


# -- restore_hold ------------------------------------------------------------------


def test_a_restored_hold_raises_exactly_once_on_tick():
    timeline = Timeline()
    timeline.engine.restore_hold(DEVICE, "fall:f-1", at(0), at(1))
    assert timeline.tick(1 + 29.999) == []
    hits = timeline.tick(1 + 30)
    assert summary(hits) == [(RAISE, "fall", CRITICAL)]
    assert hits[0].occurrence_key == "fall:f-1"
    assert hits[0].triggered_at == at(0)
    timeline.tick(2 * HOUR)
    timeline.send("heart_rate", 2 * HOUR, bpm=70)
    assert timeline.actions("fall") == [(RAISE, "fall", CRITICAL)]


def test_a_restored_hold_whose_window_already_passed_raises_on_the_first_tick():
    timeline = Timeline()
    timeline.engine.restore_hold(DEVICE, "fall:f-1", at(0), at(1))
    assert summary(timeline.tick(10 * MINUTE)) == [(RAISE, "fall", CRITICAL)]
    assert timeline.tick(11 * MINUTE) == []


def test_a_restored_hold_can_still_be_cancelled_inside_its_window():
    timeline = Timeline()
    timeline.engine.restore_hold(DEVICE, "fall:f-1", at(0), at(1))
    hits = timeline.send("cancel", 20, received_s=21)
    assert summary(hits) == [(CANCEL, "fall", CRITICAL)]
    assert hits[0].occurrence_key == "fall:f-1"
    timeline.tick(HOUR)
    assert timeline.actions("fall") == [(CANCEL, "fall", CRITICAL)]


def test_a_restored_hold_expires_by_device_time_too():
    timeline = Timeline()
    timeline.engine.restore_hold(DEVICE, "fall:f-1", at(0), at(1))
    assert timeline.send("heart_rate", 89.999, bpm=70, received_s=2) == []  # window + 60 s grace
    assert summary(timeline.send("heart_rate", 90, bpm=70, received_s=3)) == [(RAISE, "fall", CRITICAL)]


# -- restore_alert -----------------------------------------------------------------


def test_a_restored_open_alert_is_not_raised_again():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "heart_rate_high", MAJOR)
    assert timeline.readings("heart_rate", "bpm", every(0, 20 * MINUTE, MINUTE, 125)) == []


def test_a_restored_open_alert_can_still_be_upgraded():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "heart_rate_high", MAJOR)
    hits = timeline.readings("heart_rate", "bpm", every(0, 2 * MINUTE, MINUTE, 140))
    assert summary(hits) == [(RAISE, "heart_rate_high", CRITICAL)]


def test_a_restored_open_alert_clears_when_the_condition_ends():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "spo2_low", CRITICAL)
    assert timeline.readings("spo2", "pct", [(0, 89), (60, 89)]) == []
    assert summary(timeline.send("spo2", 120, pct=97)) == [(CLEAR, "spo2_low", CRITICAL)]


def test_a_restored_silent_alert_clears_when_the_device_speaks():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "device_silent", WARNING)
    assert summary(timeline.send("heartbeat", 0)) == [(CLEAR, "device_silent", WARNING)]


def test_a_restored_pre_alert_is_cleared_by_a_cancel():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "fall", MAJOR)
    assert summary(timeline.send("fall", 0, stage="warning")) == [(RAISE, "fall", MAJOR)]
    assert summary(timeline.send("cancel", 5)) == [(CLEAR, "fall", MAJOR)]


# -- restore_seen ------------------------------------------------------------------


def test_restore_seen_lets_a_device_go_silent_without_a_new_message():
    timeline = Timeline()
    timeline.engine.restore_seen(DEVICE, last_seen_at=at(0), last_activity_at=None)
    assert timeline.tick(600) == []
    assert summary(timeline.tick(600.001)) == [(RAISE, "device_silent", WARNING)]


def test_restore_seen_without_activity_counts_inactivity_from_last_seen():
    timeline = Timeline(context=DeviceContext(living_alone=True))
    timeline.engine.restore_seen(DEVICE, last_seen_at=at(0), last_activity_at=None)
    timeline.tick(12 * HOUR)
    assert timeline.actions("inactivity") == []
    timeline.tick(12 * HOUR + 1)
    assert timeline.actions("inactivity") == [(RAISE, "inactivity", WARNING)]


# -- restore_reading ---------------------------------------------------------------


def test_restored_readings_are_not_evaluated():
    timeline = Timeline()
    for second, bpm in every(0, 20 * MINUTE, MINUTE, 140):
        timeline.engine.restore_reading(restored_reading(second, bpm))
    assert timeline.hits == []
    assert timeline.tick(20 * MINUTE) == []


def test_restored_readings_count_towards_a_sustained_run():
    timeline = Timeline()
    for second, bpm in every(0, 9 * MINUTE, MINUTE, 125):
        timeline.engine.restore_reading(restored_reading(second, bpm))
    assert summary(timeline.send("heart_rate", 10 * MINUTE, bpm=125)) == [(RAISE, "heart_rate_high", MAJOR)]


def test_restored_readings_set_the_watermark_so_older_readings_are_late():
    timeline = Timeline()
    timeline.engine.restore_reading(restored_reading(10 * MINUTE, 70))
    assert timeline.readings("spo2", "pct", [(0, 85), (1, 85)]) == []


def test_a_restored_nan_reading_is_ignored():
    timeline = Timeline()
    timeline.engine.restore_reading(restored_reading(0, 140))
    timeline.engine.restore_reading(restored_reading(60, float("nan")))
    assert summary(timeline.send("heart_rate", 120, bpm=140)) == [(RAISE, "heart_rate_high", CRITICAL)]
