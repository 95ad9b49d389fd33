"""Fall: held for the wearer's cancel, then a critical alert; pre-alerts and their upgrade."""

from __future__ import annotations

from rules import RulesConfig
from tests.unit.rules.timeline import (
    CANCEL,
    CLEAR,
    CRITICAL,
    DEVICE,
    HOLD,
    HOUR,
    MAJOR,
    RAISE,
    Timeline,
    at,
    summary,
)

WINDOW_S = 30.0
#: Device-time expiry waits this much past the window for out-of-order cancels.
GRACE_S = 60.0


def test_fall_is_held_for_its_cancel_window_without_raising():
    timeline = Timeline()
    hits = timeline.send("fall", 0)
    assert summary(hits) == [(HOLD, "fall", CRITICAL)]
    assert hits[0].due_at == at(WINDOW_S)
    assert hits[0].dedup_key == f"{DEVICE}:fall"
    assert timeline.tick(WINDOW_S - 0.001) == []


def test_cancel_inside_the_window_cancels_the_fall_and_nothing_is_ever_raised():
    timeline = Timeline()
    timeline.send("fall", 0)
    assert summary(timeline.send("cancel", 10)) == [(CANCEL, "fall", CRITICAL)]
    timeline.send("heart_rate", 120, bpm=70)
    timeline.tick(HOUR)
    assert [hit.action for hit in timeline.hits if hit.rule == "fall"] == [HOLD, CANCEL]


def test_cancel_at_exactly_the_last_millisecond_of_the_window_cancels():
    timeline = Timeline()
    timeline.send("fall", 0)
    assert summary(timeline.send("cancel", WINDOW_S)) == [(CANCEL, "fall", CRITICAL)]
    timeline.tick(HOUR)
    assert (RAISE, "fall", CRITICAL) not in timeline.actions()


def test_cancel_one_millisecond_after_the_window_does_not_cancel_and_the_fall_raises():
    timeline = Timeline()
    timeline.send("fall", 0)
    assert timeline.send("cancel", WINDOW_S + 0.001) == []
    assert summary(timeline.send("heart_rate", WINDOW_S + GRACE_S, bpm=70)) == [(RAISE, "fall", CRITICAL)]
    timeline.tick(HOUR)
    assert CANCEL not in [hit.action for hit in timeline.hits]


def test_cancel_at_the_same_instant_as_the_fall_cancels():
    timeline = Timeline()
    timeline.send("fall", 10)
    assert summary(timeline.send("cancel", 10)) == [(CANCEL, "fall", CRITICAL)]


def test_cancel_one_millisecond_before_the_fall_does_not_cancel_it():
    timeline = Timeline()
    timeline.send("fall", 10)
    assert timeline.send("cancel", 9.999, received_s=11) == []
    assert summary(timeline.tick(11 + WINDOW_S)) == [(RAISE, "fall", CRITICAL)]


def test_cancel_from_another_device_does_not_cancel():
    timeline = Timeline()
    timeline.send("fall", 0)
    assert timeline.send("cancel", 5, device="other") == []
    assert summary(timeline.tick(WINDOW_S)) == [(RAISE, "fall", CRITICAL)]


def test_window_passes_by_device_time_when_a_later_event_reaches_the_due_time_plus_the_grace():
    timeline = Timeline()
    timeline.send("fall", 0, received_s=0)
    assert timeline.send("heart_rate", WINDOW_S + GRACE_S - 0.001, bpm=70, received_s=1) == []
    hits = timeline.send("heart_rate", WINDOW_S + GRACE_S, bpm=70, received_s=2)
    assert summary(hits) == [(RAISE, "fall", CRITICAL)]
    assert hits[0].triggered_at == at(0)
    assert hits[0].emergency is True


def test_window_passes_by_service_clock_when_the_device_goes_quiet():
    timeline = Timeline()
    timeline.send("fall", 0, received_s=3)
    assert timeline.tick(3 + WINDOW_S - 0.001) == []
    hits = timeline.tick(3 + WINDOW_S)
    assert summary(hits) == [(RAISE, "fall", CRITICAL)]
    assert hits[0].triggered_at == at(0)


def test_an_expired_fall_raises_exactly_once():
    timeline = Timeline()
    timeline.send("fall", 0)
    timeline.send("heart_rate", 40, bpm=70)
    timeline.tick(WINDOW_S)
    timeline.tick(HOUR)
    timeline.send("heart_rate", 2 * HOUR, bpm=70)
    assert timeline.actions("fall") == [(RAISE, "fall", CRITICAL)]


