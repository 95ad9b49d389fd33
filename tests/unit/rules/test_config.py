"""Rules configuration: precedence of defaults, profiles, elders and devices; validation."""

from __future__ import annotations

import pytest

from rules import DeviceContext, RulesConfig, RulesConfigError, RulesError, Thresholds
from tests.unit.rules.timeline import CRITICAL, MAJOR, MINUTE, RAISE, Timeline, every, summary


class FakePath:
    """Stands in for a ``pathlib.Path``: ``load`` only reads its text and names it."""

    def __init__(self, text: str | None, name: str = "rules.toml") -> None:
        self._text = text
        self._name = name

    def read_text(self) -> str:
        if self._text is None:
            raise FileNotFoundError(self._name)
        return self._text

    def __str__(self) -> str:
        return self._name


def resolve(document: dict, *, profile: str = "wearable", elder: str | None = "e-1", device: str = "d-1"):
    return RulesConfig.from_mapping(document).thresholds(profile=profile, elder_id=elder, device_id=device)


def config_error(document: object, source: str = "rules.toml") -> RulesConfigError:
    with pytest.raises(RulesConfigError) as caught:
        RulesConfig.from_mapping(document, source=source)  # type: ignore[arg-type]
    return caught.value


# -- defaults and precedence ------------------------------------------------------


def test_an_empty_document_gives_the_documented_defaults():
    thresholds = resolve({})
    assert thresholds == Thresholds()
    assert (thresholds.hr_high_major_bpm, thresholds.hr_high_critical_bpm) == (120.0, 131.0)
    assert (thresholds.hr_low_major_bpm, thresholds.hr_low_critical_bpm) == (45.0, 40.0)
    assert (thresholds.fall_cancel_window_s, thresholds.silence_limit_s) == (30.0, 600.0)
    assert (thresholds.spo2_critical_pct, thresholds.spo2_consecutive, thresholds.spo2_clear_pct) == (
        91,
        2,
        94,
    )
    assert (thresholds.temp_low_critical_c, thresholds.temp_high_major_c) == (35.0, 39.1)
    assert (thresholds.battery_warning_pct, thresholds.battery_major_pct) == (20.0, 5.0)
    assert (thresholds.not_worn_s, thresholds.inactivity_s, thresholds.late_grace_s) == (
        900.0,
        43_200.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("profile", "heartbeat_s", "silent_after_s"),
    [
        ("wearable", 300.0, 600.0),
        ("pendant", 300.0, 600.0),
        ("fixed_terminal", 45_000.0, 90_000.0),
        ("sensor", 3_600.0, 7_200.0),
    ],
)
def test_profiles_declare_a_heartbeat_and_go_silent_after_two_missed(profile, heartbeat_s, silent_after_s):
    thresholds = resolve({}, profile=profile)
    assert (thresholds.heartbeat_interval_s, thresholds.silence_limit_s) == (heartbeat_s, silent_after_s)


def test_an_explicit_silence_timeout_wins_over_the_heartbeat():
    document = {"profiles": {"wearable": {"heartbeat_interval_s": 60.0, "silence_timeout_s": 1_000.0}}}
    assert resolve(document, profile="wearable").silence_limit_s == 1_000.0


def test_missed_heartbeats_scale_the_limit():
    document = {"defaults": {"silence_missed_heartbeats": 3.0}}
    assert resolve(document, profile="sensor").silence_limit_s == 10_800.0


LAYERS = {
    "defaults": {"hr_high_major_bpm": 110.0},
    "profiles": {"wearable": {"hr_high_major_bpm": 111.0}},
    "elders": {"e-1": {"hr_high_major_bpm": 112.0}},
    "devices": {"d-1": {"hr_high_major_bpm": 113.0}},
}


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (["defaults"], 110.0),
        (["defaults", "profiles"], 111.0),
        (["defaults", "profiles", "elders"], 112.0),
        (["defaults", "profiles", "elders", "devices"], 113.0),
        (["defaults", "devices"], 113.0),
        (["defaults", "elders"], 112.0),
        (["profiles", "devices"], 113.0),
    ],
)
def test_defaults_then_profile_then_elder_then_device(layers, expected):
    assert resolve({layer: LAYERS[layer] for layer in layers}).hr_high_major_bpm == expected


