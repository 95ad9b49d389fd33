"""The ingest's MQTT session against a real Mosquitto: restarts, takeovers, TLS, refusals.

Each test runs ``carewatch ingest`` as a subprocess (tests/support/service.py)
and reads its /metrics and log, so what is checked is what an operator sees:
every message stored exactly once across broker restarts, no tight reconnect
loop when two processes share a client id or the broker refuses us, and
``mqtts://`` that verifies the broker's certificate and host name.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import REPO_ROOT, TestDatabase
from tests.integration.test_ingest_service import count, wait_for_count
from tests.support.broker import RunningBroker, start_broker
from tests.support.publisher import Publisher, heart_rate_stream
from tests.support.service import IngestProcess
from tests.support.tls import make_ca, make_client_cert, make_server_tls

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

CONNECTS = "carewatch_ingest_mqtt_connects_total"
READINGS = "SELECT count(*) FROM readings"


@pytest.fixture
def processes() -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for process in started:
        process.stop_quietly()


def ingest(
    started: list[IngestProcess], url: str, dsn: str, workdir: Path, *args: str, ready: bool = True
) -> IngestProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    process = IngestProcess(mqtt_url=url, dsn=dsn, workdir=workdir, args=args)
    started.append(process)
    return process.start(wait_ready=ready)


def wait_for_metric(
    process: IngestProcess, name: str, labels: str, at_least: float, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        process.assert_running()
        try:
            if process.metric(name, labels) >= at_least:
                return
        except OSError:
            pass  # the metrics endpoint is not up yet
        assert time.monotonic() < deadline, f"{name}{{{labels}}} < {at_least}:\n{process.log()}"
        time.sleep(0.2)


def connects(process: IngestProcess, outcome: str) -> float:
    return process.metric(CONNECTS, f'outcome="{outcome}"')


class ResilientPublisher(threading.Thread):
    """A gateway that keeps publishing through broker restarts: paho re-sends what was not PUBACKed."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], rate_per_s: float) -> None:
        super().__init__(daemon=True)
        self.messages = messages
        self.rate_per_s = rate_per_s
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="restart-gateway",
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.lock = threading.Lock()
        self.acked: set[int] = set()
        self.client.on_publish = self._acknowledged
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.error: BaseException | None = None

    def _acknowledged(self, _client: mqtt.Client, _userdata: object, mid: int, *_: object) -> None:
        with self.lock:
            self.acked.add(mid)

    def run(self) -> None:
        try:
            mids = []
            for number, (topic, payload) in enumerate(self.messages):
                # While the broker is down paho queues the message (rc "no connection")
                # and sends it after reconnecting; its PUBACK is what counts.
                mids.append(self.client.publish(topic, payload, qos=1).mid)
                if number % 50 == 0:
                    time.sleep(50 / self.rate_per_s)
            deadline = time.monotonic() + 60
            while True:
                with self.lock:
                    missing = len(set(mids) - self.acked)
                if not missing:
                    break
                assert time.monotonic() < deadline, f"{missing} messages never acknowledged"
                time.sleep(0.1)
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def test_five_broker_restarts_in_a_row_lose_and_duplicate_nothing(
    broker: RunningBroker, pgdb: TestDatabase, tmp_path: Path, processes: list[IngestProcess]
) -> None:
    service = ingest(processes, broker.url, pgdb.dsn, tmp_path / "ingest")
    messages = list(heart_rate_stream(3000, start_ms=int(time.time() * 1000) - 3_600_000))
    publisher = ResilientPublisher(broker.service_port, messages, rate_per_s=250)
    publisher.start()
    running = broker
    try:
        for _ in range(5):
            time.sleep(2.0)
            running = running.restart()
    finally:
        publisher.join(90)
    assert publisher.error is None, publisher.error
    try:
        assert wait_for_count(pgdb.dsn, READINGS, 3000, timeout_s=45) == 3000
        time.sleep(1.0)  # a late redelivery would show up as a 3001st row
        assert count(pgdb.dsn, READINGS) == 3000
        assert connects(service, "connected") >= 2
        assert service.metric("carewatch_ingest_mqtt_disconnects_total", 'reason="lost"') >= 1
    finally:
        running.stop()


def test_two_ingests_with_one_client_id_back_off_instead_of_kicking_each_other(
    broker: RunningBroker, pgdb: TestDatabase, tmp_path: Path, processes: list[IngestProcess]
) -> None:
    first = ingest(processes, broker.url, pgdb.dsn, tmp_path / "a")
    second = ingest(processes, broker.url, pgdb.dsn, tmp_path / "b")
    pids = [psutil.Process(p.process.pid) for p in (first, second) if p.process is not None]
    cpu_before = [sum(p.cpu_times()[:2]) for p in pids]
    window_s = 35.0
    time.sleep(window_s)
    cpu_s = [sum(p.cpu_times()[:2]) - before for p, before in zip(pids, cpu_before, strict=True)]
    connected = [connects(p, "connected") for p in (first, second)]
    takeovers = [p.metric("carewatch_ingest_mqtt_session_takeovers_total") for p in (first, second)]
    broker_connects = broker.log_file.read_text(errors="replace").count("as carewatch-ingest")
    sys.stdout.write(  # the figures for the report: pytest -s shows them
        f"\nsame client id for {window_s:.0f}s: connects {connected}, takeovers {takeovers}, "
        f"broker-logged connects {broker_connects}, cpu {[round(c, 2) for c in cpu_s]} s\n"
    )
    assert sum(takeovers) >= 1
    # Without the policy each would reconnect within a second, dozens of times.
    for process, n in zip((first, second), connected, strict=True):
        assert n <= 3, f"{n} connects in {window_s}s:\n{process.log()}"
    assert max(cpu_s) < 0.1 * window_s, cpu_s
    for process, n in zip((first, second), takeovers, strict=True):
        if n:
            # Mosquitto 2.0.11 closes the old connection without DISCONNECT 0x8E,
            # so this is the inferred takeover (ingest/reconnect.py).
            lines = [line for line in process.log().splitlines() if "with our client id" in line]
            assert len(lines) == n
            assert "ERROR" in lines[0]
            assert all("WARNING" in line for line in lines[1:])  # an error once, then warnings