def test_raised_fall_evidence_names_the_window_and_the_delivery_delay():
    timeline = Timeline()
    timeline.send("fall", 0, received_s=2, confidence=0.9)
    (hit,) = timeline.tick(2 + WINDOW_S)
    assert hit.evidence["cancel_window_s"] == WINDOW_S
    assert hit.evidence["delivery_delay_s"] == 2.0
    assert hit.evidence["confidence"] == 0.9


def test_cancel_arriving_before_the_fall_but_inside_its_window_cancels_it():
    timeline = Timeline()
    timeline.send("cancel", 12, received_s=13)
    hits = timeline.send("fall", 0, received_s=14)
    assert summary(hits) == [(CANCEL, "fall", CRITICAL)]
    timeline.tick(HOUR)
    assert (RAISE, "fall", CRITICAL) not in timeline.actions()


def test_cancel_arriving_before_the_fall_at_exactly_its_due_time_cancels_it():
    timeline = Timeline()
    timeline.send("cancel", WINDOW_S, received_s=31)
    assert summary(timeline.send("fall", 0, received_s=32)) == [(CANCEL, "fall", CRITICAL)]


def test_cancel_arriving_before_the_fall_but_after_its_window_does_not_cancel_it():
    timeline = Timeline()
    timeline.send("cancel", WINDOW_S + 0.001, received_s=31)
    assert summary(timeline.send("fall", 0, received_s=32)) == [(HOLD, "fall", CRITICAL)]
    assert summary(timeline.tick(32 + WINDOW_S)) == [(RAISE, "fall", CRITICAL)]


def test_fall_delivered_after_its_own_window_passed_raises_immediately():
    timeline = Timeline()
    timeline.send("heart_rate", 100, bpm=70)
    hits = timeline.send("fall", 100 - WINDOW_S - GRACE_S, received_s=101)
    assert summary(hits) == [(RAISE, "fall", CRITICAL)]
    assert hits[0].evidence["delivery_delay_s"] == WINDOW_S + GRACE_S + 1


def test_fall_whose_window_and_grace_end_exactly_at_the_watermark_raises_immediately():
    timeline = Timeline()
    timeline.send("heart_rate", WINDOW_S + GRACE_S, bpm=70)
    assert summary(timeline.send("fall", 0, received_s=31)) == [(RAISE, "fall", CRITICAL)]


def test_fall_delivered_late_but_still_inside_its_window_is_held():
    timeline = Timeline()
    timeline.send("heart_rate", 20, bpm=70)
    assert summary(timeline.send("fall", 0, received_s=21)) == [(HOLD, "fall", CRITICAL)]


def test_cancel_window_is_configurable():
    config = RulesConfig.from_mapping({"defaults": {"fall_cancel_window_s": 60.0}})
    timeline = Timeline(config)
    (hold,) = timeline.send("fall", 0)
    assert hold.due_at == at(60)
    assert summary(timeline.send("cancel", 45)) == [(CANCEL, "fall", CRITICAL)]


def test_two_falls_inside_one_cancel_are_both_cancelled():
    timeline = Timeline()
    timeline.send("fall", 0)
    timeline.send("fall", 10)
    assert summary(timeline.send("cancel", 20)) == [(CANCEL, "fall", CRITICAL)] * 2


# -- one occurrence key per fall: the store matches the hold with its outcome on it ---


def test_hold_and_its_raise_share_one_occurrence_key():
    timeline = Timeline()
    (hold,) = timeline.send("fall", 0, key="f-1")
    (raised,) = timeline.tick(WINDOW_S)
    assert raised.occurrence_key == hold.occurrence_key


def test_hold_and_its_cancel_share_one_occurrence_key():
    timeline = Timeline()
    (hold,) = timeline.send("fall", 0, key="f-1")
    (cancel,) = timeline.send("cancel", 5)
    assert cancel.occurrence_key == hold.occurrence_key


def test_a_fall_cancelled_on_arrival_and_a_held_fall_use_the_same_key_scheme():
    in_order = Timeline()
    in_order.send("fall", 0, key="f-1")
    (cancel_after,) = in_order.send("cancel", 5)
    out_of_order = Timeline()
    out_of_order.send("cancel", 5)
    (cancel_before,) = out_of_order.send("fall", 0, key="f-1", received_s=6)
    assert cancel_before.occurrence_key == cancel_after.occurrence_key


def test_a_late_fall_raised_on_arrival_uses_the_hold_key_scheme():
    held = Timeline()
    (hold,) = held.send("fall", 0, key="f-1")
    late = Timeline()
    late.send("heart_rate", 100, bpm=70)
    (raised,) = late.send("fall", 0, key="f-1", received_s=101)
    assert raised.occurrence_key == hold.occurrence_key