def test_overrides_apply_only_to_their_own_profile_elder_and_device():
    thresholds = resolve(LAYERS, profile="sensor", elder="e-2", device="d-2")
    assert thresholds.hr_high_major_bpm == 110.0


def test_overrides_of_different_keys_combine():
    document = {
        "defaults": {"hr_high_major_bpm": 110.0},
        "elders": {"e-1": {"spo2_critical_pct": 89.0}},
        "devices": {"d-1": {"silence_timeout_s": 300.0}},
    }
    thresholds = resolve(document)
    assert (thresholds.hr_high_major_bpm, thresholds.spo2_critical_pct, thresholds.silence_timeout_s) == (
        110.0,
        89.0,
        300.0,
    )


def test_a_profile_section_changes_a_built_in_profile_and_keeps_its_other_values():
    config = RulesConfig.from_mapping({"profiles": {"fixed_terminal": {"hr_high_major_bpm": 100.0}}})
    thresholds = config.thresholds(profile="fixed_terminal", elder_id=None, device_id="d")
    assert (thresholds.hr_high_major_bpm, thresholds.silence_limit_s) == (100.0, 90_000.0)


def test_a_config_file_can_add_a_profile_and_assign_it_to_a_device():
    config = RulesConfig.from_mapping(
        {
            "profiles": {"bed_sensor": {"silence_timeout_s": 7200.0}},
            "devices": {"b-1": {"profile": "bed_sensor"}},
        }
    )
    assert config.device_profiles == {"b-1": "bed_sensor"}
    assert config.thresholds(profile="bed_sensor", elder_id=None, device_id="b-1").silence_timeout_s == 7200.0


def test_integers_are_accepted_for_float_thresholds():
    assert resolve({"defaults": {"hr_high_major_bpm": 110}}).hr_high_major_bpm == 110.0


def test_default_config_is_not_shared_between_instances():
    first = RulesConfig.default()
    first.profiles["wearable"]["silence_timeout_s"] = 1.0
    assert RulesConfig.default().profiles["wearable"] == {"heartbeat_interval_s": 300.0}


# -- the engine applies the resolved thresholds --------------------------------------


def test_the_engine_applies_elder_overrides_through_the_device_context():
    config = RulesConfig.from_mapping({"elders": {"e-1042": {"hr_high_critical_bpm": 150.0}}})
    careful = Timeline(config, context=DeviceContext(elder_id="e-1042"))
    assert careful.readings("heart_rate", "bpm", every(0, 2 * MINUTE, MINUTE, 140)) == []
    default = Timeline(config, context=DeviceContext(elder_id="e-7"))
    hits = default.readings("heart_rate", "bpm", every(0, 2 * MINUTE, MINUTE, 140))
    assert summary(hits) == [(RAISE, "heart_rate_high", CRITICAL)]


def test_the_engine_applies_device_overrides():
    config = RulesConfig.from_mapping({"devices": {"w1": {"temp_high_major_c": 38.5}}})
    timeline = Timeline(config)
    assert summary(timeline.send("body_temp", 0, celsius=38.6)) == [(RAISE, "body_temp_high", MAJOR)]


# -- validation ----------------------------------------------------------------------


