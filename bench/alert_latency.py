"""Carewatch panic-alert latency benchmark (not a test: it prints and writes results).

    python bench/alert_latency.py [--panics N] [--background-rate R] [--interval-s S]
                                  [--dsn DSN] [--out bench/results/alert_latency.json]

It measures, for N panic presses, the time from the device's publish to the
moment the alert is committed, while a steady background load of heart-rate
telemetry (R msg/s, QoS 1) flows through the same broker and the same
``carewatch ingest``:

* one fresh Mosquitto (``tests.support.broker.start_broker``), one fresh
  database (migrated by the service on start), ``carewatch ingest`` started
  and ready (``/readyz`` 200);
* a LISTEN connection on ``carewatch_alerts``: every new alert inserts an
  ``alert_outbox`` row whose trigger NOTIFYs the alert's id, and PostgreSQL
  delivers a NOTIFY only at COMMIT, so the time it is received is the time
  the alert was committed (plus delivery);
* the background load: this script in ``background`` mode, a separate
  process publishing canonical heart_rate messages (bpm 60-100, so no rule
  fires) in small paced bursts on ~100 devices, warmed up before the panics;
* the panics: paho-mqtt, QoS 1, one every ``--interval-s`` from a distinct
  device (``panic-{i}``), so each opens a new alert and one NOTIFY.

latency = NOTIFY received - just before publish (both ``time.monotonic()``
in this process). Reported: p50, p90, p99 and max, against the target
p99 <= 100 ms. Every panic must arrive: a missing one is a FAILURE (exit 1),
as is lost telemetry or a service that does not exit cleanly; a missed
target is not. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._common import (  # noqa: E402
    BenchError,
    Broker,
    Databases,
    Processes,
    count_rows,
    database_info,
    free_port,
    http_status,
    machine_info,
    read_json_line,
    run_and_report,
    start_bench_broker,
    wait_until,
)
from bench.ingest_throughput import Bench  # noqa: E402
from ingest import wire  # noqa: E402
from ingest.errors import MqttError  # noqa: E402
from ingest.session import MqttSession  # noqa: E402
from ingest.settings import MqttSettings  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client.metrics_core import Metric

CHANNEL = "carewatch_alerts"
TARGET_P99_MS = 100.0
INGEST_CLIENT_ID = "bench-alert-ingest"
PANIC_GATEWAY = "bench-panic-gw"
BACKGROUND_GATEWAY = "bench-gw"
METRICS_OF_INTEREST = (
    "carewatch_ingest_flush_duration_seconds",
    "carewatch_ingest_batch_messages",
    "carewatch_ingest_ack_lag_seconds",
)


# ---------------------------------------------------------------------------
# background load (its own process: ``alert_latency.py background ...``)
# ---------------------------------------------------------------------------


class PacedLoad:
    """Heart-rate telemetry at a steady rate, from the go line to the stop line on stdin.

    Bursts of ``rate * tick_s`` messages on an absolute schedule (a late tick
    is caught up at once, and its lateness recorded). Every publish is QoS 1
    and awaits its PUBACK, as an independent task; the session joins the
    packets of one burst into one ``send``. Reports the achieved rate and a
    (monotonic time, published, acknowledged) sample every 100 ms, from which
    the driver takes the rate during the panic phase.
    """

    def __init__(self, args: argparse.Namespace, session: MqttSession) -> None:
        self.args = args
        self.session = session
        self.topics = [f"carewatch/v1/{BACKGROUND_GATEWAY}/hr{d}/json" for d in range(args.devices)]
        rng = random.Random(args.seed)
        self.bpms = [rng.randint(60, 100) for _ in range(997)]  # never a heart-rate alert
        self.last_ts = [0] * args.devices
        self.burst = max(1, round(args.rate * args.tick_s))
        self.tick_s = self.burst / args.rate  # exactly ``rate`` on average
        self.pending: set[asyncio.Task[None]] = set()
        self.sent = self.acked = self.failed = 0
        self.ticks = self.late_ticks = self.max_inflight = 0
        self.max_late_s = 0.0
        self.samples: list[tuple[float, int, int]] = []

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.failed += 1
        else:
            self.acked += 1

    def _publish_burst(self) -> None:
        now_ms = int(time.time() * 1000)
        for _ in range(self.burst):
            device = self.sent % len(self.topics)
            ts = max(now_ms, self.last_ts[device] + 1)  # unique and increasing per device
            self.last_ts[device] = ts
            bpm = self.bpms[self.sent % len(self.bpms)]
            payload = b'{"ts": %d, "kind": "heart_rate", "bpm": %d, "msg_id": "bg-%d-%010d"}' % (
                ts,
                bpm,
                self.args.seed,
                self.sent,
            )
            publish = self.session.publish(self.topics[device], payload, qos=1, timeout_s=60.0)
            task = asyncio.create_task(publish)
            task.add_done_callback(self._finished)
            self.pending.add(task)
            self.sent += 1

    async def run(self, stop: asyncio.Future[str]) -> float:
        """Publish until ``stop`` is done; returns the seconds it ran."""
        started = time.monotonic()
        self.samples.append((started, 0, 0))
        next_sample = started + 0.1
        while not stop.done() and self.session.is_open:
            due = started + self.ticks * self.tick_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.monotonic() - due
            self.max_late_s = max(self.max_late_s, late)
            self.late_ticks += late > self.tick_s
            self._publish_burst()
            self.ticks += 1
            self.max_inflight = max(self.max_inflight, len(self.pending))
            now = time.monotonic()
            if now >= next_sample:
                self.samples.append((round(now, 4), self.sent, self.acked))
                next_sample += 0.1
        stopped = time.monotonic()
        self.samples.append((round(stopped, 4), self.sent, self.acked))
        if self.pending:
            await asyncio.wait(self.pending, timeout=60)
        return stopped - started

    def report(self, seconds: float) -> dict[str, Any]:
        return {
            "event": "done",
            "target_rate": self.args.rate,
            "burst": self.burst,
            "tick_s": self.tick_s,
            "devices": len(self.topics),
            "published": self.sent,
            "acked": self.acked,
            "failed": self.failed,
            "unfinished": len(self.pending),
            "seconds": round(seconds, 4),
            "rate_acked": round(self.acked / seconds, 1) if seconds > 0 else None,
            "max_tick_late_ms": round(self.max_late_s * 1000, 2),
            "ticks": self.ticks,
            "ticks_late_over_one_tick": self.late_ticks,
            "max_inflight": self.max_inflight,
            "samples": self.samples,
        }


async def background_load(args: argparse.Namespace) -> dict[str, Any]:
    """Connect, say ready, publish between the go and the stop line, report."""
    broker = MqttSettings.from_url(args.url)
    session = await MqttSession.open(
        host=broker.host,
        port=broker.port,
        options=wire.ConnectOptions(
            client_id=f"bench-background-{os.getpid()}",
            clean_start=True,
            session_expiry_s=0,
            username=broker.username,
            password=broker.password,
        ),
        ssl_context=broker.ssl_context(),
        on_publish=lambda _session, _packet: None,
    )
    load = PacedLoad(args, session)
    print(json.dumps({"event": "ready"}), flush=True)
    if not await asyncio.to_thread(sys.stdin.readline):
        await session.close()
        raise SystemExit("stdin closed before the go line")
    # The stop line, or EOF when the driver is gone.
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    seconds = await load.run(stop)
    await session.close()
    return load.report(seconds)


def background_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="alert_latency.py background")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--tick-s", type=float, default=0.01)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = asyncio.run(background_load(args))
    print(json.dumps(result), flush=True)
    return 0


def rate_between(samples: Sequence[Sequence[float]], start: float, end: float) -> float | None:
    """Acknowledged messages per second between two monotonic instants (linear interpolation)."""

    def acked_at(moment: float) -> float:
        previous = samples[0]
        for sample in samples:
            if sample[0] >= moment:
                span = sample[0] - previous[0]
                if span <= 0:
                    return float(sample[2])
                return previous[2] + (sample[2] - previous[2]) * (moment - previous[0]) / span
            previous = sample
        return float(samples[-1][2])

    if not samples or end <= start or start < samples[0][0] or end > samples[-1][0]:
        return None
    return (acked_at(end) - acked_at(start)) / (end - start)


# ---------------------------------------------------------------------------
# the driver's instruments
# ---------------------------------------------------------------------------


class NotifyListener(threading.Thread):
    """LISTEN on ``carewatch_alerts``; records (monotonic, wall, payload) of every NOTIFY."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="bench-listen", daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="bench-alert-listener")
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.received: list[tuple[float, float, str]] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for notify in self.conn.notifies(timeout=0.2):
                    self.received.append((time.monotonic(), time.time(), notify.payload))
        except BaseException as exc:  # reported by the driver
            self.error = exc

    def first_by_payload(self) -> dict[str, tuple[float, float]]:
        first: dict[str, tuple[float, float]] = {}
        for mono, wall, payload in list(self.received):
            first.setdefault(payload, (mono, wall))
        return first

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


