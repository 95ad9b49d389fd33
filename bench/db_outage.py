"""Memory of ``carewatch ingest`` while its database stalls or is down (issue 11, part 5).

    python bench/db_outage.py [--dsn DSN] [--outage-s 60] [--rate 5000] [--phases stall,down]
    python bench/db_outage.py --quick        # 10 s outages at 2,000 msg/s: a smoke check

One fresh Mosquitto (the repo's ``mosquitto.conf``), one fresh database reached
by the service only through a TCP proxy (``tests/support/db_proxy.py``) that
the benchmark can stall (no byte moves, connections stay open: a hung
database) and drop (connections closed, port refused: a database that is
down). One publisher process sends QoS 1 canonical heart-rate messages at a
steady rate from many devices for the whole run: steady load, then each
outage in turn, each followed by its recovery. Every 0.5 s the driver
samples the ingest process's RSS (psutil) and its ``/metrics`` (queue depth,
messages stored, and the broker's ``$SYS`` queue re-exported by the service).

It reports, per outage: RSS before, max during, max while catching up, and
after recovery, in MiB and as ratios to the RSS before (same run); the
queue depth and the broker's stored messages; the time to catch up; and the
expected bound, ``receive_maximum`` x the footprint of one received message
(measured in this process with tracemalloc on the service's own pipeline).
At the end the publisher stops and every acknowledged message must be in
``readings`` exactly once. Exit 1 if anything was lost or duplicated, or a
process died; never because of a figure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._common import (  # noqa: E402
    BenchError,
    Broker,
    Databases,
    Processes,
    carewatch_binary,
    database_info,
    free_port,
    http_status,
    machine_info,
    read_json_line,
    run_and_report,
    start_bench_broker,
    wait_until,
)
from ingest.envelope import Envelope  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.settings import PipelineSettings  # noqa: E402
from tests.support.db_proxy import DbProxy  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

MIB = 1024 * 1024
INGEST_CLIENT_ID = "bench-outage-ingest"
GATEWAY = "bench-gw"  # the topic prefix of alert_latency.py's background publisher
#: Metrics sampled with the RSS (labelled ones are summed over their labels).
SAMPLED = {
    "carewatch_ingest_queue_depth_messages": "queue_depth",
    "carewatch_ingest_messages_received_total": "received",
    "carewatch_ingest_messages_stored_total": "stored",
    "carewatch_ingest_db_up": "db_up",
    "carewatch_ingest_flush_failures_total": "flush_failures",
    "carewatch_ingest_duplicate_rows_total": "duplicate_rows",
    "carewatch_ingest_acks_lost_total": "acks_lost",
    "carewatch_broker_store_messages": "broker_store_messages",
    "carewatch_broker_store_bytes": "broker_store_bytes",
    "carewatch_broker_publish_dropped_messages_total": "broker_dropped",
}


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------


def message_footprint(count: int = 10_000) -> float:
    """Bytes one received heart-rate message holds while it waits for its COMMIT.

    What the batcher keeps per message is the pipeline's ``MessageRows`` (its
    envelope, the raw payload and the decoded rows) plus the batch's tuple;
    measured with tracemalloc on the service's own pipeline and payloads like
    the publisher's.
    """
    pipeline = Pipeline(PipelineSettings())
    now_ms = int(time.time() * 1000)

    def envelope(i: int) -> Envelope:
        payload = b'{"ts": %d, "kind": "heart_rate", "bpm": %d, "msg_id": "bg-1-%010d"}' % (
            now_ms + i,
            60 + i % 40,
            i,
        )
        return Envelope(
            topic=f"carewatch/v1/{GATEWAY}/hr{i % 100}/json",
            payload=payload,
            packet_id=i % 65_535 + 1,
            dup=False,
            received_at=datetime.now(UTC),
            received_mono=time.monotonic(),
        )

    for i in range(500):  # warm caches (parsed topics, interned strings) first
        pipeline.process(envelope(i))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [(pipeline.process(envelope(i)), None) for i in range(count)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / len(held)


def scrape(url: str) -> dict[str, float]:
    """The sampled metrics from ``/metrics`` (labelled series summed); empty if it did not answer."""
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        key = SAMPLED.get(name)
        if key is not None:
            values[key] = values.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


class Sampler(threading.Thread):
    """Every ``interval_s``: the ingest's RSS and its sampled metrics, with the phase of the run."""

    def __init__(self, pid: int, metrics_url: str, interval_s: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self.phase = "idle"
        self.died = False
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            sample: dict[str, Any] = {"t": time.monotonic(), "phase": self.phase}
            try:
                sample["rss"] = self.process.memory_info().rss
            except psutil.Error:
                self.died = True
                return
            sample.update(scrape(self.metrics_url))
            self.samples.append(sample)
            next_at += self.interval_s
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def latest(self, key: str, default: float = 0.0) -> float:
        for sample in reversed(self.samples):
            if key in sample:
                return float(sample[key])
        return default

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [s for s in self.samples if start <= s["t"] <= end]

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 3)


