"""Rule containment in ingest: counted per rule, logged without flooding, emergencies still raised."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from ingest.alerting import Alerting, RuleFailureReport
from ingest.envelope import Envelope
from ingest.pipeline import Pipeline, PipelineSettings
from rules import DeviceContext, RuleEngine

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def broken_context(device_id: str) -> DeviceContext:
    raise LookupError(device_id)


def message(payload: bytes) -> Envelope:
    return Envelope(
        topic="carewatch/v1/gw/dev1/json",
        payload=payload,
        packet_id=1,
        dup=False,
        received_at=NOW,
        received_mono=0.0,
    )


def test_a_panic_whose_rules_fail_still_carries_a_critical_alert_and_is_counted() -> None:
    counted: list[str] = []
    report = RuleFailureReport(counted.append)
    alerting = Alerting(RuleEngine(context=broken_context, on_failure=report), lambda: NOW, on_failure=report)
    rows = Pipeline(PipelineSettings()).process(
        message(b'{"ts":1795000000000,"kind":"panic","button":"sos"}')
    )
    alerting.observe(rows)
    assert [(a.rule, a.severity, a.emergency) for a in rows.alerts] == [("panic", "critical", True)]
    assert rows.alerts[0].evidence is not None
    assert "rule_failure" in str(rows.alerts[0].evidence["flags"])
    assert rows.life_safety  # committed at once, in the fast lane
    assert rows.events  # the message itself is still stored
    assert counted == ["presence", "panic"]  # presence tracking asks the same broken registry


def test_a_failing_rule_is_logged_once_per_interval_but_counted_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[str] = []
    report = RuleFailureReport(counted.append, log_interval_s=3600)
    with caplog.at_level(logging.ERROR, logger="ingest.alerting"):
        for _ in range(1000):
            report("heart_rate", ValueError("bpm 72 is odd"))
    assert len(counted) == 1000
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["rule heart_rate failed (ValueError); contained (0 more since the last report)"]
    assert "72" not in messages[0]  # never a health value in the log
