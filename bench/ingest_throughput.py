"""Carewatch ingest throughput benchmark (not a test: it prints and writes results).

    python bench/ingest_throughput.py [--count N] [--naive-count M] [--dsn DSN]
                                      [--repeat K] [--out bench/results/ingest.json]

In one run, against one fresh Mosquitto and fresh databases, it measures the
QoS 1 delivery rate, in messages per second, of:

(a) raw: the broker alone, delivering to ``mosquitto_sub``;
(b) carewatch: ``carewatch ingest`` end to end (publish -> committed rows);
(c) naive: a reference subscriber committing one INSERT per message.

Every stage runs LIVE: the consumer is connected, subscribed and idle before
the publisher (a separate process, ``bench/publish.py``, same settings for
every stage) is told to start. The clock runs from that moment until the
consumer has everything: ``mosquitto_sub -C N`` exits, or ``SELECT count(*)
FROM readings`` (polled every 20 ms) reaches N. The result is the ratios
carewatch/raw and carewatch/naive, compared with the targets (>= 0.4 and
>= 3); absolute rates depend on the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from collections.abc import Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._common import (  # noqa: E402
    BenchError,
    Broker,
    Databases,
    Processes,
    carewatch_binary,
    clear_session,
    connected_to,
    count_rows,
    database_info,
    free_port,
    http_status,
    machine_info,
    read_json_line,
    start_bench_broker,
    terminate_on_sigterm,
    wait_until,
)
from ingest.errors import MqttError  # noqa: E402
from ingest.settings import MqttSettings  # noqa: E402

__all__ = [  # the names other benchmarks import from here
    "Bench",
    "BenchError",
    "Broker",
    "Databases",
    "Processes",
    "count_rows",
    "database_info",
    "free_port",
    "http_status",
    "machine_info",
    "read_json_line",
    "start_bench_broker",
    "terminate_on_sigterm",
    "wait_until",
]

TOPIC_FILTER = "carewatch/v1/#"
RAW_CLIENT_ID = "bench-raw"
INGEST_CLIENT_ID = "bench-ingest"
NAIVE_CLIENT_ID = "bench-naive"
POLL_INTERVAL_S = 0.020
TARGET_VS_RAW = 0.4
TARGET_VS_NAIVE = 3.0
STAGES = ("publisher", "raw", "carewatch", "naive")
STAGE_TITLES = {
    "publisher": "(0) publisher alone, no subscriber (ceiling)",
    "raw": "(a) broker -> mosquitto_sub (raw QoS 1)",
    "carewatch": "(b) carewatch ingest (publish -> committed rows)",
    "naive": "(c) naive subscriber (1 INSERT+COMMIT/msg)",
}


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass
class StageResult:
    """One measurement of one stage."""

    stage: str
    run: int
    count: int
    seconds: float = 0.0
    rate: float = 0.0
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    publisher: dict[str, Any] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    loadavg_1m_before: float = 0.0


def median_rate(results: Sequence[StageResult], stage: str) -> float | None:
    """Median rate of the successful runs of ``stage``, None if there are none."""
    rates = [r.rate for r in results if r.stage == stage and r.ok]
    return statistics.median(rates) if rates else None


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------


class Bench:
    """Runs the stages against one broker."""

    def __init__(
        self, args: argparse.Namespace, broker: Broker, procs: Processes, databases: Databases
    ) -> None:
        self.args = args
        self.broker = broker
        self.procs = procs
        self.databases = databases
        self.python = sys.executable
        self.carewatch = carewatch_binary()
        self.database: dict[str, Any] = {}

    # -- shared steps -------------------------------------------------------

    def start_publisher(self, name: str, count: int, seed: int) -> subprocess.Popen[bytes]:
        """Start bench/publish.py and wait until it is connected with its payloads built."""
        argv = [
            self.python,
            str(BENCH_DIR / "publish.py"),
            "--url",
            self.broker.url,
            "--count",
            str(count),
            "--devices",
            str(self.args.devices),
            "--seed",
            str(seed),
            "--inflight",
            str(self.args.inflight),
            "--client-id",
            f"bench-pub-{name}",
            "--wait-go",
        ]
        proc = self.procs.start(name, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = read_json_line(proc, 120, f"publisher {name}")
        if ready.get("event") != "ready":
            raise BenchError(f"publisher {name} said {ready} instead of ready\n{self.procs.log_tail(name)}")
        return proc

    @staticmethod
    def go(publisher: subprocess.Popen[bytes]) -> float:
        """Tell the publisher to start; returns the start of the clock."""
        assert publisher.stdin is not None
        started = time.perf_counter()
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
        return started

    def publisher_result(self, publisher: subprocess.Popen[bytes], name: str) -> dict[str, Any]:
        done = read_json_line(publisher, self.timeout(self.args.count), f"publisher {name}")
        if publisher.wait(30) != 0 or done.get("event") != "done":
            raise BenchError(f"publisher {name} failed: {done}\n{self.procs.log_tail(name)}")
        return done

    def timeout(self, count: int, floor_rate: float = 200.0) -> float:
        """How long a stage may take before it is declared stuck."""
        return max(float(self.args.timeout), count / floor_rate)

    def wait_for_rows(
        self, conn: psycopg.Connection[Any], count: int, consumer: subprocess.Popen[bytes], name: str
    ) -> tuple[float, int]:
        """Poll count(*) every 20 ms until it reaches ``count``; (time reached, polls)."""
        deadline = time.monotonic() + self.timeout(count)
        polls = 0
        while True:
            polls += 1
            seen = count_rows(conn)
            if seen >= count:
                return time.perf_counter(), polls
            if consumer.poll() is not None:
                raise BenchError(
                    f"{name} exited (code {consumer.returncode}) with {seen}/{count} rows\n"
                    f"{self.procs.log_tail(name)}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: only {seen}/{count} rows after {self.timeout(count):.0f}s (loss?)")
            time.sleep(POLL_INTERVAL_S)

    def fresh_database(self) -> str:
        """A new database with Carewatch's schema (the same for carewatch and naive)."""
        dsn = self.databases.create()
        done = subprocess.run(
            [self.carewatch, "db", "migrate", "--dsn", dsn],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"carewatch db migrate failed:\n{done.stdout}{done.stderr}")
        if not self.database:
            self.database = database_info(dsn)
        return dsn

    @staticmethod
    def check_rows(dsn: str, count: int) -> list[str]:
        """Exactly ``count`` distinct readings and no quarantine, else what is wrong."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, msg_id)) FROM readings"
            ).fetchone()
            assert row is not None
            total, distinct = int(row[0]), int(row[1])
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
        problems = []
        if total != count:
            problems.append(f"readings has {total} rows, expected exactly {count}")
        if distinct != total:
            problems.append(f"readings has {total - distinct} duplicate (device_id, msg_id) rows")
        if quarantined and quarantined[0]:
            problems.append(f"{quarantined[0]} messages went to quarantine")
        return problems

    # -- stages -------------------------------------------------------------

    def run_stage(self, stage: str, run: int) -> StageResult:
        count = self.args.naive_count if stage == "naive" else self.args.count
        result = StageResult(stage=stage, run=run, count=count, loadavg_1m_before=os.getloadavg()[0])
        measure = {
            "publisher": self.measure_publisher,
            "raw": self.measure_raw,
            "carewatch": self.measure_carewatch,
            "naive": self.measure_naive,
        }
        try:
            measure[stage](result)
        except (BenchError, MqttError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
            result.problems.append(str(exc))
        result.ok = not result.problems
        if result.seconds > 0:
            result.rate = result.count / result.seconds
        return result

    def measure_publisher(self, result: StageResult) -> None:
        """The load generator on its own: the broker acknowledges and drops (no subscriber).

        Not part of the targets; it tells whether the publisher limits the
        other stages (when raw is close to this, it does).
        """
        name = f"publisher-{result.run}"
        publisher = self.start_publisher(name, result.count, seed=result.run)
        started = self.go(publisher)
        done = read_json_line(publisher, self.timeout(result.count), f"publisher {name}")
        result.seconds = time.perf_counter() - started
        if publisher.wait(30) != 0 or done.get("event") != "done":
            raise BenchError(f"publisher {name} failed: {done}\n{self.procs.log_tail(name)}")
        result.publisher = done

    def measure_raw(self, result: StageResult) -> None:
        port, count = self.broker.service_port, result.count
        name = f"raw-{result.run}"
        broker = MqttSettings.from_url(self.broker.url)
        base = ["mosquitto_sub", "-h", broker.host, "-p", str(port), "-i", RAW_CLIENT_ID]
        if broker.username is not None:
            base += ["-u", broker.username] + (["-P", broker.password] if broker.password else [])
        base += ["-c", "-q", "1", "-t", TOPIC_FILTER, "-V", "mqttv5"]
        clear_session(self.broker.url, RAW_CLIENT_ID)
        try:
            # Create the persistent, subscribed session first (-E: exit once subscribed) ...
            subprocess.run([*base, "-E"], check=True, timeout=30, capture_output=True)
            # ... then resume it and wait until the client is connected and idle.
            sub = self.procs.start(f"{name}-sub", [*base, "-C", str(count)])
            publisher = self.start_publisher(f"{name}-pub", count, seed=result.run)
            wait_until(lambda: connected_to(sub.pid, port), 30, "mosquitto_sub to connect")
            time.sleep(0.3)  # CONNECT/CONNACK; the session already holds the subscription
            started = self.go(publisher)
            try:
                code = sub.wait(self.timeout(count, floor_rate=1000))
            except subprocess.TimeoutExpired:
                raise BenchError(f"mosquitto_sub did not get {count} messages (loss?)") from None
            finished = time.perf_counter()
            if code != 0:
                raise BenchError(f"mosquitto_sub exited {code}\n{self.procs.log_tail(f'{name}-sub')}")
            result.seconds = finished - started
            result.publisher = self.publisher_result(publisher, f"{name}-pub")
        finally:
            clear_session(self.broker.url, RAW_CLIENT_ID)

    def measure_carewatch(self, result: StageResult) -> None:
        count = result.count
        name = f"carewatch-{result.run}"
        dsn = self.fresh_database()
        clear_session(self.broker.url, INGEST_CLIENT_ID)
        try:
            metrics_port = free_port()
            argv = [self.carewatch, "ingest", "--mqtt-url", self.broker.url, "--dsn", dsn]
            argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
            argv += ["--client-id", INGEST_CLIENT_ID]
            service = self.procs.start(name, argv)
            readyz = f"http://127.0.0.1:{metrics_port}/readyz"

            def ready() -> bool:
                if service.poll() is not None:
                    raise BenchError(
                        f"carewatch ingest exited ({service.returncode})\n{self.procs.log_tail(name)}"
                    )
                return http_status(readyz) == 200

            wait_until(ready, 60, "carewatch /readyz", interval_s=0.05)
            time.sleep(0.3)  # readyz turns 200 on CONNACK; let the SUBACK land too
            profiler = self.start_profiler(service.pid, name)
            publisher = self.start_publisher(f"{name}-pub", count, seed=result.run)
            with psycopg.connect(dsn, autocommit=True) as conn:
                started = self.go(publisher)
                finished, polls = self.wait_for_rows(conn, count, service, name)
            result.seconds = finished - started
            result.publisher = self.publisher_result(publisher, f"{name}-pub")
            service.send_signal(signal.SIGTERM)
            try:
                code = service.wait(30)
            except subprocess.TimeoutExpired:
                raise BenchError("carewatch ingest did not exit within 30s of SIGTERM") from None
            result.consumer = {"exit_code": code, "count_polls": polls}
            if code != 0:
                result.problems.append(
                    f"carewatch ingest exited {code} on SIGTERM\n{self.procs.log_tail(name)}"
                )
            if profiler is not None and profiler.wait(30) != 0:
                print(f"WARNING: py-spy failed\n{self.procs.log_tail(f'{name}-py-spy')}", file=sys.stderr)
            result.problems.extend(self.check_rows(dsn, count))
        finally:
            clear_session(self.broker.url, INGEST_CLIENT_ID)
            self.databases.drop(dsn)

    def measure_naive(self, result: StageResult) -> None:
        count = result.count
        name = f"naive-{result.run}"
        dsn = self.fresh_database()
        clear_session(self.broker.url, NAIVE_CLIENT_ID)
        try:
            argv = [self.python, str(BENCH_DIR / "naive_subscriber.py"), "--url", self.broker.url]
            argv += ["--dsn", dsn, "--count", str(count), "--client-id", NAIVE_CLIENT_ID]
            subscriber = self.procs.start(name, argv, stdout=subprocess.PIPE)
            ready = read_json_line(subscriber, 60, "naive subscriber")
            if ready.get("event") != "ready":
                raise BenchError(f"naive subscriber said {ready}\n{self.procs.log_tail(name)}")
            publisher = self.start_publisher(f"{name}-pub", count, seed=result.run)
            with psycopg.connect(dsn, autocommit=True) as conn:
                started = self.go(publisher)
                finished, polls = self.wait_for_rows(conn, count, subscriber, name)
            result.seconds = finished - started
            result.publisher = self.publisher_result(publisher, f"{name}-pub")
            done = read_json_line(subscriber, 30, "naive subscriber")
            code = subscriber.wait(30)
            result.consumer = {**done, "exit_code": code, "count_polls": polls}
            if code != 0:
                result.problems.append(f"naive subscriber exited {code}\n{self.procs.log_tail(name)}")
            result.problems.extend(self.check_rows(dsn, count))
        finally:
            clear_session(self.broker.url, NAIVE_CLIENT_ID)
            self.databases.drop(dsn)

    def start_profiler(self, pid: int, name: str) -> subprocess.Popen[bytes] | None:
        """py-spy record on carewatch ingest for this stage, when --py-spy DIR is given."""
        if self.args.py_spy is None:
            return None
        py_spy = Path(sys.executable).with_name("py-spy")
        binary = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
        if binary is None:
            raise BenchError("--py-spy needs py-spy (pip install py-spy)")
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        output = self.args.py_spy / f"{name}.txt"
        argv = [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
        # --native must pause the process to unwind C stacks; otherwise sample without pausing.
        argv += ["--native"] if self.args.py_spy_native else ["--nonblocking"]
        argv += ["-o", str(output)]
        profiler = self.procs.start(f"{name}-py-spy", argv)
        time.sleep(1.0)  # attach before the clock starts
        return profiler


def summarise(results: Sequence[StageResult], stages: Sequence[str]) -> dict[str, Any]:
    medians = {stage: median_rate(results, stage) for stage in stages}
    raw, carewatch, naive = medians.get("raw"), medians.get("carewatch"), medians.get("naive")
    vs_raw = carewatch / raw if carewatch and raw else None
    vs_naive = carewatch / naive if carewatch and naive else None
    return {
        "median_rate": medians,
        "ratios": {"carewatch_vs_raw": vs_raw, "carewatch_vs_naive": vs_naive},
        "targets": {
            "carewatch_vs_raw": {
                "target": TARGET_VS_RAW,
                "met": None if vs_raw is None else vs_raw >= TARGET_VS_RAW,
            },
            "carewatch_vs_naive": {
                "target": TARGET_VS_NAIVE,
                "met": None if vs_naive is None else vs_naive >= TARGET_VS_NAIVE,
            },
        },
    }


def print_table(results: Sequence[StageResult], summary: dict[str, Any], stages: Sequence[str]) -> None:
    print()
    print(f"{'stage':<50} {'msgs':>8} {'runs':>5} {'median s':>9} {'msg/s':>9}")
    for stage in stages:
        runs = [r for r in results if r.stage == stage]
        good = [r for r in runs if r.ok]
        rate = summary["median_rate"][stage]
        seconds = statistics.median([r.seconds for r in good]) if good else None
        count = runs[0].count if runs else 0
        shown_s = "-" if seconds is None else f"{seconds:.2f}"
        shown_rate = "FAILED" if rate is None else f"{rate:,.0f}"
        print(
            f"{STAGE_TITLES[stage]:<50} {count:>8} {f'{len(good)}/{len(runs)}':>5} "
            f"{shown_s:>9} {shown_rate:>9}"
        )
        if len(runs) > 1:
            print(f"{'':<50} runs: " + ", ".join(f"{r.rate:,.0f}" if r.ok else "failed" for r in runs))
    print()
    for key, label in (("carewatch_vs_raw", "carewatch / raw"), ("carewatch_vs_naive", "carewatch / naive")):
        ratio = summary["ratios"][key]
        target = summary["targets"][key]
        if ratio is None:
            verdict, shown = "not measured", "-"
        else:
            verdict, shown = ("MET" if target["met"] else "NOT MET"), f"{ratio:.2f}"
        print(f"{label:<20} {shown:>6}   target >= {target['target']:<4}  {verdict}")
    for result in results:
        for problem in result.problems:
            print(f"\nFAILURE in {result.stage} run {result.run}: {problem}", file=sys.stderr)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Carewatch ingest throughput: raw broker vs carewatch ingest vs naive subscriber.",
    )
    parser.add_argument("--count", type=int, default=100_000, help="messages for raw and carewatch")
    parser.add_argument("--naive-count", type=int, default=None, help="messages for naive (min(N, 20000))")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("CAREWATCH_BENCH_DSN") or os.environ.get("CAREWATCH_TEST_TIMESCALE_DSN"),
        help="server to create the bench databases on (env CAREWATCH_BENCH_DSN, then "
        "CAREWATCH_TEST_TIMESCALE_DSN)",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results" / "ingest.json", help="JSON results"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the median is reported")
    parser.add_argument("--devices", type=int, default=100, help="distinct devices in the published stream")
    parser.add_argument("--inflight", type=int, default=1000, help="publisher: PUBACKs awaited at once")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="least seconds a stage may take")
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile carewatch ingest with py-spy into DIR",
    )
    parser.add_argument(
        "--py-spy-native",
        action="store_true",
        help="with --py-spy: sample C frames too (shows the garbage collector, pydantic-core)",
    )
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(
            "no database server: pass --dsn, or set CAREWATCH_BENCH_DSN or CAREWATCH_TEST_TIMESCALE_DSN "
            '(eval "$(.ci/services up)" exports the latter)'
        )
    if args.naive_count is None:
        args.naive_count = min(args.count, 20_000)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    if args.count < 1 or args.naive_count < 1 or args.repeat < 1:
        parser.error("--count, --naive-count and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    results: list[StageResult] = []
    with terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix="carewatch-bench-") as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        databases = Databases(args.dsn)
        broker: Broker | None = None
        try:
            broker, broker_kind = start_bench_broker(workdir)
            bench = Bench(args, broker, procs, databases)
            print(f"broker: {broker.url} ({broker_kind}); database server: {args.dsn}")
            for run in range(1, args.repeat + 1):
                for stage in args.stages:
                    result = bench.run_stage(stage, run)
                    results.append(result)
                    shown = f"{result.rate:,.0f} msg/s" if result.ok else "FAILED"
                    print(
                        f"run {run}/{args.repeat} {stage:<9} {result.count:>7} msgs "
                        f"{result.seconds:7.2f}s  {shown}  (load {result.loadavg_1m_before:.2f})",
                        flush=True,
                    )
        finally:
            procs.end_all()
            if broker is not None:
                broker.stop()
            databases.drop_all()

    summary = summarise(results, args.stages)
    print_table(results, summary, args.stages)
    document = {
        "benchmark": "carewatch ingest throughput (live mode, QoS 1)",
        "started_at": started_at,
        "config": {
            "count": args.count,
            "naive_count": args.naive_count,
            "repeat": args.repeat,
            "devices": args.devices,
            "publisher_inflight": args.inflight,
            "poll_interval_s": POLL_INTERVAL_S,
            "stages": args.stages,
            "broker": broker_kind,
        },
        "machine": machine,
        "database": bench.database,
        **summary,
        "runs": [asdict(r) for r in results],
        "ok": all(r.ok for r in results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    return 0 if document["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
