"""The plan: deterministic for a seed, realistic in the background, and raising exactly what it promises."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devices import DecodeContext, Kind, parse_topic
from devices.codecs import CODECS
from rules import Action, RuleEngine, RulesConfig
from rules.engine import DeviceContext
from simulator.fleet import REGISTRY_COLUMNS, build_fleet, registry_rows
from simulator.scenario import FleetSpec, parse_scenario, resolve_scenario
from simulator.timeline import Plan, build_plan

SIM_T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)

BUSY = """\
[scenario]
name = "busy"
duration = "3h"
start_hour = 20.0

[fleet]
devices = 40
strap_off_at_night = true
clock_skew_fraction = 0.2
duplicate_fraction = 0.05
offline_spells_per_device_day = 4
offline_spell_max = "15m"

[[incident]]
at = "30m"
kind = "panic"
device = "sim-pendant-0002"
"""


def wire(plan: Plan, sim_t0: datetime = SIM_T0) -> list[tuple[datetime, str, bytes]]:
    return [(m.sim_time, m.topic, m.payload) for m in plan.render(sim_t0)]


def test_same_seed_gives_byte_identical_messages() -> None:
    scenario = parse_scenario(BUSY)
    first = wire(build_plan(scenario, seed=42))
    second = wire(build_plan(parse_scenario(BUSY), seed=42))
    assert first == second
    assert len(first) > 1000


def test_another_seed_gives_another_run() -> None:
    scenario = parse_scenario(BUSY)
    assert wire(build_plan(scenario, seed=1)) != wire(build_plan(scenario, seed=2))


def test_growing_the_fleet_does_not_reshuffle_existing_devices() -> None:
    spec = FleetSpec(devices=10)
    small = {d.device_id: d for d in build_fleet(spec, devices=10, seed=3).devices}
    large = {d.device_id: d for d in build_fleet(spec, devices=20, seed=3).devices}
    for device_id, device in small.items():
        assert large[device_id].resting_hr_bpm == device.resting_hr_bpm
        assert large[device_id].channel == device.channel


def test_messages_are_in_send_order_and_each_device_keeps_its_order() -> None:
    plan = build_plan(parse_scenario(BUSY), seed=5)
    sends = [p.send_ms for p in plan.messages]
    assert sends == sorted(sends)
    last_seq: dict[int, int] = {}
    for p in plan.messages:
        if not p.duplicate:
            assert p.seq > last_seq.get(p.device_index, 0)
            last_seq[p.device_index] = p.seq


def test_background_behaviour_is_present() -> None:
    plan = build_plan(parse_scenario(BUSY), seed=5)
    kinds = Counter(p.sample.kind for p in plan.messages)
    assert {Kind.HEARTBEAT, Kind.HEART_RATE, Kind.BATTERY, Kind.LOCATION, Kind.WORN} <= set(kinds)
    assert any(p.duplicate for p in plan.messages)
    assert any(p.send_ms > p.sample_ms + 60_000 for p in plan.messages), "no burst after an offline spell"
    assert any(d.clock_skew_s != 0 for d in plan.fleet.devices)
    rules = {b.rule for b in plan.background}
    assert rules == {"not_worn", "device_silent"}
    bpm = [p.sample.fields["bpm"] for p in plan.messages if p.sample.kind is Kind.HEART_RATE]
    assert min(bpm) >= 48
    assert max(bpm) <= 115
    assert len(set(bpm)) > 20


def test_heart_rate_follows_a_daily_rhythm() -> None:
    scenario = parse_scenario(
        BUSY.replace('duration = "3h"', 'duration = "24h"').replace("start_hour = 20.0", "start_hour = 0.0")
    )
    plan = build_plan(scenario, seed=9)
    by_hour: dict[int, list[float]] = {}
    for p in plan.messages:
        if p.sample.kind is Kind.HEART_RATE and p.incident is None:
            value = p.sample.fields["bpm"]
            assert isinstance(value, int)
            by_hour.setdefault(p.sample_ms // 3_600_000, []).append(value)
    night = sum(by_hour[3]) / len(by_hour[3])
    afternoon = sum(by_hour[15]) / len(by_hour[15])
    assert afternoon > night + 8


def test_device_time_is_never_ahead_of_the_wall_clock_by_more_than_the_skew() -> None:
    scenario = parse_scenario(BUSY)
    plan = build_plan(scenario, seed=5)
    speed = 30.0
    wall_start = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    sim_t0 = wall_start - timedelta(milliseconds=plan.duration_ms)
    skew = {d.index: d.clock_skew_s for d in plan.fleet.devices}
    for p in plan.messages:
        wall = wall_start + timedelta(seconds=p.send_ms / 1000 / speed)
        device_time = sim_t0 + timedelta(milliseconds=p.sample_ms) + timedelta(seconds=skew[p.device_index])
        assert (device_time - wall).total_seconds() <= scenario.fleet.max_clock_skew_s


def test_registry_rows_use_the_rule_engines_profiles() -> None:
    plan = build_plan(resolve_scenario("demo"))
    rows = registry_rows(plan.fleet)
    assert len(rows) == 300
    assert all(tuple(row) == REGISTRY_COLUMNS for row in rows)
    assert {row["profile"] for row in rows} <= set(RulesConfig.default().profiles)
    assert {row["profile"] for row in rows} == {"wearable", "pendant", "fixed_terminal", "sensor"}
    assert rows[6]["device_id"] == "sim-watch-0007"
    assert len({row["gateway_id"] for row in rows}) == 3
    assert len({row["device_id"] for row in rows}) == 300


@pytest.mark.parametrize("name", ["heart_rate_episode", "demo"])
def test_rule_engine_raises_exactly_what_the_scenario_expects(name: str) -> None:
    """Replay the plan through the real rule engine, as ingest would decode it at the given speed."""
    scenario = resolve_scenario(name)
    plan = build_plan(scenario)
    profiles = {d.device_id: d.profile.rules_profile for d in plan.fleet.devices}
    engine = RuleEngine(
        RulesConfig.default(), context=lambda device_id: DeviceContext(profile=profiles[device_id])
    )
    speed = scenario.speed
    wall_start = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    sim_t0 = wall_start - timedelta(milliseconds=plan.duration_ms)
    raised: list[tuple[str, str]] = []
    next_tick = wall_start
    for message in plan.render(sim_t0):
        received_at = wall_start + timedelta(seconds=message.send_ms / 1000 / speed)
        hits = []
        while next_tick <= received_at:
            hits += engine.tick(next_tick)
            next_tick += timedelta(seconds=1)
        parts = parse_topic(message.topic)
        decoded = CODECS[parts.channel](
            message.payload,
            DecodeContext(received_at=received_at, device_id=parts.device_id, topic=message.topic),
        )
        assert not decoded.rejections, (message.topic, decoded.rejections)
        for event in decoded.events:
            hits += engine.observe(event, received_at=received_at)
        raised += [(h.device_id, h.rule) for h in hits if h.action is Action.RAISE]
    for _ in range(60):  # let held falls run out on the service clock
        raised += [(h.device_id, h.rule) for h in engine.tick(next_tick) if h.action is Action.RAISE]
        next_tick += timedelta(seconds=1)
    expected = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "alert"}
    forbidden = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "none"}
    assert set(raised) == expected
    assert not forbidden & set(raised)
