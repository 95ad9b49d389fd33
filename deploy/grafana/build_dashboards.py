"""Generate Carewatch's Grafana dashboards (``deploy/grafana/dashboards/*.json``).

Dashboards are code so that their SQL and PromQL can be tested: the tests
import :func:`dashboards`, expand the few Grafana macros used here
(``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``, ``$__interval_ms`` and the
``$elder``/``$device``/``$ack_target_s`` variables) and run every query
against a real database, and check every PromQL expression against what
``/metrics`` really exports. The committed JSON must equal this output (a test
checks it); after editing, regenerate with::

    python -m deploy.grafana.build_dashboards

SQL panels read only the public tables and views (001_telemetry, the device
registry, alerts, 010_operations) and the rollup views ``readings_5m`` and
``quarantine_1h``, which are continuous aggregates where the TimescaleDB
licence allows and plain views elsewhere: the same query works on both.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from alerts import AlertPolicy

#: Provisioned datasource uids (deploy/grafana/provisioning/datasources/carewatch.yaml).
SQL_UID = "carewatch-postgres"
PROM_UID = "carewatch-prometheus"
SQL_DS = {"type": "grafana-postgresql-datasource", "uid": SQL_UID}
PROM_DS = {"type": "prometheus", "uid": PROM_UID}
OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39

#: Buckets of the "per interval" panels, as Grafana computes them.
_BUCKET = "date_bin($__interval_ms * INTERVAL '1 millisecond', {col}, TIMESTAMPTZ '2000-01-03 00:00:00+00')"


def _sql(ref: str, raw: str, fmt: str = "table") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": SQL_DS,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": raw,
    }


def _prom(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROM_DS, "expr": expr, "legendFormat": legend, "range": True}


class _Layout:
    """Places panels left to right, wrapping at Grafana's 24 columns."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def panel(
        self,
        kind: str,
        title: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 12,
        h: int = 8,
        **extra: object,
    ) -> dict[str, Any]:
        if self.x + w > 24:  # noqa: PLR2004 - Grafana's grid width
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "datasource": targets[0]["datasource"],
            "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "targets": targets,
            **extra,
        }
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def _dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    *,
    variables: list[dict[str, Any]] | None = None,
    time_from: str = "now-6h",
    refresh: str = "30s",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["carewatch"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "timezone": "utc",
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": panels,
    }


# --- Dispatch centre ---------------------------------------------------------

OPEN_ALERTS_SQL = """SELECT a.id AS alert_id, a.priority, a.severity, a.rule, a.device_id,
       coalesce(s.elder_name, '') AS elder, a.state, a.claimed_by, a.raised_at,
       extract(epoch FROM a.sla_due_at - now()) AS time_left_s,
       a.occurrence_count, a.escalation_level
FROM alerts a
LEFT JOIN device_status s ON s.device_id = a.device_id
WHERE a.state IN ('open', 'acknowledged', 'dispatched')
ORDER BY a.priority DESC, a.sla_due_at, a.id"""

OPEN_BY_SEVERITY_SQL = """SELECT severity, count(*) AS alerts
FROM alerts
WHERE state = 'open'
GROUP BY severity
ORDER BY min(priority) DESC"""

TIMELINE_SQL = f"""SELECT {_BUCKET.format(col="raised_at")} AS time, severity AS metric, count(*) AS alerts
FROM alerts
WHERE $__timeFilter(raised_at)
GROUP BY 1, 2
ORDER BY 1"""

AUDIT_SQL = """SELECT e.at AS time, e.alert_id, a.rule, a.device_id, e.action, e.actor,
       e.from_state, e.to_state, coalesce(e.note, '') AS note
FROM alert_events e
JOIN alerts a ON a.id = e.alert_id
WHERE $__timeFilter(e.at)
ORDER BY e.at DESC, e.id DESC
LIMIT 500"""

