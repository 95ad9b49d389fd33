"""Scoring a simulated run: did every incident raise the alert it should, in time, and was nothing lost?

One scorer for tests, the demo and benchmarks. It reads the database only
(``alerts``, ``alert_occurrences``, ``held_events``, ``readings``,
``device_events``, ``quarantine``) and compares it with the scenario's
expectations, and with the run's manifest when there is one:

* every expected alert is matched by ``(device_id, rule)``; with a manifest,
  also by time (raised after the incident's first message was published), and
  its latency is measured from the publication of the incident message that
  triggered it (the last one at or before ``triggered_at``) to the raise;
  without one, from the triggering event's ``received_at``;
* an incident expected to raise nothing (a cancelled fall) fails if it did;
* alerts on simulated devices that no incident explains are reported as
  unexpected, except those the manifest says background behaviour may cause
  (``not_worn`` while a strap is off for the night...): those are listed
  apart, never hidden;
* with a manifest, every identity it lists must be stored, receive-time
  events must reach their counts, the broker must have acknowledged every
  publication, and no more messages may be quarantined than expected.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import psycopg

from simulator.manifest import ExpectedAlert, Manifest, identity_key
from simulator.timeline import Expectation, build_plan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg.rows import TupleRow

    from simulator.scenario import Scenario

#: Slack around publication times when matching alerts to incidents (clock granularity, ticks).
_MATCH_SLACK: Final = timedelta(seconds=2)
#: How long after an incident's last message its alert may still be matched, beyond ``within_s``.
_LATE_WINDOW: Final = timedelta(seconds=120)
_MISSING_EXAMPLES: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectationResult:
    """One expectation, judged.

    Attributes:
        incident_id: the scenario incident.
        kind: its kind.
        device_id: the device.
        rule: the rule.
        expect: ``alert`` or ``none``.
        within_s: the allowed latency.
        line: the scenario line.
        status: ``ok``, ``late``, ``missing``, ``unwanted`` (raised though none was expected)
            or ``not_published`` (the run ended before it).
        latency_s: publication (or receipt) to raise, when an alert matched.
        raised_at: when the matched alert was raised.
        cancelled_hold: for a fall expected to raise nothing: a cancelled hold is recorded.
    """

    incident_id: str
    kind: str
    device_id: str
    rule: str
    expect: str
    within_s: float
    line: int | None
    status: str
    latency_s: float | None = None
    raised_at: datetime | None = None
    cancelled_hold: bool = False

    @property
    def ok(self) -> bool:
        """Whether this expectation holds."""
        return self.status == "ok"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSeen:
    """An alert occurrence on a simulated device that no incident asked for."""

    device_id: str
    rule: str
    severity: str
    triggered_at: datetime
    raised_at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scorecard:
    """The verdict on one run; ``passed`` only when every check holds."""

    scenario: str
    has_manifest: bool
    expectations: tuple[ExpectationResult, ...]
    unexpected: tuple[AlertSeen, ...]
    background: tuple[AlertSeen, ...]
    published: int | None
    acknowledged: int | None
    duplicates: int | None
    stored_readings: int
    stored_events: int
    quarantined: int
    expected_quarantined: int | None
    identities_expected: int | None
    identities_missing: int | None
    missing_examples: tuple[str, ...] = ()
    untimed_short: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Every expectation holds, nothing unexpected fired, nothing was lost."""
        return (
            all(e.ok for e in self.expectations)
            and not self.unexpected
            and not self.missing_examples
            and not self.untimed_short
            and not self.problems
        )

    def render(self) -> str:
        """A plain-text report, one line per check."""
        lines = [f"scenario {self.scenario}: {'PASSED' if self.passed else 'FAILED'}"]
        lines.append("expected outcomes:")
        for e in self.expectations:
            latency = f"{e.latency_s:.3f}s" if e.latency_s is not None else "-"
            hold = " (cancelled hold recorded)" if e.cancelled_hold else ""
            where = f" [line {e.line}]" if e.line is not None else ""
            lines.append(
                f"  {e.status.upper():<13} {e.incident_id:<12} {e.kind:<15} {e.device_id:<18} "
                f"{e.rule if e.expect == 'alert' else 'no ' + e.rule:<18} latency {latency} "
                f"(<= {e.within_s:g}s){hold}{where}"
            )
        lines.append(f"unexpected alerts: {len(self.unexpected)}")
        lines += [
            f"  {a.device_id} {a.rule} ({a.severity}) raised {a.raised_at.isoformat()}"
            for a in self.unexpected
        ]
        lines.append(f"background alerts (explained, not failures): {len(self.background)}")
        lines += [f"  {a.device_id} {a.rule}: {a.reason}" for a in self.background]
        if self.has_manifest:
            lines.append(
                f"messages: published {self.published}, acknowledged {self.acknowledged} "
                f"(duplicates sent {self.duplicates}), quarantined {self.quarantined} "
                f"(expected {self.expected_quarantined})"
            )
            lines.append(
                f"stored: {self.stored_readings} readings, {self.stored_events} events; "
                f"identities missing {self.identities_missing} of {self.identities_expected}"
            )
            lines += [f"  missing {example}" for example in self.missing_examples]
            lines += [f"  too few {short}" for short in self.untimed_short]
        else:
            lines.append(
                f"stored: {self.stored_readings} readings, {self.stored_events} events, quarantined "
                f"{self.quarantined} (no manifest: nothing-lost checks skipped)"
            )
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass(slots=True)
class _Occurrence:
    device_id: str
    rule: str
    severity: str
    triggered_at: datetime
    raised_at: datetime
    used: bool = False


