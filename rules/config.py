"""Rule thresholds: defaults per device profile, overrides per elder and per device.

The file format is TOML, validated with pydantic at load time so a typo in a
threshold fails at start with its line's key, not at 3 a.m. with a silent
non-alert::

    [defaults]
    hr_high_major_bpm = 120

    [profiles.fixed_terminal]
    silence_timeout_s = 90000

    [elders.e-1042]
    hr_high_major_bpm = 110

    [devices.watch-77]
    profile = "wearable"
    silence_timeout_s = 300

Later sections win: defaults, then the device's profile, then its elder, then
the device itself.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from rules.errors import RulesConfigError

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Every tunable number of the built-in rules, with the service's defaults."""

    #: A fall is held this long (device time) for the wearer's cancel.
    fall_cancel_window_s: float = 30.0
    hr_high_major_bpm: float = 120.0  # major when above, sustained
    hr_high_major_s: float = 600.0
    hr_high_critical_bpm: float = 131.0  # critical at or above, sustained
    hr_high_critical_s: float = 120.0
    hr_low_major_bpm: float = 45.0  # major when below, sustained
    hr_low_major_s: float = 600.0
    hr_low_critical_bpm: float = 40.0  # critical at or below, sustained
    hr_low_critical_s: float = 120.0
    #: A heart-rate alert clears once readings stay this far inside the normal band...
    hr_hysteresis_bpm: float = 5.0
    #: ...for this long.
    hr_clear_after_s: float = 300.0
    #: A gap without readings longer than this breaks a "sustained" run.
    hr_max_gap_s: float = 300.0
    spo2_critical_pct: float = 91.0  # critical at or below...
    spo2_consecutive: int = 2  # ...on this many consecutive readings
    spo2_clear_pct: float = 94.0
    temp_low_critical_c: float = 35.0  # critical at or below
    temp_high_major_c: float = 39.1  # major at or above
    temp_hysteresis_c: float = 0.3
    #: How often the device checks in on its own (LK keep-alive, heartbeat,
    #: periodic test call); each profile declares its own, the registry may
    #: set it per device.
    heartbeat_interval_s: float = 300.0
    #: Silent after this many check-ins in a row are missed...
    silence_missed_heartbeats: float = 2.0
    #: ...unless set here: no message for longer than this (service clock) is
    #: a silent device. 0 derives it from the two settings above.
    silence_timeout_s: float = 0.0
    #: Elders flagged high risk (living alone, very old) get this fraction of it.
    high_risk_silence_factor: float = 0.5
    battery_warning_pct: float = 20.0  # at or below
    battery_major_pct: float = 5.0  # at or below
    battery_hysteresis_pct: float = 5.0
    not_worn_s: float = 900.0
    #: Elders living alone: no activity-bearing message for this long -> welfare check.
    inactivity_s: float = 43_200.0
    #: A reading older than the device's newest by more than this is late:
    #: stored, but it never fires a threshold alert.
    late_grace_s: float = 60.0

    @property
    def silence_limit_s(self) -> float:
        """Seconds without any message before the device counts as silent."""
        if self.silence_timeout_s > 0:
            return self.silence_timeout_s
        return self.heartbeat_interval_s * self.silence_missed_heartbeats


#: Built-in profiles; a config file may add or change them.
DEFAULT_PROFILES: dict[str, dict[str, float | int]] = {
    # Watches and pendants send a keep-alive every few minutes.
    "wearable": {"heartbeat_interval_s": 300.0},
    "pendant": {"heartbeat_interval_s": 300.0},
    # Home terminals make a periodic test call, typically twice a day; two
    # missed ones (25 h) is the usual "terminal failed" threshold.
    "fixed_terminal": {"heartbeat_interval_s": 45_000.0},
    # Zigbee sensors report availability through their coordinator hourly.
    "sensor": {"heartbeat_interval_s": 3_600.0},
}

_DEFAULTS = Thresholds()
_THRESHOLD_NAMES = frozenset(f.name for f in fields(Thresholds))
#: Every threshold is optional in a section; its type is its default's type.
_ThresholdSection: type[BaseModel] = create_model(
    "ThresholdSection",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False, strict=True),
    **{name: (type(getattr(_DEFAULTS, name)) | None, None) for name in sorted(_THRESHOLD_NAMES)},  # type: ignore[call-overload]
)
_DeviceSection: type[BaseModel] = create_model(
    "DeviceSection", __base__=_ThresholdSection, profile=(str | None, None)
)


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Resolved configuration: overrides as plain dicts, validated on load."""

    defaults: dict[str, float | int]
    profiles: dict[str, dict[str, float | int]]
    elders: dict[str, dict[str, float | int]]
    devices: dict[str, dict[str, float | int]]
    device_profiles: dict[str, str]

    @classmethod
    def default(cls) -> RulesConfig:
        """The built-in configuration."""
        return cls({}, {k: dict(v) for k, v in DEFAULT_PROFILES.items()}, {}, {}, {})

    @classmethod
    def load(cls, path: Path) -> RulesConfig:
        """Read and validate a TOML file.

        Raises:
            RulesConfigError: unreadable TOML, an unknown key, a wrong type or profile.
        """
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RulesConfigError(str(path), str(exc)) from exc
        return cls.from_mapping(document, source=str(path))

    @classmethod
    def from_mapping(cls, document: dict[str, object], *, source: str = "<config>") -> RulesConfig:
        """Validate an already-parsed document (see :meth:`load`)."""
        unknown = set(document) - {"defaults", "profiles", "elders", "devices"}
        if unknown:
            raise RulesConfigError(source, f"unknown section(s): {', '.join(sorted(unknown))}")
        config = cls.default()
        config.defaults.update(_values(_ThresholdSection, document.get("defaults", {}), source, "defaults"))
        for name, body in _table(document, "profiles", source).items():
            values = _values(_ThresholdSection, body, source, f"profiles.{name}")
            config.profiles.setdefault(name, {}).update(values)
        for name, body in _table(document, "elders", source).items():
            config.elders[name] = _values(_ThresholdSection, body, source, f"elders.{name}")
        for name, body in _table(document, "devices", source).items():
            values = _values(_DeviceSection, body, source, f"devices.{name}")
            profile = values.pop("profile", None)
            if profile is not None:
                if profile not in config.profiles:
                    raise RulesConfigError(source, f"devices.{name}: unknown profile {profile!r}")
                config.device_profiles[name] = str(profile)
            config.devices[name] = values
        return config

    def thresholds(self, *, profile: str, elder_id: str | None, device_id: str) -> Thresholds:
        """Resolve the thresholds of one device."""
        merged: dict[str, float | int] = {}
        merged.update(self.defaults)
        merged.update(self.profiles.get(profile, {}))
        if elder_id is not None:
            merged.update(self.elders.get(elder_id, {}))
        merged.update(self.devices.get(device_id, {}))
        return replace(_DEFAULTS, **merged)  # type: ignore[arg-type]


def _table(document: dict[str, object], key: str, source: str) -> dict[str, object]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise RulesConfigError(source, f"[{key}] must be a table")
    return value


def _values(model: type[BaseModel], body: object, source: str, where: str) -> dict[str, Any]:
    try:
        section = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise RulesConfigError(
            source, f"{where}.{field}: {first['msg']}" if field else f"{where}: {first['msg']}"
        ) from None
    return section.model_dump(exclude_none=True)
