"""``carewatch ingest`` as a real subprocess, the way operators run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.broker import free_port


class IngestProcess:
    """One ``carewatch ingest`` process with its own metrics port and log file."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        dsn: str,
        workdir: Path,
        client_id: str = "carewatch-ingest",
        args: tuple[str, ...] = (),
    ) -> None:
        self.mqtt_url = mqtt_url
        self.dsn = dsn
        self.client_id = client_id
        self.args = args
        self.log_path = workdir / f"ingest-{client_id}.log"
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True) -> IngestProcess:
        command = [
            sys.executable, "-m", "ingest", "ingest",
            "--mqtt-url", self.mqtt_url,
            "--dsn", self.dsn,
            "--client-id", self.client_id,
            "--metrics-host", "127.0.0.1",
            "--metrics-port", str(self.metrics_port),
            *self.args,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREWATCH_")}
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        if wait_ready:
            self.wait_ready()
        return self

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_running()
            try:
                if self.http("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"ingest not ready after {timeout_s}s:\n{self.log()}")

    def metric(self, name: str, labels: str = "") -> float:
        """Read one sample from /metrics (0 when absent)."""
        _, text = self.http("/metrics")
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"ingest exited with {self.process.returncode}:\n{self.log()}")

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