class PanicPublisher:
    """A device gateway's client (paho-mqtt 2.x, MQTT 5, QoS 1) for the panic presses."""

    def __init__(self, url: str) -> None:
        broker = MqttSettings.from_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-panic-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.connect(broker.host, broker.port, clean_start=True)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "the panic publisher to connect")
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, device: str, msg_id: str) -> tuple[float, float]:
        """Publish one panic press; returns (monotonic, wall) taken just before the publish call."""
        payload = json.dumps({"ts": int(time.time() * 1000), "kind": "panic", "msg_id": msg_id}).encode()
        topic = f"carewatch/v1/{PANIC_GATEWAY}/{device}/json"
        mono, wall = time.monotonic(), time.time()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BenchError(f"panic publish failed: {mqtt.error_string(info.rc)}")
        self.infos.append(info)
        return mono, wall

    def unacknowledged(self, timeout_s: float) -> int:
        """Wait for the PUBACKs; how many never came."""
        deadline = time.monotonic() + timeout_s
        missing = 0
        for info in self.infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            missing += not info.is_published()
        return missing

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------
# statistics and metrics
# ---------------------------------------------------------------------------


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, p50, p90, p99, max and mean, in ms (percentiles interpolated between ranks)."""
    if not values_s:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ms = sorted(v * 1000 for v in values_s)
    cuts = [ms[0]] * 99 if len(ms) == 1 else statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "count": len(ms),
        "min": round(ms[0], 2),
        "p50": round(cuts[49], 2),
        "p90": round(cuts[89], 2),
        "p99": round(cuts[98], 2),
        "max": round(ms[-1], 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def histogram_summary(family: Metric) -> dict[str, Any]:
    """count, sum, mean and bucket bounds of p50/p90/p99 of one Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            buckets.append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            count = sample.value
        elif sample.name.endswith("_sum"):
            total = sample.value
    buckets.sort()

    def bound(q: float) -> float | None:
        for le, cumulative in buckets:
            if count and cumulative >= q * count:
                return le
        return None

    return {
        "count": int(count),
        "sum": round(total, 4),
        "mean": round(total / count, 6) if count else None,
        "p50_at_most": bound(0.5),
        "p90_at_most": bound(0.9),
        "p99_at_most": bound(0.99),
        "buckets": {("+Inf" if le == float("inf") else str(le)): int(n) for le, n in buckets},
    }