#: Acknowledged within $ack_target_s (the escalation delay); on site, by proxy:
#: dispatched (or resolved) before the deadline. Alerts still inside their
#: target, and conditions that cleared by themselves, are not counted yet.
SLA_SQL = """WITH raised AS (
    SELECT raised_at, sla_due_at,
           coalesce(acknowledged_at, dispatched_at, resolved_at) AS answered_at,
           coalesce(dispatched_at, resolved_at) AS handled_at
    FROM alerts
    WHERE $__timeFilter(raised_at) AND state <> 'cleared'
)
SELECT
    100.0 * count(*) FILTER (WHERE answered_at <= raised_at + $ack_target_s * INTERVAL '1 second')
        / nullif(count(*) FILTER (WHERE answered_at IS NOT NULL
                                     OR now() > raised_at + $ack_target_s * INTERVAL '1 second'), 0)
        AS ack_within_target_pct,
    100.0 * count(*) FILTER (WHERE handled_at <= sla_due_at)
        / nullif(count(*) FILTER (WHERE handled_at IS NOT NULL OR now() > sla_due_at), 0)
        AS on_site_within_sla_pct,
    count(*) AS alerts
FROM raised"""


def dispatch_centre() -> dict[str, Any]:
    """Open alerts by priority with their time left, timeline, SLA compliance."""
    grid = _Layout()
    panels = [
        grid.panel("table", "Open alerts by priority", [_sql("A", OPEN_ALERTS_SQL)], w=24, h=10),
        grid.panel(
            "bargauge", "Waiting for a dispatcher, by severity", [_sql("A", OPEN_BY_SEVERITY_SQL)], w=6
        ),
        grid.panel(
            "stat",
            "Acknowledgement and on-site SLA compliance",
            [_sql("A", SLA_SQL)],
            w=6,
            fieldConfig={"defaults": {"unit": "percent"}, "overrides": []},
        ),
        grid.panel(
            "timeseries",
            "Dispatch queue",
            [
                _prom("A", "carewatch_dispatch_queue_depth_alerts", "open alerts"),
                _prom("B", "carewatch_dispatch_oldest_waiting_alert_age_seconds", "oldest waiting (s)"),
                _prom("C", "carewatch_alerts_sla_breached_alerts", "past deadline"),
            ],
            w=12,
        ),
        grid.panel(
            "timeseries",
            "Alert timeline (raised, by severity)",
            [_sql("A", TIMELINE_SQL, "time_series")],
            w=12,
        ),
        grid.panel("table", "Audit trail", [_sql("A", AUDIT_SQL)], w=12),
    ]
    ack_target = {
        "type": "constant",
        "name": "ack_target_s",
        "hide": 2,
        "label": "Acknowledgement target (s)",
        "query": str(int(AlertPolicy().escalate_after_s)),
    }
    return _dashboard(
        "carewatch-dispatch", "Carewatch / Dispatch centre", panels, variables=[ack_target], refresh="10s"
    )


# --- Fleet health ------------------------------------------------------------

DEVICES_BY_STATUS_SQL = """SELECT status, count(*) AS devices
FROM device_status
GROUP BY status
ORDER BY status"""

SILENT_SQL = """SELECT device_id, coalesce(elder_name, '') AS elder, gateway_id, profile, status,
       last_seen_at, extract(epoch FROM now() - last_seen_at) AS silent_for_s
FROM device_status
WHERE status IN ('silent', 'offline', 'never_seen')
ORDER BY last_seen_at NULLS FIRST, device_id"""

#: Each device against its own warning level: device, then elder, then profile, then defaults
#: (an unregistered device is judged as a wearable, as the rule engine does).
LOW_BATTERY_SQL = """SELECT s.device_id, coalesce(s.elder_name, '') AS elder, s.battery_pct, s.battery_at
FROM device_status s
CROSS JOIN LATERAL (
    SELECT value
    FROM rule_thresholds
    WHERE name = 'battery_warning_pct'
      AND (scope = 'defaults'
           OR (scope = 'profile' AND scope_id = coalesce(s.profile, 'wearable'))
           OR (scope = 'elder' AND scope_id = s.elder_id)
           OR (scope = 'device' AND scope_id = s.device_id))
    ORDER BY CASE scope WHEN 'device' THEN 4 WHEN 'elder' THEN 3 WHEN 'profile' THEN 2 ELSE 1 END DESC
    LIMIT 1
) AS t
WHERE s.battery_pct <= t.value
ORDER BY s.battery_pct, s.device_id"""