def score(
    scenario: Scenario,
    dsn: str,
    *,
    manifest: Manifest | None = None,
    devices: int | None = None,
    seed: int | None = None,
) -> Scorecard:
    """Score the run of ``scenario`` stored in the database at ``dsn``.

    Args:
        scenario: the scenario the run played.
        dsn: libpq connection string.
        manifest: the run's manifest; without it, expectations come from the
            scenario (fleet size and seed as given, else the scenario's), alerts
            are matched by device and rule only and the nothing-lost checks are skipped.
        devices: fleet size of the run (no manifest only).
        seed: seed of the run (no manifest only).

    Raises:
        psycopg.Error: the database cannot be read.
    """
    if manifest is not None:
        expected = list(manifest.expected)
        device_ids = list(manifest.devices)
        since: datetime | None = manifest.wall_start - _MATCH_SLACK
    else:
        plan = build_plan(scenario, devices=devices, seed=seed)
        expected = [_from_plan(e) for e in plan.expectations]
        device_ids = [d.device_id for d in plan.fleet.devices]
        since = None
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        occurrences = _occurrences(conn, device_ids, since)
        cancelled = _cancelled_holds(conn, device_ids)
        results = [_judge(conn, e, occurrences, cancelled, manifest) for e in expected]
        unexpected, background = _leftovers(occurrences, manifest)
        stored_readings, stored_events = _stored_counts(conn, device_ids, manifest)
        quarantined = _quarantined(conn, device_ids, since)
        checks = _identities(conn, device_ids, manifest) if manifest is not None else None
    problems: list[str] = []
    if manifest is not None:
        if manifest.stopped_early:
            problems.append("the run was stopped before its end")
        if manifest.acknowledged != manifest.published:
            problems.append(
                f"the broker acknowledged {manifest.acknowledged} of {manifest.published} messages"
            )
        if quarantined > manifest.expected_quarantined:
            problems.append(
                f"{quarantined} messages quarantined, {manifest.expected_quarantined} expected "
                "(unregistered devices, or a format the codecs no longer accept?)"
            )
    return Scorecard(
        scenario=scenario.name,
        has_manifest=manifest is not None,
        expectations=tuple(results),
        unexpected=tuple(unexpected),
        background=tuple(background),
        published=manifest.published if manifest else None,
        acknowledged=manifest.acknowledged if manifest else None,
        duplicates=manifest.duplicates if manifest else None,
        stored_readings=stored_readings,
        stored_events=stored_events,
        quarantined=quarantined,
        expected_quarantined=manifest.expected_quarantined if manifest else None,
        identities_expected=checks.expected if checks else None,
        identities_missing=checks.missing if checks else None,
        missing_examples=tuple(checks.examples) if checks else (),
        untimed_short=tuple(checks.short) if checks else (),
        problems=tuple(problems),
    )


def _from_plan(e: Expectation) -> ExpectedAlert:
    # The wall time is unknown without a manifest (and unused then).
    return ExpectedAlert.of(e, start_wall=datetime.min.replace(tzinfo=UTC))