def scrape_metrics(url: str) -> dict[str, Any]:
    """The histograms of interest and the message counters from ``/metrics``."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own http://127.0.0.1
        text = response.read().decode()
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name in METRICS_OF_INTEREST:
            found[family.name] = histogram_summary(family)
        elif family.name in {"carewatch_ingest_messages_received", "carewatch_ingest_messages_stored"}:
            found[family.name + "_total"] = int(
                sum(s.value for s in family.samples if s.name.endswith("_total"))
            )
    return found


# ---------------------------------------------------------------------------
# who used the CPUs during the panic phase (Linux /proc)
# ---------------------------------------------------------------------------

OTHERS_WARN_CORES = 0.10


@dataclass
class CpuSnapshot:
    """Machine-wide busy jiffies and every process's utime + stime, at one instant."""

    mono: float
    busy: int
    procs: dict[int, tuple[str, int]]

    @classmethod
    def take(cls) -> CpuSnapshot:
        mono = time.monotonic()
        busy = 0
        with contextlib.suppress(OSError, ValueError), Path("/proc/stat").open() as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
            busy = sum(values) - values[3] - values[4]  # minus idle and iowait
        procs: dict[int, tuple[str, int]] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError, ValueError, IndexError):
                    text = Path(entry.path, "stat").read_text()
                    comm = text[text.index("(") + 1 : text.rindex(")")]
                    fields = text[text.rindex(")") + 2 :].split()
                    procs[int(entry.name)] = (comm, int(fields[11]) + int(fields[12]))
        return cls(mono, busy, procs)


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot, ours: dict[str, set[int]]) -> dict[str, Any]:
    """CPU used between two snapshots, in cores (1.0 = one CPU busy all the time), ours vs the rest."""
    ticks = os.sysconf("SC_CLK_TCK") * max(after.mono - before.mono, 1e-9)

    def used(pid: int) -> int:
        return after.procs.get(pid, ("", 0))[1] - before.procs.get(pid, ("", 0))[1]

    per_role = {role: round(sum(used(pid) for pid in pids) / ticks, 3) for role, pids in ours.items()}
    all_ours = set().union(*ours.values())
    machine = (after.busy - before.busy) / ticks
    others = max(0.0, machine - sum(per_role.values()))
    top = sorted(
        ((used(pid), pid, after.procs[pid][0]) for pid in after.procs if pid not in all_ours),
        reverse=True,
    )[:5]
    return {
        "seconds": round(after.mono - before.mono, 3),
        "nproc": len(os.sched_getaffinity(0)),
        "machine_busy_cores": round(machine, 3),
        "ours_cores": per_role,
        "others_cores": round(others, 3),
        "top_others": [{"pid": pid, "comm": comm, "cores": round(n / ticks, 3)} for n, pid, comm in top if n],
        "disturbed": others > OTHERS_WARN_CORES,
    }


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


