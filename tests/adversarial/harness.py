"""One run of the real service over a list of hostile inputs, and the accounting afterwards.

The run: ``carewatch ingest`` as a subprocess on a real Mosquitto and a real database, with
the corpus routes; a steady clean heart-rate stream from :data:`CLEAN_DEVICES` devices
interleaved with the hostile inputs (one clean message after each), all QoS 1 through paho;
then, after the last hostile input was acknowledged by the broker, one clean panic from a
clean device, whose alert is timed from its publish.

Accounting (per input): a ``quarantine`` row with the input's topic and payload SHA-256, or
at least one ``readings``/``device_events`` row for its device. Nothing else counts: an input
that leaves neither has vanished.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devices import RejectReason
from tests.adversarial.corpus import NOW_MS, Case
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher
from tests.support.service import IngestProcess

#: The documented reasons, plus those the fixes of issue 11 add (sanitised text kept in
#: quarantine, decoders' unknown and broken frames, contained rule failures).
REASON_VOCABULARY = frozenset(r.value for r in RejectReason) | {
    "sanitised_text",
    "unsupported_frame",
    "malformed_frame",
    "rule_failure",
}
CLEAN_DEVICES = 20
CLEAN_GATEWAY = "gw-clean"
PANIC_DEVICE = "adv-clean-panic"
#: A clean panic published after the poison must alert within this (issue 11).
PANIC_DEADLINE_S = 2.0
#: The fall cancel window of the run (README: 30 s by default), so garbled falls alert soon.
FALL_WINDOW_S = 1.0


@dataclass
class RunResult:
    """What one run left behind."""

    cases: list[Case]
    published: int
    clean_expected: dict[str, int]
    clean_stored: dict[str, int] = field(default_factory=dict)
    panic_latency_s: float | None = None
    quarantined: dict[tuple[str, bytes], list[str]] = field(default_factory=dict)
    devices_with_rows: set[str] = field(default_factory=set)
    alerted_devices: set[str] = field(default_factory=set)
    received: float = 0.0
    ignored: float = 0.0
    db_unavailable_failures: float = 0.0
    running: str | None = None  # None when the service was still up; else why not
    log: str = ""
    runtime_s: float = 0.0

    def vanished(self) -> list[Case]:
        return [case for case in self.cases if not (case.may_be_empty or self.accounted(case))]

    def accounted(self, case: Case) -> bool:
        key = (case.topic, hashlib.sha256(case.payload).digest())
        return key in self.quarantined or (bool(case.device) and case.device in self.devices_with_rows)

    def bad_reasons(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for reasons in self.quarantined.values():
            for reason in reasons:
                if reason not in REASON_VOCABULARY:
                    found[reason] += 1
        return dict(found)

    def silent_life_safety(self) -> list[Case]:
        return [case for case in self.cases if case.life_safety and case.device not in self.alerted_devices]


def clean_message(index: int) -> tuple[str, bytes]:
    device = f"adv-clean-{index % CLEAN_DEVICES:02d}"
    body = {"ts": NOW_MS + index, "kind": "heart_rate", "bpm": 60 + index % 40, "msg_id": f"c{index}"}
    return f"carewatch/v1/{CLEAN_GATEWAY}/{device}/json", json.dumps(body).encode()


def _query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def _scalar(dsn: str, sql: str) -> int:
    return int(_query(dsn, sql)[0][0])  # type: ignore[call-overload]


def _wait(predicate: object, timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step_s)
    return False


def run_service(
    cases: list[Case], *, broker: RunningBroker, dsn: str, workdir: Path, routes: tuple[str, ...] = ()
) -> RunResult:
    """Publish ``cases`` (with the clean stream and the final panic) through one service run."""
    started = time.monotonic()
    rules = workdir / "rules.toml"
    rules.write_text(f"[defaults]\nfall_cancel_window_s = {FALL_WINDOW_S}\n", encoding="utf-8")
    args: list[str] = ["--rules", str(rules)]
    for route in routes:
        args += ["--route", route]
    service = IngestProcess(mqtt_url=broker.url, dsn=dsn, workdir=workdir, args=tuple(args))
    messages: list[tuple[str, bytes]] = []
    clean_expected: dict[str, int] = defaultdict(int)
    for index, case in enumerate(cases):
        messages.append((case.topic, case.payload))
        topic, body = clean_message(index)
        messages.append((topic, body))
        clean_expected[topic.split("/")[3]] += 1
    result = RunResult(cases, len(messages) + 1, dict(clean_expected))
    service.start()
    try:
        with Publisher(broker.service_port, client_id="adv-gateway") as gateway:
            gateway.publish_many(messages, chunk=200)
            panic = {"ts": int(time.time() * 1000), "kind": "panic", "msg_id": "adv-final-panic"}
            published_at = time.monotonic()  # before the PUBLISH leaves: the latency is end to end
            gateway.publish(f"carewatch/v1/{CLEAN_GATEWAY}/{PANIC_DEVICE}/json", json.dumps(panic).encode())
            sql = f"SELECT count(*) FROM alerts WHERE device_id = '{PANIC_DEVICE}' AND rule = 'panic'"
            if _wait(lambda: _scalar(dsn, sql) > 0, timeout_s=10.0, step_s=0.01):
                result.panic_latency_s = time.monotonic() - published_at

        def received_all() -> bool:
            seen = service.metric("carewatch_ingest_messages_received_total")
            return seen - service.metric("carewatch_ingest_messages_ignored_total") >= result.published

        _wait(received_all, timeout_s=30.0)
        clean_total = sum(clean_expected.values())
        _wait(
            lambda: (
                _scalar(dsn, "SELECT count(*) FROM readings WHERE device_id LIKE 'adv-clean-%'")
                >= clean_total
            ),
            30.0,
        )
        life_safety = {case.device for case in cases if case.life_safety}
        alerted = "SELECT DISTINCT device_id FROM alerts WHERE emergency"
        _wait(lambda: life_safety <= {row[0] for row in _query(dsn, alerted)}, timeout_s=15.0, step_s=0.25)
        time.sleep(1.0)  # let anything still in flight land before counting
        _collect(result, service, dsn, alerted)
    finally:
        result.log = service.log()
        service.stop_quietly()
    result.runtime_s = time.monotonic() - started
    return result


def _collect(result: RunResult, service: IngestProcess, dsn: str, alerted: str) -> None:
    """Read what the run left behind: metrics, rows, quarantine, alerts."""
    result.received = service.metric("carewatch_ingest_messages_received_total")
    result.ignored = service.metric("carewatch_ingest_messages_ignored_total")
    result.db_unavailable_failures = service.metric(
        "carewatch_ingest_flush_failures_total", 'cause="db_unavailable"'
    )
    try:
        service.assert_running()
    except AssertionError as exc:
        result.running = str(exc)[:2000]
    result.clean_stored = {
        str(row[0]): int(row[1])  # type: ignore[call-overload]
        for row in _query(
            dsn, "SELECT device_id, count(*) FROM readings WHERE device_id LIKE 'adv-clean-%' GROUP BY 1"
        )
    }
    quarantined: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    for topic, digest, reason in _query(dsn, "SELECT topic, payload_sha256, reason FROM quarantine"):
        quarantined[(str(topic), bytes(digest))].append(str(reason or ""))  # type: ignore[arg-type]
    result.quarantined = dict(quarantined)
    result.devices_with_rows = {
        str(row[0])
        for row in _query(dsn, "SELECT device_id FROM readings UNION SELECT device_id FROM device_events")
    }
    result.alerted_devices = {str(row[0]) for row in _query(dsn, alerted)}


def describe(cases: list[Case], limit: int = 40) -> str:
    """A readable list of inputs for an assertion message, grouped by category."""
    by_category: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_category[case.category].append(case)
    lines = [f"{len(cases)} inputs:"]
    for category, members in sorted(by_category.items()):
        lines.append(f"  {category}: {len(members)}")
        lines += [f"    {c.topic}  {c.payload[:90]!r}" for c in members[:limit]]
    return "\n".join(lines)
