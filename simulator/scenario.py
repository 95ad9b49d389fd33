"""Scenario files: a background fleet, scripted incidents and the outcome each must have.

A scenario is TOML, validated strictly (unknown keys, wrong types and
impossible values are errors) because a typo in an expectation would
otherwise make a test pass for the wrong reason. Every error names the file,
the line and the key. The schema, in short::

    [scenario]
    name = "night-falls"          # required
    description = "..."
    duration = "8h"               # sim time; number of seconds or "2h30m", "90s"...
    speed = 20.0                  # default sim seconds per wall second (CLI --speed wins)
    seed = 7                      # default seed (CLI --seed wins)
    start_hour = 22.0             # local hour of day at sim start: drives the daily rhythm

    [fleet]
    devices = 120                 # default fleet size (CLI --devices wins)
    gateways = 4                  # default: one per 100 devices
    mix = { watch = 0.5, pendant = 0.3, terminal = 0.1, radar = 0.1 }
    formats = { watch = ["json", "watch", "iw", "traccar"] }   # assigned in turn by index
    strap_off_at_night = false    # JSON watches taken off 22:00-23:30, back on 06:30-08:00
    clock_skew_fraction = 0.05    # share of devices whose clock is off by up to max_clock_skew_s
    max_clock_skew_s = 60
    duplicate_fraction = 0.01     # share of messages sent twice (same bytes)
    offline_spells_per_device_day = 0.5
    offline_spell_max = "10m"     # offline devices buffer, then burst on reconnect

    [rules]                       # rule thresholds the expectations assume ([defaults] of a
    silence_timeout_s = 60        # rules TOML for the ingest service: see Scenario.rules_toml)

    [[incident]]
    at = "1h30m"                  # sim time after start
    kind = "fall"                 # see INCIDENT_KINDS
    device = "sim-watch-0003"     # gateway_outage takes gateway = "sim-gw-02" instead
    within_s = 45                 # wall seconds from its message's publication to the alert
    expect = "alert"              # or "none" (a cancelled fall must raise nothing)
    rule = "fall"                 # default per kind (DEFAULT_RULES)

Service-clock rules (``device_silent``) count WALL seconds, so at speed 20 a
30-minute outage lasts 90 s of wall time: such a scenario lowers
``silence_timeout_s`` in ``[rules]``, and whoever runs the ingest service for it
must pass those overrides on (``carewatch ingest --rules``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from simulator.durations import parse_duration_s
from simulator.errors import ScenarioError
from simulator.formats import CHANNELS
from simulator.profiles import PROFILES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ProfileName = Literal["watch", "pendant", "terminal", "radar"]
Channel = Literal["json", "watch", "iw", "traccar", "scaip", "z2m", "owntracks"]
IncidentKind = Literal[
    "panic",
    "fall",
    "cancelled_fall",
    "heart_rate_high",
    "heart_rate_low",
    "fever",
    "spo2_low",
    "low_battery",
    "worn_off",
    "offline",
    "gateway_outage",
]
INCIDENT_KINDS: Final = IncidentKind.__args__  # type: ignore[attr-defined]

#: The rule each incident kind is expected to raise (names as ``rules.engine`` emits them).
DEFAULT_RULES: Final[Mapping[str, str]] = {
    "panic": "panic",
    "fall": "fall",
    "cancelled_fall": "fall",
    "heart_rate_high": "heart_rate_high",
    "heart_rate_low": "heart_rate_low",
    "fever": "body_temp_high",
    "spo2_low": "spo2_low",
    "low_battery": "battery_low",
    "worn_off": "not_worn",
    "offline": "device_silent",
    "gateway_outage": "device_silent",
}
#: Wall seconds allowed from publication to the alert when the scenario does not say.
DEFAULT_WITHIN_S: Final[Mapping[str, float]] = {
    "panic": 10.0,
    "fall": 45.0,
    "cancelled_fall": 45.0,
    "heart_rate_high": 15.0,
    "heart_rate_low": 15.0,
    "fever": 10.0,
    "spo2_low": 10.0,
    "low_battery": 10.0,
    "worn_off": 120.0,
    "offline": 120.0,
    "gateway_outage": 120.0,
}
#: Incident kinds that happen over a span of time.
_DEFAULT_DURATION_S: Final[Mapping[str, float]] = {
    "heart_rate_high": 300.0,
    "heart_rate_low": 300.0,
    "worn_off": 1800.0,
    "offline": 1800.0,
    "gateway_outage": 1800.0,
}
_DEFAULT_VALUE: Final[Mapping[str, float]] = {
    "heart_rate_high": 145.0,
    "heart_rate_low": 36.0,
    "fever": 39.6,
    "spo2_low": 88.0,
    "low_battery": 4.0,
}

Duration = Annotated[float, BeforeValidator(parse_duration_s)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class _ScenarioTable(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    duration: Annotated[Duration, Field(gt=0, le=7 * 86_400)]
    speed: Annotated[float, Field(gt=0, le=10_000)] = 1.0
    seed: int = 0
    start_hour: Annotated[float, Field(ge=0, lt=24)] = 8.0


def _default_mix() -> dict[ProfileName, float]:
    return {"watch": 0.5, "pendant": 0.3, "terminal": 0.1, "radar": 0.1}


class _FleetTable(_Strict):
    devices: Annotated[int, Field(ge=1, le=100_000)] = 50
    gateways: Annotated[int, Field(ge=1, le=999)] | None = None
    mix: dict[ProfileName, Annotated[float, Field(ge=0)]] = Field(default_factory=_default_mix)
    formats: dict[ProfileName, Annotated[list[Channel], Field(min_length=1)]] = Field(default_factory=dict)
    strap_off_at_night: bool = False
    clock_skew_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_clock_skew_s: Annotated[float, Field(ge=0, le=240)] = 60.0
    duplicate_fraction: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    offline_spells_per_device_day: Annotated[float, Field(ge=0, le=48)] = 0.0
    offline_spell_max: Annotated[Duration, Field(ge=60)] = 600.0


class _IncidentTable(_Strict):
    at: Duration
    kind: IncidentKind
    device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    gateway: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    profiles: list[ProfileName] | None = None
    duration: Annotated[Duration, Field(gt=0)] | None = None
    bpm: Annotated[float, Field(gt=0, le=300)] | None = None
    celsius: Annotated[float, Field(gt=20, lt=46)] | None = None
    pct: Annotated[float, Field(ge=0, le=100)] | None = None
    cancel_after: Annotated[Duration, Field(gt=0, le=29)] | None = None
    expect: Literal["alert", "none"] = "alert"
    rule: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")] | None = None
    within_s: Annotated[float, Field(gt=0)] | None = None
    note: str = ""


class _ScenarioFile(_Strict):
    scenario: _ScenarioTable
    fleet: _FleetTable = Field(default_factory=_FleetTable)
    rules: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")], float | int] = Field(default_factory=dict)
    incident: list[_IncidentTable] = Field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    """How the background fleet is made and how it behaves (see the module docstring)."""

    devices: int = 50
    gateways: int | None = None
    mix: Mapping[str, float] = field(
        default_factory=lambda: {"watch": 0.5, "pendant": 0.3, "terminal": 0.1, "radar": 0.1}
    )
    formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    strap_off_at_night: bool = False
    clock_skew_fraction: float = 0.0
    max_clock_skew_s: float = 60.0
    duplicate_fraction: float = 0.0
    offline_spells_per_device_day: float = 0.0
    offline_spell_max_s: float = 600.0

    def formats_of(self, profile: str) -> tuple[str, ...]:
        """The channels devices of ``profile`` use, in turn."""
        return self.formats.get(profile) or PROFILES[profile].formats


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentSpec:
    """One scripted incident and the outcome it must have.

    Attributes:
        id: ``incident-N`` (1-based, in file order): names it in manifests and scorecards.
        line: the line of its ``[[incident]]`` header, for error messages.
        at_s: sim seconds after the start.
        kind: what happens (see ``INCIDENT_KINDS``).
        device: the device it happens to (None for a gateway outage).
        gateway: the gateway that goes away (gateway outages).
        profiles: for a gateway outage: which profiles' devices must raise ``rule``.
        duration_s: how long it lasts (episodes, outages).
        value: the reading (bpm, celsius, percent) for measurement incidents.
        cancel_after_s: a cancelled fall's delay before the wearer's "I'm OK".
        expect: ``alert`` or ``none``.
        rule: the rule that must (or must not) fire.
        within_s: wall seconds allowed from its message's publication to the alert.
        note: free text for the scorecard.
    """

    id: str
    line: int | None
    at_s: float
    kind: str
    device: str | None
    gateway: str | None
    profiles: tuple[str, ...]
    duration_s: float
    value: float | None
    cancel_after_s: float
    expect: str
    rule: str
    within_s: float
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A validated scenario.

    Attributes:
        path: where it was read from (for messages).
        text: its source, to point errors found later (fleet checks) at a line.
        name: its name.
        description: what it shows.
        duration_s: sim seconds it lasts.
        speed: default sim seconds per wall second.
        seed: default seed.
        start_hour: local hour of day at sim start.
        fleet: the background fleet.
        rules_overrides: rule thresholds the expectations assume (``[defaults]`` of a rules TOML).
        incidents: the scripted incidents, in file order.
    """

    path: str
    text: str
    name: str
    description: str
    duration_s: float
    speed: float
    seed: int
    start_hour: float
    fleet: FleetSpec
    rules_overrides: Mapping[str, float | int]
    incidents: tuple[IncidentSpec, ...]

    def rules_toml(self) -> str:
        """The overrides as a rules file for ``carewatch ingest --rules`` (``rules.config`` format)."""
        lines = ["# Thresholds assumed by scenario " + self.name, "[defaults]"]
        lines += [f"{key} = {_toml_number(value)}" for key, value in sorted(self.rules_overrides.items())]
        return "\n".join(lines) + "\n"

    def error(self, line: int | None, key: str, message: str) -> ScenarioError:
        """A :class:`ScenarioError` about this scenario."""
        return ScenarioError(self.path, line, key, message)


