"""Rules of waiting: a silent device, a device not worn, an elder living alone who does nothing."""

from __future__ import annotations

import pytest

from rules import DeviceContext, RulesConfig
from tests.unit.rules.timeline import CLEAR, HOUR, MINUTE, RAISE, WARNING, Timeline, at, summary

TIMEOUT_S = 600.0
NOT_WORN_S = 15 * MINUTE
INACTIVITY_S = 12 * HOUR


# -- device silent -----------------------------------------------------------------


def test_wearable_silent_for_exactly_its_timeout_is_not_yet_silent():
    timeline = Timeline()
    timeline.send("heartbeat", 0, received_s=5)
    assert timeline.tick(5 + TIMEOUT_S) == []


def test_wearable_silent_for_longer_than_its_timeout_raises_a_warning():
    timeline = Timeline()
    timeline.send("heartbeat", 0, received_s=5)
    hits = timeline.tick(5 + TIMEOUT_S + 0.001)
    assert summary(hits) == [(RAISE, "device_silent", WARNING)]
    assert hits[0].evidence["timeout_s"] == TIMEOUT_S
    assert hits[0].evidence["last_seen_at"] == at(5).isoformat()
    assert hits[0].emergency is False


def test_silence_is_measured_on_the_service_clock_not_device_time():
    timeline = Timeline()
    # The device's clock runs far ahead; only the received time matters.
    timeline.send("heartbeat", 10 * HOUR, received_s=0)
    assert timeline.tick(TIMEOUT_S) == []
    assert summary(timeline.tick(TIMEOUT_S + 1)) == [(RAISE, "device_silent", WARNING)]


def test_a_silent_device_raises_only_once_while_it_stays_silent():
    timeline = Timeline()
    timeline.send("heartbeat", 0)
    timeline.tick(TIMEOUT_S + 1)
    assert timeline.tick(2 * TIMEOUT_S) == []
    assert timeline.tick(10 * HOUR) == []


def test_a_silent_device_clears_when_it_speaks_again_and_can_go_silent_again():
    timeline = Timeline()
    timeline.send("heartbeat", 0)
    timeline.tick(TIMEOUT_S + 1)
    hits = timeline.send("heartbeat", 700, received_s=700)
    assert summary(hits) == [(CLEAR, "device_silent", WARNING)]
    assert hits[0].triggered_at == at(700)
    assert timeline.tick(700 + TIMEOUT_S) == []
    assert summary(timeline.tick(700 + TIMEOUT_S + 1)) == [(RAISE, "device_silent", WARNING)]


def test_high_risk_elders_get_half_the_timeout():
    timeline = Timeline(context=DeviceContext(high_risk=True))
    timeline.send("heartbeat", 0)
    assert timeline.tick(TIMEOUT_S / 2) == []
    hits = timeline.tick(TIMEOUT_S / 2 + 0.001)
    assert summary(hits) == [(RAISE, "device_silent", WARNING)]
    assert hits[0].evidence["timeout_s"] == TIMEOUT_S / 2


@pytest.mark.parametrize(("profile", "silent_after_s"), [("fixed_terminal", 90_000), ("sensor", 7_200)])
def test_fixed_devices_are_silent_after_two_missed_check_ins(profile, silent_after_s):
    timeline = Timeline(context=DeviceContext(profile=profile))
    timeline.send("heartbeat", 0)
    assert timeline.tick(silent_after_s) == []
    assert summary(timeline.tick(silent_after_s + 0.001)) == [(RAISE, "device_silent", WARNING)]


def test_the_registry_heartbeat_interval_overrides_the_profile():
    timeline = Timeline(context=DeviceContext(profile="fixed_terminal", heartbeat_interval_s=60.0))
    timeline.send("heartbeat", 0)
    assert timeline.tick(120) == []
    hits = timeline.tick(120.001)
    assert summary(hits) == [(RAISE, "device_silent", WARNING)]
    assert hits[0].evidence["timeout_s"] == 120.0


def test_high_risk_factor_applies_to_fixed_devices_too():
    timeline = Timeline(context=DeviceContext(profile="fixed_terminal", high_risk=True))
    timeline.send("heartbeat", 0)
    assert timeline.tick(45_000) == []
    assert summary(timeline.tick(45_000.001)) == [(RAISE, "device_silent", WARNING)]


def test_a_device_never_heard_from_is_never_silent():
    timeline = Timeline()
    timeline.engine.restore_alert("w9", "battery_low", WARNING)
    assert timeline.tick(100 * HOUR) == []


def test_a_device_profile_set_in_the_config_decides_its_silence_timeout():
    config = RulesConfig.from_mapping({"devices": {"t1": {"profile": "fixed_terminal"}}})
    timeline = Timeline(config)
    timeline.send("heartbeat", 0, device="t1")
    timeline.send("heartbeat", 0, device="w2")
    assert [hit.device_id for hit in timeline.tick(TIMEOUT_S + 100)] == ["w2"]
    assert [hit.device_id for hit in timeline.tick(90_000.001)] == ["t1"]


