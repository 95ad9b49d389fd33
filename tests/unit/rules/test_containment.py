"""A rule that raises costs only its own decision; a life-safety event still alerts (fail-safe)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices import Event, Kind
from rules import Action, DeviceContext, RuleEngine, Severity

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Failures:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, rule: str, exc: BaseException) -> None:
        self.seen.append((rule, type(exc).__name__))


def context(device_id: str) -> DeviceContext:
    """A registry lookup that breaks for one device (a corrupt record, a bug)."""
    if device_id == "broken":
        raise ValueError("corrupt registry record")
    return DeviceContext(profile="wearable")


def event(device: str, kind: Kind, **fields: object) -> Event:
    return Event(device_id=device, kind=kind, observed_at=T0, fields=fields, event_key=f"{device}-{kind}")


@pytest.mark.parametrize("kind", [Kind.PANIC, Kind.FALL, Kind.ALARM])
def test_a_life_safety_event_whose_rule_fails_raises_a_fail_safe_critical_alert(kind: Kind) -> None:
    failures = Failures()
    engine = RuleEngine(context=context, on_failure=failures)
    hits = engine.observe(event("broken", kind), received_at=T0)
    assert len(hits) == 1
    hit = hits[0]
    assert (hit.action, hit.rule, hit.severity, hit.emergency) == (
        Action.RAISE,
        kind.value,
        Severity.CRITICAL,
        True,
    )
    assert "rule_failure" in str(hit.evidence["flags"])
    assert hit.evidence["rule_error"] == "ValueError"
    assert failures.seen == [({Kind.ALARM: "panic"}.get(kind, kind.value), "ValueError")]


def test_a_failing_rule_on_telemetry_costs_only_that_decision_and_other_devices_keep_flowing() -> None:
    failures = Failures()
    engine = RuleEngine(context=context, on_failure=failures)
    assert engine.observe(event("broken", Kind.HEART_RATE, bpm=70.0), received_at=T0) == []
    assert failures.seen == [("heart_rate", "ValueError")]
    hits = engine.observe(event("fine", Kind.PANIC), received_at=T0)
    assert [(hit.rule, hit.device_id) for hit in hits] == [("panic", "fine")]
    assert "rule_failure" not in str(hits[0].evidence.get("flags", ""))


def test_the_service_clock_keeps_ticking_for_every_other_device_when_one_fails() -> None:
    failures = Failures()
    engine = RuleEngine(on_failure=failures)
    for device in ("a", "b", "c"):
        engine.observe(event(device, Kind.HEARTBEAT), received_at=T0)
    engine._devices["b"].last_seen_at = T0.replace(tzinfo=None)  # aware minus naive: TypeError
    hits = engine.tick(T0 + timedelta(days=1))
    assert sorted(hit.device_id for hit in hits if hit.rule == "device_silent") == ["a", "c"]
    assert failures.seen == [("service_clock", "TypeError")]


def test_without_a_hook_failures_are_still_contained() -> None:
    engine = RuleEngine(context=context)
    assert [hit.rule for hit in engine.observe(event("broken", Kind.PANIC), received_at=T0)] == ["panic"]