def _toml_number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: unreadable file, bad TOML, or a value that breaks the schema.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, None, "", f"cannot read the scenario: {exc}") from exc
    return parse_scenario(text, path=source)


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package (``demo``, ``night_falls``...)."""
    folder = resources.files("simulator") / "scenarios"
    return sorted(item.name.removesuffix(".toml") for item in folder.iterdir() if item.name.endswith(".toml"))


def resolve_scenario(name_or_path: str) -> Scenario:
    """Load a scenario file, or a bundled scenario by name (``demo`` or ``demo.toml``).

    Raises:
        ScenarioError: neither a readable file nor a bundled name, or an invalid scenario.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return load_scenario(candidate)
    name = name_or_path.removesuffix(".toml")
    if name in bundled_scenarios():
        resource = resources.files("simulator") / "scenarios" / f"{name}.toml"
        return parse_scenario(resource.read_text(encoding="utf-8"), path=f"<bundled>/{name}.toml")
    known = ", ".join(bundled_scenarios())
    raise ScenarioError(name_or_path, None, "", f"no such file, nor a bundled scenario (bundled: {known})")


def parse_scenario(text: str, *, path: str = "<text>") -> Scenario:
    """Validate scenario TOML text.

    Raises:
        ScenarioError: with the line of the offending table or key.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        raise ScenarioError(path, line, "", f"invalid TOML: {message}") from None
    try:
        model = _ScenarioFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against the scenario schema)"
        elif first["type"] == "missing":
            message = "required key is missing"
        raise ScenarioError(path, locate(text, loc), _dotted(loc), message) from None
    return _build(model, text, path)


def _build(model: _ScenarioFile, text: str, path: str) -> Scenario:
    fleet = model.fleet
    spec = FleetSpec(
        devices=fleet.devices,
        gateways=fleet.gateways,
        mix={str(name): weight for name, weight in fleet.mix.items()},
        formats={name: tuple(channels) for name, channels in fleet.formats.items()},
        strap_off_at_night=fleet.strap_off_at_night,
        clock_skew_fraction=fleet.clock_skew_fraction,
        max_clock_skew_s=fleet.max_clock_skew_s,
        duplicate_fraction=fleet.duplicate_fraction,
        offline_spells_per_device_day=fleet.offline_spells_per_device_day,
        offline_spell_max_s=fleet.offline_spell_max,
    )
    if not any(weight > 0 for weight in spec.mix.values()):
        raise ScenarioError(path, locate(text, ("fleet", "mix")), "fleet.mix", "every weight is zero")
    for name, channels in spec.formats.items():
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:  # pragma: no cover - the Literal already refuses them
            raise ScenarioError(path, locate(text, ("fleet", "formats")), f"fleet.formats.{name}", "unknown")
    incidents = tuple(
        _incident(index, raw, model.scenario.duration, text, path) for index, raw in enumerate(model.incident)
    )
    return Scenario(
        path=path,
        text=text,
        name=model.scenario.name,
        description=model.scenario.description,
        duration_s=model.scenario.duration,
        speed=model.scenario.speed,
        seed=model.scenario.seed,
        start_hour=model.scenario.start_hour,
        fleet=spec,
        rules_overrides=dict(model.rules),
        incidents=incidents,
    )


def _incident(  # noqa: C901, PLR0912 - one check per rule of the schema, in reading order
    index: int, raw: _IncidentTable, duration_s: float, text: str, path: str
) -> IncidentSpec:
    def fail(key: str, message: str) -> ScenarioError:
        line = locate(text, ("incident", index, key) if key else ("incident", index))
        return ScenarioError(path, line, f"incident[{index + 1}]" + (f".{key}" if key else ""), message)

    kind = raw.kind
    if kind == "gateway_outage":
        if raw.gateway is None:
            raise fail("gateway", 'a gateway_outage needs gateway = "sim-gw-NN"')
        if raw.device is not None:
            raise fail("device", "a gateway_outage takes gateway, not device")
    elif raw.device is None:
        raise fail("device", f'a {kind} incident needs device = "sim-..."')
    elif raw.gateway is not None:
        raise fail("gateway", f"a {kind} incident takes device, not gateway")
    if raw.at >= duration_s:
        raise fail("at", f"at {raw.at:g} s is not before the scenario's end ({duration_s:g} s)")
    if raw.profiles is not None and kind != "gateway_outage":
        raise fail("profiles", "profiles applies to gateway_outage only")
    if raw.cancel_after is not None and kind != "cancelled_fall":
        raise fail("cancel_after", "cancel_after applies to cancelled_fall only")
    value_key = {"bpm": raw.bpm, "celsius": raw.celsius, "pct": raw.pct}
    allowed = {
        "heart_rate_high": "bpm",
        "heart_rate_low": "bpm",
        "fever": "celsius",
        "spo2_low": "pct",
        "low_battery": "pct",
    }.get(kind)
    for key, given in value_key.items():
        if given is not None and key != allowed:
            raise fail(key, f"{key} does not apply to a {kind} incident")
    value = value_key.get(allowed) if allowed is not None else None
    if value is None:
        value = _DEFAULT_VALUE.get(kind)
    expect = raw.expect
    if kind == "cancelled_fall" and expect == "alert" and "expect" not in raw.model_fields_set:
        expect = "none"  # the wearer called it off: no alert is the correct outcome
    if kind == "offline" and "expect" not in raw.model_fields_set:
        expect = "none"
    return IncidentSpec(
        id=f"incident-{index + 1}",
        line=locate(text, ("incident", index)),
        at_s=raw.at,
        kind=kind,
        device=raw.device,
        gateway=raw.gateway,
        profiles=tuple(raw.profiles or ("watch", "pendant")),
        duration_s=raw.duration if raw.duration is not None else _DEFAULT_DURATION_S.get(kind, 0.0),
        value=value,
        cancel_after_s=raw.cancel_after if raw.cancel_after is not None else 10.0,
        expect=expect,
        rule=raw.rule or DEFAULT_RULES[kind],
        within_s=raw.within_s if raw.within_s is not None else DEFAULT_WITHIN_S[kind],
        note=raw.note,
    )


# --- locating keys in the source text ------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[")


def locate(text: str, loc: Sequence[Any]) -> int | None:  # noqa: C901, PLR0912 - a small line scanner
    """The 1-based line of the table or key that ``loc`` (a pydantic error location) names.

    tomllib does not keep positions, so the text is scanned: the table header
    first (the N-th ``[[incident]]`` for an array entry), then the key inside
    that table. Falls back to the closest enclosing table's header.
    """
    lines = text.splitlines()
    if not loc:
        return None
    head = str(loc[0])
    start: int | None = None
    rest: list[Any] = list(loc[1:])
    if rest and isinstance(rest[0], int):
        wanted = rest.pop(0)
        seen = -1
        for number, line in enumerate(lines):
            if re.match(rf"^\s*\[\[\s*{re.escape(head)}\s*\]\]", line):
                seen += 1
                if seen == wanted:
                    start = number
                    break
    else:
        for number, line in enumerate(lines):
            if re.match(rf"^\s*\[\s*{re.escape(head)}\s*\]", line):
                start = number
                break
    if start is None:
        for number, line in enumerate(lines):  # a top-level key, or a dotted/inline table
            if re.match(rf"^\s*{re.escape(head)}\s*[=.]", line):
                return number + 1
        return None
    if rest:
        key = str(rest[0])
        for number in range(start + 1, len(lines)):
            line = lines[number]
            if _HEADER_RE.match(line):
                break
            if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*[=.]", line):
                return number + 1
    return start + 1


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None
