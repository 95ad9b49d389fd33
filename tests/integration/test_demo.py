"""``carewatch demo`` as a newcomer runs it: embedded defaults, a scorecard, and a clean exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO = REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml"

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]


def demo(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREWATCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "demo", "--scenario", str(SCENARIO), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # Ctrl-C is delivered by the test alone
    )


def started_by(workdir: str) -> list[psutil.Process]:
    """Every process whose command line names the demo's work directory (broker, database, ingest)."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if any(workdir in part for part in proc.info["cmdline"] or [])
    ]


def test_demo_on_the_embedded_broker_and_database_ends_with_a_passing_scorecard() -> None:
    process = demo("--broker", "embedded")
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    assert "broker: embedded amqtt" in output
    assert "database: embedded PostgreSQL" in output
    assert "registry: 24 simulated devices enrolled" in output
    assert "scenario e2e: PASSED" in output
    assert re.search(r"OK +incident-1 +panic +sim-pendant-0001 +panic +latency \d+\.\d+s", output)
    assert re.search(r"no fall .*cancelled hold recorded", output)  # the cancelled fall raised nothing
    assert "unexpected alerts: 0" in output
    assert re.search(r"identities missing 0 of \d+", output)
    assert re.search(
        r"DISPATCH alert #\d+ critical panic on sim-pendant-0001: claimed and acknowledged", output
    )


def test_ctrl_c_stops_every_process_the_demo_started() -> None:
    process = demo("--broker", "mosquitto")
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "ingest: carewatch ingest running" in line or not line:
            break
    text = "".join(lines)
    workdir = re.search(r"database: embedded PostgreSQL in (/\S+)/pgdata", text)
    assert workdir is not None, text
    started = started_by(workdir.group(1))
    kinds = {" ".join(p.cmdline()) for p in started}
    assert any("mosquitto" in k for k in kinds), kinds
    assert any("postgres" in k for k in kinds), kinds
    assert any("ingest ingest" in k for k in kinds), kinds
    time.sleep(3)  # some traffic is flowing
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, "".join(lines) + output
    assert "interrupted: stopping everything" in output
    _, alive = psutil.wait_procs(started, timeout=15)
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    assert not Path(workdir.group(1)).exists()