def _occurrences(
    conn: psycopg.Connection[TupleRow], device_ids: Sequence[str], since: datetime | None
) -> dict[tuple[str, str], list[_Occurrence]]:
    rows = conn.execute(
        "SELECT a.device_id, a.rule, a.severity, o.observed_at, o.recorded_at"
        " FROM alert_occurrences o JOIN alerts a ON a.id = o.alert_id"
        " WHERE a.device_id = ANY(%s) AND (%s::timestamptz IS NULL OR o.recorded_at >= %s)"
        " ORDER BY o.recorded_at, a.id",
        (list(device_ids), since, since),
    ).fetchall()
    found: dict[tuple[str, str], list[_Occurrence]] = defaultdict(list)
    for device_id, rule, severity, observed_at, recorded_at in rows:
        found[(device_id, rule)].append(_Occurrence(device_id, rule, severity, observed_at, recorded_at))
    return found


def _cancelled_holds(conn: psycopg.Connection[TupleRow], device_ids: Sequence[str]) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT device_id FROM held_events WHERE device_id = ANY(%s) AND status = 'cancelled'",
        (list(device_ids),),
    ).fetchall()
    return {str(row[0]) for row in rows}


def _judge(
    conn: psycopg.Connection[TupleRow],
    e: ExpectedAlert,
    occurrences: dict[tuple[str, str], list[_Occurrence]],
    cancelled: set[str],
    manifest: Manifest | None,
) -> ExpectationResult:
    candidates = [o for o in occurrences.get((e.device_id, e.rule), []) if not o.used]
    reference_start: datetime | None = None
    if manifest is not None:
        if e.clock == "device" and not e.messages:
            return _result(e, "not_published")
        reference_start = e.messages[0][1] if e.messages and e.clock == "device" else e.start_wall
        last = e.messages[-1][1] if e.messages else e.start_wall
        span = timedelta(seconds=(e.end_ms - e.start_ms) / 1000 / manifest.speed)
        latest = max(last, e.start_wall + span) + timedelta(seconds=e.within_s) + _LATE_WINDOW
        candidates = [o for o in candidates if reference_start - _MATCH_SLACK <= o.raised_at <= latest]
    for occurrence in candidates:
        occurrence.used = True  # every alert inside the incident's window is its doing
    if e.expect == "none":
        status = "unwanted" if candidates else "ok"
        first = candidates[0] if candidates else None
        return _result(
            e, status, raised_at=first.raised_at if first else None, cancelled_hold=e.device_id in cancelled
        )
    if not candidates:
        return _result(e, "missing")
    first = candidates[0]
    if manifest is not None:
        reference = _reference(e, first, manifest, reference_start)
    else:
        reference = _received_at(conn, first)
    latency = (first.raised_at - reference).total_seconds() if reference is not None else None
    status = "ok" if latency is None or latency <= e.within_s else "late"
    return _result(e, status, latency_s=latency, raised_at=first.raised_at)


def _reference(
    e: ExpectedAlert, occurrence: _Occurrence, manifest: Manifest, start: datetime | None
) -> datetime | None:
    """Publication time of the incident message that triggered the alert."""
    if e.clock == "service":
        return e.start_wall
    triggered_ms = manifest.sim_ms(occurrence.triggered_at)
    before = [wall for ms, wall in e.messages if ms <= triggered_ms]
    return before[-1] if before else start


def _received_at(conn: psycopg.Connection[TupleRow], occurrence: _Occurrence) -> datetime | None:
    row = conn.execute(
        "SELECT min(received_at) FROM ("
        " SELECT received_at FROM device_events WHERE device_id = %s AND time = %s"
        " UNION ALL SELECT received_at FROM readings WHERE device_id = %s AND time = %s) AS t",
        (occurrence.device_id, occurrence.triggered_at, occurrence.device_id, occurrence.triggered_at),
    ).fetchone()
    return None if row is None else row[0]


def _result(e: ExpectedAlert, status: str, **extra: object) -> ExpectationResult:
    return ExpectationResult(
        incident_id=e.incident_id,
        kind=e.kind,
        device_id=e.device_id,
        rule=e.rule,
        expect=e.expect,
        within_s=e.within_s,
        line=e.line,
        status=status,
        **extra,  # type: ignore[arg-type]
    )


