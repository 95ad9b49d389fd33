"""Gateway credentials made by ``carewatch gateways add``, tried on a real Mosquitto.

The broker is the repo's configuration (tests/support/broker.py) with the
shipped ACL. The credentials are written by the real command into the
broker's own password and ACL files, and the broker is reloaded with SIGHUP
as an operator would, so the whole path is the production one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.cli import main
from tests.support.broker import RunningBroker

pytestmark = [pytest.mark.mqtt]

TIMEOUT_S = 10.0
NOT_AUTHORIZED = 0x87
BAD_USER_OR_PASSWORD = 0x86
#: PUBACK success when nobody subscribes: accepted, just not delivered anywhere.
NO_MATCHING_SUBSCRIBERS = 0x10


def reload_count(broker: RunningBroker) -> int:
    return broker.log_file.read_text(errors="replace").count("Reloading config.")


def wait_for_reload(broker: RunningBroker, before: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while reload_count(broker) <= before:
        assert time.monotonic() < deadline, "the broker did not log its reload"
        time.sleep(0.02)
    # The log line is written as the reload starts; a connect that races it
    # would see the old file, so also wait for one round trip through the loop.
    Client.connect_as(broker, None, None).close()


def gateways(broker: RunningBroker, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    """Run ``carewatch gateways ...`` on the broker's files and reload it; return the JSON it printed."""
    before = reload_count(broker)
    command = [
        "gateways", *args,
        "--password-file", str(broker.workdir / "passwd"),
        "--reload-pid", str(broker.process.pid),
    ]  # fmt: skip
    if args[0] == "add":
        command += ["--acl-file", str(broker.workdir / "acl"), "--json"]
    assert main(command) == 0
    out = capsys.readouterr().out
    wait_for_reload(broker, before)
    return json.loads(out) if out else {}


@dataclass
class Client:
    """A paho MQTT 5 client that records what the broker tells it."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    pubacks: dict[int, int] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def connect_as(
        cls, broker: RunningBroker, username: str | None, password: str | None, *, port: int | None = None
    ) -> Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        me = cls(client)
        client.on_connect = me._on_connect
        client.on_publish = me._on_publish
        client.on_message = me._on_message
        client.connect("127.0.0.1", broker.service_port if port is None else port)
        client.loop_start()
        assert me.connected.wait(TIMEOUT_S), "no CONNACK"
        return me

    @property
    def refused(self) -> bool:
        assert self.connack is not None
        return self.connack.is_failure

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: Properties) -> None:
        with self.lock:
            self.pubacks[mid] = rc.value

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((message.topic, message.payload))

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic_filter, qos=1)
        assert done.wait(TIMEOUT_S), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while info.mid not in self.pubacks:
            assert time.monotonic() < deadline, "no PUBACK"
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def wait_for(self, payload: bytes) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            with self.lock:
                if any(p == payload for _, p in self.received):
                    return list(self.received)
            assert time.monotonic() < deadline, f"{payload!r} never arrived"
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def connect(
    clients: list[Client], broker: RunningBroker, username: str | None, password: str | None
) -> Client:
    client = Client.connect_as(broker, username, password, port=broker.device_port)
    clients.append(client)
    return client


def test_gateway_a_cannot_publish_under_gateway_b(broker, capsys, clients):
    a = gateways(broker, capsys, "add", "gw-a")
    gateways(broker, capsys, "add", "gw-b")
    monitor = Client.connect_as(broker, None, None)  # the loopback service listener
    clients.append(monitor)
    monitor.subscribe("carewatch/v1/#")

    gateway = connect(clients, broker, a["username"], a["password"])
    assert not gateway.refused
    assert gateway.publish("carewatch/v1/gw-a/dev1/events", b"own") == 0
    assert gateway.publish("carewatch/v1/gw-b/dev1/events", b"forged") == NOT_AUTHORIZED
    assert gateway.publish("carewatch/v1/alerts/dev1/events", b"fake-alert") == NOT_AUTHORIZED
    assert gateway.publish("carewatch/v1/gw-a/dev1/events", b"control") == 0

    # The control message was published after the refused ones on the same
    # connection, and the broker delivers in order: once it is in, a forged
    # message would have been too.
    received = monitor.wait_for(b"control")
    assert received == [
        ("carewatch/v1/gw-a/dev1/events", b"own"),
        ("carewatch/v1/gw-a/dev1/events", b"control"),
    ]


def test_gateway_b_is_confined_the_same_way(broker, capsys, clients):
    gateways(broker, capsys, "add", "gw-a")
    b = gateways(broker, capsys, "add", "gw-b")
    gateway = connect(clients, broker, b["username"], b["password"])
    assert gateway.publish("carewatch/v1/gw-a/dev1/events", b"forged") == NOT_AUTHORIZED
    assert gateway.publish("carewatch/v1/gw-b/dev1/events", b"own") == NO_MATCHING_SUBSCRIBERS


def test_wrong_password_other_gateways_password_and_anonymous_are_refused(broker, capsys, clients):
    a = gateways(broker, capsys, "add", "gw-a")
    b = gateways(broker, capsys, "add", "gw-b")
    wrong = connect(clients, broker, "gw-a", a["password"][:-1] + ("x" if a["password"][-1] != "x" else "y"))
    swapped = connect(clients, broker, "gw-a", b["password"])
    anonymous = connect(clients, broker, None, None)
    for refused in (wrong, swapped, anonymous):
        assert refused.connack is not None
        assert refused.connack.value in {BAD_USER_OR_PASSWORD, NOT_AUTHORIZED}
    assert not connect(clients, broker, "gw-a", a["password"]).refused


def test_rotating_a_secret_invalidates_the_old_one_after_reload(broker, capsys, clients):
    old = gateways(broker, capsys, "add", "gw-a")
    assert not connect(clients, broker, "gw-a", old["password"]).refused
    new = gateways(broker, capsys, "add", "gw-a", "--rotate")
    assert new["password"] != old["password"]
    assert connect(clients, broker, "gw-a", old["password"]).refused
    gateway = connect(clients, broker, "gw-a", new["password"])
    assert not gateway.refused
    assert gateway.publish("carewatch/v1/gw-a/dev1/events", b"after-rotation") == NO_MATCHING_SUBSCRIBERS


def test_a_removed_gateway_can_no_longer_log_in(broker, capsys, clients):
    a = gateways(broker, capsys, "add", "gw-a")
    gateways(broker, capsys, "remove", "gw-a")
    assert connect(clients, broker, "gw-a", a["password"]).refused
