"""Every SQL panel of every dashboard, on a database filled by a real simulator run.

tests/integration/test_dashboards.py fills the database by hand for exact
numbers; here the data is what production would hold after the e2e scenario
(tests/fixtures/scenarios/e2e.toml): the simulated fleet is imported into the
registry with ``carewatch devices import``, ``carewatch ingest`` runs as a
subprocess against a real Mosquitto, the simulator publishes the scenario,
and the scorer confirms the run is complete. A dispatcher then claims and
acknowledges the most urgent alert and resolves another through the CLI.

Every SQL target of every dashboard JSON is then run with Grafana's macros
expanded (a window covering the run, the template variables set to the
heart-rate episode's device and its elder from the registry): each must
return exactly the columns its panel reads, and the panels must show the
scenario: its alerts, its devices, its heart-rate episode above the drawn
threshold. Once on TimescaleDB and once on plain PostgreSQL; the run happens
once per backend (module-scoped fixture).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from deploy.grafana.build_dashboards import OUT_DIR, VITALS
from devices import Kind
from ingest.scoring import Scorecard, score
from rules import RulesConfig
from simulator.fleet import REGISTRY_COLUMNS, registry_rows
from simulator.publisher import run_simulation
from simulator.scenario import load_scenario
from simulator.timeline import Expectation, Plan, build_plan
from tests.conftest import REPO_ROOT
from tests.integration.test_dashboards import EXPECTED_COLUMNS
from tests.support.broker import start_broker
from tests.support.database import MissingServiceError, fresh_database
from tests.support.grafana import expand, sql_targets
from tests.support.service import IngestProcess

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.db]

SCENARIO = REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml"
DISPATCHER = "test-dispatcher"
SETTLE_TIMEOUT_S = 90.0
#: The reading metric each vital sample kind is stored as (readings.metric).
READING_METRICS = {Kind.HEART_RATE: "heart_rate_bpm", Kind.SPO2: "spo2_pct", Kind.BODY_TEMP: "body_temp_c"}
#: The simulator sample field holding each vital's value.
_FIELD = {Kind.HEART_RATE: "bpm", Kind.SPO2: "pct", Kind.BODY_TEMP: "celsius"}

PanelKey = tuple[str, str, str]
Result = tuple[list[str], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class SimulatedRun:
    """A database after one real simulator run of the scenario, and what the test did to it."""

    backend: str
    dsn: str
    plan: Plan
    rules: RulesConfig
    card: Scorecard
    claimed_id: int
    resolved_id: int


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run(dsn: str, sql: str) -> Result:
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(sql.encode())
        assert cursor.description is not None
        return [column.name for column in cursor.description], cursor.fetchall()


def _one(plan: Plan, kind: str) -> Expectation:
    (found,) = [e for e in plan.expectations if e.kind == kind]
    return found


def _open_alert(dsn: str, device_id: str, rule: str) -> int:
    rows = [json.loads(line) for line in _ok(_cli(dsn, "alerts", "list", "--json")).splitlines()]
    (alert_id,) = [
        r["id"] for r in rows if (r["device_id"], r["rule"]) == (device_id, rule) and r["state"] == "open"
    ]
    return int(alert_id)


def _settle(plan: Plan, dsn: str, manifest: Any, process: IngestProcess) -> Scorecard:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    card = score(plan.scenario, dsn, manifest=manifest)
    while not card.passed and time.monotonic() < deadline:
        process.assert_running()
        time.sleep(2)
        card = score(plan.scenario, dsn, manifest=manifest)
    assert card.passed, card.render() + "\n--- ingest log ---\n" + process.log()[-3000:]
    return card


@pytest.fixture(scope="module", params=["timescaledb", "postgresql"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedRun]:
    """The e2e scenario played once per backend through broker, registry, ingest and dispatcher."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"dashboards-{backend}")
    plan = build_plan(load_scenario(SCENARIO))
    with ExitStack() as stack:
        try:
            dsn = stack.enter_context(fresh_database(backend))
        except MissingServiceError as exc:
            pytest.fail(str(exc), pytrace=False)
        broker = start_broker(REPO_ROOT, workdir / "mosquitto")
        stack.callback(broker.stop)

        rules_file = workdir / "rules.toml"
        rules_file.write_text(plan.rules_toml(), encoding="utf-8")
        fleet_file = workdir / "fleet.csv"
        with fleet_file.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(REGISTRY_COLUMNS))
            writer.writeheader()
            writer.writerows(registry_rows(plan.fleet))
        # Enrolled before ingest starts, as an operator would: elders, devices, presence all filled.
        _ok(_cli(dsn, "devices", "import", str(fleet_file), "--rules", str(rules_file)))

        process = IngestProcess(
            mqtt_url=broker.url, dsn=dsn, workdir=workdir, args=("--rules", str(rules_file))
        )
        stack.callback(process.stop_quietly)
        process.start()

        result = asyncio.run(run_simulation(plan, mqtt_url=broker.url, speed=plan.scenario.speed))
        assert result.manifest.published == result.manifest.acknowledged == len(plan.messages)
        assert not result.stopped_early
        card = _settle(plan, dsn, result.manifest, process)

        # The dispatcher acts: the most urgent alert is claimed and acknowledged, the low battery resolved.
        claimed = json.loads(_ok(_cli(dsn, "dispatch", "next", "--by", DISPATCHER)))
        _ok(_cli(dsn, "alerts", "ack", str(claimed["id"]), "--by", DISPATCHER))
        battery = _one(plan, "low_battery")
        resolved_id = _open_alert(dsn, battery.device_id, battery.rule)
        assert resolved_id != claimed["id"]
        _ok(_cli(dsn, "alerts", "resolve", str(resolved_id), "--by", DISPATCHER, "--note", "charged"))

        # A graceful stop flushes the last presence rows.
        assert process.terminate() == 0, process.log()[-3000:]
        yield SimulatedRun(
            backend=backend,
            dsn=dsn,
            plan=plan,
            rules=RulesConfig.load(rules_file),
            card=card,
            claimed_id=int(claimed["id"]),
            resolved_id=resolved_id,
        )


