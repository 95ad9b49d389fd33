"""The simulator against a real Mosquitto (record -> replay byte for byte) and the whole chain, scored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.scoring import Scorecard, score
from simulator.publisher import run_simulation
from simulator.recording import read_recording, record, replay
from simulator.scenario import load_scenario, parse_scenario
from simulator.timeline import build_plan
from tests.conftest import REPO_ROOT, TestDatabase
from tests.support.broker import RunningBroker
from tests.support.service import IngestProcess

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

SMALL = """\
[scenario]
name = "small"
duration = "20m"
speed = 400.0

[fleet]
devices = 12
duplicate_fraction = 0.05
clock_skew_fraction = 0.2

[[incident]]
at = "5m"
kind = "panic"
device = "sim-pendant-0001"
"""


async def _record_while(url: str, out: Path, expected: int, action: object) -> int:
    stop = asyncio.Event()
    ready = asyncio.Event()
    with out.open("w", encoding="utf-8") as handle:
        recorder = asyncio.create_task(record(url, handle, stop=stop, ready=ready, max_messages=expected))
        await asyncio.wait_for(ready.wait(), 10)
        await action  # type: ignore[misc]
        try:
            return await asyncio.wait_for(recorder, 30)
        finally:
            stop.set()


def test_record_then_replay_reproduces_every_byte(broker: RunningBroker, tmp_path: Path) -> None:
    plan = build_plan(parse_scenario(SMALL), seed=3)
    total = len(plan.messages)
    first = tmp_path / "first.jsonl"
    second = tmp_path / "second.jsonl"

    async def scenario() -> None:
        result_holder: list[int] = []

        async def simulate() -> None:
            result = await run_simulation(plan, mqtt_url=broker.url, speed=400.0)
            result_holder.append(result.acknowledged)

        assert await _record_while(broker.url, first, total, simulate()) == total
        assert result_holder == [total]
        recorded = read_recording(first)
        assert (
            await _record_while(broker.url, second, total, replay(recorded, mqtt_url=broker.url, speed=50.0))
            == total
        )

    asyncio.run(scenario())
    original = [(r.topic, r.payload) for r in read_recording(first)]
    replayed = [(r.topic, r.payload) for r in read_recording(second)]
    assert len(original) == total
    assert replayed == original
    offsets = [r.t_offset_s for r in read_recording(second)]
    assert offsets == sorted(offsets)


@pytest.fixture
def ingest(broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path) -> Iterator[tuple[IngestProcess, Path]]:
    scenario = load_scenario(REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml")
    rules = tmp_path / "rules.toml"
    rules.write_text(build_plan(scenario).rules_toml(), encoding="utf-8")
    process = IngestProcess(mqtt_url=broker.url, dsn=tsdb.dsn, workdir=tmp_path, args=("--rules", str(rules)))
    try:
        yield process.start(), rules
    finally:
        process.stop_quietly()


@pytest.mark.db
def test_end_to_end_scenario_is_scored_and_passes(
    broker: RunningBroker, tsdb: TestDatabase, ingest: tuple[IngestProcess, Path], tmp_path: Path
) -> None:
    scenario = load_scenario(REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml")
    plan = build_plan(scenario)
    result = asyncio.run(run_simulation(plan, mqtt_url=broker.url, speed=scenario.speed))
    manifest = result.manifest
    manifest.save(tmp_path / "manifest.json")
    assert manifest.published == manifest.acknowledged == len(plan.messages)
    assert not result.stopped_early

    deadline = time.monotonic() + 90
    card: Scorecard = score(scenario, tsdb.dsn, manifest=manifest)
    while not card.passed and time.monotonic() < deadline:
        time.sleep(2)
        card = score(scenario, tsdb.dsn, manifest=manifest)
    process, _ = ingest
    assert card.passed, card.render() + "\n--- ingest log ---\n" + process.log()[-3000:]
    by_kind = {e.incident_id: e for e in card.expectations}
    assert len(by_kind) == 8
    cancelled = by_kind["incident-3"]
    assert cancelled.expect == "none"
    assert cancelled.cancelled_hold
    assert card.identities_missing == 0
    assert (card.identities_expected or 0) > 300
    # The scorer is not a rubber stamp: the same run judged against an expectation
    # it did not meet fails.
    stricter = parse_scenario(
        (REPO_ROOT / "tests" / "fixtures" / "scenarios" / "e2e.toml")
        .read_text()
        .replace(
            'device = "sim-watch-0005"     # json: must raise nothing',
            'device = "sim-watch-0005"\nexpect = "alert"',
        )
    )
    # Without a manifest the scorer matches by device and rule and measures from receipt.
    assert score(scenario, tsdb.dsn).passed
    strict = score(stricter, tsdb.dsn)
    assert not strict.passed
    assert [e.status for e in strict.expectations if e.incident_id == "incident-3"] == ["missing"]