NOT_WORN_SQL = """SELECT device_id, coalesce(elder_name, '') AS elder, gateway_id, last_seen_at
FROM device_status
WHERE worn IS false
ORDER BY device_id"""

QUARANTINE_BY_REASON_SQL = """SELECT bucket AS time, reason AS metric, sum(messages) AS messages
FROM quarantine_1h
WHERE $__timeFilter(bucket)
GROUP BY 1, 2
ORDER BY 1"""

QUARANTINE_BY_FORMAT_SQL = """SELECT bucket AS time, format AS metric, sum(messages) AS messages
FROM quarantine_1h
WHERE $__timeFilter(bucket)
GROUP BY 1, 2
ORDER BY 1"""


def fleet_health() -> dict[str, Any]:
    """Online and silent devices, batteries, wear, quarantine by reason and format."""
    grid = _Layout()
    panels = [
        grid.panel("bargauge", "Devices by status", [_sql("A", DEVICES_BY_STATUS_SQL)], w=8),
        grid.panel("table", "Silent, offline and never-seen devices", [_sql("A", SILENT_SQL)], w=16),
        grid.panel("table", "Low batteries", [_sql("A", LOW_BATTERY_SQL)], w=12),
        grid.panel("table", "Devices not worn", [_sql("A", NOT_WORN_SQL)], w=12),
        grid.panel(
            "timeseries",
            "Quarantined messages per hour, by reason",
            [_sql("A", QUARANTINE_BY_REASON_SQL, "time_series")],
            w=12,
        ),
        grid.panel(
            "timeseries",
            "Quarantined messages per hour, by format",
            [_sql("A", QUARANTINE_BY_FORMAT_SQL, "time_series")],
            w=12,
        ),
        grid.panel(
            "timeseries",
            "Decoded messages by format and outcome",
            [
                _prom(
                    "A",
                    "sum by (format, outcome) (rate(carewatch_codec_messages_total[5m]))",
                    "{{format}} {{outcome}}",
                )
            ],
            w=24,
        ),
    ]
    return _dashboard(
        "carewatch-fleet", "Carewatch / Fleet health", panels, time_from="now-24h", refresh="1m"
    )


# --- Elder detail --------------------------------------------------------------

#: The thresholds in force for $device: device, then elder, then profile, then defaults.
_THRESHOLDS_CTE = """WITH d AS (SELECT profile, elder_id FROM devices WHERE device_id = '$device'),
t AS (
    SELECT DISTINCT ON (name) name, value
    FROM rule_thresholds
    WHERE scope = 'defaults'
       OR (scope = 'profile' AND scope_id = (SELECT profile FROM d))
       OR (scope = 'elder' AND scope_id = (SELECT elder_id FROM d))
       OR (scope = 'device' AND scope_id = '$device')
    ORDER BY name, CASE scope WHEN 'device' THEN 4 WHEN 'elder' THEN 3 WHEN 'profile' THEN 2 ELSE 1 END DESC
)"""


def _threshold_sql(lines: dict[str, str]) -> str:
    columns = ",\n       ".join(
        f"max(t.value) FILTER (WHERE t.name = '{name}') AS \"{label}\"" for name, label in lines.items()
    )
    return (
        f"{_THRESHOLDS_CTE}\nSELECT b.time,\n       {columns}\n"
        "FROM t CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz)) AS b(time)\n"
        "GROUP BY b.time\nORDER BY b.time"
    )


def _reading_sql(metric: str) -> str:
    return f"""SELECT time, value AS {metric}
FROM readings
WHERE device_id = '$device' AND metric = '{metric}' AND $__timeFilter(time)
ORDER BY time"""


