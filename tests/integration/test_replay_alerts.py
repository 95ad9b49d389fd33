"""Acceptance check of issue 5, end to end through the CLI, as an operator would run it.

A scenario with a fall, a cancelled fall, a panic and a heart-rate episode is
simulated against a running ``carewatch ingest`` (TimescaleDB) while
``carewatch record`` captures the broker traffic. The recording is replayed at
10x speed into a second ``carewatch ingest`` (other client id, plain
PostgreSQL). Both databases must end with the same alerts and the same held
falls.

What "the same" means is decided by the data, never by a hard-coded list:
every alert is compared on device, rule, severity, state, occurrence count and
``triggered_at``. ``triggered_at`` is the trigger's device time, except for
frames that carry no device time (SCAIP, the watches' keep-alives): ingest files
those under their receive time (``time_source = 'received'``), which a replay
necessarily changes. Those alerts, found by looking up the stored event that
triggered them, must still match on everything else, and their
``triggered_at`` must lie inside their own run's wall window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
import pytest

from simulator.manifest import load_manifest
from simulator.scenario import load_scenario
from simulator.timeline import build_plan
from tests.conftest import REPO_ROOT, TestDatabase
from tests.support.publisher import Publisher
from tests.support.service import IngestProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.broker import RunningBroker

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.db]

SCENARIO = REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml"
REPLAY_SPEED = 10.0
#: The readiness probe for ``carewatch record``: a device topic no fleet device uses,
#: with a payload ingest quarantines (it is recorded, so the replay carries it too).
PROBE_TOPIC = "carewatch/v1/probe-gw/probe-recorder/json"
PROBE_PAYLOAD = b"recorder readiness probe (not JSON: quarantined, never an alert)"
#: Incident kinds the acceptance check names; the scenario must keep covering them.
ACCEPTANCE_KINDS = {"fall", "cancelled_fall", "panic", "heart_rate_high"}


def _env() -> dict[str, str]:
    """The environment without CAREWATCH_* settings, like tests/support/service.py."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAREWATCH_")}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest", *args]


def _run(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(*args), capture_output=True, text=True, env=_env(), timeout=timeout_s, check=False, cwd=REPO_ROOT
    )


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    # A line is flushed whole, but read defensively: only complete lines count.
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class Alert:
    device_id: str
    rule: str
    severity: str
    state: str
    occurrences: int
    triggered_at: datetime
    #: The trigger was filed under its receive time (no usable device time).
    received_time: bool

    @property
    def shape(self) -> tuple[str, str, str, str, int, bool]:
        return (self.device_id, self.rule, self.severity, self.state, self.occurrences, self.received_time)


@dataclass(frozen=True)
class Held:
    device_id: str
    rule: str
    status: str
    device_time: datetime
    received_time: bool


@dataclass(frozen=True)
class Snapshot:
    alerts: tuple[Alert, ...]
    held: tuple[Held, ...]
    telemetry: tuple[tuple[str, str, int], ...]  # (device_id, metric or kind, rows) of fleet devices

    def exact_alerts(self) -> list[tuple[str, str, str, str, int, datetime]]:
        """Alerts stamped with device time: must be identical, ``triggered_at`` included."""
        return sorted(
            (a.device_id, a.rule, a.severity, a.state, a.occurrences, a.triggered_at)
            for a in self.alerts
            if not a.received_time
        )

    def alert_shapes(self) -> list[tuple[str, str, str, str, int, bool]]:
        return sorted(a.shape for a in self.alerts)

    def exact_held(self) -> list[tuple[str, str, str, datetime]]:
        return sorted(
            (h.device_id, h.rule, h.status, h.device_time) for h in self.held if not h.received_time
        )

    def held_shapes(self) -> list[tuple[str, str, str, bool]]:
        return sorted((h.device_id, h.rule, h.status, h.received_time) for h in self.held)

    def matches(self, other: Snapshot) -> bool:
        return (
            self.alert_shapes() == other.alert_shapes()
            and self.exact_alerts() == other.exact_alerts()
            and self.held_shapes() == other.held_shapes()
            and self.exact_held() == other.exact_held()
            and self.telemetry == other.telemetry
        )

    def pending_holds(self) -> int:
        return sum(1 for h in self.held if h.status == "pending")

    def render(self) -> str:
        rows = [f"  {a}" for a in sorted(self.alerts, key=lambda a: (a.device_id, a.rule, a.triggered_at))]
        rows += [f"  {h}" for h in sorted(self.held, key=lambda h: (h.device_id, h.device_time))]
        return "\n".join(rows)


