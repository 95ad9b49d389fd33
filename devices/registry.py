"""The device registry: which elder wears a device and which gateway may speak for it.

A gateway's broker credentials only let it publish under its own topic
subtree (``carewatch/v1/{gateway_id}/...``). The registry closes the rest of
the loop: a frame naming a device that belongs to another gateway, or a
device nobody registered, must not raise or silence an elder's alarm. Such
messages are quarantined; their panic and fall events are still kept and
put in front of an operator, because a real person may be pressing a
button on a device that was simply never enrolled.

Enforcement (:class:`Enforcement`) is ``auto`` by default: on once at least
one device is registered. A fresh installation, a developer's laptop and the
simulator work before anyone fills the registry; a production deployment
turns it on by importing its fleet, or pins it with ``enforce``.

This module is pure: records, the CSV import format and the lookup
snapshot. Storing them is ``ingest``'s business.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from devices.errors import RegistryError, RejectReason
from devices.topics import RESERVED_GATEWAY_IDS, is_valid_id

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    #: Builds the error of one record from its detail.
    _Fail = Callable[[str], RegistryError]


class RiskTier(StrEnum):
    """How closely an elder is watched, set by the care team."""

    STANDARD = "standard"
    ELEVATED = "elevated"
    HIGH = "high"


class Enforcement(StrEnum):
    """When unknown and mismatched devices are quarantined."""

    AUTO = "auto"  # once any device is registered
    ENFORCE = "enforce"  # always, even with an empty registry
    OFF = "off"  # never: every well-formed message is accepted


#: Age at which an elder living alone counts as high risk without a care-team flag.
VERY_OLD_AGE_Y = 85


@dataclass(frozen=True, slots=True, kw_only=True)
class Elder:
    """The minimum the service knows about a person."""

    elder_id: str
    display_name: str
    living_alone: bool = False
    birth_year: int | None = None
    risk_tier: RiskTier = RiskTier.STANDARD
    timezone: str = "UTC"

    def high_risk(self, *, year: int) -> bool:
        """High risk: flagged so by the care team, or living alone and very old."""
        if self.risk_tier is RiskTier.HIGH:
            return True
        very_old = self.birth_year is not None and year - self.birth_year >= VERY_OLD_AGE_Y
        return self.living_alone and very_old


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One registered device."""

    device_id: str
    gateway_id: str
    profile: str
    elder_id: str | None = None
    model: str | None = None
    #: Seconds between the device's own check-ins; None: its profile's default.
    heartbeat_interval_s: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an event from ``device_id`` under ``gateway_id`` may be trusted."""

    device: Device | None
    reason: RejectReason | None  # None: trusted

    @property
    def trusted(self) -> bool:
        """True when the event may feed the rules."""
        return self.reason is None


_TRUSTED_UNREGISTERED = Verdict(None, None)


class Registry:
    """An immutable snapshot of the registry, looked up once per decoded event.

    The ingest service swaps in a new snapshot when the tables change, so
    lookups on the hot path are plain dictionary reads without locks.
    """

    __slots__ = ("_devices", "_elders", "_enforced")

    def __init__(
        self,
        devices: Iterable[Device] = (),
        elders: Iterable[Elder] = (),
        *,
        enforcement: Enforcement = Enforcement.AUTO,
    ) -> None:
        self._devices: Mapping[str, Device] = {d.device_id: d for d in devices}
        self._elders: Mapping[str, Elder] = {e.elder_id: e for e in elders}
        self._enforced = enforcement is Enforcement.ENFORCE or (
            enforcement is Enforcement.AUTO and bool(self._devices)
        )

    @property
    def enforced(self) -> bool:
        """Unknown devices are quarantined."""
        return self._enforced

    def __len__(self) -> int:
        return len(self._devices)

    def device(self, device_id: str) -> Device | None:
        """The registered device, if any."""
        return self._devices.get(device_id)

    def elder(self, elder_id: str | None) -> Elder | None:
        """The registered elder, if any."""
        return None if elder_id is None else self._elders.get(elder_id)

    def check(self, device_id: str, gateway_id: str) -> Verdict:
        """Tell whether an event for ``device_id`` arriving under ``gateway_id`` is trusted."""
        device = self._devices.get(device_id)
        if device is None:
            if self._enforced:
                return Verdict(None, RejectReason.UNKNOWN_DEVICE)
            return _TRUSTED_UNREGISTERED
        if device.gateway_id != gateway_id:
            return Verdict(device, RejectReason.GATEWAY_MISMATCH)
        return Verdict(device, None)


#: Columns of ``carewatch devices import``; the first two are required.
CSV_COLUMNS = (
    "device_id",
    "gateway_id",
    "profile",
    "model",
    "heartbeat_interval_s",
    "elder_id",
    "elder_name",
    "living_alone",
    "birth_year",
    "risk_tier",
    "timezone",
)
_REQUIRED = ("device_id", "gateway_id", "profile")
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f", ""})


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One line of an import file: a device and, optionally, its elder."""

    line: int
    device: Device
    elder: Elder | None