# -- pre-alerts (stage "warning") ------------------------------------------------


def test_warning_stage_alone_raises_a_major_pre_alert():
    timeline = Timeline()
    hits = timeline.send("fall", 0, stage="warning")
    assert summary(hits) == [(RAISE, "fall", MAJOR)]
    assert hits[0].emergency is False
    assert hits[0].evidence["stage"] == "warning"
    timeline.tick(HOUR)
    assert timeline.actions("fall") == [(RAISE, "fall", MAJOR)]


def test_a_second_warning_stage_is_reported_for_the_store_to_add_to_the_open_pre_alert():
    timeline = Timeline()
    first = timeline.send("fall", 0, stage="warning")
    second = timeline.send("fall", 5, stage="warning")
    assert summary(second) == [(RAISE, "fall", MAJOR)]
    assert second[0].dedup_key == first[0].dedup_key
    assert second[0].occurrence_key != first[0].occurrence_key


def test_pre_alert_is_upgraded_to_critical_under_the_same_dedup_key_when_the_alarm_window_expires():
    timeline = Timeline()
    (pre_alert,) = timeline.send("fall", 0, stage="warning")
    timeline.send("fall", 2, stage="alarm")
    (upgrade,) = timeline.tick(2 + WINDOW_S)
    assert (upgrade.action, upgrade.severity) == (RAISE, CRITICAL)
    assert upgrade.dedup_key == pre_alert.dedup_key


def test_cancel_clears_the_pre_alert_and_cancels_the_held_alarm():
    timeline = Timeline()
    timeline.send("fall", 0, stage="warning")
    timeline.send("fall", 2)
    hits = timeline.send("cancel", 10)
    assert summary(hits) == [(CANCEL, "fall", CRITICAL), (CLEAR, "fall", MAJOR)]
    assert hits[1].evidence["cancelled_by"] == "wearer"
    timeline.tick(HOUR)
    assert (RAISE, "fall", CRITICAL) not in timeline.actions()


def test_cancel_clears_a_pre_alert_with_no_alarm_behind_it():
    timeline = Timeline()
    timeline.send("fall", 0, stage="warning")
    assert summary(timeline.send("cancel", 5)) == [(CLEAR, "fall", MAJOR)]


def test_cancel_does_not_clear_a_critical_fall_alert():
    timeline = Timeline()
    timeline.send("fall", 0)
    timeline.tick(WINDOW_S)
    assert timeline.send("cancel", 100) == []


# -- pinned product bugs -------------------------------------------------------------


def test_cancel_inside_the_window_delivered_after_a_later_event_within_the_grace_still_cancels():
    timeline = Timeline()
    timeline.send("fall", 0, received_s=0)
    timeline.send("heart_rate", 40, bpm=70, received_s=41)
    timeline.send("cancel", 20, received_s=42)  # 20 s older than the newest: within the 60 s grace
    timeline.tick(HOUR)
    assert timeline.actions("fall") == [(CANCEL, "fall", CRITICAL)]


def test_pre_alert_delivered_after_the_wearers_cancel_does_not_stay_open():
    timeline = Timeline()
    timeline.send("cancel", 10, received_s=11)
    timeline.send("fall", 0, stage="warning", received_s=12)
    timeline.send("fall", 2, received_s=13)
    fall = timeline.actions("fall")
    assert fall.count((RAISE, "fall", MAJOR)) == fall.count((CLEAR, "fall", MAJOR))


def test_pre_alert_days_after_an_earlier_fall_alert_is_raised():
    timeline = Timeline()
    timeline.send("fall", 0)
    timeline.tick(WINDOW_S)
    assert summary(timeline.send("fall", 48 * HOUR, stage="warning")) == [(RAISE, "fall", MAJOR)]


def test_a_cancel_clears_the_pre_alert_at_the_cancels_device_time():
    timeline = Timeline()
    timeline.send("fall", 0, stage="warning", received_s=1)
    (clear,) = timeline.send("cancel", 5, received_s=65)
    assert clear.triggered_at == at(5)


def test_a_raised_fall_is_triggered_at_the_falls_own_time_to_the_microsecond():
    # Formats without device time file a fall under its receive time, with
    # microseconds; the alert must name that exact instant (the scorer and the
    # audit trail join the alert to its event on it).
    timeline = Timeline()
    timeline.send("fall", 12.345678)
    hits = timeline.tick(12.345678 + WINDOW_S + 1)
    assert summary(hits) == [(RAISE, "fall", CRITICAL)]
    assert hits[0].triggered_at == at(12.345678)
    assert hits[0].triggered_at.microsecond == 345678