@dataclass(frozen=True)
class Panels:
    """Every SQL panel's result for the run, and the variables they were run with."""

    results: dict[PanelKey, Result]
    variables: dict[str, str]
    elder_name: str
    profile: str

    def column(self, key: PanelKey, name: str) -> list[Any]:
        columns, rows = self.results[key]
        assert name in columns, (key, columns)
        return [row[columns.index(name)] for row in rows]

    def rows(self, key: PanelKey) -> list[dict[str, Any]]:
        columns, rows = self.results[key]
        return [dict(zip(columns, row, strict=True)) for row in rows]


def _dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboard JSON: what Grafana is provisioned with."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(OUT_DIR.glob("*.json"))
    }


def _variables(model: dict[str, Any], chosen: dict[str, str]) -> dict[str, str]:
    """Values of a dashboard's template variables: constants as defined, query variables as chosen."""
    values = {}
    for variable in model["templating"]["list"]:
        name = variable["name"]
        values[name] = str(variable["query"]) if variable["type"] == "constant" else chosen[name]
    return values


@pytest.fixture(scope="module")
def panels(run: SimulatedRun) -> Panels:
    """Every SQL target of every dashboard, run over the scenario's window and episode device."""
    episode = _one(run.plan, "heart_rate_high")
    with psycopg.connect(run.dsn) as conn:
        found = conn.execute(
            "SELECT d.elder_id, e.display_name, d.profile FROM devices d JOIN elders e USING (elder_id)"
            " WHERE d.device_id = %s",
            (episode.device_id,),
        ).fetchone()
    assert found is not None, f"{episode.device_id} is not in the registry"
    elder_id, elder_name, profile = found
    chosen = {"elder": str(elder_id), "device": episode.device_id}
    now = datetime.now(UTC).replace(microsecond=0)
    window = {"time_from": now - timedelta(days=1), "time_to": now + timedelta(hours=1)}
    results: dict[PanelKey, Result] = {}
    for file_name, model in _dashboards().items():
        variables = _variables(model, chosen)
        for title, ref, target in sql_targets(model):
            sql = expand(str(target["rawSql"]), interval=timedelta(minutes=1), variables=variables, **window)
            try:
                results[file_name, title, ref] = _run(run.dsn, sql)
            except psycopg.Error as exc:
                pytest.fail(f"{run.backend}: {file_name} / {title} / {ref} failed: {exc}\n{sql}")
    return Panels(results=results, variables=chosen, elder_name=str(elder_name), profile=str(profile))


def test_every_sql_panel_runs_and_returns_its_columns(run: SimulatedRun, panels: Panels) -> None:
    assert set(panels.results) == set(EXPECTED_COLUMNS), "every SQL panel of the committed JSON is checked"
    for key, (columns, _) in panels.results.items():
        assert columns == EXPECTED_COLUMNS[key], (run.backend, key)