def column(samples: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(s[key]) for s in samples if key in s]


def acked_at(publisher_samples: Sequence[Sequence[float]], when: float) -> int:
    """Messages the broker had acknowledged to the publisher at monotonic time ``when``."""
    acked = 0
    for t, _sent, done in publisher_samples:
        if t > when:
            break
        acked = int(done)
    return acked


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


class OutageRun:
    """One run: broker, database behind the proxy, ingest, publisher, sampler; results as they come."""

    def __init__(self, args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
        self.args = args
        self.workdir = workdir
        self.result = result
        self.problems: list[str] = result["problems"]
        self.procs = Processes(workdir)
        self.databases = Databases(args.dsn)
        self.broker: Broker | None = None
        self.proxy: DbProxy | None = None
        self.sampler: Sampler | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.phases: list[dict[str, Any]] = []
        self.go_at = 0.0

    def measure(self) -> None:
        try:
            self._measure()
        except BenchError as exc:
            self.problems.append(str(exc))
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            self.procs.end_all()
            if self.proxy is not None:
                self.proxy.stop()
            if self.broker is not None:
                self.broker.stop()
            self.databases.drop_all()

    def _measure(self) -> None:
        args = self.args
        footprint = message_footprint()
        self.result["expected_bound"] = {
            "receive_maximum": args.receive_maximum,
            "message_footprint_bytes": round(footprint),
            "bound_mib": mib(args.receive_maximum * footprint),
        }
        self.broker, broker_desc = start_bench_broker(self.workdir)
        self.result["config"]["broker"] = broker_desc
        dsn = self.databases.create()
        params = conninfo_to_dict(dsn)
        self.proxy = DbProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)).start()
        proxied = make_conninfo(dsn, host="127.0.0.1", port=str(self.proxy.port))
        self.service, metrics_port = self._start_ingest(proxied)
        self.result["database"] = database_info(dsn)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

        publisher = self._start_publisher()
        self.sampler = Sampler(self.service.pid, metrics_url, args.sample_s)
        self.sampler.start()
        time.sleep(1.0)
        rss_idle = self.sampler.latest("rss")
        assert publisher.stdin is not None
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
        self.go_at = time.monotonic()
        self.sampler.phase = "steady"
        self._sleep(args.steady_s)

        for index, kind in enumerate(args.phases):
            self._outage(kind, last=index == len(args.phases) - 1)

        publisher.stdin.write(b"stop\n")
        publisher.stdin.flush()
        report = read_json_line(publisher, 120, "publisher report")
        self.sampler.phase = "final"
        self.result["publisher"] = {k: v for k, v in report.items() if k != "samples"}
        self._final_checks(dsn, report)
        self.sampler.stop()
        self._summarise(report, rss_idle)
        code = self._terminate_ingest()
        self.result["ingest_exit_code"] = code
        if code != 0:
            self.problems.append(
                f"carewatch ingest exited {code} on SIGTERM\n{self.procs.log_tail('ingest')}"
            )

    def _start_ingest(self, dsn: str) -> tuple[subprocess.Popen[bytes], int]:
        assert self.broker is not None
        metrics_port = free_port()
        argv = [carewatch_binary(), "ingest", "--mqtt-url", self.broker.url, "--dsn", dsn]
        argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
        argv += ["--client-id", INGEST_CLIENT_ID, "--receive-maximum", str(self.args.receive_maximum)]
        service = self.procs.start("ingest", argv)
        readyz = f"http://127.0.0.1:{metrics_port}/readyz"

        def ready() -> bool:
            self._check_alive(service)
            return http_status(readyz) == 200

        wait_until(ready, 60, "carewatch /readyz", interval_s=0.05)
        time.sleep(0.3)
        return service, metrics_port

    def _start_publisher(self) -> subprocess.Popen[bytes]:
        assert self.broker is not None
        argv = [sys.executable, str(BENCH_DIR / "alert_latency.py"), "background", "--url", self.broker.url]
        argv += ["--rate", str(self.args.rate), "--tick-s", "0.01", "--devices", str(self.args.devices)]
        proc = self.procs.start("publisher", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = read_json_line(proc, 60, "publisher")
        if ready.get("event") != "ready":
            raise BenchError(f"publisher said {ready}\n{self.procs.log_tail('publisher')}")
        return proc

    def _check_alive(self, service: subprocess.Popen[bytes] | None = None) -> None:
        service = service or self.service
        if service is not None and service.poll() is not None:
            raise BenchError(
                f"carewatch ingest died (exit {service.returncode})\n{self.procs.log_tail('ingest')}"
            )

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._check_alive()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _outage(self, kind: str, *, last: bool) -> None:
        assert self.proxy is not None
        assert self.sampler is not None
        args = self.args
        print(
            f"{kind}: database {'stalled' if kind == 'stall' else 'down'} for {args.outage_s:.0f} s",
            flush=True,
        )
        started = time.monotonic()
        self.sampler.phase = kind
        if kind == "stall":
            self.proxy.stall()
        else:
            self.proxy.drop()
        self._sleep(args.outage_s)
        self.proxy.restore()
        restored = time.monotonic()
        self.sampler.phase = f"{kind}-recovery"
        # The publisher keeps an absolute schedule, so what it has offered by now is
        # known; the exact figure (its own samples) is used afterwards for catch_up_s.
        # Not the queue depth: while Mosquitto drains a backlog it does not keep the
        # window full, so a short queue does not mean an empty broker queue.
        if args.back_s is not None and not last:
            # A flapping database: back only briefly, the next outage starts while
            # the service is still catching up and the broker still holds a backlog.
            print(f"{kind}: database back for {args.back_s:.1f} s only", flush=True)
            self._sleep(args.back_s)
            self.phases.append(
                {
                    "kind": kind,
                    "started": started,
                    "restored": restored,
                    "ended": time.monotonic(),
                    "flap": True,
                }
            )
            return
        offered = args.rate * (restored - self.go_at) - args.rate * 0.2
        print(
            f"{kind}: database back; waiting until the ~{offered:,.0f} messages offered are stored",
            flush=True,
        )
        deadline = restored + args.recovery_timeout_s
        caught_up: float | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            time.sleep(args.sample_s)
            if self.sampler.latest("stored") >= offered:
                caught_up = time.monotonic()
                break
        if caught_up is None:
            self.problems.append(f"{kind}: not caught up {args.recovery_timeout_s:.0f} s after recovery")
        self.sampler.phase = f"{kind}-after"
        self._sleep(args.settle_s)
        self.phases.append(
            {"kind": kind, "started": started, "restored": restored, "ended": time.monotonic()}
        )

    def _final_checks(self, dsn: str, report: dict[str, Any]) -> None:
        acked = int(report.get("acked", 0))
        sent = int(report.get("published", 0))
        if report.get("failed") or report.get("unfinished") or acked != sent:
            self.problems.append(
                f"publisher: {sent} published, {acked} acknowledged, {report.get('failed')} failed, "
                f"{report.get('unfinished')} unfinished"
            )
        with psycopg.connect(dsn, autocommit=True) as conn:

            def stored() -> bool:
                self._check_alive()
                row = conn.execute("SELECT count(*) FROM readings").fetchone()
                return bool(row and row[0] >= acked)

            try:
                wait_until(
                    stored, self.args.recovery_timeout_s, "every acknowledged message in readings", 0.5
                )
            except BenchError as exc:
                self.problems.append(str(exc))
            row = conn.execute(
                "SELECT count(*), count(DISTINCT msg_id), count(DISTINCT (device_id, msg_id)),"
                " (SELECT count(*) FROM quarantine) FROM readings"
            ).fetchone()
        assert row is not None
        total, distinct_msg, distinct_identity, quarantined = (int(v) for v in row)
        self.result["stored"] = {
            "offered": sent,
            "acknowledged_by_broker": acked,
            "rows": total,
            "distinct_msg_id": distinct_msg,
            "distinct_device_msg_id": distinct_identity,
            "quarantined": quarantined,
        }
        if total != acked:
            self.problems.append(f"readings holds {total} rows for {acked} acknowledged messages (lost)")
        if distinct_msg != total or distinct_identity != total:
            self.problems.append(f"duplicates: {total} rows, {distinct_msg} distinct msg_id")
        if quarantined:
            self.problems.append(f"{quarantined} messages quarantined")

    def _summarise(self, report: dict[str, Any], rss_idle: float) -> None:
        assert self.sampler is not None
        sampler = self.sampler
        pub_samples = report.get("samples", [])
        self.result["rss_idle_mib"] = mib(rss_idle)
        for phase in self.phases:
            started, restored, ended = phase["started"], phase["restored"], phase["ended"]
            before = sampler.between(started - 5.0, started)
            during = sampler.between(started, restored)
            recovery = sampler.between(restored, ended)
            after = sampler.between(ended - 3.0, ended)
            rss_before = statistics.median(column(before, "rss")) if before else None
            rss_max_outage = max(column(during, "rss"), default=None)
            rss_max_recovery = max(column(recovery, "rss"), default=None)
            rss_after = statistics.median(column(after, "rss")) if after else None
            offered_at_restore = acked_at(pub_samples, restored)
            caught_up = next(
                (s["t"] for s in recovery if s.get("stored", 0) >= offered_at_restore),
                None,
            )
            phase.update(
                {
                    "outage_s": round(restored - started, 1),
                    "rss_mib": {
                        "before": mib(rss_before),
                        "max_during": mib(rss_max_outage),
                        "max_recovery": mib(rss_max_recovery),
                        "after": mib(rss_after),
                    },
                    "rss_ratio": {
                        "max_during": ratio(rss_max_outage, rss_before),
                        "max_recovery": ratio(rss_max_recovery, rss_before),
                        "after": ratio(rss_after, rss_before),
                    },
                    "rss_growth_mib": mib(rss_max_outage - rss_before)
                    if rss_max_outage and rss_before
                    else None,
                    "queue_depth_max_during": max(column(during, "queue_depth"), default=None),
                    "queue_depth_max_recovery": max(column(recovery, "queue_depth"), default=None),
                    "broker_store_messages_max": max(
                        column(during + recovery, "broker_store_messages"), default=None
                    ),
                    "broker_store_bytes_max": max(
                        column(during + recovery, "broker_store_bytes"), default=None
                    ),
                    "offered_before_restore": offered_at_restore,
                    "catch_up_s": round(caught_up - restored, 1) if caught_up is not None else None,
                }
            )
            if phase["catch_up_s"] is None and not phase.get("flap"):
                self.problems.append(
                    f"{phase['kind']}: the messages offered before recovery were not all stored"
                )
        self.result["phases"] = self.phases
        last = sampler.samples[-1] if sampler.samples else {}
        self.result["final_metrics"] = {k: last.get(k) for k in SAMPLED.values()}
        if last.get("broker_dropped"):
            self.problems.append(f"the broker dropped {last['broker_dropped']:.0f} messages")
        self.result["samples"] = [
            {k: (round(v - sampler.samples[0]["t"], 2) if k == "t" else v) for k, v in s.items()}
            for s in sampler.samples
        ]

    def _terminate_ingest(self) -> int | None:
        assert self.service is not None
        self.service.terminate()
        try:
            return self.service.wait(60)
        except subprocess.TimeoutExpired:
            self.service.kill()
            return None


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    bound = result.get("expected_bound", {})
    config = result["config"]
    print()
    print(
        f"offered {config['rate']:.0f} msg/s from {config['devices']} devices, QoS 1; outages of "
        f"{config['outage_s']:.0f} s; --receive-maximum {config['receive_maximum']}"
    )
    if bound:
        print(
            f"expected bound: receive_maximum {bound['receive_maximum']}"
            f" x {bound['message_footprint_bytes']} B per message = {bound['bound_mib']} MiB"
        )
    print(f"RSS idle (connected, before load): {result.get('rss_idle_mib')} MiB")
    print()
    header = (
        f"{'outage':8} {'before':>8} {'max during':>16} {'max catch-up':>16} {'after':>16}"
        f" {'queue max':>10} {'broker max':>11} {'catch-up':>9}"
    )
    print(header)
    for phase in result.get("phases", []):
        rss, rat = phase.get("rss_mib", {}), phase.get("rss_ratio", {})
        if not rss:
            continue

        def cell(key: str, rss: dict[str, Any] = rss, rat: dict[str, Any] = rat) -> str:
            return f"{rss.get(key)} ({rat.get(key)}x)"

        catch_up = f"{phase['catch_up_s']} s" if phase.get("catch_up_s") is not None else "-"
        broker = phase.get("broker_store_messages_max")
        print(
            f"{phase['kind']:8} {rss['before']:>8} {cell('max_during'):>16} {cell('max_recovery'):>16}"
            f" {cell('after'):>16} {phase.get('queue_depth_max_during') or 0:>10.0f}"
            f" {broker or 0:>11.0f} {catch_up:>9}"
        )
    print("(RSS in MiB, ratio to the RSS before that outage; queue = unacknowledged messages in the service)")
    stored = result.get("stored")
    if stored:
        print(
            f"\nmessages offered {stored['offered']}, acknowledged by the broker "
            f"{stored['acknowledged_by_broker']}, stored {stored['rows']} "
            f"({stored['distinct_msg_id']} distinct msg_id), quarantined {stored['quarantined']}"
        )
    print(f"ingest exit code on SIGTERM: {result.get('ingest_exit_code')}")
    for problem in result["problems"]:
        print(f"FAILURE: {problem}")
    print("OK" if not result["problems"] else "FAILED")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Carewatch: ingest memory during a database outage.")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("CAREWATCH_BENCH_DSN") or os.environ.get("CAREWATCH_TEST_TIMESCALE_DSN"),
        help="server to create the bench database on (env CAREWATCH_BENCH_DSN, then "
        "CAREWATCH_TEST_TIMESCALE_DSN)",
    )
    parser.add_argument("--outage-s", type=float, default=None, help="length of each outage (default 60)")
    parser.add_argument("--rate", type=float, default=None, help="msg/s offered throughout (default 5000)")
    parser.add_argument("--devices", type=int, default=200, help="publishing devices")
    parser.add_argument(
        "--steady-s", type=float, default=None, help="load before the first outage (default 20)"
    )
    parser.add_argument("--settle-s", type=float, default=None, help="load after each catch-up (default 10)")
    parser.add_argument(
        "--phases", default="stall,down", help="outages in order: stall (hung database), down (refused)"
    )
    parser.add_argument(
        "--back-s",
        type=float,
        default=None,
        help="database back only this long between outages (a flap); default: until caught up + --settle-s",
    )
    parser.add_argument("--receive-maximum", type=int, default=10_000, help="the service's --receive-maximum")
    parser.add_argument("--sample-s", type=float, default=0.5, help="RSS and metrics sampling interval")
    parser.add_argument("--recovery-timeout-s", type=float, default=300.0, help="longest wait to catch up")
    parser.add_argument("--quick", action="store_true", help="smoke check: 10 s outages at 2,000 msg/s")
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results" / "db_outage.json", help="JSON results"
    )
    args = parser.parse_args(argv)
    defaults = (10.0, 2000.0, 5.0, 5.0) if args.quick else (60.0, 5000.0, 20.0, 10.0)
    for name, default in zip(("outage_s", "rate", "steady_s", "settle_s"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.dsn:
        parser.error(
            "no database server: pass --dsn, or set CAREWATCH_BENCH_DSN or CAREWATCH_TEST_TIMESCALE_DSN "
            '(eval "$(.ci/services up)" exports the latter)'
        )
    if not args.phases or any(p not in {"stall", "down"} for p in args.phases):
        parser.error("--phases takes stall and/or down")
    if args.rate <= 0 or args.outage_s <= 0 or args.receive_maximum < 1:
        parser.error("--rate, --outage-s and --receive-maximum must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "carewatch ingest RSS during a database outage (stall, down)",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rate": args.rate,
            "devices": args.devices,
            "outage_s": args.outage_s,
            "steady_s": args.steady_s,
            "settle_s": args.settle_s,
            "phases": args.phases,
            "receive_maximum": args.receive_maximum,
            "back_s": args.back_s,
            "sample_s": args.sample_s,
            "quick": args.quick,
        },
        "machine": machine_info(),
        "problems": [],
    }
    return run_and_report(
        result,
        lambda workdir: OutageRun(args, workdir, result).measure(),
        print_report,
        args.out,
        prefix="carewatch-outage-bench-",
    )


if __name__ == "__main__":
    sys.exit(main())
