"""Prometheus: the alerting rules pass promtool, and every PromQL name is really exported.

promtool comes from Debian's ``prometheus`` package (``.ci/services up``
installs it); without it these tests FAIL, never skip.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from deploy.grafana.build_dashboards import dashboards
from ingest.broker_stats import SYS_TOPICS, BrokerStats, watch_broker
from ingest.settings import MqttSettings
from tests.conftest import REPO_ROOT, TestDatabase
from tests.support.broker import RunningBroker
from tests.support.grafana import prom_exprs
from tests.support.publisher import Publisher, canonical
from tests.support.service import IngestProcess

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "carewatch.rules.yml"
RULE_TESTS = REPO_ROOT / "tests" / "fixtures" / "promtool" / "carewatch.test.yml"
#: Recorded by Prometheus itself for every scrape, never by a target.
PROMETHEUS_OWN = {"up"}
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "le",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package (.ci/services up does)", pytrace=False
        )
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and strings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\boffset\s+\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def rule_exprs() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [(rule["alert"], rule["expr"]) for group in document["groups"] for rule in group["rules"]]


def test_metric_name_extraction_finds_selectors_and_ignores_functions() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{job='x'}[5m])))"
        " > 5 and b_total offset 1h"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}
    assert metric_names('up{job="carewatch-ingest"} == 0 or absent(up{job="carewatch-ingest"})') == {"up"}


def test_promtool_checks_the_alerting_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerting_rules_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert tested == {name for name, _ in rule_exprs()}, "every alert has a promtool unit test"


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    config = yaml.safe_load(
        (REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    )
    # The config names the rules by their in-container path; point it at the repo's copy.
    config["rule_files"] = [str(RULES)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "check", "config", str(local)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def scrape_names(service: IngestProcess) -> set[str]:
    status, text = service.http("/metrics")
    assert status == 200
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.slow
def test_every_promql_name_is_exported_by_the_running_service(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path
) -> None:
    service = IngestProcess(mqtt_url=broker.url, dsn=tsdb.dsn, workdir=tmp_path)
    try:
        service.start()
        now_ms = int(time.time() * 1000)
        with Publisher(broker.service_port) as gateway:
            gateway.publish(
                "carewatch/v1/gw-1/w-1/json", canonical(now_ms, "heart_rate", bpm=72, msg_id="m1")
            )
            gateway.publish("carewatch/v1/gw-1/w-1/json", canonical(now_ms, "panic", msg_id="m2"))
            gateway.publish("carewatch/v1/gw-1/w-1/json", b"{not json")
        needed = {name for _, expr in rule_exprs() for name in metric_names(expr)}
        for model in dashboards().values():
            needed |= {name for _, expr in prom_exprs(model) for name in metric_names(expr)}
        needed -= PROMETHEUS_OWN
        deadline = time.monotonic() + 30
        missing = needed
        while time.monotonic() < deadline:
            missing = needed - scrape_names(service)
            if not missing:
                break
            time.sleep(0.5)
        assert not missing, f"PromQL names not on /metrics: {sorted(missing)}"
        status, body = service.http("/healthz")
        assert status == 200
        assert body.strip() == "ok mqtt=up database=up"
    finally:
        service.stop_quietly()


def test_broker_sys_counters_are_exported_from_a_real_mosquitto(broker: RunningBroker) -> None:
    registry = CollectorRegistry()
    stats = BrokerStats()
    registry.register(stats)
    host, port = "127.0.0.1", broker.service_port

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch_broker(MqttSettings(host=host, port=port), stats, stop))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if registry.get_sample_value("carewatch_broker_publish_dropped_messages_total") is not None:
                break
            await asyncio.sleep(0.1)
        assert registry.get_sample_value("carewatch_broker_stats_up") == 1
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    for entry in SYS_TOPICS:
        exposed = f"{entry.metric}_total" if entry.kind == "counter" else entry.metric
        assert registry.get_sample_value(exposed) is not None, entry.topic
    assert registry.get_sample_value("carewatch_broker_publish_dropped_messages_total") == 0
    assert registry.get_sample_value("carewatch_broker_stats_up") == 0  # unsubscribed after stop