def test_template_variables_list_the_simulated_elders_and_devices(run: SimulatedRun, panels: Panels) -> None:
    fleet = run.plan.fleet.devices
    for file_name, model in _dashboards().items():
        for variable in model["templating"]["list"]:
            if variable["type"] != "query":
                continue
            sql = expand(
                variable["query"],
                time_from=datetime.now(UTC),
                time_to=datetime.now(UTC),
                interval=timedelta(minutes=1),
                variables=panels.variables,
            )
            columns, rows = _run(run.dsn, sql)
            values = [row[0] for row in rows]
            if variable["name"] == "elder":
                assert sorted(values) == sorted({d.elder_id for d in fleet}), file_name
                assert columns == ["__value", "__text"]
                texts = dict(rows)
                assert panels.elder_name in texts[panels.variables["elder"]]
            else:
                assert variable["name"] == "device", variable
                mine = sorted(d.device_id for d in fleet if d.elder_id == panels.variables["elder"])
                assert values == mine
                assert panels.variables["device"] in values


def test_dispatch_centre_shows_the_scenarios_alerts(run: SimulatedRun, panels: Panels) -> None:
    plan = run.plan
    expected = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "alert"}
    never = {(e.device_id, e.rule) for e in plan.expectations if e.expect == "none"}
    emergencies = {(e.device_id, e.rule) for e in plan.expectations if e.kind in {"panic", "fall"}}
    assert emergencies <= expected, "the scenario's panics and falls must raise alerts"
    elders = {d.device_id: d.elder_name for d in plan.fleet.devices}

    audit = panels.rows(("dispatch-centre.json", "Audit trail", "A"))
    by_action: dict[str, set[int]] = {}
    for row in audit:
        by_action.setdefault(row["action"], set()).add(row["alert_id"])
    raised = {(r["device_id"], r["rule"]) for r in audit if r["action"] == "raised"}
    assert raised == expected, f"{run.backend}: the audit trail's alerts are not the scenario's"
    assert not never & raised, "the cancelled fall raised an alert"
    mine = {(r["alert_id"], r["action"]) for r in audit if r["actor"] == DISPATCHER}
    assert mine == {
        (run.claimed_id, "claimed"),
        (run.claimed_id, "acknowledged"),
        (run.resolved_id, "resolved"),
    }
    assert next(r for r in audit if r["action"] == "resolved")["note"] == "charged"
    alert_ids = by_action["raised"]
    finished = by_action.get("cleared", set()) | by_action.get("resolved", set())

    open_rows = panels.rows(("dispatch-centre.json", "Open alerts by priority", "A"))
    by_id = {r["alert_id"]: r for r in open_rows}
    assert set(by_id) == alert_ids - finished, f"{run.backend}: open alerts {sorted(by_id)}"
    assert emergencies <= {(r["device_id"], r["rule"]) for r in open_rows}, (
        "panics and falls wait for a human"
    )
    for row in open_rows:
        assert row["elder"] == elders[row["device_id"]], row
    assert (by_id[run.claimed_id]["state"], by_id[run.claimed_id]["claimed_by"]) == (
        "acknowledged",
        DISPATCHER,
    )
    assert {r["state"] for r in open_rows if r["alert_id"] != run.claimed_id} == {"open"}
    priorities = [r["priority"] for r in open_rows]
    assert priorities == sorted(priorities, reverse=True)

    waiting = panels.rows(("dispatch-centre.json", "Waiting for a dispatcher, by severity", "A"))
    open_severities = Counter(r["severity"] for r in open_rows if r["state"] == "open")
    assert {r["severity"]: r["alerts"] for r in waiting} == open_severities

    timeline = panels.rows(("dispatch-centre.json", "Alert timeline (raised, by severity)", "A"))
    assert sum(r["alerts"] for r in timeline) == len(alert_ids), "every raised alert is on the timeline"
    assert {"critical"} <= {r["metric"] for r in timeline}

    (sla,) = panels.rows(("dispatch-centre.json", "Acknowledgement and on-site SLA compliance", "A"))
    # Alerts that cleared by themselves are not counted.
    assert sla["alerts"] == len(alert_ids - by_action.get("cleared", set()))
    for share in (sla["ack_within_target_pct"], sla["on_site_within_sla_pct"]):
        assert share is None or 0 <= share <= 100


