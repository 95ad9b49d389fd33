"""Every SQL panel of every dashboard runs on a real database and shows the scenario.

The database is filled through the real storage path (Pipeline ->
TelemetryWriter -> alerts.apply, alerts.transition, alerts.escalate_due,
write_thresholds); registry and presence rows are inserted as the registry
would hold them. Each panel query, with Grafana's macros expanded, must
return exactly the columns its panel expects AND rows naming the scenario's
devices and alerts, on TimescaleDB and on plain PostgreSQL.

TODO(issue 5): fill from a simulator scenario once ``simulator`` has one.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import alerts
from deploy.grafana.build_dashboards import (
    DEVICE_VAR_SQL,
    ELDER_VAR_SQL,
    OUT_DIR,
    dashboards,
    render,
)
from ingest.envelope import Envelope
from ingest.pipeline import Pipeline, PipelineSettings
from ingest.rule_thresholds import write_thresholds
from ingest.schema import migrate
from ingest.storage import TelemetryWriter
from rules import RulesConfig
from tests.conftest import TestDatabase
from tests.support.grafana import expand, sql_targets

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = {"time_from": NOW - timedelta(hours=2), "time_to": NOW + timedelta(minutes=5)}
VARIABLES = {"elder": "e-anna", "device": "w-1", "ack_target_s": "60"}

#: (dashboard file, panel title, refId) -> the columns the panel reads, in order.
EXPECTED_COLUMNS: dict[tuple[str, str, str], list[str]] = {
    ("dispatch-centre.json", "Open alerts by priority", "A"): [
        "alert_id", "priority", "severity", "rule", "device_id", "elder", "state", "claimed_by",
        "raised_at", "time_left_s", "occurrence_count", "escalation_level",
    ],
    ("dispatch-centre.json", "Waiting for a dispatcher, by severity", "A"): ["severity", "alerts"],
    ("dispatch-centre.json", "Acknowledgement and on-site SLA compliance", "A"): [
        "ack_within_target_pct", "on_site_within_sla_pct", "alerts",
    ],
    ("dispatch-centre.json", "Alert timeline (raised, by severity)", "A"): ["time", "metric", "alerts"],
    ("dispatch-centre.json", "Audit trail", "A"): [
        "time", "alert_id", "rule", "device_id", "action", "actor", "from_state", "to_state", "note",
    ],
    ("fleet-health.json", "Devices by status", "A"): ["status", "devices"],
    ("fleet-health.json", "Silent, offline and never-seen devices", "A"): [
        "device_id", "elder", "gateway_id", "profile", "status", "last_seen_at", "silent_for_s",
    ],
    ("fleet-health.json", "Low batteries", "A"): ["device_id", "elder", "battery_pct", "battery_at"],
    ("fleet-health.json", "Devices not worn", "A"): ["device_id", "elder", "gateway_id", "last_seen_at"],
    ("fleet-health.json", "Quarantined messages per hour, by reason", "A"): ["time", "metric", "messages"],
    ("fleet-health.json", "Quarantined messages per hour, by format", "A"): ["time", "metric", "messages"],
    ("elder-detail.json", "Heart rate", "A"): ["time", "heart_rate_bpm"],
    ("elder-detail.json", "Heart rate", "B"): [
        "time", "critical above", "major above", "major below", "critical below",
    ],
    ("elder-detail.json", "SpO2", "A"): ["time", "spo2_pct"],
    ("elder-detail.json", "SpO2", "B"): ["time", "critical at or below", "clears above"],
    ("elder-detail.json", "Body temperature", "A"): ["time", "body_temp_c"],
    ("elder-detail.json", "Body temperature", "B"): ["time", "major at or above", "critical at or below"],
    ("elder-detail.json", "Heart rate, 5-minute range (rollup)", "A"): [
        "time", "avg_bpm", "min_bpm", "max_bpm",
    ],
    ("elder-detail.json", "Events", "A"): [
        "time", "kind", "detail", "time_source", "flags", "gateway_id", "received_at",
    ],
    ("elder-detail.json", "Alerts", "A"): [
        "time", "alert_id", "rule", "severity", "state", "priority", "acknowledged_by", "acknowledged_at",
        "dispatched_at", "resolved_at", "resolution_note",
    ],
}  # fmt: skip


def _message(topic: str, payload: bytes, received_at: datetime) -> Envelope:
    return Envelope(
        topic=topic, payload=payload, packet_id=1, dup=False, received_at=received_at, received_mono=0.0
    )


def _canonical(at: datetime, kind: str, **fields: Any) -> bytes:
    return json.dumps({"ts": int(at.timestamp() * 1000), "kind": kind, **fields}).encode()


def _request(device: str, rule: str, severity: str, *, at: datetime, emergency: bool, action: str = "raise"):
    return alerts.AlertRequest(
        action=action,
        rule=rule,
        device_id=device,
        severity=severity,
        emergency=emergency,
        dedup_key=f"{device}:{rule}",
        occurrence_key=f"{rule}@{at.isoformat()}",
        triggered_at=at,
    )


async def _fill(dsn: str) -> dict[str, int]:
    """The scenario; returns alert ids by name."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO elders (elder_id, display_name, living_alone) VALUES"
            " ('e-anna', 'Anna Example', true), ('e-bert', 'Bert Example', false)"
        )
        await conn.execute(
            "INSERT INTO devices (device_id, gateway_id, profile, elder_id) VALUES"
            " ('w-1', 'gw-1', 'wearable', 'e-anna'), ('w-2', 'gw-1', 'pendant', 'e-bert'),"
            " ('t-3', 'gw-2', 'fixed_terminal', NULL)"
        )
        await conn.execute(
            "INSERT INTO device_presence (device_id, gateway_id, last_seen_at, silence_timeout_s,"
            " battery_pct, battery_at, worn, worn_at) VALUES"
            " ('w-1', 'gw-1', %(now)s - interval '1 minute', 600, 15, %(now)s, false, %(now)s),"
            " ('w-2', 'gw-1', %(now)s - interval '3 hours', 600, 80, %(now)s - interval '3 hours',"
            "  true, NULL)",
            {"now": NOW},
        )
        await conn.commit()
        # Anna's elder-level override must win over the default line on her device's panel.
        # Bert's care team wants an earlier battery warning: his 80 % pendant counts as low.
        config = RulesConfig.from_mapping(
            {"elders": {"e-anna": {"hr_high_major_bpm": 110.0}, "e-bert": {"battery_warning_pct": 85.0}}}
        )
        await write_thresholds(conn, config, now=NOW)

    pipeline = Pipeline(PipelineSettings())
    messages = []
    for minute in range(60, 0, -1):
        at = NOW - timedelta(minutes=minute)
        bpm = 140 if minute <= 20 else 70
        messages.append(_message("carewatch/v1/gw-1/w-1/json", _canonical(at, "heart_rate", bpm=bpm), at))
        if minute % 10 == 0:
            messages.append(_message("carewatch/v1/gw-1/w-1/json", _canonical(at, "spo2", pct=96), at))
            messages.append(
                _message("carewatch/v1/gw-1/w-1/json", _canonical(at, "body_temp", celsius=37.1), at)
            )
    panic_at = NOW - timedelta(minutes=30)
    panic = pipeline.process(_message("carewatch/v1/gw-1/w-1/json", _canonical(panic_at, "panic"), panic_at))
    panic.alerts.append(_request("w-1", "panic", "critical", at=panic_at, emergency=True))
    rows = [pipeline.process(m) for m in messages]
    rows.append(pipeline.process(_message("carewatch/v1/gw-1/w-1/json", b"{not json", NOW)))
    rows.append(pipeline.process(_message("carewatch/v1/gw-1/w-2/nosuchformat", b"x", NOW)))
    writer = TelemetryWriter(dsn)
    try:
        await writer.write(rows, now=NOW)
        await writer.write([panic], now=panic_at)
    finally:
        await writer.close()

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for name, device, severity, emergency, minutes in (
            ("heart_rate_high", "w-1", "critical", True, 20),
            ("battery_low", "w-2", "warning", False, 10),
            ("device_silent", "w-2", "major", False, 60),
            ("spo2_low", "w-1", "critical", True, 40),
        ):
            at = NOW - timedelta(minutes=minutes)
            async with conn.transaction():
                await alerts.apply(
                    conn, [_request(device, name, severity, at=at, emergency=emergency)], now=at
                )
        cursor = await conn.execute("SELECT rule, id FROM alerts")
        ids = {str(rule): int(alert_id) for rule, alert_id in await cursor.fetchall()}
        steps = (
            ("panic", "acknowledge", 30 * 60 - 30),  # within the 60 s target
            ("panic", "dispatch", 25 * 60),  # before its 15-minute deadline
            ("battery_low", "acknowledge", 8 * 60),  # 2 minutes: misses the target
            ("device_silent", "resolve", 50 * 60),  # 10 minutes, but before its deadline
        )
        for rule, action, seconds_ago in steps:
            async with conn.transaction():
                await alerts.transition(
                    conn, ids[rule], action, by="anna", now=NOW - timedelta(seconds=seconds_ago)
                )
        cleared_at = NOW - timedelta(minutes=39)
        async with conn.transaction():
            request = _request("w-1", "spo2_low", "critical", at=cleared_at, emergency=True, action="clear")
            await alerts.apply(conn, [request], now=cleared_at)
            await alerts.escalate_due(conn, now=NOW)  # heart_rate_high is past its deadline
    return ids


