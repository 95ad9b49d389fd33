"""The simulated fleet: who the devices are, where they live and how their bodies behave.

Everything is derived from the seed through ``random.Random`` instances seeded
with text (``f"{seed}/{device_id}"``), never the global generator: the same
seed gives the same fleet, and adding a device does not reshuffle the others.
Device ids are readable and stable (``sim-watch-0007``), numbered per profile,
so a scenario can name the device an incident happens to.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from devices.registry import CSV_COLUMNS
from simulator.profiles import PROFILES, Profile

if TYPE_CHECKING:
    from simulator.scenario import FleetSpec

#: Roughly Stockholm: where the simulated elders live.
_HOME_LAT: Final = 59.33
_HOME_LON: Final = 18.06
_TIMEZONE: Final = "Europe/Stockholm"
_DEVICES_PER_GATEWAY: Final = 100
_FIRST_NAMES: Final = (
    "Astrid", "Birgit", "Karin", "Ingrid", "Margit", "Elsa", "Gunnel", "Maj", "Sven", "Lars",
    "Erik", "Gösta", "Bengt", "Olle", "Rune", "Stig", "Ulla", "Britt", "Inga", "Harald",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
    "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Lindberg", "Lindqvist", "Berg", "Holm",
)  # fmt: skip

#: Columns of the registry CSV (``carewatch devices import``), as the registry defines them.
REGISTRY_COLUMNS: Final = CSV_COLUMNS


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One simulated device and the elder wearing or owning it.

    Attributes:
        index: position in the fleet (the order devices are numbered and merged in).
        device_id: ``sim-{profile}-{nnnn}``.
        gateway_id: ``sim-gw-{nn}``: the gateway relaying it.
        profile: its profile.
        channel: the topic channel (format) it speaks.
        elder_id: the elder it belongs to.
        elder_name: a made-up name for operator screens.
        living_alone: whether the elder lives alone (inactivity watch).
        birth_year: the elder's birth year.
        risk_tier: ``standard``, ``elevated`` or ``high`` (the registry's tiers; high: shorter
            silence timeouts).
        clock_skew_s: how far the device's clock is off (positive: ahead).
        resting_hr_bpm: the wearer's resting heart rate.
        hr_swing_bpm: the daily rhythm's half amplitude.
        battery_start_pct: the charge at sim start.
        lat: home latitude.
        lon: home longitude.
    """

    index: int
    device_id: str
    gateway_id: str
    profile: Profile
    channel: str
    elder_id: str
    elder_name: str
    living_alone: bool
    birth_year: int
    risk_tier: str
    clock_skew_s: float
    resting_hr_bpm: float
    hr_swing_bpm: float
    battery_start_pct: float
    lat: float
    lon: float

    def rng(self, seed: int, purpose: str) -> random.Random:
        """A generator private to this device and purpose: independent streams stay stable."""
        return random.Random(f"{seed}/{self.device_id}/{purpose}")  # noqa: S311 - simulation, not secrets


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices of a run, in index order."""

    devices: tuple[Device, ...]
    seed: int

    @property
    def gateways(self) -> tuple[str, ...]:
        """The gateway ids, sorted."""
        return tuple(sorted({d.gateway_id for d in self.devices}))

    def by_id(self) -> dict[str, Device]:
        """Devices by id."""
        return {d.device_id: d for d in self.devices}


def profile_counts(mix: dict[str, float], devices: int) -> dict[str, int]:
    """Split ``devices`` over the profiles by weight (largest remainder, ties in profile order)."""
    names = [name for name in PROFILES if mix.get(name, 0.0) > 0]
    total = sum(mix[name] for name in names)
    exact = {name: devices * mix[name] / total for name in names}
    counts = {name: math.floor(share) for name, share in exact.items()}
    left = devices - sum(counts.values())
    order = sorted(names, key=lambda n: (-(exact[n] - counts[n]), list(PROFILES).index(n)))
    for name in order[:left]:
        counts[name] += 1
    return {name: counts[name] for name in PROFILES if counts.get(name)}


def build_fleet(spec: FleetSpec, *, devices: int, seed: int) -> Fleet:
    """Build a fleet of ``devices`` devices as ``spec`` describes.

    Raises:
        ValueError: a device count below one.
    """
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    counts = profile_counts(dict(spec.mix), devices)
    gateways = spec.gateways or max(1, math.ceil(devices / _DEVICES_PER_GATEWAY))
    built: list[Device] = []
    for name, count in counts.items():
        profile = PROFILES[name]
        channels = spec.formats_of(name)
        for number in range(1, count + 1):
            index = len(built)
            device_id = f"sim-{name}-{number:04d}"
            rng = random.Random(f"{seed}/{device_id}/identity")  # noqa: S311 - simulation
            skewed = rng.random() < spec.clock_skew_fraction
            skew = rng.uniform(-spec.max_clock_skew_s, spec.max_clock_skew_s) if skewed else 0.0
            birth_year = rng.randint(1926, 1950)
            living_alone = rng.random() < 0.6  # noqa: PLR2004 - the share of elders living alone
            risk = "high" if birth_year < 1935 or (living_alone and rng.random() < 0.2) else "elevated"  # noqa: PLR2004
            built.append(
                Device(
                    index=index,
                    device_id=device_id,
                    gateway_id=f"sim-gw-{index % gateways + 1:02d}",
                    profile=profile,
                    channel=channels[(number - 1) % len(channels)],
                    elder_id=f"sim-elder-{index + 1:05d}",
                    elder_name=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
                    living_alone=living_alone,
                    birth_year=birth_year,
                    risk_tier=risk if rng.random() < 0.9 else "standard",  # noqa: PLR2004
                    clock_skew_s=round(skew, 3),
                    resting_hr_bpm=rng.uniform(58.0, 76.0),
                    hr_swing_bpm=rng.uniform(6.0, 12.0),
                    battery_start_pct=rng.uniform(65.0, 100.0),
                    lat=_HOME_LAT + rng.uniform(-0.15, 0.15),
                    lon=_HOME_LON + rng.uniform(-0.25, 0.25),
                )
            )
    return Fleet(tuple(built), seed)


def registry_rows(fleet: Fleet) -> list[dict[str, str]]:
    """The fleet as device-registry rows (``REGISTRY_COLUMNS``), for ``carewatch devices import``.

    Once any device is registered, ingest quarantines unknown ones: a simulated
    fleet must be registered before it runs against such a database.
    """
    rows = [
        {
            "device_id": d.device_id,
            "gateway_id": d.gateway_id,
            "profile": d.profile.rules_profile,
            "model": f"simulated {d.profile.name}",
            "elder_id": d.elder_id,
            "elder_name": d.elder_name,
            "living_alone": "true" if d.living_alone else "false",
            "birth_year": str(d.birth_year),
            "risk_tier": d.risk_tier,
            "timezone": _TIMEZONE,
            "heartbeat_interval_s": f"{d.profile.heartbeat_interval_s:g}",
        }
        for d in fleet.devices
    ]
    return [{column: row[column] for column in REGISTRY_COLUMNS} for row in rows]