def test_mqtts_verifies_the_ca_and_the_host_name(
    pgdb: TestDatabase, tmp_path: Path, processes: list[IngestProcess]
) -> None:
    tls = make_server_tls(tmp_path / "tls", host="localhost")
    wrong_ca, _ = make_ca(tmp_path / "other-ca", name="some-other-ca")
    broker = start_broker(REPO_ROOT, tmp_path / "mosquitto", tls=tls)
    try:
        good = ingest(
            processes,
            f"mqtts://localhost:{broker.tls_port}",
            pgdb.dsn,
            tmp_path / "good",
            "--mqtt-ca-file",
            str(tls.ca_file),
        )
        with Publisher(broker.service_port) as gateway:
            gateway.publish_many(heart_rate_stream(200, start_ms=int(time.time() * 1000) - 60_000))
        assert wait_for_count(pgdb.dsn, READINGS, 200, timeout_s=30) == 200
        assert connects(good, "connected") == 1

        untrusted = ingest(
            processes,
            f"mqtts://localhost:{broker.tls_port}",
            pgdb.dsn,
            tmp_path / "untrusted",
            "--client-id",
            "x",
            "--mqtt-ca-file",
            str(wrong_ca),
            ready=False,
        )
        wrong_host = ingest(  # the certificate names localhost, not 127.0.0.1
            processes,
            f"mqtts://127.0.0.1:{broker.tls_port}",
            pgdb.dsn,
            tmp_path / "wrong-host",
            "--mqtt-ca-file",
            str(tls.ca_file),
            ready=False,
        )
        for process in (untrusted, wrong_host):
            wait_for_metric(process, CONNECTS, 'outcome="tls"', 1, timeout_s=30)
        time.sleep(5.0)
        for process, why in ((untrusted, "certificate verify failed"), (wrong_host, "IP address mismatch")):
            assert connects(process, "tls") == 1, process.log()  # backed off, no retry yet
            assert connects(process, "connected") == 0
            log = process.log()
            assert "TLS handshake" in log
            assert why in log, log
            assert "ERROR" in log
    finally:
        broker.stop()


def test_mqtts_with_a_client_certificate_for_a_broker_that_requires_one(
    pgdb: TestDatabase, tmp_path: Path, processes: list[IngestProcess]
) -> None:
    tls = make_server_tls(tmp_path / "tls", host="localhost")
    cert, key = make_client_cert(tmp_path / "tls", tls)
    broker = start_broker(REPO_ROOT, tmp_path / "mosquitto", tls=tls, require_client_cert=True)
    url = f"mqtts://localhost:{broker.tls_port}"
    try:
        without = ingest(
            processes, url, pgdb.dsn, tmp_path / "without", "--mqtt-ca-file", str(tls.ca_file), ready=False
        )
        mutual = ingest(
            processes,
            url,
            pgdb.dsn,
            tmp_path / "mutual",
            "--client-id",
            "with-cert",
            "--mqtt-ca-file",
            str(tls.ca_file),
            "--mqtt-cert-file",
            str(cert),
            "--mqtt-key-file",
            str(key),
        )
        with Publisher(broker.service_port) as gateway:
            gateway.publish_many(heart_rate_stream(50, start_ms=int(time.time() * 1000) - 60_000))
        assert wait_for_count(pgdb.dsn, READINGS, 50, timeout_s=30) == 50
        assert connects(mutual, "connected") == 1
        # Without a certificate the broker ends the handshake (with TLS 1.3 just
        # after it, while we wait for CONNACK): still a TLS error, and a long wait.
        wait_for_metric(without, CONNECTS, 'outcome="tls"', 1, timeout_s=30)
        assert connects(without, "connected") == 0
        assert "CERTIFICATE_REQUIRED" in without.log()
    finally:
        broker.stop()


def test_a_refused_login_is_a_clear_error_and_a_long_backoff(
    pgdb: TestDatabase, tmp_path: Path, processes: list[IngestProcess]
) -> None:
    # A refused SUBSCRIBE cannot be provoked here: Mosquitto 2.0's acl_file
    # grants every subscription and filters at delivery instead, so that
    # path is covered against the scripted peer (tests/unit/test_session.py).
    broker = start_broker(REPO_ROOT, tmp_path / "mosquitto", passwd_entries={"gw-1": "right"})
    try:
        refused = ingest(
            processes,
            f"mqtt://gw-1:wrong@127.0.0.1:{broker.device_port}",
            pgdb.dsn,
            tmp_path / "bad-password",
            ready=False,
        )
        wait_for_metric(refused, CONNECTS, 'outcome="not_authorized"', 1, timeout_s=30)
        time.sleep(10.0)
        assert connects(refused, "not_authorized") == 1  # one attempt, then about a minute's wait
        log = refused.log()
        assert "ERROR" in log
        assert "not authorised: check the broker's password file and ACL" in log
        assert "retrying in" in log
        assert "wrong" not in log  # the password is never logged
    finally:
        broker.stop()