# Was the trigger filed under its receive time? The stored event or reading at
# (device, triggered_at) says so: device_events.time_source, or readings whose
# time is their received_at (the only way a reading gets the receive time).
# The rule engine keeps a held fall's time in whole milliseconds, so a fall
# alert's triggered_at is its event's receive time cut to the millisecond:
# the event is looked up within that millisecond.
_RECEIVED_TIME = """
    EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = {t}.device_id AND e.time_source = 'received'
            AND e.time >= {t}.{col} AND e.time < {t}.{col} + interval '1 millisecond')
    OR EXISTS (SELECT 1 FROM readings r WHERE r.device_id = {t}.device_id AND r.time = r.received_at
               AND r.time >= {t}.{col} AND r.time < {t}.{col} + interval '1 millisecond')
"""


def _snapshot(dsn: str) -> Snapshot:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        alerts = conn.execute(
            "SELECT a.device_id, a.rule, a.severity, a.state, a.occurrence_count, a.triggered_at, "
            + _RECEIVED_TIME.format(t="a", col="triggered_at")
            + " FROM alerts a"
        ).fetchall()
        held = conn.execute(
            "SELECT h.device_id, h.rule, h.status, h.device_time, "
            + _RECEIVED_TIME.format(t="h", col="device_time")
            + " FROM held_events h"
        ).fetchall()
        telemetry = conn.execute(
            "SELECT device_id, metric, count(*) FROM readings WHERE device_id LIKE 'sim-%%'"
            " GROUP BY device_id, metric"
            " UNION ALL SELECT device_id, kind, count(*) FROM device_events WHERE device_id LIKE 'sim-%%'"
            " GROUP BY device_id, kind"
        ).fetchall()
    return Snapshot(
        alerts=tuple(Alert(*row) for row in alerts),
        held=tuple(Held(*row) for row in held),
        telemetry=tuple(sorted((str(d), str(k), int(n)) for d, k, n in telemetry)),
    )


def _wait_until_recorded(path: Path, recorder: subprocess.Popen[bytes], broker: RunningBroker) -> None:
    """``carewatch record`` says nothing when subscribed: probe until a probe is on file."""
    deadline = time.monotonic() + 20
    with Publisher(broker.service_port, client_id="recorder-probe") as probe:
        while time.monotonic() < deadline:
            assert recorder.poll() is None, f"carewatch record exited with {recorder.returncode}"
            probe.publish(PROBE_TOPIC, PROBE_PAYLOAD)
            if any(r["topic"] == PROBE_TOPIC for r in _records(path)):
                return
            time.sleep(0.2)
    raise AssertionError("carewatch record did not record a probe within 20 s")


def _fleet_records(path: Path) -> list[dict[str, object]]:
    return [r for r in _records(path) if r["topic"] != PROBE_TOPIC]


@dataclass(frozen=True)
class Run:
    """One run's final database state and the wall window it took place in."""

    snapshot: Snapshot
    start: datetime
    end: datetime