def parse_csv(text: str, *, source: str, profiles: Iterable[str]) -> list[ImportRow]:
    """Parse and validate a whole import file before anything is written.

    A fleet file is all or nothing: one bad line stops the import with its
    line number, so a half-imported fleet never starts quarantining the
    other half.

    Raises:
        RegistryError: naming the line and the column.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise RegistryError(source, 1, f"missing column(s): {', '.join(missing)}")
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise RegistryError(
            source, 1, f"unknown column(s): {', '.join(unknown)}; expected {', '.join(CSV_COLUMNS)}"
        )
    known_profiles = frozenset(profiles)
    rows: list[ImportRow] = []
    seen: dict[str, int] = {}
    elders: dict[str, Elder] = {}
    for record in reader:
        line = reader.line_num
        values = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
        row = _row(values, line=line, source=source, profiles=known_profiles)
        first = seen.setdefault(row.device.device_id, line)
        if first != line:
            raise RegistryError(source, line, f"device {row.device.device_id!r} already on line {first}")
        if row.elder is not None:
            earlier = elders.setdefault(row.elder.elder_id, row.elder)
            if earlier != row.elder:
                raise RegistryError(
                    source, line, f"elder {row.elder.elder_id!r} is described differently on an earlier line"
                )
        rows.append(row)
    return rows


def _row(values: dict[str, str], *, line: int, source: str, profiles: frozenset[str]) -> ImportRow:
    def fail(detail: str) -> RegistryError:
        return RegistryError(source, line, detail)

    device = make_device(
        device_id=values.get("device_id", ""),
        gateway_id=values.get("gateway_id", ""),
        profile=values.get("profile", ""),
        model=values.get("model") or None,
        heartbeat_interval_s=_int(values.get("heartbeat_interval_s", ""), "heartbeat_interval_s", fail),
        elder_id=values.get("elder_id") or None,
        profiles=profiles,
        fail=fail,
    )
    elder = None
    if device.elder_id is not None and values.get("elder_name"):
        elder = make_elder(
            elder_id=device.elder_id,
            display_name=values["elder_name"],
            living_alone=_bool(values.get("living_alone", ""), fail),
            birth_year=_int(values.get("birth_year", ""), "birth_year", fail),
            risk_tier=values.get("risk_tier") or RiskTier.STANDARD.value,
            timezone=values.get("timezone") or "UTC",
            fail=fail,
        )
    elif any(values.get(k) for k in ("living_alone", "birth_year", "risk_tier", "timezone")):
        raise fail("elder columns need elder_id and elder_name")
    return ImportRow(line, device, elder)


def make_device(
    *,
    device_id: str,
    gateway_id: str,
    profile: str,
    model: str | None,
    heartbeat_interval_s: int | None,
    elder_id: str | None,
    profiles: frozenset[str],
    fail: _Fail | None = None,
) -> Device:
    """Validate one device record (from a file line or from ``devices add``)."""
    fail = fail or _args_error
    if not is_valid_id(device_id):
        raise fail("device_id must match [A-Za-z0-9_-]{1,64}")
    if not is_valid_id(gateway_id) or gateway_id in RESERVED_GATEWAY_IDS:
        raise fail("gateway_id must match [A-Za-z0-9_-]{1,64} and not be a reserved id")
    if profile not in profiles:
        raise fail(f"profile {profile!r} is not one of {', '.join(sorted(profiles))}")
    if heartbeat_interval_s is not None and heartbeat_interval_s <= 0:
        raise fail("heartbeat_interval_s must be positive")
    if elder_id is not None and not is_valid_id(elder_id):
        raise fail("elder_id must match [A-Za-z0-9_-]{1,64}")
    return Device(
        device_id=device_id,
        gateway_id=gateway_id,
        profile=profile,
        model=model,
        heartbeat_interval_s=heartbeat_interval_s,
        elder_id=elder_id,
    )


def make_elder(
    *,
    elder_id: str,
    display_name: str,
    living_alone: bool,
    birth_year: int | None,
    risk_tier: str,
    timezone: str,
    fail: _Fail | None = None,
) -> Elder:
    """Validate one elder record."""
    fail = fail or _args_error
    if not is_valid_id(elder_id):
        raise fail("elder_id must match [A-Za-z0-9_-]{1,64}")
    if not display_name or len(display_name) > 200:  # noqa: PLR2004
        raise fail("elder_name must be 1 to 200 characters")
    if birth_year is not None and not 1890 <= birth_year <= 2100:  # noqa: PLR2004
        raise fail("birth_year must be between 1890 and 2100")
    try:
        tier = RiskTier(risk_tier)
    except ValueError:
        raise fail(f"risk_tier must be one of {', '.join(t.value for t in RiskTier)}") from None
    if not _valid_timezone(timezone):
        raise fail(f"timezone {timezone!r} is not an IANA time zone")
    return Elder(
        elder_id=elder_id,
        display_name=display_name,
        living_alone=living_alone,
        birth_year=birth_year,
        risk_tier=tier,
        timezone=timezone,
    )


def _args_error(detail: str) -> RegistryError:
    return RegistryError("<args>", 0, detail)


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - loads tzdata lazily

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _int(text: str, column: str, fail: _Fail) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise fail(f"{column} must be a whole number, not {text!r}") from None


def _bool(text: str, fail: _Fail) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise fail(f"living_alone must be true or false, not {text!r}")
