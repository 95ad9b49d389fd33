"""Properties of the engine over generated timelines (hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devices import Event, Kind
from rules import Action, RuleEngine, RuleHit, Severity
from tests.unit.rules.timeline import DEVICE, HOUR, at, event

WINDOW_S = 30.0
GRACE_S = 60.0

#: (kind, device time in ms after T0) of a fall or a cancel; keys are given by position.
FallOrCancel = tuple[str, int]


def _falls_and_cancels(span_ms: int) -> st.SearchStrategy[tuple[list[FallOrCancel], list[int]]]:
    """Falls and cancels within ``span_ms`` of device time, and an arrival order (indices)."""
    events = st.lists(
        st.tuples(st.sampled_from(["fall", "cancel"]), st.integers(0, span_ms)),
        min_size=1,
        max_size=10,
    )
    return events.flatmap(lambda evs: st.tuples(st.just(evs), st.permutations(range(len(evs)))))


def _keyed(events: list[FallOrCancel]) -> list[Event]:
    return [event(kind, ms / 1000, key=f"{kind}-{i}") for i, (kind, ms) in enumerate(events)]


def _fall_decisions(events: list[Event]) -> Counter[tuple[Action, str]]:
    """Deliver ``events`` in this order, one second apart, then let every window pass."""
    engine = RuleEngine()
    hits: list[RuleHit] = []
    for i, ev in enumerate(events):
        hits.extend(engine.observe(ev, received_at=at(HOUR + i)))
    hits.extend(engine.tick(at(2 * HOUR)))
    return Counter(
        (hit.action, hit.occurrence_key)
        for hit in hits
        if hit.rule == "fall" and hit.action in {Action.RAISE, Action.CANCEL}
    )


# -- (1) arrival order ---------------------------------------------------------------


@given(case=_falls_and_cancels(span_ms=int(WINDOW_S * 1000) - 1))
def test_fall_and_cancel_decisions_do_not_depend_on_arrival_order_within_one_window(case):
    """Every event is within the grace and no event reaches a fall's due time."""
    events, order = case
    keyed = _keyed(events)
    assert _fall_decisions([keyed[i] for i in order]) == _fall_decisions(keyed)


@example(case=([("fall", 0), ("cancel", 20_000), ("cancel", 40_000)], [0, 2, 1]))
@given(case=_falls_and_cancels(span_ms=int(GRACE_S * 1000)))
def test_fall_and_cancel_decisions_do_not_depend_on_arrival_order_within_the_grace(case):
    """The issue's property: every event arrives at most 60 s (the grace) behind the newest."""
    events, order = case
    keyed = _keyed(events)
    assert _fall_decisions([keyed[i] for i in order]) == _fall_decisions(keyed)


# -- (2) panics ------------------------------------------------------------------------

_PANIC = "panic"
_TICK = "tick"
_NOISE = st.sampled_from(["heart_rate", "cancel", "fall", "heartbeat", "worn"])


@given(
    steps=st.lists(
        st.tuples(
            st.one_of(st.just(_PANIC), st.just(_TICK), _NOISE),
            st.integers(-2 * 3_600_000, 3_600_000),  # device time: far late to early
            st.integers(0, 900_000),  # service clock advance
        ),
        max_size=40,
    ),
    restored=st.booleans(),
)
def test_every_panic_press_is_one_raise_and_panic_is_never_cleared(steps, restored):
    engine = RuleEngine()
    if restored:
        engine.restore_alert(DEVICE, "panic", Severity.CRITICAL)
    hits: list[RuleHit] = []
    presses: list[str] = []
    now_s = 0.0
    for i, (kind, device_ms, advance_ms) in enumerate(steps):
        now_s += advance_ms / 1000
        if kind == _TICK:
            hits.extend(engine.tick(at(now_s)))
            continue
        key = f"{kind}-{i}"
        fields = {"bpm": 70} if kind == "heart_rate" else {"on": False} if kind == "worn" else {}
        decided = engine.observe(event(kind, device_ms / 1000, key=key, **fields), received_at=at(now_s))
        hits.extend(decided)
        if kind == _PANIC:
            presses.append(key)
            (raised,) = [hit for hit in decided if hit.rule == "panic"]
            assert raised.action is Action.RAISE
            assert raised.evidence["delivery_delay_s"] == pytest.approx(now_s - device_ms / 1000)
    panic_hits = [hit for hit in hits if hit.rule == "panic"]
    assert [hit.action for hit in panic_hits] == [Action.RAISE] * len(presses)
    assert len({hit.occurrence_key for hit in panic_hits}) == len(presses)
    assert {hit.dedup_key for hit in panic_hits} <= {f"{DEVICE}:panic"}
    assert all(hit.severity is Severity.CRITICAL and hit.emergency for hit in panic_hits)


# -- (3) every fall is resolved exactly once -----------------------------------------------


