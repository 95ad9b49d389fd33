"""The kinds of device a simulated fleet is made of, and how often each one talks.

Profile names map onto the rule engine's profiles (``rules.config.DEFAULT_PROFILES``)
through ``rules_profile``, so the registry CSV the simulator writes gives every
device the silence timeout its real counterpart would get. Heartbeat intervals
stay well under the shortest silence timeout (600 s, halved for high-risk elders),
so a healthy background fleet never looks silent at speed 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """One device type.

    Attributes:
        name: the simulator's name, also the device id's middle part (``sim-watch-0007``).
        rules_profile: the rule engine's profile name for the registry.
        heartbeat_interval_s: keep-alive period (sim seconds).
        formats: the channels devices of this profile use, assigned in turn by index.
        worn: worn on the body: it can be taken off and measures vital signs.
        vitals_interval_s: heart-rate sampling period while worn (0: no vitals).
        location_interval_s: position report period (0: never moves).
        battery_drain_pct_per_h: discharge while in use; 0 for mains-powered devices.
    """

    name: str
    rules_profile: str
    heartbeat_interval_s: float
    formats: tuple[str, ...]
    worn: bool
    vitals_interval_s: float
    location_interval_s: float
    battery_drain_pct_per_h: float


WATCH: Final = Profile(
    name="watch",
    rules_profile="wearable",
    heartbeat_interval_s=240.0,
    formats=("json", "watch", "iw", "traccar"),
    worn=True,
    vitals_interval_s=120.0,
    location_interval_s=1800.0,
    battery_drain_pct_per_h=1.2,
)
PENDANT: Final = Profile(
    name="pendant",
    rules_profile="pendant",
    heartbeat_interval_s=180.0,
    formats=("json", "scaip", "owntracks"),
    worn=False,
    vitals_interval_s=0.0,
    location_interval_s=3600.0,
    battery_drain_pct_per_h=0.1,
)
TERMINAL: Final = Profile(
    name="terminal",
    rules_profile="fixed_terminal",
    heartbeat_interval_s=3600.0,
    formats=("scaip", "json"),
    worn=False,
    vitals_interval_s=0.0,
    location_interval_s=0.0,
    battery_drain_pct_per_h=0.0,
)
RADAR: Final = Profile(
    name="radar",
    rules_profile="sensor",
    heartbeat_interval_s=1800.0,
    formats=("z2m", "json"),
    worn=False,
    vitals_interval_s=0.0,
    location_interval_s=0.0,
    battery_drain_pct_per_h=0.05,
)

#: Every profile by name, in the order devices are numbered.
PROFILES: Final[dict[str, Profile]] = {p.name: p for p in (WATCH, PENDANT, TERMINAL, RADAR)}