def start_ingest(
    tools: Bench, procs: Processes, broker: Broker, dsn: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``carewatch ingest`` (it migrates the fresh database) and wait for /readyz; (process, port)."""
    metrics_port = free_port()
    argv = [tools.carewatch, "ingest", "--mqtt-url", broker.url, "--dsn", dsn]
    argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
    argv += ["--client-id", INGEST_CLIENT_ID]
    service = procs.start("ingest", argv)
    readyz = f"http://127.0.0.1:{metrics_port}/readyz"

    def ready() -> bool:
        if service.poll() is not None:
            raise BenchError(f"carewatch ingest exited ({service.returncode})\n{procs.log_tail('ingest')}")
        return http_status(readyz) == 200

    wait_until(ready, 60, "carewatch /readyz", interval_s=0.05)
    time.sleep(0.3)  # readyz turns 200 on SUBACK; let everything settle
    return service, metrics_port


def start_background(args: argparse.Namespace, procs: Processes, broker: Broker) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(Path(__file__).resolve()), "background", "--url", broker.url]
    argv += ["--rate", str(args.background_rate), "--tick-s", str(args.tick_s)]
    argv += ["--devices", str(args.devices), "--seed", str(args.seed)]
    proc = procs.start("background", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ready = read_json_line(proc, 60, "background publisher")
    if ready.get("event") != "ready":
        raise BenchError(f"background publisher said {ready}\n{procs.log_tail('background')}")
    return proc


class AlertRun:
    """One run: its processes, database, broker and instruments, and the results as they come."""

    def __init__(self, args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
        self.args = args
        self.result = result
        self.problems: list[str] = result["problems"]
        self.procs = Processes(workdir)
        self.databases = Databases(args.dsn)
        self.workdir = workdir
        self.broker: Broker | None = None
        self.listener: NotifyListener | None = None
        self.panics: PanicPublisher | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.dsn = ""
        self.metrics_port = 0
        self.service: subprocess.Popen[bytes] | None = None
        self.background: subprocess.Popen[bytes] | None = None
        self.published: list[tuple[float, float]] = []
        self.phase_end = 0.0

    # -- phases -------------------------------------------------------------

    def measure(self) -> None:
        """Everything, in order; a failure is recorded as a problem, and cleanup always runs."""
        try:
            self.set_up()
            self.panic_phase()
            self.stop_background()
            self.check_storage()
            self.analyse()
            self.stop_service()
        except (BenchError, MqttError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
            self.problems.append(str(exc))
        finally:
            self.clean_up()

    def set_up(self) -> None:
        """Broker, database, ingest (ready), LISTEN, background publisher, panic client."""
        self.broker, self.result["config"]["broker"] = start_bench_broker(self.workdir)
        tools = Bench(self.args, self.broker, self.procs, self.databases)  # its carewatch and py-spy helpers
        self.dsn = self.databases.create()
        self.service, self.metrics_port = start_ingest(tools, self.procs, self.broker, self.dsn)
        self.result["database"] = database_info(self.dsn)
        print(f"broker {self.broker.url}; ingest ready; {self.result['database']['backend']}", flush=True)
        self.listener = NotifyListener(self.dsn)
        self.listener.start()
        self.background = start_background(self.args, self.procs, self.broker)
        self.panics = PanicPublisher(self.broker.url)
        self.profiler = tools.start_profiler(self.service.pid, "ingest")

    def alive(self) -> None:
        """Raise if the service or the background publisher has died."""
        for name, proc in (("ingest", self.service), ("background", self.background)):
            if proc is not None and proc.poll() is not None:
                raise BenchError(
                    f"{name} exited ({proc.returncode}) during the run\n{self.procs.log_tail(name)}"
                )

    def panic_phase(self) -> None:
        """Warm the background load up, press the panics, wait for their NOTIFYs."""
        assert self.background is not None
        assert self.panics is not None
        assert self.listener is not None
        self.result["loadavg_1m_before"] = os.getloadavg()[0]
        Bench.go(self.background)
        time.sleep(self.args.warmup_s)
        self.alive()
        print(
            f"background load running ({self.args.background_rate:,.0f} msg/s); "
            f"{self.args.panics} panics, one every {self.args.interval_s}s ...",
            flush=True,
        )
        ours = self.our_processes()
        cpu_before = CpuSnapshot.take()
        phase_start = time.monotonic() + 0.05
        for i in range(self.args.panics):
            delay = phase_start + i * self.args.interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.published.append(self.panics.publish(f"panic-{i}", f"panic-{self.args.seed}-{i}"))
            if i % 50 == 49:
                self.alive()
        deadline = self.published[-1][0] + self.args.grace_s
        while len(self.listener.first_by_payload()) < self.args.panics and time.monotonic() < deadline:
            self.alive()
            if self.listener.error is not None:
                raise BenchError(f"LISTEN connection failed: {self.listener.error}")
            time.sleep(0.01)
        time.sleep(0.2)  # a straggler, or a notification nobody expected
        self.phase_end = time.monotonic()
        self.result["cpu_during_panics"] = cpu_usage(cpu_before, CpuSnapshot.take(), ours)
        self.alive()  # the background load flowed during the whole phase

    def our_processes(self) -> dict[str, set[int]]:
        """The pids of this run, by role (the database backends only when the server is local)."""
        assert self.service is not None
        assert self.background is not None
        roles = {
            "ingest": {self.service.pid},
            "background": {self.background.pid},
            "driver": {os.getpid()},
            "broker": set(),
            "postgres_backends": set(),
        }
        process = getattr(self.broker, "process", None) or getattr(self.broker, "proc", None)
        if process is not None:
            roles["broker"].add(process.pid)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        roles["postgres_backends"] = {int(pid) for (pid,) in rows}
        return roles

    def stop_background(self) -> None:
        """Stop the background load and take its report."""
        proc = self.background
        assert proc is not None
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        done = read_json_line(proc, 90, "background publisher")
        if proc.wait(30) != 0 or done.get("event") != "done":
            raise BenchError(f"background publisher failed: {done}\n{self.procs.log_tail('background')}")
        samples = done.pop("samples")
        done["rate_acked_during_panics"] = rate_between(samples, self.published[0][0], self.phase_end)
        done["panic_phase_s"] = round(self.phase_end - self.published[0][0], 3)
        self.result["background"] = done
        if done["failed"] or done["unfinished"]:
            self.problems.append(
                f"background: {done['failed']} publishes failed, {done['unfinished']} unfinished"
            )
        assert self.panics is not None
        unacked = self.panics.unacknowledged(10)
        if unacked:
            self.problems.append(f"{unacked} panic publishes got no PUBACK from the broker")

    def check_storage(self) -> None:
        """Did ingest keep up, and store every background message exactly once?"""
        expected = self.result["background"]["acked"]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            backlog = expected - count_rows(conn)
            started = time.monotonic()
            try:
                wait_until(
                    lambda: count_rows(conn) >= expected, 60, "ingest to store the background load", 0.05
                )
            except BenchError as exc:
                self.problems.append(str(exc))
            readings = count_rows(conn)
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
        self.result["ingest"] = {
            "backlog_rows_after_panic_phase": backlog,
            "drain_s": round(time.monotonic() - started, 3),
            "readings": readings,
        }
        if readings != expected:
            self.problems.append(
                f"readings has {readings} rows; the background publisher had {expected} PUBACKs"
            )
        if quarantined and quarantined[0]:
            self.problems.append(f"{quarantined[0]} messages went to quarantine")

    def analyse(self) -> None:
        """Match every panic to its alert and NOTIFY (one query), and compute the latencies."""
        assert self.listener is not None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT a.device_id, a.id, a.rule, a.raised_at, e.received_at"
                " FROM alerts a LEFT JOIN device_events e"
                "   ON e.device_id = a.device_id AND e.kind = 'panic'"
                " ORDER BY a.id"
            ).fetchall()
        by_device = {row[0]: row[1:] for row in rows}
        first = self.listener.first_by_payload()
        self.result["notifications"] = {"received": len(self.listener.received), "distinct": len(first)}
        latencies: list[float] = []
        parts: tuple[list[float], list[float], list[float]] = ([], [], [])
        per_panic: list[dict[str, Any]] = []
        missing: list[str] = []
        panic_ids: set[str] = set()
        for i, (pub_mono, pub_wall) in enumerate(self.published):
            device = f"panic-{i}"
            found = by_device.get(device)
            if found is None:
                missing.append(f"{device}: no alert")
                continue
            alert_id, rule, raised_at, received_at = found
            panic_ids.add(str(alert_id))
            notified = first.get(str(alert_id))
            if rule != "panic" or notified is None:
                missing.append(f"{device}: alert {alert_id} ({rule}) committed, no NOTIFY with its id")
                continue
            latencies.append(notified[0] - pub_mono)
            entry: dict[str, Any] = {
                "i": i,
                "alert_id": alert_id,
                "latency_ms": round(latencies[-1] * 1000, 2),
            }
            if received_at is not None and raised_at is not None:
                # Wall-clock split (one host clock): broker + intake; waiting for
                # the batcher; the panic's own transaction + NOTIFY delivery.
                segments = (
                    received_at.timestamp() - pub_wall,
                    raised_at.timestamp() - received_at.timestamp(),
                    notified[1] - raised_at.timestamp(),
                )
                for bucket, value in zip(parts, segments, strict=True):
                    bucket.append(value)
                names = ("to_ingest_ms", "wait_for_batch_ms", "commit_and_notify_ms")
                entry.update({name: round(v * 1000, 2) for name, v in zip(names, segments, strict=True)})
            per_panic.append(entry)
        latency_ms = summary_ms(latencies)
        p99 = latency_ms["p99"]
        self.result["panics"] = {
            "sent": len(self.published),
            "received": len(latencies),
            "missing": missing,
            "latency_ms": latency_ms,
            "target": {
                "p99_ms": TARGET_P99_MS,
                "met": p99 is not None and not missing and p99 <= TARGET_P99_MS,
            },
            "breakdown_ms": {
                "publish_to_ingest_received": summary_ms(parts[0]),
                "received_to_batch_write_start": summary_ms(parts[1]),
                "batch_write_start_to_notify": summary_ms(parts[2]),
            },
            "slowest": sorted(per_panic, key=lambda e: -e["latency_ms"])[:10],
            "other_notifications": sorted(set(first) - panic_ids)[:20],
            "per_panic": per_panic,
        }
        if missing:
            self.problems.append(
                f"{len(missing)}/{len(self.published)} panics have no alert NOTIFY: {missing[:5]}"
            )

    def stop_service(self) -> None:
        """Scrape /metrics, then SIGTERM: ingest must exit 0."""
        assert self.service is not None
        ingest = self.result["ingest"]
        ingest["metrics"] = scrape_metrics(f"http://127.0.0.1:{self.metrics_port}/metrics")
        self.service.send_signal(signal.SIGTERM)
        try:
            code = self.service.wait(30)
        except subprocess.TimeoutExpired:
            raise BenchError("carewatch ingest did not exit within 30s of SIGTERM") from None
        ingest["exit_code"] = code
        if code != 0:
            self.problems.append(
                f"carewatch ingest exited {code} on SIGTERM\n{self.procs.log_tail('ingest')}"
            )
        if self.profiler is not None and self.profiler.wait(30) != 0:
            print(f"WARNING: py-spy failed\n{self.procs.log_tail('ingest-py-spy')}", file=sys.stderr)

    def clean_up(self) -> None:
        """End every process, stop the broker, drop the database (also after a failure or Ctrl-C)."""
        if self.panics is not None:
            self.panics.close()
        if self.listener is not None:
            self.listener.stop()
        self.procs.end_all()
        if self.broker is not None:
            self.broker.stop()
        self.databases.drop_all()


def print_report(result: dict[str, Any]) -> None:
    panics = result.get("panics")
    background = result.get("background")
    checkout = result.get("checkout", {})
    print()
    modified = ", ".join(checkout.get("modified", [])) or "none"
    print(f"checkout          {checkout.get('commit')} (modified: {modified})")
    if background:
        during = background.get("rate_acked_during_panics")
        print(
            f"background load   target {background['target_rate']:,.0f} msg/s, achieved "
            f"{background['rate_acked']:,.0f} msg/s overall, "
            f"{'-' if during is None else f'{during:,.0f}'} msg/s during the panics "
            f"(max tick lateness {background['max_tick_late_ms']:.1f} ms)"
        )
    if panics:
        lat = panics["latency_ms"]
        print(f"panics            {panics['received']}/{panics['sent']} alerts committed and notified")
        if lat["count"]:
            print(
                f"latency (ms)      p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p99 {lat['p99']:.1f}  "
                f"max {lat['max']:.1f}  (min {lat['min']:.1f}, mean {lat['mean']:.1f})"
            )
            for key, label in (
                ("publish_to_ingest_received", "publish -> ingest received"),
                ("received_to_batch_write_start", "received -> batch write starts"),
                ("batch_write_start_to_notify", "write starts -> NOTIFY received"),
            ):
                part = panics["breakdown_ms"][key]
                if part["count"]:
                    shown = f"p50 {part['p50']:7.1f}  p99 {part['p99']:7.1f}  max {part['max']:7.1f}"
                    print(f"  {label:<32} {shown}")
        verdict = "MET" if panics["target"]["met"] else "NOT MET"
        print(f"p99 <= {TARGET_P99_MS:.0f} ms      {verdict}")
    cpu = result.get("cpu_during_panics")
    if cpu:
        ours = ", ".join(f"{role} {cores:.2f}" for role, cores in cpu["ours_cores"].items())
        print(
            f"CPU (cores)       machine {cpu['machine_busy_cores']:.2f} of {cpu['nproc']}: {ours}; "
            f"other processes {cpu['others_cores']:.2f}"
        )
        if cpu["disturbed"]:
            top = ", ".join(f"{p['comm']}[{p['pid']}] {p['cores']:.2f}" for p in cpu["top_others"])
            print(
                f"WARNING: other processes used the CPUs during the panic phase ({top}); not representative"
            )
    metrics = result.get("ingest", {}).get("metrics", {})
    flush = metrics.get("carewatch_ingest_flush_duration_seconds")
    batch = metrics.get("carewatch_ingest_batch_messages")
    if flush and batch and flush["count"]:
        print(
            f"ingest batches    {flush['count']} commits, mean {flush['mean'] * 1000:.1f} ms "
            f"(p99 <= {flush['p99_at_most']} s), mean {batch['mean']:.0f} msgs/batch "
            f"(p99 <= {batch['p99_at_most']})"
        )
    for problem in result["problems"]:
        print(f"\nFAILURE: {problem}", file=sys.stderr)


def checkout_info() -> dict[str, Any]:
    """The commit measured, and the files that differ from it (the service runs from this tree)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "modified": [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Carewatch: publish -> alert-committed latency of panic presses under telemetry load.",
    )
    parser.add_argument("--panics", type=int, default=300, help="panic presses, each from a new device")
    parser.add_argument("--background-rate", type=float, default=5000.0, help="heart_rate msg/s behind them")
    parser.add_argument("--interval-s", type=float, default=0.1, help="seconds between panic presses")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("CAREWATCH_BENCH_DSN") or os.environ.get("CAREWATCH_TEST_TIMESCALE_DSN"),
        help="server to create the bench database on (env CAREWATCH_BENCH_DSN, then "
        "CAREWATCH_TEST_TIMESCALE_DSN)",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results" / "alert_latency.json", help="JSON results"
    )
    parser.add_argument("--devices", type=int, default=100, help="background devices")
    parser.add_argument("--tick-s", type=float, default=0.01, help="background: one burst every this often")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="background load before the first panic")
    parser.add_argument(
        "--grace-s", type=float, default=10.0, help="wait for the last alerts after publishing"
    )
    parser.add_argument("--seed", type=int, default=1, help="bpm values and msg_id prefix")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="profile ingest into DIR")
    parser.add_argument("--py-spy-native", action="store_true", help="with --py-spy: C frames too")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(
            "no database server: pass --dsn, or set CAREWATCH_BENCH_DSN or CAREWATCH_TEST_TIMESCALE_DSN "
            '(eval "$(.ci/services up)" exports the latter)'
        )
    if args.panics < 1 or args.background_rate <= 0 or args.interval_s < 0 or args.devices < 1:
        parser.error("--panics, --background-rate and --devices must be positive, --interval-s >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["background"]:
        return background_main(argv[1:])
    args = parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "carewatch panic publish -> alert committed (NOTIFY) latency under telemetry load",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "panics": args.panics,
            "interval_s": args.interval_s,
            "background_rate": args.background_rate,
            "background_devices": args.devices,
            "background_tick_s": args.tick_s,
            "warmup_s": args.warmup_s,
            "grace_s": args.grace_s,
            "py_spy": args.py_spy is not None,
        },
        "machine": machine_info(),
        "checkout": checkout_info(),
        "problems": [],
    }
    return run_and_report(
        result,
        lambda workdir: AlertRun(args, workdir, result).measure(),
        print_report,
        args.out,
        prefix="carewatch-alert-bench-",
    )


if __name__ == "__main__":
    sys.exit(main())