@given(
    data=st.data(),
    events=st.lists(
        st.tuples(st.sampled_from(["fall", "fall", "cancel", "heart_rate"]), st.integers(0, 300_000)),
        min_size=1,
        max_size=15,
    ),
)
def test_every_fall_gets_exactly_one_raise_or_cancel_once_its_window_has_passed(data, events):
    keyed = [
        event(kind, ms / 1000, key=f"{kind}-{i}", **({"bpm": 70} if kind == "heart_rate" else {}))
        for i, (kind, ms) in enumerate(events)
    ]
    arrival = data.draw(st.permutations(keyed))
    engine = RuleEngine()
    hits: list[RuleHit] = []
    now_s = 0.0
    for ev in arrival:
        now_s += data.draw(st.integers(0, 40_000), label="service clock advance (ms)") / 1000
        if data.draw(st.booleans(), label="tick first"):
            hits.extend(engine.tick(at(now_s)))
        hits.extend(engine.observe(ev, received_at=at(now_s)))
    hits.extend(engine.tick(at(now_s + WINDOW_S)))
    outcomes = Counter(
        hit.occurrence_key.removeprefix("fall:")
        for hit in hits
        if hit.rule == "fall" and hit.action in {Action.RAISE, Action.CANCEL}
    )
    falls = {ev.event_key for ev in keyed if ev.kind is Kind.FALL}
    assert outcomes == Counter(falls)
    assert [hit for hit in engine.tick(at(now_s + HOUR)) if hit.rule == "fall"] == []


# -- (4) replaying at another speed ---------------------------------------------------------

_SPECS: list[tuple[str, str | None, list[object]]] = [
    ("heart_rate", "bpm", [38, 42, 44, 60, 114, 118, 121, 131, 140]),
    ("spo2", "pct", [88, 91, 92, 94, 97]),
    ("body_temp", "celsius", [34.9, 35.0, 35.4, 37.0, 38.7, 39.1, 39.5]),
    ("battery", "pct", [3, 5, 15, 20, 24, 25, 80]),
    ("heartbeat", "battery_pct", [4, 19, 60]),
    ("worn", "on", [True, False]),
    ("fall", "stage", ["alarm", "warning"]),
    ("cancel", None, [None]),
    ("panic", None, [None]),
    ("location", None, [None]),
]


@st.composite
def _recording(draw: st.DrawFn) -> list[tuple[Event, float]]:
    """Events with device times (mostly increasing, some out of order) and arrival offsets."""
    recording: list[tuple[Event, float]] = []
    device_ms = 0
    arrival_s = 0.0
    for i in range(draw(st.integers(1, 60))):
        kind, field, values = draw(st.sampled_from(_SPECS))
        value = draw(st.sampled_from(values))
        device_ms += draw(st.integers(0, 180_000))
        jitter_ms = draw(st.sampled_from([0, 0, 0, -5_000, -59_000, -61_000, -600_000]))
        arrival_s += draw(st.integers(0, 120_000)) / 1000
        fields = {} if field is None else {field: value}
        recording.append(
            (event(kind, (device_ms + jitter_ms) / 1000, key=f"{kind}-{i}", **fields), arrival_s)
        )
    return recording


def _replay(recording: list[tuple[Event, float]], speed: float) -> list[RuleHit]:
    engine = RuleEngine()
    hits: list[RuleHit] = []
    for ev, arrival_s in recording:
        hits.extend(engine.observe(ev, received_at=at(arrival_s / speed)))
    return hits


def _decision(hit: RuleHit) -> tuple[object, ...]:
    """What was decided, leaving out when it was stamped and the delivery delay."""
    evidence = {k: v for k, v in hit.evidence.items() if k != "delivery_delay_s"}
    return (hit.action, hit.rule, hit.severity, hit.dedup_key, hit.due_at, tuple(sorted(evidence.items())))


def _stamp(hit: RuleHit) -> tuple[object, ...]:
    return (hit.action, hit.rule, hit.occurrence_key, hit.triggered_at)


@given(recording=_recording(), speed=st.floats(min_value=0.05, max_value=50.0))
@example(recording=[], speed=10.0)
def test_replaying_a_recording_at_any_speed_gives_the_same_decisions(recording, speed):
    """Device-time rules only: with no ticks, silence and inactivity never come into it."""
    assert [_decision(hit) for hit in _replay(recording, speed)] == [
        _decision(hit) for hit in _replay(recording, 1.0)
    ]


@example(
    recording=[(event("fall", 0, key="w", stage="warning"), 1.0), (event("cancel", 5, key="c"), 6.0)],
    speed=10.0,
)
@given(recording=_recording(), speed=st.floats(min_value=0.05, max_value=50.0))
def test_replaying_a_recording_at_any_speed_stamps_decisions_with_the_same_device_times(recording, speed):
    assert [_stamp(hit) for hit in _replay(recording, speed)] == [
        _stamp(hit) for hit in _replay(recording, 1.0)
    ]