def _leftovers(
    occurrences: dict[tuple[str, str], list[_Occurrence]], manifest: Manifest | None
) -> tuple[list[AlertSeen], list[AlertSeen]]:
    unexpected: list[AlertSeen] = []
    background: list[AlertSeen] = []
    for found in occurrences.values():
        for o in found:
            if o.used:
                continue
            reason = _background_reason(o, manifest) if manifest is not None else None
            seen = AlertSeen(
                device_id=o.device_id,
                rule=o.rule,
                severity=o.severity,
                triggered_at=o.triggered_at,
                raised_at=o.raised_at,
                reason=reason or "",
            )
            (background if reason else unexpected).append(seen)
    return unexpected, background


def _background_reason(o: _Occurrence, manifest: Manifest) -> str | None:
    for span in manifest.background:
        if span.device_id != o.device_id or span.rule != o.rule:
            continue
        if o.rule == "device_silent":  # service clock: where the sim clock was when it was raised
            at_ms = manifest.sim_ms_of_wall(o.raised_at)
            if (
                span.start_ms
                <= at_ms
                <= span.end_ms + round(_LATE_WINDOW.total_seconds() * 1000 * manifest.speed)
            ):
                return span.reason
        elif span.start_ms <= manifest.sim_ms(o.triggered_at) <= span.end_ms:
            return span.reason
    return None


def _stored_counts(
    conn: psycopg.Connection[TupleRow], device_ids: Sequence[str], manifest: Manifest | None
) -> tuple[int, int]:
    since = manifest.sim_t0 - timedelta(days=1) if manifest else None
    counts = []
    for table in ("readings", "device_events"):
        row = conn.execute(
            f"SELECT count(*) FROM {table}"
            " WHERE device_id = ANY(%s) AND (%s::timestamptz IS NULL OR time >= %s)",
            (list(device_ids), since, since),
        ).fetchone()
        counts.append(int(row[0]) if row else 0)
    return counts[0], counts[1]


def _quarantined(
    conn: psycopg.Connection[TupleRow], device_ids: Sequence[str], since: datetime | None
) -> int:
    row = conn.execute(
        "SELECT count(*) FROM quarantine WHERE device_id = ANY(%s)"
        " AND (%s::timestamptz IS NULL OR received_at >= %s)",
        (list(device_ids), since, since),
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True)
class _IdentityCheck:
    expected: int = 0
    missing: int = 0
    examples: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)


def _identities(  # noqa: C901 - two tables, two kinds of identity
    conn: psycopg.Connection[TupleRow], device_ids: Sequence[str], manifest: Manifest
) -> _IdentityCheck:
    since = manifest.sim_t0 - timedelta(days=1)
    timed: set[tuple[str, str, int]] = set()
    untimed: dict[tuple[str, str], int] = defaultdict(int)
    readings = conn.execute(
        "SELECT device_id, metric, time, time = received_at FROM readings"
        " WHERE device_id = ANY(%s) AND time >= %s",
        (list(device_ids), since),
    )
    for device_id, metric, moment, by_receipt in readings:
        timed.add((device_id, metric, manifest.sim_ms(moment)))
        if by_receipt:
            untimed[(device_id, metric)] += 1
    events = conn.execute(
        "SELECT device_id, kind, time, time_source FROM device_events"
        " WHERE device_id = ANY(%s) AND time >= %s",
        (list(device_ids), since),
    )
    for device_id, kind, moment, source in events:
        key = identity_key(kind)
        timed.add((device_id, key, manifest.sim_ms(moment)))
        if source == "received":
            untimed[(device_id, key)] += 1
    check = _IdentityCheck()
    for device_id, keys in manifest.timed.items():
        for key, offsets in keys.items():
            for offset in offsets:
                check.expected += 1
                if (device_id, key, offset) not in timed:
                    check.missing += 1
                    if len(check.examples) < _MISSING_EXAMPLES:
                        moment = manifest.sim_t0 + timedelta(milliseconds=offset)
                        check.examples.append(f"{device_id} {key} at {moment.isoformat()}")
    for device_id, counts in manifest.untimed.items():
        for key, wanted in counts.items():
            check.expected += wanted
            have = untimed.get((device_id, key), 0)
            if have < wanted:
                check.missing += wanted - have
                check.short.append(f"{device_id} {key}: {have} stored of {wanted} sent (receive-time events)")
    return check