#: metric -> (panel title, unit, {threshold name: line label}).
VITALS: dict[str, tuple[str, str, dict[str, str]]] = {
    "heart_rate_bpm": (
        "Heart rate",
        "none",
        {
            "hr_high_critical_bpm": "critical above",
            "hr_high_major_bpm": "major above",
            "hr_low_major_bpm": "major below",
            "hr_low_critical_bpm": "critical below",
        },
    ),
    "spo2_pct": (
        "SpO2",
        "percent",
        {"spo2_critical_pct": "critical at or below", "spo2_clear_pct": "clears above"},
    ),
    "body_temp_c": (
        "Body temperature",
        "celsius",
        {"temp_high_major_c": "major at or above", "temp_low_critical_c": "critical at or below"},
    ),
}

HR_ROLLUP_SQL = """SELECT bucket AS time, avg_value AS avg_bpm, min_value AS min_bpm, max_value AS max_bpm
FROM readings_5m
WHERE device_id = '$device' AND metric = 'heart_rate_bpm' AND $__timeFilter(bucket)
ORDER BY bucket"""

DEVICE_EVENTS_SQL = """SELECT time, kind, detail::text AS detail, time_source,
       array_to_string(flags, ',') AS flags, gateway_id, received_at
FROM device_events
WHERE device_id = '$device' AND $__timeFilter(time)
ORDER BY time DESC
LIMIT 500"""

DEVICE_ALERTS_SQL = """SELECT raised_at AS time, id AS alert_id, rule, severity, state, priority,
       acknowledged_by, acknowledged_at, dispatched_at, resolved_at,
       coalesce(resolution_note, '') AS resolution_note
FROM alerts
WHERE device_id = '$device' AND $__timeFilter(raised_at)
ORDER BY raised_at DESC"""

ELDER_VAR_SQL = (
    "SELECT elder_id AS __value, display_name || ' (' || elder_id || ')' AS __text"
    " FROM elders ORDER BY display_name, elder_id"
)
DEVICE_VAR_SQL = "SELECT device_id FROM devices WHERE elder_id = '$elder' ORDER BY device_id"


def elder_detail() -> dict[str, Any]:
    """One elder's device: vitals against the rule thresholds, events and alerts."""
    grid = _Layout()
    panels = []
    for metric, (title, unit, lines) in VITALS.items():
        panels.append(
            grid.panel(
                "timeseries",
                title,
                [
                    _sql("A", _reading_sql(metric), "time_series"),
                    _sql("B", _threshold_sql(lines), "time_series"),
                ],
                w=12,
                fieldConfig={
                    "defaults": {"unit": unit},
                    "overrides": [
                        {
                            "matcher": {"id": "byFrameRefID", "options": "B"},
                            "properties": [
                                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                            ],
                        },
                    ],
                },
            )
        )
    panels.append(
        grid.panel(
            "timeseries",
            "Heart rate, 5-minute range (rollup)",
            [_sql("A", HR_ROLLUP_SQL, "time_series")],
            w=12,
        )
    )
    panels.append(grid.panel("table", "Events", [_sql("A", DEVICE_EVENTS_SQL)], w=12, h=10))
    panels.append(grid.panel("table", "Alerts", [_sql("A", DEVICE_ALERTS_SQL)], w=12, h=10))
    variables = [
        {
            "type": "query",
            "name": "elder",
            "label": "Elder",
            "datasource": SQL_DS,
            "query": ELDER_VAR_SQL,
            "definition": ELDER_VAR_SQL,
            "refresh": 1,
            "includeAll": False,
            "multi": False,
        },
        {
            "type": "query",
            "name": "device",
            "label": "Device",
            "datasource": SQL_DS,
            "query": DEVICE_VAR_SQL,
            "definition": DEVICE_VAR_SQL,
            "refresh": 2,
            "includeAll": False,
            "multi": False,
        },
    ]
    return _dashboard(
        "carewatch-elder", "Carewatch / Elder detail", panels, variables=variables, time_from="now-24h"
    )


# --- Pipeline ------------------------------------------------------------------


def _quantile(q: float, metric: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[5m])))"


