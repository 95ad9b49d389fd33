"""Start-up and clean-up code shared by the benchmarks under bench/.

Processes that are always ended, the broker (the repo's ``mosquitto.conf`` through
``tests/support/broker.py``), throw-away ``bench_<random>`` databases, polling, machine
facts for the JSON, and SIGTERM turned into a clean exit. ``ingest_throughput.py``,
``alert_latency.py`` and ``db_outage.py`` all start and end a run through these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ingest import wire  # noqa: E402
from ingest.session import MqttSession  # noqa: E402
from ingest.settings import MqttSettings  # noqa: E402


class BenchError(RuntimeError):
    """A stage could not be measured, or its result is wrong (loss, duplicates, bad exit)."""


class Broker(Protocol):
    """What the benchmark needs of a running broker (tests.support.broker.RunningBroker)."""

    service_port: int
    url: str

    def stop(self) -> None: ...

    def kill(self) -> None: ...


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts, so that all of them are ended on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its stderr goes to ``workdir/name.log``."""
        log = (self.workdir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=log, cwd=REPO_ROOT)
        finally:
            log.close()
        self._procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The end of a process's stderr log, for error messages."""
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    | {line}" for line in text)

    def end_all(self) -> None:
        """SIGTERM whatever still runs, then SIGKILL what ignores it."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        for proc in self._procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._procs.clear()


def read_json_line(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> dict[str, Any]:
    """The next JSON line ``proc`` prints on stdout, within ``timeout_s``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{what}: no answer within {timeout_s:.0f}s")
            if not selector.select(remaining):
                continue
            line = proc.stdout.readline()
            if not line:
                raise BenchError(f"{what}: exited (code {proc.wait()}) without answering")
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict):
                    return document


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connected_to(pid: int, port: int) -> bool:
    """Tell whether process ``pid`` has an established TCP connection to ``port`` (Linux /proc)."""
    proc = Path(f"/proc/{pid}")
    inodes: set[str] = set()
    try:
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                link = str(fd.readlink())
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    except OSError:
        return False
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                cols = line.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if cols[9] in inodes and cols[3] == "01" and remote_port == port:
                    return True
    return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    """Poll ``predicate`` until true, or raise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def http_status(url: str) -> int | None:
    """The HTTP status of GET ``url``, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


# ---------------------------------------------------------------------------
# broker
# ---------------------------------------------------------------------------


@dataclass
class FallbackBroker:
    """A bare mosquitto, used only while tests/support/broker.py does not exist."""

    proc: subprocess.Popen[bytes]
    service_port: int
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_fallback_broker(workdir: Path) -> FallbackBroker:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"
        "max_inflight_messages 0\n"
    )
    with (workdir / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    broker = FallbackBroker(proc, port, f"mqtt://127.0.0.1:{port}")
    try:
        wait_until(lambda: _port_open(port), 10, "the fallback mosquitto to listen")
    except BenchError:
        broker.kill()
        raise
    return broker


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def start_bench_broker(workdir: Path) -> tuple[Broker, str]:
    """The repo's test broker when available, else the fallback; with a description."""
    try:
        from tests.support.broker import start_broker  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        broker: Broker = start_fallback_broker(workdir)
        return broker, "fallback: bare mosquitto, max_queued_messages 0, max_inflight_messages 0"
    return start_broker(REPO_ROOT, workdir), "tests.support.broker.start_broker (repo mosquitto.conf)"


def clear_session(url: str, client_id: str) -> None:
    """Delete the broker-side session of ``client_id`` (clean start, expiry 0, disconnect).

    A persistent session left behind by a stage keeps its subscription, and
    the broker would keep queueing every later stage's messages for it.
    """

    async def clear() -> None:
        broker = MqttSettings.from_url(url)
        session = await MqttSession.open(
            host=broker.host,
            port=broker.port,
            options=wire.ConnectOptions(
                client_id=client_id,
                clean_start=True,
                session_expiry_s=0,
                username=broker.username,
                password=broker.password,
            ),
            on_publish=lambda _s, _p: None,
            ssl_context=broker.ssl_context(),
        )
        await session.close()

    asyncio.run(clear())


# ---------------------------------------------------------------------------
# databases
# ---------------------------------------------------------------------------


class Databases:
    """Creates ``bench_<random>`` databases on the server of ``admin_dsn`` and drops them."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self._created: list[str] = []

    def create(self) -> str:
        """A new empty database; returns its DSN."""
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = name
        return make_conninfo(**params)  # type: ignore[arg-type]

    def drop(self, dsn: str) -> None:
        """Drop one database made by :meth:`create`."""
        name = conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self._created.remove(str(name))

    def drop_all(self) -> None:
        """Drop every database still there."""
        for name in list(self._created):
            params = conninfo_to_dict(self.admin_dsn)
            params["dbname"] = name
            try:
                self.drop(make_conninfo(**params))  # type: ignore[arg-type]
            except psycopg.Error as exc:
                print(f"WARNING: could not drop database {name}: {exc}", file=sys.stderr)


def database_info(dsn: str) -> dict[str, Any]:
    """Server version, TimescaleDB version and licence, and the durability settings."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
            " current_setting('timescaledb.license', true),"
            " current_setting('fsync'), current_setting('synchronous_commit'),"
            " (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            "   WHERE c.relname = 'readings' AND n.nspname = 'public')"
        ).fetchone()
        assert row is not None
        hypertable = False
        if row[1]:
            hyper = conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
            ).fetchone()
            hypertable = bool(hyper and hyper[0])
    return {
        "server_version": row[0],
        "backend": "timescaledb" if row[1] else "postgresql",
        "timescaledb_extversion": row[1],
        "timescaledb_license": row[2] if row[1] else None,
        "readings_is_hypertable": hypertable,
        "fsync": row[3],
        "synchronous_commit": row[4],
    }


def count_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    mosquitto_version = next(
        (line.strip() for line in (mosquitto.stdout + mosquitto.stderr).splitlines() if "version" in line),
        "unknown",
    )
    cpu_model = "unknown"
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open() as cpuinfo:
        cpu_model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu_model
        )
    import paho.mqtt  # noqa: PLC0415

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "mosquitto": mosquitto_version,
        "psycopg": psycopg.__version__,
        "paho_mqtt": paho.mqtt.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so that cleanup runs."""

    def handler(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_and_report(
    result: dict[str, Any],
    measure: Callable[[Path], None],
    print_report: Callable[[dict[str, Any]], None],
    out: Path,
    *,
    prefix: str,
) -> int:
    """Measure in a scratch folder, print and write the report; the exit status.

    0 when the run found no problem, 1 when it did, 130 when interrupted (the
    partial report is still written: it says what was measured).
    """
    interrupted = False
    with terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            measure(Path(tmp))
        except KeyboardInterrupt:
            interrupted = True
            result["problems"].append("interrupted")
    result["ok"] = not result["problems"]
    print_report(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresults written to {out}")
    if interrupted:
        return 130
    return 0 if result["ok"] else 1


def carewatch_binary() -> str:
    """The ``carewatch`` command of this venv (the service runs from this checkout)."""
    beside = Path(sys.executable).with_name("carewatch")
    found = str(beside) if beside.exists() else shutil.which("carewatch")
    if not found:
        raise BenchError("the carewatch command is not installed (pip install -e . in this venv)")
    return found