# -- not worn --------------------------------------------------------------------------


def test_not_worn_for_15_minutes_of_device_time_raises_a_warning():
    timeline = Timeline()
    timeline.send("worn", 0, on=False)
    assert timeline.send("heartbeat", NOT_WORN_S - 0.001) == []
    hits = timeline.send("heartbeat", NOT_WORN_S)
    assert summary(hits) == [(RAISE, "not_worn", WARNING)]
    assert hits[0].triggered_at == at(0)


def test_not_worn_for_15_minutes_of_service_clock_raises_a_warning():
    timeline = Timeline()
    timeline.send("worn", 0, on=False, received_s=2)
    timeline.tick(2 + NOT_WORN_S - 0.001)
    assert timeline.actions("not_worn") == []
    timeline.tick(2 + NOT_WORN_S)
    assert timeline.actions("not_worn") == [(RAISE, "not_worn", WARNING)]


def test_not_worn_raises_only_once():
    timeline = Timeline()
    timeline.send("worn", 0, on=False)
    timeline.send("heartbeat", NOT_WORN_S)
    timeline.send("worn", NOT_WORN_S + 60, on=False)
    timeline.tick(NOT_WORN_S + 120)
    timeline.send("heartbeat", 2 * NOT_WORN_S)
    assert timeline.actions("not_worn") == [(RAISE, "not_worn", WARNING)]


def test_worn_again_clears_not_worn():
    timeline = Timeline()
    timeline.send("worn", 0, on=False)
    timeline.send("heartbeat", NOT_WORN_S)
    assert summary(timeline.send("worn", NOT_WORN_S + 60, on=True)) == [(CLEAR, "not_worn", WARNING)]


def test_worn_again_before_15_minutes_cancels_the_countdown():
    timeline = Timeline()
    timeline.send("worn", 0, on=False)
    assert timeline.send("worn", 10 * MINUTE, on=True) == []
    timeline.send("heartbeat", 30 * MINUTE)
    timeline.tick(30 * MINUTE)
    assert timeline.actions("not_worn") == []


def test_repeated_not_worn_reports_do_not_restart_the_countdown():
    timeline = Timeline()
    timeline.send("worn", 0, on=False)
    timeline.send("worn", 10 * MINUTE, on=False)
    assert summary(timeline.send("heartbeat", NOT_WORN_S)) == [(RAISE, "not_worn", WARNING)]


def test_a_late_not_worn_report_is_ignored():
    timeline = Timeline()
    timeline.send("heartbeat", HOUR)
    timeline.send("worn", 0, on=False, received_s=HOUR)
    timeline.tick(3 * HOUR)
    assert timeline.actions("not_worn") == []


# -- inactivity --------------------------------------------------------------------------

ALONE = DeviceContext(living_alone=True)


def test_living_alone_and_inactive_for_more_than_12_hours_raises_a_warning():
    timeline = Timeline(context=ALONE)
    timeline.send("location", 0, received_s=1)
    assert timeline.actions("inactivity") == []
    timeline.tick(1 + INACTIVITY_S)
    assert timeline.actions("inactivity") == []
    timeline.tick(1 + INACTIVITY_S + 0.001)
    assert timeline.actions("inactivity") == [(RAISE, "inactivity", WARNING)]


def test_heartbeats_and_battery_reports_are_not_activity():
    timeline = Timeline(context=ALONE)
    timeline.send("heart_rate", 0, bpm=70)
    for minute in range(5, 13 * 60, 5):
        timeline.send("heartbeat" if minute % 2 else "battery", minute * MINUTE, pct=80, battery_pct=80)
    timeline.tick(13 * HOUR)
    assert timeline.actions("inactivity") == [(RAISE, "inactivity", WARNING)]
    assert timeline.actions("device_silent") == []


def test_inactivity_clears_on_activity():
    timeline = Timeline(context=ALONE)
    timeline.send("heart_rate", 0, bpm=70)
    timeline.tick(13 * HOUR)
    hits = timeline.send("spo2", 13 * HOUR, pct=97)
    assert (CLEAR, "inactivity", WARNING) in summary(hits)


def test_inactivity_is_not_watched_for_elders_not_living_alone():
    timeline = Timeline()
    timeline.send("heart_rate", 0, bpm=70)
    for minute in range(5, 13 * 60, 5):
        timeline.send("heartbeat", minute * MINUTE)
    timeline.tick(13 * HOUR)
    assert timeline.actions("inactivity") == []


def test_a_living_alone_device_heard_only_through_heartbeats_becomes_inactive():
    timeline = Timeline(context=ALONE)
    for minute in range(0, 13 * 60, 5):
        timeline.send("heartbeat", minute * MINUTE)
    timeline.tick(13 * HOUR)
    assert timeline.actions("inactivity") == [(RAISE, "inactivity", WARNING)]
