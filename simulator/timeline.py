"""The whole run, decided before the first byte is sent: every message, when, and what it must cause.

Planning is separated from sending so that a run is reproducible and
inspectable: the same scenario, seed and fleet size give the same plan, and
rendering the plan against a sim start time gives byte-identical payloads.
Times here are integer milliseconds of SIM time after the start; the
publisher maps them onto the wall clock.

What the background fleet does (and why it stays quiet):

* heartbeats at each profile's interval (well inside every silence timeout);
* heart rate every ~2 min while worn, with a daily rhythm (lowest ~03:00,
  highest ~15:00), bursts of activity by day and sensor noise, kept inside
  48-115 bpm so that no heart-rate rule fires by accident;
* SpO2, body temperature and position now and then, battery draining by the hour;
* optionally: straps taken off at night (charging meanwhile), clock skew,
  duplicate sends, and offline spells after which the buffered messages go out
  in a burst. What those may legitimately raise (``not_worn`` at night,
  ``device_silent`` during a spell) is recorded as :class:`Background`, so a
  scorer can tell it from a false alarm without hiding it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from devices import Kind, format_topic
from simulator.fleet import Device, Fleet, build_fleet
from simulator.formats import TIMED, DeviceState, Sample, encode, supports

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator
    from datetime import datetime

    from simulator.scenario import IncidentSpec, Scenario

_BURST_SPACING_MS: Final = 20
_DUPLICATE_DELAY_MS: Final = 300
_EPISODE_SAMPLE_MS: Final = 10_000
_SPO2_INTERVAL_MS: Final = 1_800_000
_TEMP_INTERVAL_MS: Final = 7_200_000
_BATTERY_INTERVAL_MS: Final = 3_600_000
_CHARGE_PCT_PER_H: Final = 20.0
_HR_FLOOR_BPM: Final = 48.0
_HR_CEILING_BPM: Final = 115.0
_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """One message of the plan.

    Attributes:
        send_ms: when it is published (sim ms after the start).
        sample_ms: when it happened on the device's true clock (sim ms after the start).
        device_index: index of the device in the fleet.
        seq: the device's message counter; a duplicate repeats its original's.
        sample: what it says.
        battery_pct: the device's battery level at the time (vendor frames always carry it).
        incident: the incident it belongs to, if any.
        duplicate: a deliberate second send of the same bytes.
    """

    send_ms: int
    sample_ms: int
    device_index: int
    seq: int
    sample: Sample
    battery_pct: int
    incident: str | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What one device must (or must not) raise because of one incident.

    Attributes:
        incident_id: the incident (``incident-N``).
        kind: the incident's kind.
        device_id: the device.
        rule: the rule.
        expect: ``alert`` or ``none``.
        within_s: wall seconds allowed from publication to the alert.
        start_ms: sim ms the incident starts.
        end_ms: sim ms it ends.
        line: the scenario line that asked for it.
        clock: ``device`` when its rule runs on device time, ``service`` for silence rules.
        note: the scenario's note.
    """

    incident_id: str
    kind: str
    device_id: str
    rule: str
    expect: str
    within_s: float
    start_ms: int
    end_ms: int
    line: int | None
    clock: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Background:
    """A stretch of background behaviour that may legitimately raise ``rule`` on ``device_id``."""

    device_id: str
    rule: str
    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimMessage:
    """One rendered message: what goes on the wire, and what the manifest needs about it."""

    send_ms: int
    sim_time: datetime
    topic: str
    payload: bytes
    device_id: str
    incident: str | None
    duplicate: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A run, decided: the fleet, every message in send order, and the expected outcome.

    Attributes:
        scenario: the scenario.
        fleet: the devices.
        seed: the seed.
        duration_ms: sim length of the run.
        messages: every message, sorted by send time (then device, then sequence).
        expectations: per device and incident, the outcome that must follow.
        background: stretches of background behaviour that may raise alerts.
        skipped: incidents left out because they start after a shortened run ends.
    """

    scenario: Scenario
    fleet: Fleet
    seed: int
    duration_ms: int
    messages: tuple[Planned, ...]
    expectations: tuple[Expectation, ...]
    background: tuple[Background, ...]
    skipped: tuple[str, ...] = field(default=())

    def rules_toml(self) -> str:
        """A rules file for ``carewatch ingest --rules``: the scenario's overrides and device profiles.

        Without a device registry the rule engine takes every device for a
        wearable; naming each non-wearable's profile keeps a fixed terminal
        that reports hourly from being judged silent after ten minutes.
        """
        lines = [self.scenario.rules_toml().rstrip("\n")]
        for device in self.fleet.devices:
            if device.profile.rules_profile != "wearable":
                lines += ["", f"[devices.{device.device_id}]", f'profile = "{device.profile.rules_profile}"']
        return "\n".join(lines) + "\n"

    def render(self, sim_t0: datetime) -> Iterator[SimMessage]:
        """The messages as bytes, for a run whose sim clock starts at ``sim_t0`` (aware UTC)."""
        devices = self.fleet.devices
        topics = [format_topic(d.gateway_id, d.device_id, d.channel) for d in devices]
        for planned in self.messages:
            device = devices[planned.device_index]
            device_ms = planned.sample_ms + round(device.clock_skew_s * 1000)
            state = DeviceState(
                device_id=device.device_id,
                battery_pct=planned.battery_pct,
                lat=device.lat,
                lon=device.lon,
                seq=planned.seq,
            )
            payload = encode(
                device.channel, planned.sample, sim_t0 + timedelta(milliseconds=device_ms), state
            )
            yield SimMessage(
                send_ms=planned.send_ms,
                sim_time=sim_t0 + timedelta(milliseconds=planned.send_ms),
                topic=topics[planned.device_index],
                payload=payload,
                device_id=device.device_id,
                incident=planned.incident,
                duplicate=planned.duplicate,
            )


def build_plan(
    scenario: Scenario,
    *,
    devices: int | None = None,
    seed: int | None = None,
    duration_s: float | None = None,
) -> Plan:
    """Plan a run of ``scenario`` (fleet size, seed and duration default to the scenario's).

    Raises:
        ScenarioError: an incident names a device or gateway the fleet lacks, or
            a device whose format cannot express the incident.
    """
    run_seed = scenario.seed if seed is None else seed
    fleet = build_fleet(
        scenario.fleet, devices=scenario.fleet.devices if devices is None else devices, seed=run_seed
    )
    duration_ms = round((scenario.duration_s if duration_s is None else duration_s) * 1000)
    incidents = [i for i in scenario.incidents if i.at_s * 1000 < duration_ms]
    skipped = tuple(i.id for i in scenario.incidents if i.at_s * 1000 >= duration_ms)
    by_id = fleet.by_id()
    for incident in incidents:
        _check(scenario, fleet, by_id, incident)
    expectations = _expectations(fleet, incidents, duration_ms)
    background: list[Background] = []
    planned: list[Planned] = []
    for device in fleet.devices:
        own = [i for i in incidents if i.device == device.device_id]
        outages = [
            (round(i.at_s * 1000), round((i.at_s + i.duration_s) * 1000))
            for i in incidents
            if i.kind == "gateway_outage" and i.gateway == device.gateway_id
        ]
        planned += _DevicePlanner(scenario, device, run_seed, duration_ms, own, outages, background).run()
    planned.sort(key=lambda p: (p.send_ms, p.device_index, p.seq, p.duplicate))
    return Plan(
        scenario=scenario,
        fleet=fleet,
        seed=run_seed,
        duration_ms=duration_ms,
        messages=tuple(planned),
        expectations=tuple(expectations),
        background=tuple(background),
        skipped=skipped,
    )


#: The kinds each incident sends, and whether they must carry device time.
_INCIDENT_KINDS: Final[dict[str, tuple[tuple[Kind, ...], bool]]] = {
    "panic": ((Kind.PANIC,), False),
    "fall": ((Kind.FALL,), False),
    "cancelled_fall": ((Kind.FALL, Kind.CANCEL), False),
    "heart_rate_high": ((Kind.HEART_RATE,), True),
    "heart_rate_low": ((Kind.HEART_RATE,), True),
    "fever": ((Kind.BODY_TEMP,), False),
    "spo2_low": ((Kind.SPO2,), False),
    "low_battery": ((Kind.BATTERY,), False),
    "worn_off": ((Kind.WORN,), True),
    "offline": ((), False),
    "gateway_outage": ((), False),
}
_SERVICE_CLOCK_RULES: Final = frozenset({"device_silent", "inactivity"})


def _check(scenario: Scenario, fleet: Fleet, by_id: dict[str, Device], incident: IncidentSpec) -> None:
    if incident.kind == "gateway_outage":
        if incident.gateway not in fleet.gateways:
            known = ", ".join(fleet.gateways)
            raise scenario.error(
                incident.line, f"{incident.id}.gateway", f"no gateway {incident.gateway} (fleet has {known})"
            )
        return
    device = by_id.get(incident.device or "")
    if device is None:
        ranges = _id_ranges(fleet)
        raise scenario.error(
            incident.line,
            f"{incident.id}.device",
            f"no device {incident.device} in a fleet of {len(fleet.devices)} ({ranges})",
        )
    kinds, timed = _INCIDENT_KINDS[incident.kind]
    channel = device.channel
    needs_on = incident.kind == "worn_off"
    for kind in kinds:
        sample = Sample(kind, {"on": True} if needs_on else {})
        if not supports(channel, sample) or (timed and kind not in TIMED[channel]):
            what = "carry the device's time for" if timed and supports(channel, sample) else "express"
            raise scenario.error(
                incident.line,
                f"{incident.id}.device",
                f"{device.device_id} speaks {channel}, which cannot {what} {kind} "
                f"(a {incident.kind} needs a device in a format that can)",
            )
    vital = incident.kind in {"heart_rate_high", "heart_rate_low", "fever", "spo2_low", "worn_off"}
    if vital and not device.profile.worn:
        raise scenario.error(
            incident.line, f"{incident.id}.device", f"{device.device_id} is not worn on the body"
        )


def _id_ranges(fleet: Fleet) -> str:
    firsts: dict[str, list[str]] = {}
    for device in fleet.devices:
        firsts.setdefault(device.profile.name, []).append(device.device_id)
    return ", ".join(f"{ids[0]}..{ids[-1]}" for ids in firsts.values())


def _expectations(fleet: Fleet, incidents: list[IncidentSpec], duration_ms: int) -> list[Expectation]:
    out: list[Expectation] = []
    for incident in incidents:
        start_ms = round(incident.at_s * 1000)
        span_s = incident.cancel_after_s if incident.kind == "cancelled_fall" else incident.duration_s
        end_ms = min(duration_ms, start_ms + round(span_s * 1000))
        clock = "service" if incident.rule in _SERVICE_CLOCK_RULES else "device"
        if incident.kind == "gateway_outage":
            targets = [
                d.device_id
                for d in fleet.devices
                if d.gateway_id == incident.gateway and d.profile.name in incident.profiles
            ]
        else:
            targets = [incident.device or ""]
        out += [
            Expectation(
                incident_id=incident.id,
                kind=incident.kind,
                device_id=device_id,
                rule=incident.rule,
                expect=incident.expect,
                within_s=incident.within_s,
                start_ms=start_ms,
                end_ms=end_ms,
                line=incident.line,
                clock=clock,
                note=incident.note,
            )
            for device_id in targets
        ]
    return out


@dataclass(slots=True, kw_only=True)
class _Raw:
    """A sample before sending decisions: its time, what it is, and who asked for it."""

    at_ms: int
    order: int
    sample: Sample
    incident: str | None = None
    battery_pct: int = 0


class _DevicePlanner:
    """Plans one device's messages: behaviour, incidents, then buffering, skew and duplicates."""

    def __init__(  # noqa: PLR0917 - private, called once per device
        self,
        scenario: Scenario,
        device: Device,
        seed: int,
        duration_ms: int,
        incidents: list[IncidentSpec],
        outages: list[tuple[int, int]],
        background: list[Background],
    ) -> None:
        self.scenario = scenario
        self.device = device
        self.seed = seed
        self.duration_ms = duration_ms
        self.incidents = incidents
        self.outages = outages
        self.background = background
        self.rng = device.rng(seed, "behaviour")
        self.start_hour = scenario.start_hour
        self.raw: list[_Raw] = []

    def run(self) -> list[Planned]:
        profile = self.device.profile
        off = self._strap_off_intervals()
        episodes = [
            (round(i.at_s * 1000), round((i.at_s + i.duration_s) * 1000))
            for i in self.incidents
            if i.kind in {"heart_rate_high", "heart_rate_low", "worn_off"}
        ]
        self._periodic(Sample(Kind.HEARTBEAT, {}), round(profile.heartbeat_interval_s * 1000), 0.05)
        if profile.vitals_interval_s > 0:
            self._periodic(
                Sample(Kind.HEART_RATE, {}), round(profile.vitals_interval_s * 1000), 0.1, skip=off + episodes
            )
            self._periodic(Sample(Kind.SPO2, {}), _SPO2_INTERVAL_MS, 0.1, skip=off + episodes)
            self._periodic(Sample(Kind.BODY_TEMP, {}), _TEMP_INTERVAL_MS, 0.1, skip=off + episodes)
        if profile.location_interval_s > 0:
            self._periodic(Sample(Kind.LOCATION, {}), round(profile.location_interval_s * 1000), 0.1)
        if profile.battery_drain_pct_per_h > 0:
            self._periodic(Sample(Kind.BATTERY, {}), _BATTERY_INTERVAL_MS, 0.05)
        for start, end in off:
            self._add(start, Sample(Kind.WORN, {"on": False}))
            if end < self.duration_ms:
                self._add(end, Sample(Kind.WORN, {"on": True}))
            self.background.append(
                Background(device_id=self.device.device_id, rule="not_worn", start_ms=start, end_ms=end,
                           reason="strap taken off for the night")
            )  # fmt: skip
        for incident in self.incidents:
            self._incident(incident)
        self.raw.sort(key=lambda r: (r.at_ms, r.order))
        self._fill_values(off)
        return self._send(self._offline_windows())

    # -- behaviour ---------------------------------------------------------------------------

    def _periodic(
        self, sample: Sample, interval_ms: int, jitter: float, *, skip: list[tuple[int, int]] | None = None
    ) -> None:
        at = self.rng.randrange(max(1, interval_ms))
        while at < self.duration_ms:
            if not any(start <= at < end for start, end in skip or ()):
                self._add(at, sample)
            at += round(interval_ms * self.rng.uniform(1 - jitter, 1 + jitter))

    def _add(self, at_ms: int, sample: Sample, incident: str | None = None) -> None:
        if incident is None and not supports(self.device.channel, sample):
            return  # this device's format has no way to say it
        self.raw.append(_Raw(at_ms=at_ms, order=len(self.raw), sample=sample, incident=incident))

    def _strap_off_intervals(self) -> list[tuple[int, int]]:
        device = self.device
        if not (self.scenario.fleet.strap_off_at_night and device.profile.worn and device.channel == "json"):
            return []
        rng = self.device.rng(self.seed, "nights")
        offset_ms = round(self.start_hour * _HOUR_MS)
        intervals = []
        for day in range(-1, self.duration_ms // _DAY_MS + 2):
            off = day * _DAY_MS + 22 * _HOUR_MS + rng.randrange(90 * 60_000) - offset_ms
            on = (day + 1) * _DAY_MS + 6 * _HOUR_MS + 30 * 60_000 + rng.randrange(90 * 60_000) - offset_ms
            if 0 <= off < self.duration_ms:
                intervals.append((off, on))
        return intervals

    def _incident(self, incident: IncidentSpec) -> None:  # noqa: C901 - one branch per incident kind
        at = round(incident.at_s * 1000)
        end = round((incident.at_s + incident.duration_s) * 1000)
        tag = incident.id
        kind = incident.kind
        value = incident.value
        if kind == "panic":
            self._add(at, Sample(Kind.PANIC, {"button": "sos"}), tag)
        elif kind in {"fall", "cancelled_fall"}:
            self._add(at, Sample(Kind.FALL, {"stage": "alarm", "confidence": 0.93}), tag)
            if kind == "cancelled_fall":
                self._add(at + round(incident.cancel_after_s * 1000), Sample(Kind.CANCEL, {}), tag)
        elif kind in {"heart_rate_high", "heart_rate_low"} and value is not None:
            rng = self.device.rng(self.seed, tag)
            for moment in range(at, min(end, self.duration_ms), _EPISODE_SAMPLE_MS):
                bpm = round(value + rng.uniform(-2.0, 2.0))
                self._add(moment, Sample(Kind.HEART_RATE, {"bpm": bpm}), tag)
        elif kind == "fever" and value is not None:
            self._add(at, Sample(Kind.BODY_TEMP, {"celsius": round(value, 1)}), tag)
        elif kind == "spo2_low" and value is not None:
            self._add(at, Sample(Kind.SPO2, {"pct": round(value)}), tag)
            self._add(at + 60_000, Sample(Kind.SPO2, {"pct": round(value)}), tag)
        elif kind == "low_battery" and value is not None:
            self._add(at, Sample(Kind.BATTERY, {"pct": round(value)}), tag)
        elif kind == "worn_off":
            self._add(at, Sample(Kind.WORN, {"on": False}), tag)
            if end < self.duration_ms:
                self._add(end, Sample(Kind.WORN, {"on": True}), tag)

    def _fill_values(self, off: list[tuple[int, int]]) -> None:
        """Give background samples their values, and every sample the battery level of its time."""
        device = self.device
        level = device.battery_start_pct
        drain = device.profile.battery_drain_pct_per_h
        last = 0
        values = self.device.rng(self.seed, "values")
        forced = {i.id: i.value for i in self.incidents if i.kind == "low_battery" and i.value is not None}
        for raw in self.raw:
            hours = (raw.at_ms - last) / _HOUR_MS
            charging = any(start <= raw.at_ms < end for start, end in off)
            level += hours * (_CHARGE_PCT_PER_H if charging else -drain)
            level = min(100.0, max(1.0, level))
            last = raw.at_ms
            if raw.incident in forced and raw.sample.kind is Kind.BATTERY:
                level = float(forced[raw.incident] or 1.0)
            raw.battery_pct = max(1, round(level)) if drain > 0 else 100
            if raw.incident is None:
                raw.sample = self._background_value(raw, values)

    def _background_value(self, raw: _Raw, rng: random.Random) -> Sample:  # noqa: PLR0911 - one value per kind
        kind = raw.sample.kind
        if kind is Kind.HEART_RATE:
            return Sample(kind, {"bpm": self._heart_rate(raw.at_ms, rng)})
        if kind is Kind.SPO2:
            return Sample(kind, {"pct": rng.randint(95, 99)})
        if kind is Kind.BODY_TEMP:
            return Sample(kind, {"celsius": round(rng.uniform(36.2, 37.2), 1)})
        if kind is Kind.BATTERY:
            return Sample(kind, {"pct": raw.battery_pct})
        if kind is Kind.HEARTBEAT:
            fields = (
                {"battery_pct": raw.battery_pct} if self.device.profile.battery_drain_pct_per_h > 0 else {}
            )
            return Sample(kind, fields)
        if kind is Kind.LOCATION:
            return Sample(
                kind,
                {
                    "lat": round(self.device.lat + rng.uniform(-0.002, 0.002), 6),
                    "lon": round(self.device.lon + rng.uniform(-0.003, 0.003), 6),
                    "accuracy_m": float(rng.randint(5, 40)),
                },
            )
        return raw.sample

    def _heart_rate(self, at_ms: int, rng: random.Random) -> int:
        device = self.device
        local_h = (self.start_hour + at_ms / _HOUR_MS) % 24
        rhythm = -math.cos(2 * math.pi * (local_h - 3.0) / 24.0)  # -1 at 03:00, +1 at 15:00
        awake = 7.0 <= local_h < 22.0  # noqa: PLR2004 - waking hours
        activity = rng.uniform(5.0, 25.0) if awake and rng.random() < 0.15 else 0.0  # noqa: PLR2004
        bpm = device.resting_hr_bpm + device.hr_swing_bpm * rhythm + activity + rng.gauss(0.0, 2.0)
        return round(min(_HR_CEILING_BPM, max(_HR_FLOOR_BPM, bpm)))

    # -- sending -----------------------------------------------------------------------------

    def _offline_windows(self) -> list[tuple[int, int]]:
        windows = list(self.outages)
        windows += [
            (round(i.at_s * 1000), round((i.at_s + i.duration_s) * 1000))
            for i in self.incidents
            if i.kind == "offline"
        ]
        rate = self.scenario.fleet.offline_spells_per_device_day
        if rate > 0:
            rng = self.device.rng(self.seed, "offline")
            count = _poisson(rng, rate * self.duration_ms / _DAY_MS)
            longest = round(self.scenario.fleet.offline_spell_max_s * 1000)
            for _ in range(count):
                start = rng.randrange(self.duration_ms)
                end = start + rng.randint(60_000, max(60_000, longest))
                windows.append((start, end))
                self.background.append(
                    Background(device_id=self.device.device_id, rule="device_silent", start_ms=start,
                               end_ms=end, reason="background offline spell")
                )  # fmt: skip
        return sorted(windows)

    def _send(self, windows: list[tuple[int, int]]) -> list[Planned]:
        """Decide send times: buffered through offline windows, then duplicates."""
        out: list[Planned] = []
        dup_rng = self.device.rng(self.seed, "duplicates")
        fraction = self.scenario.fleet.duplicate_fraction
        last_send = 0
        burst: dict[int, int] = {}
        for seq, raw in enumerate(self.raw, start=1):
            send = raw.at_ms
            for start, end in windows:
                if start <= raw.at_ms < end:
                    position = burst.get(end, 0)
                    burst[end] = position + 1
                    send = max(send, end + position * _BURST_SPACING_MS)
            send = max(send, last_send)
            if send >= self.duration_ms:
                continue  # still buffered when the run ends: never sent
            last_send = send
            planned = Planned(
                send_ms=send,
                sample_ms=raw.at_ms,
                device_index=self.device.index,
                seq=seq,
                sample=raw.sample,
                battery_pct=raw.battery_pct,
                incident=raw.incident,
            )
            out.append(planned)
            if raw.incident is None and fraction > 0 and dup_rng.random() < fraction:
                resend = send + _DUPLICATE_DELAY_MS
                if resend < self.duration_ms:
                    out.append(
                        Planned(
                            send_ms=resend,
                            sample_ms=raw.at_ms,
                            device_index=self.device.index,
                            seq=seq,
                            sample=raw.sample,
                            battery_pct=raw.battery_pct,
                            duplicate=True,
                        )
                    )
        return out


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of offline spells."""
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