def pipeline() -> dict[str, Any]:
    """Ingest rate, acknowledgement lag, batch and database latency, queue depths."""
    grid = _Layout()
    panels = [
        grid.panel(
            "timeseries",
            "Ingest rate (messages/s)",
            [
                _prom("A", "sum(rate(carewatch_ingest_messages_received_total[5m]))", "received"),
                _prom("B", "sum(rate(carewatch_ingest_messages_stored_total[5m]))", "stored"),
                _prom(
                    "C",
                    "sum by (reason) (rate(carewatch_ingest_messages_quarantined_total[5m]))",
                    "quarantined {{reason}}",
                ),
            ],
        ),
        grid.panel(
            "timeseries",
            "Acknowledgement lag",
            [
                _prom("A", _quantile(0.5, "carewatch_ingest_ack_lag_seconds"), "p50"),
                _prom("B", _quantile(0.99, "carewatch_ingest_ack_lag_seconds"), "p99"),
            ],
            fieldConfig={"defaults": {"unit": "s"}, "overrides": []},
        ),
        grid.panel(
            "timeseries",
            "Batch size (messages)",
            [
                _prom("A", _quantile(0.5, "carewatch_ingest_batch_messages"), "p50"),
                _prom("B", _quantile(0.99, "carewatch_ingest_batch_messages"), "p99"),
            ],
        ),
        grid.panel(
            "timeseries",
            "Database latency",
            [
                _prom("A", _quantile(0.99, "carewatch_ingest_flush_duration_seconds"), "batch commit p99"),
                _prom("B", _quantile(0.99, "carewatch_db_probe_duration_seconds"), "probe p99"),
                _prom(
                    "C", "sum by (role) (carewatch_db_connections_open_connections)", "connections {{role}}"
                ),
            ],
            fieldConfig={"defaults": {"unit": "s"}, "overrides": []},
        ),
        grid.panel(
            "timeseries",
            "Queue depths",
            [
                _prom("A", "carewatch_ingest_queue_depth_messages", "ingest: unacknowledged messages"),
                _prom("B", "carewatch_broker_store_messages", "broker: stored messages"),
                _prom("C", "carewatch_dispatch_queue_depth_alerts", "dispatch: open alerts"),
            ],
        ),
        grid.panel(
            "timeseries",
            "Broker drops and failures",
            [
                _prom("A", "rate(carewatch_broker_publish_dropped_messages_total[5m])", "broker drops/s"),
                _prom(
                    "B",
                    "sum by (cause) (rate(carewatch_ingest_flush_failures_total[5m]))",
                    "flush failures {{cause}}",
                ),
                _prom(
                    "C",
                    "time() - carewatch_retention_last_success_timestamp_seconds",
                    "since last retention (s)",
                ),
            ],
        ),
        grid.panel(
            "timeseries",
            "Rules",
            [
                _prom(
                    "A",
                    "sum by (rule, action) (rate(carewatch_rules_decisions_total[5m]))",
                    "{{rule}} {{action}}",
                ),
                _prom(
                    "B", _quantile(0.99, "carewatch_rules_evaluation_duration_seconds"), "evaluation p99 (s)"
                ),
            ],
            w=24,
        ),
    ]
    return _dashboard("carewatch-pipeline", "Carewatch / Pipeline", panels, time_from="now-3h")


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model, for every dashboard."""
    return {
        "dispatch-centre.json": dispatch_centre(),
        "fleet-health.json": fleet_health(),
        "elder-detail.json": elder_detail(),
        "pipeline.json": pipeline(),
    }


def render(model: dict[str, Any]) -> str:
    """The committed form of a dashboard (stable key order, trailing newline)."""
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def threshold_names() -> set[str]:
    """Every threshold a dashboard draws (each must be a rules.config.Thresholds field)."""
    return {name for _, _, lines in VITALS.values() for name in lines} | {"battery_warning_pct"}


def main() -> int:
    """Write every dashboard into ``deploy/grafana/dashboards``."""
    from rules.config import Thresholds  # noqa: PLC0415 - only the generator needs it

    known = {f.name for f in fields(Thresholds)}
    missing = threshold_names() - known
    if missing:
        sys.stderr.write(f"unknown thresholds drawn: {sorted(missing)}\n")
        return 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, model in dashboards().items():
        (OUT_DIR / name).write_text(render(model), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