def _wait_for_score(ingest: IngestProcess, dsn: str, manifest_path: Path) -> None:
    """Poll ``carewatch score`` until the run passes (a fall on an untimed format waits out 30 s)."""
    deadline = time.monotonic() + 90
    while True:
        scored = _run(
            "score", "--scenario", str(SCENARIO), "--dsn", dsn, "--manifest", str(manifest_path), timeout_s=60
        )
        if scored.returncode == 0 or time.monotonic() > deadline:
            break
        ingest.assert_running()
        time.sleep(2)
    assert scored.returncode == 0, f"{scored.stdout}{scored.stderr}\n--- ingest ---\n{ingest.log()[-3000:]}"


def _simulate_while_recording(
    broker: RunningBroker, ingest: IngestProcess, recording: Path, tmp_path: Path, expected: int
) -> Run:
    """Run 1: ingest live, ``carewatch record`` subscribed, ``carewatch simulate``, scored, recorded."""
    manifest_path = tmp_path / "manifest.json"
    recorder_log = tmp_path / "record.stderr"
    ingest.start()
    with recorder_log.open("wb") as log:
        recorder = subprocess.Popen(
            _cli("record", "--out", str(recording), "--mqtt-url", broker.url),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=_env(),
            cwd=REPO_ROOT,
        )
    try:
        _wait_until_recorded(recording, recorder, broker)
        start = datetime.now(UTC)
        simulated = _run(
            "simulate",
            "--scenario",
            str(SCENARIO),
            "--mqtt-url",
            broker.url,
            "--manifest",
            str(manifest_path),
            timeout_s=120,
        )
        assert simulated.returncode == 0, simulated.stderr[-3000:]
        manifest = load_manifest(manifest_path)
        assert manifest.published == manifest.acknowledged == expected
        _wait_for_score(ingest, ingest.dsn, manifest_path)

        # The recording is complete when it holds every published message; then Ctrl-C.
        deadline = time.monotonic() + 20
        while len(_fleet_records(recording)) < manifest.published and time.monotonic() < deadline:
            time.sleep(0.2)
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(15) == 0, recorder_log.read_text()
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(10)
    assert len(_fleet_records(recording)) == manifest.published
    assert f"recorded {len(_records(recording))} messages" in recorder_log.read_text()
    assert ingest.terminate() == 0, ingest.log()[-3000:]
    return Run(_snapshot(ingest.dsn), start, datetime.now(UTC))


def _replay(broker: RunningBroker, ingest: IngestProcess, recording: Path, first: Snapshot) -> Run:
    """Run 2: the recording replayed at 10x into a second ingest; wait until the alerts settle."""
    records = _records(recording)
    ingest.start()
    start = datetime.now(UTC)
    began = time.monotonic()
    replayed = _run(
        "replay", str(recording), "--speed", str(REPLAY_SPEED), "--mqtt-url", broker.url, timeout_s=60
    )
    replay_wall_s = time.monotonic() - began
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert f"replayed {len(records)} of {len(records)} messages" in replayed.stderr
    offsets = [float(r["t_offset_s"]) for r in records]  # type: ignore[arg-type]
    paced_s = (offsets[-1] - offsets[0]) / REPLAY_SPEED
    assert paced_s * 0.9 <= replay_wall_s, (paced_s, replay_wall_s)  # really paced, not a dump
    assert replay_wall_s <= paced_s + 15, (paced_s, replay_wall_s)  # and really about 10x

    deadline = time.monotonic() + 90
    second = _snapshot(ingest.dsn)
    while not (second.matches(first) and second.pending_holds() == 0) and time.monotonic() < deadline:
        ingest.assert_running()
        time.sleep(1)
        second = _snapshot(ingest.dsn)
    time.sleep(3)  # nothing more may arrive once settled
    ingest.assert_running()
    # The replayed run passes the scorer too (without a manifest: its wall times are run 1's).
    rescored = _run("score", "--scenario", str(SCENARIO), "--dsn", ingest.dsn, timeout_s=60)
    assert rescored.returncode == 0, rescored.stdout + rescored.stderr
    return Run(_snapshot(ingest.dsn), start, datetime.now(UTC))


