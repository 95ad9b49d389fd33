"""Publishing as a device gateway would: paho-mqtt, an independent client."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK."""

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "test-gateway",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_many(self, messages: Iterable[tuple[str, bytes]], *, chunk: int = 500) -> int:
        pending: list[mqtt.MQTTMessageInfo] = []
        count = 0
        for topic, payload in messages:
            pending.append(self.client.publish(topic, payload, qos=1))
            count += 1
            if len(pending) >= chunk:
                for info in pending:
                    info.wait_for_publish(30)
                pending.clear()
        for info in pending:
            info.wait_for_publish(30)
        return count

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.client.publish(topic, data, qos=qos).wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def canonical(ts_ms: int, kind: str, **fields: Any) -> bytes:
    return json.dumps({"ts": ts_ms, "kind": kind, **fields}).encode()


def heart_rate_stream(
    count: int, *, devices: int = 20, gateway: str = "gw-test", start_ms: int = 1_795_000_000_000
) -> Sequence[tuple[str, bytes]]:
    """``count`` heart-rate messages, each unique by (device, ts, msg_id)."""
    return [
        (
            f"carewatch/v1/{gateway}/dev{i % devices}/json",
            canonical(start_ms + i, "heart_rate", bpm=60 + i % 60, msg_id=f"m{i}"),
        )
        for i in range(count)
    ]