def _run(dsn: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(sql.encode())
        assert cursor.description is not None
        return [column.name for column in cursor.description], cursor.fetchall()


@pytest.fixture
def scenario(any_db: TestDatabase) -> tuple[TestDatabase, dict[str, int]]:
    return any_db, asyncio.run(_fill(any_db.dsn))


def _panel_results(db: TestDatabase) -> dict[tuple[str, str, str], tuple[list[str], list[tuple[Any, ...]]]]:
    results = {}
    for file_name, model in dashboards().items():
        variables = dict(VARIABLES)
        for title, ref, target in sql_targets(model):
            sql = expand(str(target["rawSql"]), interval=timedelta(minutes=1), variables=variables, **WINDOW)
            results[file_name, title, ref] = _run(db.dsn, sql)
    return results


def test_every_sql_panel_returns_its_columns_and_the_scenario(
    scenario: tuple[TestDatabase, dict[str, int]],
) -> None:
    db, ids = scenario
    results = _panel_results(db)
    assert set(results) == set(EXPECTED_COLUMNS), "every SQL panel has its expected columns listed here"
    for key, (columns, rows) in results.items():
        assert columns == EXPECTED_COLUMNS[key], key
        assert rows, f"{key} returned no rows for the scenario"

    def column(key: tuple[str, str, str], name: str) -> list[Any]:
        columns, rows = results[key]
        return [row[columns.index(name)] for row in rows]

    open_alerts = ("dispatch-centre.json", "Open alerts by priority", "A")
    assert column(open_alerts, "alert_id") == [ids["heart_rate_high"], ids["panic"], ids["battery_low"]]
    assert column(open_alerts, "elder")[0] == "Anna Example"
    time_left = dict(zip(column(open_alerts, "alert_id"), column(open_alerts, "time_left_s"), strict=True))
    assert time_left[ids["heart_rate_high"]] < 0 < time_left[ids["battery_low"]]
    assert results["dispatch-centre.json", "Waiting for a dispatcher, by severity", "A"][1] == [
        ("critical", 1)
    ]
    ((ack_pct, on_site_pct, counted),) = results[
        "dispatch-centre.json", "Acknowledgement and on-site SLA compliance", "A"
    ][1]
    # ack: panic only of {panic, heart_rate_high, battery_low, device_silent}; on site: panic and
    # device_silent of {panic, heart_rate_high, device_silent} (battery_low still has time).
    assert (round(float(ack_pct), 2), round(float(on_site_pct), 2), counted) == (25.0, 66.67, 4)
    timeline = ("dispatch-centre.json", "Alert timeline (raised, by severity)", "A")
    assert set(column(timeline, "metric")) == {"critical", "major", "warning"}
    audit = ("dispatch-centre.json", "Audit trail", "A")
    assert {"raised", "acknowledged", "dispatched", "resolved", "cleared", "sla_breached"} <= set(
        column(audit, "action")
    )

    statuses = dict(results["fleet-health.json", "Devices by status", "A"][1])
    assert statuses == {"online": 1, "silent": 1, "never_seen": 1}
    silent = ("fleet-health.json", "Silent, offline and never-seen devices", "A")
    assert column(silent, "device_id") == ["t-3", "w-2"]
    # Each device against its own level: w-1 at 15 % (default 20), w-2 at 80 % (Bert's 85).
    assert column(("fleet-health.json", "Low batteries", "A"), "device_id") == ["w-1", "w-2"]
    assert column(("fleet-health.json", "Devices not worn", "A"), "device_id") == ["w-1"]
    by_reason = ("fleet-health.json", "Quarantined messages per hour, by reason", "A")
    assert set(column(by_reason, "metric")) == {"malformed_json", "unsupported_channel"}
    by_format = ("fleet-health.json", "Quarantined messages per hour, by format", "A")
    assert set(column(by_format, "metric")) == {"json", "nosuchformat"}

    heart_rate = column(("elder-detail.json", "Heart rate", "A"), "heart_rate_bpm")
    assert len(heart_rate) == 60
    assert max(heart_rate) == 140
    columns, lines = results["elder-detail.json", "Heart rate", "B"]
    assert len(lines) == 2  # a horizontal line: the range's two ends
    assert [row[1:] for row in lines] == [(131.0, 110.0, 45.0, 40.0)] * 2, columns  # Anna's override drawn
    assert column(("elder-detail.json", "SpO2", "B"), "critical at or below") == [91.0, 91.0]
    assert len(column(("elder-detail.json", "Body temperature", "A"), "body_temp_c")) == 6
    rollup = ("elder-detail.json", "Heart rate, 5-minute range (rollup)", "A")
    assert max(column(rollup, "max_bpm")) == 140
    assert "panic" in column(("elder-detail.json", "Events", "A"), "kind")
    device_alerts = column(("elder-detail.json", "Alerts", "A"), "alert_id")
    assert set(device_alerts) == {ids["panic"], ids["heart_rate_high"], ids["spo2_low"]}


def test_template_variables_list_the_scenarios_elders_and_devices(
    scenario: tuple[TestDatabase, dict[str, int]],
) -> None:
    db, _ = scenario
    columns, elders = _run(db.dsn, ELDER_VAR_SQL)
    assert columns == ["__value", "__text"]
    assert elders == [("e-anna", "Anna Example (e-anna)"), ("e-bert", "Bert Example (e-bert)")]
    _, devices = _run(db.dsn, DEVICE_VAR_SQL.replace("$elder", "e-anna"))
    assert devices == [("w-1",)]


def test_committed_dashboards_are_the_generated_ones() -> None:
    for name, model in dashboards().items():
        committed = (OUT_DIR / name).read_text(encoding="utf-8")
        assert committed == render(model), f"{name} is stale: run python -m deploy.grafana.build_dashboards"
