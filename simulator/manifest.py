"""The ground truth of a run: what was published, when, and what it must have become.

Every published payload is decoded with the very codec the ingest pipeline
uses (``devices.codecs``), at its publication time, so the manifest lists the
identities the database must hold afterwards: ``(device, metric, time)`` for
readings and ``(device, kind, time)`` for events filed under the device's
time. Events a format files under the receive time have no identity known in
advance; for those the manifest keeps a count per device and kind, which the
stored rows must reach (a re-sent untimed payload is a second event by
design, so it may exceed it). A deliberate duplicate adds no identity: it
must map onto its original's.

The file is compact JSON: identities are grouped per device and key, as
millisecond offsets from the sim start.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from devices import READING_METRICS, DecodeContext, TimeSource, parse_topic
from devices.codecs import codec_for
from simulator.errors import ManifestError
from simulator.timeline import Background

if TYPE_CHECKING:
    from pathlib import Path

    from simulator.timeline import Expectation, Plan, SimMessage

FORMAT: Final = "carewatch-sim-manifest/1"


def identity_key(kind: str) -> str:
    """The manifest's key for a kind: the readings metric (``heart_rate_bpm``) or ``event:<kind>``."""
    for reading_kind, (metric, _field) in READING_METRICS.items():
        if reading_kind.value == kind:
            return metric
    return f"event:{kind}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedAlert:
    """One expectation of the run, with the publication times the scorer measures latency from.

    Attributes:
        incident_id: the scenario incident.
        kind: its kind.
        device_id: the device.
        rule: the rule.
        expect: ``alert`` or ``none``.
        within_s: allowed wall seconds from publication to the alert.
        clock: ``device`` or ``service`` (which clock the rule runs on).
        line: the scenario line.
        start_ms: sim ms the incident starts.
        end_ms: sim ms it ends.
        start_wall: wall time the sim clock reached ``start_ms``.
        messages: ``(device time ms after sim start, publication wall time)`` of its messages.
        note: the scenario's note.
    """

    incident_id: str
    kind: str
    device_id: str
    rule: str
    expect: str
    within_s: float
    clock: str
    line: int | None
    start_ms: int
    end_ms: int
    start_wall: datetime
    messages: tuple[tuple[int, datetime], ...] = ()
    note: str = ""

    @classmethod
    def of(
        cls, e: Expectation, *, start_wall: datetime, messages: tuple[tuple[int, datetime], ...] = ()
    ) -> ExpectedAlert:
        """The expectation of a plan, placed on the wall clock of a run."""
        return cls(
            incident_id=e.incident_id,
            kind=e.kind,
            device_id=e.device_id,
            rule=e.rule,
            expect=e.expect,
            within_s=e.within_s,
            clock=e.clock,
            line=e.line,
            start_ms=e.start_ms,
            end_ms=e.end_ms,
            start_wall=start_wall,
            messages=messages,
            note=e.note,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What a run published and what the database must hold because of it.

    Attributes:
        scenario: the scenario's name.
        seed: the seed.
        speed: sim seconds per wall second.
        sim_t0: the sim clock at the start (aware UTC).
        wall_start: when publishing started.
        wall_end: when it ended.
        devices: the simulated device ids.
        planned: messages in the plan.
        published: messages handed to the broker.
        acknowledged: messages the broker acknowledged (PUBACK).
        duplicates: deliberate second sends among the published.
        expected_quarantined: published messages whose decoding yields a rejection.
        expected: the expected outcomes.
        background: background spans that may raise alerts.
        timed: device -> key -> device-time offsets (ms after ``sim_t0``) that must be stored.
        untimed: device -> key -> how many receive-time events at least.
        stopped_early: the run was interrupted.
    """

    scenario: str
    seed: int
    speed: float
    sim_t0: datetime
    wall_start: datetime
    wall_end: datetime
    devices: tuple[str, ...]
    planned: int
    published: int
    acknowledged: int
    duplicates: int
    expected_quarantined: int
    expected: tuple[ExpectedAlert, ...]
    background: tuple[Background, ...]
    timed: dict[str, dict[str, list[int]]]
    untimed: dict[str, dict[str, int]]
    stopped_early: bool = False

    def sim_ms(self, moment: datetime) -> int:
        """``moment`` as ms after the sim start."""
        return (moment - self.sim_t0) // timedelta(milliseconds=1)

    def sim_ms_of_wall(self, wall: datetime) -> int:
        """The sim time (ms after the start) the sim clock showed at wall time ``wall``."""
        return round((wall - self.wall_start).total_seconds() * self.speed * 1000)

    def to_json(self) -> str:
        """Serialise (compact, one document)."""
        document: dict[str, Any] = {
            "format": FORMAT,
            "scenario": self.scenario,
            "seed": self.seed,
            "speed": self.speed,
            "sim_t0": self.sim_t0.isoformat(),
            "wall_start": self.wall_start.isoformat(),
            "wall_end": self.wall_end.isoformat(),
            "stopped_early": self.stopped_early,
            "counts": {
                "planned": self.planned,
                "published": self.published,
                "acknowledged": self.acknowledged,
                "duplicates": self.duplicates,
                "expected_quarantined": self.expected_quarantined,
            },
            "devices": list(self.devices),
            "expected": [_expected_json(e) for e in self.expected],
            "background": [
                {
                    "device": b.device_id,
                    "rule": b.rule,
                    "start_ms": b.start_ms,
                    "end_ms": b.end_ms,
                    "reason": b.reason,
                }
                for b in self.background
            ],
            "identities": {"timed": self.timed, "untimed": self.untimed},
        }
        return json.dumps(document, separators=(",", ":"))

    def save(self, path: Path) -> None:
        """Write to ``path``."""
        path.write_text(self.to_json() + "\n", encoding="utf-8")


def _expected_json(e: ExpectedAlert) -> dict[str, Any]:
    return {
        "incident": e.incident_id,
        "kind": e.kind,
        "device": e.device_id,
        "rule": e.rule,
        "expect": e.expect,
        "within_s": e.within_s,
        "clock": e.clock,
        "line": e.line,
        "start_ms": e.start_ms,
        "end_ms": e.end_ms,
        "start_wall": e.start_wall.isoformat(),
        "messages": [[ms, wall.isoformat()] for ms, wall in e.messages],
        "note": e.note,
    }


def load_manifest(path: Path) -> Manifest:
    """Read a manifest written by :meth:`Manifest.save`.

    Raises:
        ManifestError: unreadable, not JSON, or another format.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a {FORMAT} document")
    try:
        counts = document["counts"]
        identities = document["identities"]
        return Manifest(
            scenario=str(document["scenario"]),
            seed=int(document["seed"]),
            speed=float(document["speed"]),
            sim_t0=datetime.fromisoformat(document["sim_t0"]),
            wall_start=datetime.fromisoformat(document["wall_start"]),
            wall_end=datetime.fromisoformat(document["wall_end"]),
            devices=tuple(document["devices"]),
            planned=int(counts["planned"]),
            published=int(counts["published"]),
            acknowledged=int(counts["acknowledged"]),
            duplicates=int(counts["duplicates"]),
            expected_quarantined=int(counts["expected_quarantined"]),
            expected=tuple(
                ExpectedAlert(
                    incident_id=e["incident"],
                    kind=e["kind"],
                    device_id=e["device"],
                    rule=e["rule"],
                    expect=e["expect"],
                    within_s=float(e["within_s"]),
                    clock=e["clock"],
                    line=e["line"],
                    start_ms=int(e["start_ms"]),
                    end_ms=int(e["end_ms"]),
                    start_wall=datetime.fromisoformat(e["start_wall"]),
                    messages=tuple((int(ms), datetime.fromisoformat(w)) for ms, w in e["messages"]),
                    note=e.get("note", ""),
                )
                for e in document["expected"]
            ),
            background=tuple(
                Background(
                    device_id=b["device"],
                    rule=b["rule"],
                    start_ms=int(b["start_ms"]),
                    end_ms=int(b["end_ms"]),
                    reason=b["reason"],
                )
                for b in document["background"]
            ),
            timed={d: {k: list(v) for k, v in keys.items()} for d, keys in identities["timed"].items()},
            untimed={d: dict(keys) for d, keys in identities["untimed"].items()},
            stopped_early=bool(document.get("stopped_early", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc


@dataclass(slots=True)
class ManifestBuilder:
    """Collects the manifest while a run publishes (see the module docstring)."""

    plan: Plan
    sim_t0: datetime
    speed: float
    wall_start: datetime
    published: int = 0
    duplicates: int = 0
    expected_quarantined: int = 0
    _timed: defaultdict[str, defaultdict[str, set[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    _untimed: defaultdict[str, defaultdict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    _incident_messages: defaultdict[tuple[str, str], list[tuple[int, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, message: SimMessage, *, published_at: datetime) -> None:
        """Record one published message (decoded as ingest will decode it)."""
        self.published += 1
        if message.duplicate:
            self.duplicates += 1
        parts = parse_topic(message.topic)
        codec = codec_for(parts.channel)
        if codec is None:
            self.expected_quarantined += 1
            return
        decoded = codec(
            message.payload,
            DecodeContext(received_at=published_at, device_id=parts.device_id, topic=message.topic),
        )
        if decoded.rejections:
            self.expected_quarantined += 1
        for event in decoded.events:
            key = identity_key(event.kind.value)
            if event.time_source is TimeSource.DEVICE:
                self._timed[event.device_id][key].add(self._ms(event.observed_at))
                if message.incident is not None:
                    self._incident_messages[(message.incident, event.device_id)].append(
                        (self._ms(event.observed_at), published_at)
                    )
            else:
                if not message.duplicate:
                    self._untimed[event.device_id][key] += 1
                if message.incident is not None:
                    self._incident_messages[(message.incident, event.device_id)].append(
                        (self._ms(published_at), published_at)
                    )

    def _ms(self, moment: datetime) -> int:
        return (moment - self.sim_t0) // timedelta(milliseconds=1)

    def build(self, *, wall_end: datetime, acknowledged: int, stopped_early: bool) -> Manifest:
        """The manifest of the run so far."""
        expected = []
        for e in self.plan.expectations:
            start_wall = self.wall_start + timedelta(seconds=e.start_ms / 1000 / self.speed)
            messages = sorted(self._incident_messages.get((e.incident_id, e.device_id), []))
            expected.append(ExpectedAlert.of(e, start_wall=start_wall, messages=tuple(messages)))
        return Manifest(
            scenario=self.plan.scenario.name,
            seed=self.plan.seed,
            speed=self.speed,
            sim_t0=self.sim_t0,
            wall_start=self.wall_start,
            wall_end=wall_end,
            devices=tuple(d.device_id for d in self.plan.fleet.devices),
            planned=len(self.plan.messages),
            published=self.published,
            acknowledged=acknowledged,
            duplicates=self.duplicates,
            expected_quarantined=self.expected_quarantined,
            expected=tuple(expected),
            background=tuple(self.plan.background),
            timed={d: {k: sorted(v) for k, v in keys.items()} for d, keys in sorted(self._timed.items())},
            untimed={d: dict(keys) for d, keys in sorted(self._untimed.items())},
            stopped_early=stopped_early,
        )