def test_fleet_health_shows_the_simulated_fleet(run: SimulatedRun, panels: Panels) -> None:
    fleet = {d.device_id for d in run.plan.fleet.devices}
    # Everything that sent a message in the last (wall) minute is online; a terminal that
    # checks in hourly may have said nothing during the 30 sim minutes: never seen.
    heard = {run.plan.fleet.devices[m.device_index].device_id for m in run.plan.messages}
    assert len(heard) > len(fleet) / 2
    statuses = dict(panels.results["fleet-health.json", "Devices by status", "A"][1])
    expected = {"online": len(heard), "never_seen": len(fleet - heard)}
    assert statuses == {k: v for k, v in expected.items() if v}, run.backend
    silent = panels.rows(("fleet-health.json", "Silent, offline and never-seen devices", "A"))
    assert {(r["device_id"], r["status"]) for r in silent} == {(d, "never_seen") for d in fleet - heard}
    elders = {d.device_id: d.elder_name for d in run.plan.fleet.devices}
    assert all(r["elder"] == elders[r["device_id"]] for r in silent)

    battery = _one(run.plan, "low_battery")
    low = panels.rows(("fleet-health.json", "Low batteries", "A"))
    # The panel draws the line of the 'defaults' scope.
    warning = run.rules.thresholds(profile="", elder_id=None, device_id="").battery_warning_pct
    assert battery.device_id in {r["device_id"] for r in low}, f"{run.backend}: {low}"
    assert {r["device_id"] for r in low} <= fleet
    assert all(r["battery_pct"] <= warning for r in low)

    not_worn = panels.rows(("fleet-health.json", "Devices not worn", "A"))
    assert {r["device_id"] for r in not_worn} <= fleet

    for by in ("reason", "format"):
        rows = panels.rows(("fleet-health.json", f"Quarantined messages per hour, by {by}", "A"))
        assert sum(r["messages"] for r in rows) == run.card.quarantined, by


def test_elder_detail_shows_the_heart_rate_episode(run: SimulatedRun, panels: Panels) -> None:
    plan = run.plan
    episode = _one(plan, "heart_rate_high")
    device = plan.fleet.by_id()[episode.device_id]
    planned = [m for m in plan.messages if m.device_index == device.index and not m.duplicate]
    thresholds = run.rules.thresholds(
        profile=panels.profile, elder_id=panels.variables["elder"], device_id=device.device_id
    )

    # Every vital of the device as it sent it, under the thresholds the rules really use.
    for kind, metric in READING_METRICS.items():
        title, _, lines = VITALS[metric]
        values = panels.column(("elder-detail.json", title, "A"), metric)
        sent = [m.sample.fields[_FIELD[kind]] for m in planned if m.sample.kind is kind]
        assert sorted(values) == sorted(sent), f"{run.backend}: {title} of {device.device_id}"
        drawn = panels.rows(("elder-detail.json", title, "B"))
        assert len(drawn) == 2, title  # a horizontal line: the range's two ends
        for name, label in lines.items():
            assert [row[label] for row in drawn] == [getattr(thresholds, name)] * 2, (title, label)

    heart_rate = panels.column(("elder-detail.json", "Heart rate", "A"), "heart_rate_bpm")
    critical_line = panels.rows(("elder-detail.json", "Heart rate", "B"))[0]["critical above"]
    episode_bpm = [
        m.sample.fields["bpm"]
        for m in planned
        if m.incident == episode.incident_id and m.sample.kind is Kind.HEART_RATE
    ]
    assert len(episode_bpm) >= 10  # a 4-minute episode sampled every 10 s
    above = [bpm for bpm in heart_rate if bpm > critical_line]
    assert not Counter(episode_bpm) - Counter(above), f"{run.backend}: the episode is not above the line"

    rollup = ("elder-detail.json", "Heart rate, 5-minute range (rollup)", "A")
    assert max(panels.column(rollup, "max_bpm")) == max(heart_rate)

    events = panels.rows(("elder-detail.json", "Events", "A"))
    # Vitals and battery levels are readings; everything else the device sent is an event.
    sent_kinds = {
        str(m.sample.kind) for m in planned if m.sample.kind not in {*READING_METRICS, Kind.BATTERY}
    }
    assert {r["kind"] for r in events} == sent_kinds, run.backend

    alerts = panels.rows(("elder-detail.json", "Alerts", "A"))
    mine = {(e.rule, e.expect) for e in plan.expectations if e.device_id == device.device_id}
    assert {r["rule"] for r in alerts} == {rule for rule, expect in mine if expect == "alert"}, alerts
