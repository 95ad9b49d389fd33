"""Scenario files: strict validation, and errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import RulesConfig
from simulator.errors import ScenarioError
from simulator.scenario import bundled_scenarios, load_scenario, parse_scenario, resolve_scenario
from simulator.timeline import build_plan

VALID = """\
[scenario]
name = "unit"
duration = "1h"
speed = 10.0

[fleet]
devices = 20

[rules]
silence_timeout_s = 60

[[incident]]
at = "10m"
kind = "panic"
device = "sim-pendant-0001"

[[incident]]
at = "20m"
kind = "cancelled_fall"
device = "sim-watch-0001"
"""


def error_of(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        build_plan(parse_scenario(text, path="unit.toml"))
    return caught.value


def test_valid_scenario_parses_with_its_defaults() -> None:
    scenario = parse_scenario(VALID, path="unit.toml")
    assert scenario.duration_s == 3600
    assert scenario.rules_overrides == {"silence_timeout_s": 60}
    panic, cancelled = scenario.incidents
    assert (panic.id, panic.rule, panic.expect, panic.line) == ("incident-1", "panic", "alert", 12)
    assert (cancelled.rule, cancelled.expect, cancelled.cancel_after_s) == ("fall", "none", 10.0)


def test_toml_syntax_error_names_the_line() -> None:
    text = VALID.replace('duration = "1h"', "duration = ")
    error = error_of(text)
    assert error.path == "unit.toml"
    assert error.line == 3
    assert "invalid TOML" in str(error)
    assert str(error).startswith("unit.toml:3:")


def test_unknown_key_names_its_line_and_key() -> None:
    error = error_of(VALID.replace("devices = 20", "devices = 20\nstrap_of_at_night = true"))
    assert (error.line, error.key) == (8, "fleet.strap_of_at_night")
    assert "unknown key" in error.message


def test_wrong_type_in_the_second_incident_points_at_that_incident() -> None:
    text = VALID.replace('kind = "cancelled_fall"', 'kind = "cancelled_fal"')
    error = error_of(text)
    assert error.key == "incident[2].kind"
    assert error.line == 19


def test_bad_duration_text_is_explained() -> None:
    error = error_of(VALID.replace('at = "10m"', 'at = "ten minutes"'))
    assert (error.line, error.key) == (13, "incident[1].at")
    assert "2h30m" in error.message


def test_missing_device_points_at_the_incident_header() -> None:
    error = error_of(VALID.replace('device = "sim-pendant-0001"\n', ""))
    assert (error.line, error.key) == (12, "incident[1].device")


def test_missing_required_table_is_reported() -> None:
    error = error_of("[fleet]\ndevices = 3\n")
    assert error.key == "scenario"
    assert "missing" in error.message


def test_device_outside_the_fleet_is_reported_at_the_incident_line() -> None:
    error = error_of(VALID.replace("sim-pendant-0001", "sim-pendant-0099"))
    assert error.line == 12
    assert "no device sim-pendant-0099 in a fleet of 20" in error.message


def test_format_that_cannot_express_the_incident_is_refused() -> None:
    # sim-watch-0002 speaks the 3G watch protocol, which has no "I'm OK" frame.
    error = error_of(VALID.replace("sim-watch-0001", "sim-watch-0002"))
    assert error.line == 17
    assert "cannot express cancel" in error.message


def test_heart_rate_episode_needs_a_format_with_device_time() -> None:
    text = VALID + '\n[[incident]]\nat = "30m"\nkind = "heart_rate_high"\ndevice = "sim-watch-0003"\n'
    error = error_of(text)
    assert error.line == 22
    assert "carry the device's time" in error.message


def test_incident_after_the_end_is_refused() -> None:
    error = error_of(VALID.replace('at = "20m"', 'at = "2h"'))
    assert (error.line, error.key) == (18, "incident[2].at")


def test_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", bundled_scenarios())
def test_bundled_scenarios_plan_and_their_rules_load(name: str) -> None:
    scenario = resolve_scenario(name)
    plan = build_plan(scenario)
    assert plan.messages
    assert plan.expectations
    RulesConfig.from_mapping(__import__("tomllib").loads(plan.rules_toml()))


def test_bundled_names_include_the_required_scenarios() -> None:
    assert {"demo", "normal_day", "night_falls", "heart_rate_episode", "gateway_outage"} <= set(
        bundled_scenarios()
    )
