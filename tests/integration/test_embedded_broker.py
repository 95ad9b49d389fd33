"""The demo's brokers: Mosquitto from the repo's config, and amqtt in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest import wire
from ingest.embedded_broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    demo_broker,
    find_mosquitto,
    render_demo_config,
    start_mosquitto,
)
from ingest.session import MqttSession
from ingest.settings import MqttSettings
from tests.conftest import REPO_ROOT
from tests.support.publisher import Publisher

pytestmark = [pytest.mark.mqtt]

REPO_CONF = REPO_ROOT / "mosquitto.conf"


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def round_trip(url: str) -> bytes:
    """Subscribe with our session (at the URL's protocol), publish with paho, return what came."""
    settings = MqttSettings.from_url(url)
    got: list[bytes] = []

    async def scenario() -> None:
        options = wire.ConnectOptions(
            client_id="demo-check", clean_start=True, protocol_level=settings.protocol_level
        )
        session = await MqttSession.open(
            host=settings.host,
            port=settings.port,
            options=options,
            on_publish=lambda s, p: (got.append(p.payload), s.ack([p.packet_id])),
        )
        await session.subscribe("carewatch/v1/#")
        await asyncio.to_thread(publish_one, settings.port)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await session.close()

    asyncio.run(scenario())
    assert got, f"nothing arrived through {url}"
    return got[0]


def publish_one(port: int) -> None:
    with Publisher(port, client_id="demo-gw") as gateway:
        gateway.publish("carewatch/v1/gw/dev/json", b"hello")


# --- Mosquitto ------------------------------------------------------------------------


def test_find_mosquitto_finds_the_installed_binary():
    found = find_mosquitto()
    assert found is not None
    assert os.access(found, os.X_OK)


def test_demo_config_keeps_the_service_listener_only_and_moves_state_to_the_workdir(tmp_path):
    text = render_demo_config(REPO_CONF, tmp_path, service_port=4242)
    active = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [line for line in active if line.startswith("listener")] == ["listener 4242 127.0.0.1"]
    assert not [line for line in active if line.split()[0] in {"password_file", "acl_file", "pid_file"}]
    assert f"persistence_location {tmp_path}/" in active
    assert [line for line in active if line.startswith("log_dest")] == [
        f"log_dest file {tmp_path}/mosquitto.log"
    ]
    assert "max_inflight_messages 100" in active  # production limits stay
    assert "allow_anonymous true" in active


def test_demo_config_refuses_a_conf_without_the_service_listener(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("persistence_location /var/lib/mosquitto/\nlog_dest stderr\nlistener 1884\n")
    with pytest.raises(EmbeddedBrokerError, match="demo config"):
        render_demo_config(conf, tmp_path, service_port=4242)


def test_mosquitto_demo_broker_serves_mqtt5_and_cleans_up_its_temp_dir():
    broker = start_mosquitto(REPO_CONF)
    try:
        assert (broker.workdir / "mosquitto.log").exists()
        assert round_trip(broker.url) == b"hello"
    finally:
        broker.stop()
    assert broker.process.returncode == 0
    assert not broker.workdir.exists()
    assert not accepts(broker.port)


def test_mosquitto_that_cannot_start_is_reported_with_its_log(tmp_path):
    with pytest.raises(EmbeddedBrokerError, match="did not start"):
        start_mosquitto(REPO_CONF, tmp_path, binary="/bin/false")


def test_demo_broker_prefers_mosquitto():
    with demo_broker(REPO_CONF) as url:
        assert "protocol" not in url
        assert round_trip(url) == b"hello"


# --- amqtt -----------------------------------------------------------------------------


def test_embedded_broker_serves_our_311_session_and_releases_its_port():
    with EmbeddedBroker() as broker:
        assert broker.url.endswith("?protocol=3.1.1")
        assert round_trip(broker.url) == b"hello"
        port = broker.port
    assert not accepts(port)


def test_embedded_broker_as_an_async_context_manager():
    async def scenario() -> int:
        async with EmbeddedBroker() as broker:
            # An MQTT round trip, not a bare TCP probe: amqtt 0.12 leaves a
            # connection that never sent CONNECT open at shutdown.
            assert await asyncio.to_thread(round_trip, broker.url) == b"hello"
            return broker.port

    assert not accepts(asyncio.run(scenario()))


def test_embedded_broker_on_a_taken_port_fails_to_start():
    with EmbeddedBroker() as first, pytest.raises(EmbeddedBrokerError, match="did not start"):
        EmbeddedBroker(port=first.port).start()


def test_ctrl_c_ends_a_process_running_the_embedded_broker_and_frees_the_port(tmp_path: Path):
    script = (
        "import sys, time\n"
        "from ingest.embedded_broker import EmbeddedBroker\n"
        "with EmbeddedBroker() as b:\n"
        "    print(b.port, flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        assert accepts(port)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert not accepts(port)
