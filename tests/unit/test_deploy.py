"""deploy/: the compose file, Grafana provisioning and dashboards, the configuration reference.

No container engine runs here (``docker compose`` is not installed), so the
compose file is checked by reading it: every service, image or build, and
every mounted repository file must exist.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import yaml

from deploy.grafana.build_dashboards import PROM_UID, SQL_UID, dashboards, threshold_names
from ingest.retention import RetentionSettings
from rules import RulesConfig
from rules.config import Thresholds
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SERVICES = {"mosquitto", "timescaledb", "grafana", "prometheus", "ingest", "dispatcher"}


def _yaml(path: Path) -> dict[str, object]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), path
    return document


def _compose() -> dict[str, dict[str, object]]:
    services = _yaml(COMPOSE)["services"]
    assert isinstance(services, dict)
    return services


def _bind_sources(service: dict[str, object]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    found = []
    for volume in service.get("volumes", []):  # type: ignore[attr-defined]
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            found.append((source, target))
    return found


def test_compose_names_every_service_with_an_image_or_a_build_in_the_repo() -> None:
    services = _compose()
    assert set(services) == SERVICES
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            assert ":" in str(service["image"]), f"{name}: pin the image tag"
            continue
        assert isinstance(build, dict)
        context = (DEPLOY / str(build["context"])).resolve()
        assert (context / str(build["dockerfile"])).is_file(), name


def test_compose_mounts_the_repos_own_configuration_files() -> None:
    services = _compose()
    mounts = {name: dict(_bind_sources(service)) for name, service in services.items()}
    for name, binds in mounts.items():
        for source in binds:
            assert (DEPLOY / source).resolve().exists(), f"{name} mounts {source}, which is not in the repo"
    assert mounts["mosquitto"]["../mosquitto.conf"] == "/etc/mosquitto/mosquitto.conf"
    assert mounts["mosquitto"]["./mosquitto/acl"] == "/etc/mosquitto/carewatch/acl"
    assert mounts["prometheus"]["./prometheus/rules"] == "/etc/prometheus/rules"
    assert mounts["prometheus"]["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["grafana"]["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["grafana"]["./grafana/dashboards"] == "/var/lib/grafana/dashboards/carewatch"
    assert mounts["ingest"]["./carewatch/rules.toml"] == "/etc/carewatch/rules.toml"
    # The paths mosquitto.conf names are where the image/mounts put them.
    conf = (REPO_ROOT / "mosquitto.conf").read_text(encoding="utf-8")
    assert "acl_file /etc/mosquitto/carewatch/acl" in conf
    assert "password_file /etc/mosquitto/carewatch/passwd" in conf
    # Grafana's dashboard provider reads where compose mounts them.
    provider = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "carewatch.yaml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/carewatch"  # type: ignore[index]


def test_ingest_reaches_the_loopback_listener_and_prometheus_scrapes_it() -> None:
    services = _compose()
    ingest = services["ingest"]
    assert ingest["network_mode"] == "service:mosquitto"
    assert ingest["environment"]["CAREWATCH_MQTT_URL"] == "mqtt://127.0.0.1:1883"  # type: ignore[index]
    assert "listener 1883 127.0.0.1" in (REPO_ROOT / "mosquitto.conf").read_text(encoding="utf-8")
    port = ingest["environment"]["CAREWATCH_METRICS_PORT"]  # type: ignore[index]
    scrape = _yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    assert scrape[0]["job_name"] == "carewatch-ingest"  # type: ignore[index]
    assert scrape[0]["static_configs"][0]["targets"] == [f"mosquitto:{port}"]  # type: ignore[index]


def test_rules_file_shipped_for_compose_loads() -> None:
    RulesConfig.load(DEPLOY / "carewatch" / "rules.toml")


def test_datasources_provision_the_uids_the_dashboards_use() -> None:
    datasources = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "carewatch.yaml")
    assert datasources["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in datasources["datasources"]}  # type: ignore[attr-defined]
    assert by_uid[SQL_UID]["type"] == "grafana-postgresql-datasource"
    assert by_uid[PROM_UID]["type"] == "prometheus"
    for model in dashboards().values():
        for panel in model["panels"]:
            uids = {panel["datasource"]["uid"]} | {t["datasource"]["uid"] for t in panel["targets"]}
            assert uids <= set(by_uid), panel["title"]


def test_dashboards_are_valid_grafana_models() -> None:
    files = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert [f.name for f in files] == sorted(dashboards())
    uids = set()
    for path in files:
        model = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(model["schemaVersion"], int)
        assert model["uid"] not in uids
        uids.add(model["uid"])
        assert model["title"].startswith("Carewatch / ")
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            assert panel["type"] in {"table", "timeseries", "stat", "bargauge"}
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            assert panel["targets"]
            for target in panel["targets"]:
                assert ("rawSql" in target) != ("expr" in target), panel["title"]
                assert target["refId"]
                if "rawSql" in target:
                    assert target["format"] in {"table", "time_series"}
        for variable in model["templating"]["list"]:
            assert variable["type"] in {"query", "constant"}
            used = any(f"${variable['name']}" in json.dumps(p["targets"]) for p in model["panels"])
            used |= any(
                f"${variable['name']}" in str(v.get("query", "")) for v in model["templating"]["list"]
            )
            assert used, f"{path.name}: ${variable['name']} is never used"
    assert {"carewatch-dispatch", "carewatch-fleet", "carewatch-elder", "carewatch-pipeline"} == uids


def test_drawn_thresholds_are_rule_settings() -> None:
    assert threshold_names() <= {f.name for f in fields(Thresholds)}


def test_configuration_reference_covers_every_setting() -> None:
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    # Every command's flags and environment variables, wherever they are declared.
    cli = "\n".join(path.read_text(encoding="utf-8") for path in sorted((REPO_ROOT / "ingest").glob("*.py")))
    env_vars = set(re.findall(r"CAREWATCH_[A-Z_]+[A-Z]", cli))
    flags = set(re.findall(r'add_argument\(\s*"(--[a-z][a-z0-9-]+)"', cli))
    assert {"CAREWATCH_DSN", "CAREWATCH_MQTT_URL"} <= env_vars
    assert {"--dsn", "--mqtt-url", "--metrics-port"} <= flags
    missing = sorted(name for name in env_vars | flags if f"`{name}`" not in reference)
    missing += [f.name for f in fields(Thresholds) if f"`{f.name}`" not in reference]
    missing += [f.name for f in fields(RetentionSettings) if f"`{f.name}`" not in reference]
    conf = (REPO_ROOT / "mosquitto.conf").read_text(encoding="utf-8")
    keys = {line.split()[0] for line in conf.splitlines() if line.strip() and not line.startswith("#")}
    missing += sorted(key for key in keys if f"`{key}`" not in reference)
    assert not missing, f"docs/configuration.md does not describe: {missing}"