def _assert_receive_times_in_own_run(run: Run) -> None:
    """A receive-time stamp is a receipt during its own run, nothing else."""
    for a in run.snapshot.alerts:
        if a.received_time:
            assert run.start <= a.triggered_at <= run.end, (a, run.start, run.end)
    for h in run.snapshot.held:
        if h.received_time:
            assert run.start <= h.device_time <= run.end, (h, run.start, run.end)


def _assert_scenario_outcome(
    snap: Snapshot, must_alert: set[tuple[str, str]], must_not: set[tuple[str, str]], report: str
) -> None:
    """The scenario's alerts: every expected one, never the cancelled fall, whose hold is cancelled."""
    raised = {(a.device_id, a.rule) for a in snap.alerts}
    assert raised >= must_alert, (must_alert - raised, report)
    assert not (must_not & raised), (must_not & raised, report)
    assert {a.rule for a in snap.alerts} >= {"panic", "fall", "heart_rate_high"}, report
    cancelled = {h.device_id for h in snap.held if h.status == "cancelled" and h.rule == "fall"}
    assert cancelled >= {device for device, rule in must_not if rule == "fall"}, report
    assert snap.pending_holds() == 0, report


def test_simulated_run_recorded_and_replayed_at_10x_ends_with_the_same_alerts(
    broker: RunningBroker, tsdb: TestDatabase, pgdb: TestDatabase, tmp_path: Path
) -> None:
    scenario = load_scenario(SCENARIO)
    plan = build_plan(scenario)
    kinds = {i.kind for i in scenario.incidents}
    assert kinds >= ACCEPTANCE_KINDS, f"{SCENARIO.name} no longer covers the acceptance check: {kinds}"
    must_alert = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "alert"}
    must_not = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "none"}
    assert must_alert
    assert must_not  # the cancelled fall

    rules = tmp_path / "rules.toml"
    recording = tmp_path / "rec.jsonl"
    planned = _run(
        "simulate",
        "--scenario",
        str(SCENARIO),
        "--mqtt-url",
        broker.url,
        "--rules-out",
        str(rules),
        "--plan-only",
        timeout_s=60,
    )
    assert planned.returncode == 0, planned.stderr
    assert rules.read_text(encoding="utf-8") == plan.rules_toml()

    ingest_args = ("--rules", str(rules))
    first = IngestProcess(
        mqtt_url=broker.url,
        dsn=tsdb.dsn,
        workdir=tmp_path,
        client_id="carewatch-ingest-run1",
        args=ingest_args,
    )
    second = IngestProcess(
        mqtt_url=broker.url,
        dsn=pgdb.dsn,
        workdir=tmp_path,
        client_id="carewatch-ingest-run2",
        args=ingest_args,
    )
    try:
        one = _simulate_while_recording(broker, first, recording, tmp_path, len(plan.messages))
        assert one.snapshot.pending_holds() == 0, one.snapshot.render()
        two = _replay(broker, second, recording, one.snapshot)
    finally:
        first.stop_quietly()
        second.stop_quietly()

    a, b = one.snapshot, two.snapshot
    report = (
        f"--- run 1 ({tsdb.backend}) ---\n{a.render()}\n--- run 2 ({pgdb.backend}, replay x10) ---\n"
        f"{b.render()}\n--- ingest #2 log ---\n{second.log()[-3000:]}"
    )
    # Same alerts and held falls: device-time stamps exactly, receive-time ones on everything else.
    assert b.alert_shapes() == a.alert_shapes(), report
    assert b.exact_alerts() == a.exact_alerts(), report
    assert b.held_shapes() == a.held_shapes(), report
    assert b.exact_held() == a.exact_held(), report
    # The replay delivered, and ingest stored, what the first run stored.
    assert b.telemetry == a.telemetry, report
    assert a.telemetry
    for run in (one, two):
        _assert_receive_times_in_own_run(run)
        _assert_scenario_outcome(run.snapshot, must_alert, must_not, report)
