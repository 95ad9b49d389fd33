"""Panic: a critical alert at once, every press counted, never merged away."""

from __future__ import annotations

from devices import Event, Kind, TimeSource
from tests.unit.rules.timeline import CRITICAL, DEVICE, MINUTE, RAISE, Timeline, at, summary


def test_panic_raises_a_critical_emergency_at_once():
    timeline = Timeline()
    hits = timeline.send("panic", 0)
    assert summary(hits) == [(RAISE, "panic", CRITICAL)]
    assert hits[0].emergency is True
    assert hits[0].dedup_key == f"{DEVICE}:panic"
    assert hits[0].triggered_at == at(0)


def test_every_press_is_its_own_raise_under_one_dedup_key():
    timeline = Timeline()
    for second in (0, 5, 10):
        timeline.send("panic", second)
    raises = [hit for hit in timeline.hits if hit.action is RAISE]
    assert len(raises) == 3
    assert {hit.dedup_key for hit in raises} == {f"{DEVICE}:panic"}
    assert len({hit.occurrence_key for hit in raises}) == 3


def test_a_press_while_a_panic_alert_is_open_still_raises():
    timeline = Timeline()
    timeline.engine.restore_alert(DEVICE, "panic", CRITICAL)
    assert summary(timeline.send("panic", 0)) == [(RAISE, "panic", CRITICAL)]


def test_panic_evidence_has_the_delivery_delay_and_the_button():
    timeline = Timeline()
    (hit,) = timeline.send("panic", 0, received_s=12.5, button="sos")
    assert hit.evidence["delivery_delay_s"] == 12.5
    assert hit.evidence["button"] == "sos"
    assert hit.evidence["time_source"] == "device"


def test_panic_stamped_with_the_received_time_is_flagged_in_evidence():
    timeline = Timeline()
    panic = Event(
        device_id=DEVICE,
        kind=Kind.PANIC,
        observed_at=at(100),
        fields={},
        event_key="p-1",
        time_source=TimeSource.RECEIVED,
        device_time=at(40),
        flags=frozenset({"clock_skew"}),
    )
    (hit,) = timeline.deliver(panic, received_s=100)
    assert hit.action is RAISE
    assert hit.evidence["time_source"] == "received"
    assert hit.evidence["flags"] == "clock_skew"
    assert hit.evidence["delivery_delay_s"] == 60.0


def test_late_panic_beyond_the_grace_still_raises_with_its_delivery_delay():
    timeline = Timeline()
    timeline.send("heart_rate", 30 * MINUTE, bpm=70)
    hits = timeline.send("panic", 0, received_s=30 * MINUTE + 5)
    assert summary(hits) == [(RAISE, "panic", CRITICAL)]
    assert hits[0].evidence["delivery_delay_s"] == 30 * MINUTE + 5
    assert hits[0].triggered_at == at(0)


def test_panics_of_different_devices_have_different_dedup_keys():
    timeline = Timeline()
    (first,) = timeline.send("panic", 0, device="a")
    (second,) = timeline.send("panic", 0, device="b")
    assert first.dedup_key == "a:panic"
    assert second.dedup_key == "b:panic"
