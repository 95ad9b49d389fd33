"""Battery: warning at 20 %, major at 5 %, clears at 25 %, from battery events or heartbeats."""

from __future__ import annotations

from tests.unit.rules.timeline import CLEAR, MAJOR, RAISE, WARNING, Timeline, summary


def battery(timeline: Timeline, *samples: tuple[float, float]) -> list:
    return timeline.readings("battery", "pct", samples)


def test_battery_at_20_percent_raises_a_warning():
    timeline = Timeline()
    hits = battery(timeline, (0, 20))
    assert summary(hits) == [(RAISE, "battery_low", WARNING)]
    assert hits[0].emergency is False


def test_battery_at_21_percent_raises_nothing():
    timeline = Timeline()
    assert battery(timeline, (0, 21)) == []


def test_battery_at_5_percent_raises_major():
    timeline = Timeline()
    assert summary(battery(timeline, (0, 5))) == [(RAISE, "battery_low", MAJOR)]


def test_battery_at_6_percent_is_only_a_warning():
    timeline = Timeline()
    assert summary(battery(timeline, (0, 6))) == [(RAISE, "battery_low", WARNING)]


def test_warning_then_major_raises_twice_under_one_dedup_key():
    timeline = Timeline()
    hits = battery(timeline, (0, 18), (60, 15), (120, 4))
    assert summary(hits) == [(RAISE, "battery_low", WARNING), (RAISE, "battery_low", MAJOR)]
    assert hits[0].dedup_key == hits[1].dedup_key


def test_major_then_warning_level_raises_nothing_more():
    timeline = Timeline()
    battery(timeline, (0, 3))
    assert battery(timeline, (60, 15), (120, 20)) == []


def test_battery_clears_at_25_percent_but_not_at_24():
    timeline = Timeline()
    battery(timeline, (0, 4))
    assert battery(timeline, (60, 24)) == []
    assert summary(battery(timeline, (120, 25))) == [(CLEAR, "battery_low", MAJOR)]


def test_battery_raises_again_after_a_clear():
    timeline = Timeline()
    battery(timeline, (0, 19), (60, 90), (120, 19))
    assert timeline.actions() == [
        (RAISE, "battery_low", WARNING),
        (CLEAR, "battery_low", WARNING),
        (RAISE, "battery_low", WARNING),
    ]


def test_heartbeat_battery_pct_counts_like_a_battery_event():
    timeline = Timeline()
    assert summary(timeline.send("heartbeat", 0, battery_pct=12)) == [(RAISE, "battery_low", WARNING)]
    assert summary(timeline.send("heartbeat", 60, battery_pct=80)) == [(CLEAR, "battery_low", WARNING)]


def test_heartbeat_without_a_battery_level_changes_nothing():
    timeline = Timeline()
    battery(timeline, (0, 10))
    assert timeline.send("heartbeat", 60) == []


def test_a_late_low_battery_reading_never_fires():
    timeline = Timeline()
    battery(timeline, (600, 80))
    assert battery(timeline, (0, 3)) == []