def test_an_unknown_section_is_named():
    error = config_error({"defaults": {}, "thresholds": {}})
    assert "thresholds" in error.problem
    assert error.source == "rules.toml"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"defaults": {"hr_high_major_bmp": 110.0}}, "defaults.hr_high_major_bmp"),
        ({"profiles": {"wearable": {"hr_high_major_bmp": 110.0}}}, "profiles.wearable.hr_high_major_bmp"),
        ({"elders": {"e-1": {"hr_high_major_bmp": 110.0}}}, "elders.e-1.hr_high_major_bmp"),
        ({"devices": {"d-1": {"hr_high_major_bmp": 110.0}}}, "devices.d-1.hr_high_major_bmp"),
    ],
    ids=["defaults", "profiles", "elders", "devices"],
)
def test_an_unknown_key_is_named_with_its_section(document, path):
    error = config_error(document)
    assert path in error.problem
    assert error.source == "rules.toml"
    assert "rules.toml" in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hr_high_major_bpm", "high"),
        ("spo2_consecutive", 2.5),
        ("silence_timeout_s", [600]),
        ("hr_high_major_bpm", float("nan")),
        ("hr_high_major_bpm", float("inf")),
    ],
)
def test_a_wrong_type_or_non_finite_value_is_named(key, value):
    error = config_error({"elders": {"e-1": {key: value}}})
    assert f"elders.e-1.{key}" in error.problem


def test_an_unknown_device_profile_is_named():
    error = config_error({"devices": {"d-1": {"profile": "watch"}}})
    assert "d-1" in error.problem
    assert "watch" in error.problem


def test_a_profile_that_is_not_a_string_is_named():
    error = config_error({"devices": {"d-1": {"profile": 3}}})
    assert "devices.d-1.profile" in error.problem


def test_rules_config_error_is_a_rules_error():
    assert isinstance(config_error({"bogus": {}}), RulesError)


@pytest.mark.parametrize("value", [True, "120"], ids=["bool", "numeric-string"])
def test_a_bool_or_a_string_for_a_number_is_rejected(value):
    error = config_error({"defaults": {"hr_high_major_bpm": value}})
    assert "hr_high_major_bpm" in error.problem


def test_a_section_that_is_not_a_table_reports_the_file_it_came_from():
    error = config_error({"profiles": 3})
    assert error.source == "rules.toml"


@pytest.mark.parametrize(
    ("document", "name"),
    [({"defaults": 3}, "defaults"), ({"profiles": 3}, "profiles"), ({"elders": {"e-1": 3}}, "elders.e-1")],
)
def test_a_section_that_is_not_a_table_is_named(document, name):
    assert name in config_error(document).problem


# -- loading TOML (through a stand-in for the path: no file I/O) ------------------------


def test_load_reads_toml_with_every_section():
    text = """
[defaults]
hr_high_major_bpm = 120

[profiles.fixed_terminal]
silence_timeout_s = 90000.0

[elders.e-1042]
hr_high_major_bpm = 110

[devices.watch-77]
profile = "wearable"
silence_timeout_s = 300.0
"""
    config = RulesConfig.load(FakePath(text))  # type: ignore[arg-type]
    thresholds = config.thresholds(profile="wearable", elder_id="e-1042", device_id="watch-77")
    assert (thresholds.hr_high_major_bpm, thresholds.silence_timeout_s) == (110.0, 300.0)
    assert config.device_profiles == {"watch-77": "wearable"}


def test_load_names_the_file_for_invalid_toml():
    with pytest.raises(RulesConfigError) as caught:
        RulesConfig.load(FakePath("[defaults\n"))  # type: ignore[arg-type]
    assert caught.value.source == "rules.toml"


def test_load_names_the_file_for_an_unknown_key():
    with pytest.raises(RulesConfigError) as caught:
        RulesConfig.load(FakePath("[defaults]\nhr_high = 1\n"))  # type: ignore[arg-type]
    assert caught.value.source == "rules.toml"
    assert "hr_high" in caught.value.problem


def test_load_turns_an_unreadable_file_into_a_config_error():
    with pytest.raises(RulesConfigError) as caught:
        RulesConfig.load(FakePath(None))  # type: ignore[arg-type]
    assert caught.value.source == "rules.toml"
