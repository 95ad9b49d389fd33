"""Recording live broker traffic to JSON Lines, and replaying it with its timing.

One record per line: ``t_offset_s`` (wall seconds since recording started),
``topic``, ``payload_b64`` (the exact bytes, base64), ``qos`` and ``retain``.
Replay publishes the same bytes at QoS 1 with the recorded gaps divided by
``speed``, counted from the first record (an idle lead-in is not waited out).
The service's own alert stream (``carewatch/v1/alerts/...``) is not device
input and is left out of recordings unless asked for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import aiomqtt

from devices import SUBSCRIPTION, is_outbound
from simulator.broker import BrokerAddress
from simulator.errors import BrokerError, RecordingError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One captured message."""

    t_offset_s: float
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def to_json_line(self) -> str:
        """The record as one JSON line (no newline)."""
        return json.dumps(
            {
                "t_offset_s": round(self.t_offset_s, 6),
                "topic": self.topic,
                "payload_b64": base64.b64encode(self.payload).decode("ascii"),
                "qos": self.qos,
                "retain": self.retain,
            },
            separators=(",", ":"),
        )


def parse_record(line: str, *, path: str, number: int) -> Record:
    """Parse one line of a recording.

    Raises:
        RecordingError: with the file and line, for anything but a well-formed record.
    """
    try:
        document = json.loads(line)
    except ValueError:
        raise RecordingError(path, number, "not a JSON object") from None
    if not isinstance(document, dict):
        raise RecordingError(path, number, "not a JSON object")
    offset = document.get("t_offset_s")
    topic = document.get("topic")
    encoded = document.get("payload_b64")
    qos = document.get("qos", 1)
    retain = document.get("retain", False)
    if isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0:
        raise RecordingError(path, number, "t_offset_s must be a non-negative number")
    if not isinstance(topic, str) or not topic:
        raise RecordingError(path, number, "topic must be non-empty text")
    if not isinstance(encoded, str):
        raise RecordingError(path, number, "payload_b64 must be base64 text")
    if qos not in {0, 1, 2} or not isinstance(retain, bool):
        raise RecordingError(path, number, "qos must be 0, 1 or 2 and retain a boolean")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingError(path, number, "payload_b64 is not valid base64") from None
    return Record(t_offset_s=float(offset), topic=topic, payload=payload, qos=int(qos), retain=retain)


def read_recording(path: Path) -> list[Record]:
    """Every record of a recording file, in file order (blank lines skipped).

    Raises:
        RecordingError: an unreadable file or a malformed line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(str(path), 0, f"cannot read the recording: {exc}") from exc
    return [
        parse_record(line, path=str(path), number=number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


async def record(
    mqtt_url: str,
    out: TextIO,
    *,
    topic_filter: str = SUBSCRIPTION,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    max_messages: int | None = None,
    include_alerts: bool = False,
    client_id: str = "carewatch-recorder",
) -> int:
    """Write every message matching ``topic_filter`` to ``out`` until ``stop`` (or ``max_messages``).

    Args:
        mqtt_url: the broker.
        out: a text stream; each record is one line, flushed as written.
        topic_filter: the subscription.
        stop: set it to end the recording.
        ready: set once the subscription is in place (nothing published earlier is seen).
        max_messages: stop after this many records.
        include_alerts: also keep the service's own alert stream.
        client_id: MQTT client id.

    Returns:
        How many records were written.

    Raises:
        BrokerError: the broker cannot be reached or the connection broke.
    """
    address = BrokerAddress.from_url(mqtt_url)
    written = 0
    try:
        async with address.client(client_id) as client:
            await client.subscribe(topic_filter, qos=1)
            started = time.monotonic()
            if ready is not None:
                ready.set()
            messages = aiter(client.messages)
            while not stop.is_set() and (max_messages is None or written < max_messages):
                receive = asyncio.ensure_future(anext(messages))
                halt = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({receive, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if receive not in done:
                    receive.cancel()
                    break
                message = receive.result()
                topic = str(message.topic)
                if is_outbound(topic) and not include_alerts:
                    continue
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                entry = Record(
                    t_offset_s=time.monotonic() - started,
                    topic=topic,
                    payload=bytes(data),
                    qos=int(message.qos),
                    retain=bool(message.retain),
                )
                out.write(entry.to_json_line() + "\n")
                out.flush()
                written += 1
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker at {address.host}:{address.port}: {exc}") from exc
    return written


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayProgress:
    """How far a replay is."""

    total: int
    sent: int
    acknowledged: int
    elapsed_s: float


async def replay(  # noqa: C901 - pacing, windowing and progress in one loop
    records: Iterable[Record],
    *,
    mqtt_url: str,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
    progress: Callable[[ReplayProgress], None] | None = None,
    client_id: str = "carewatch-replay",
    max_inflight: int = 200,
) -> int:
    """Publish ``records`` again, same bytes, QoS 1, with their gaps divided by ``speed``.

    Returns:
        How many were acknowledged by the broker.

    Raises:
        BrokerError: the broker cannot be reached, or did not acknowledge.
        ValueError: a speed that is not positive.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or asyncio.Event()
    items = list(records)
    address = BrokerAddress.from_url(mqtt_url)
    acknowledged = 0
    failure: str | None = None
    window = asyncio.Semaphore(max_inflight)

    async def send(entry: Record) -> None:
        nonlocal acknowledged, failure
        try:
            await client.publish(entry.topic, entry.payload, qos=1, retain=entry.retain)
            acknowledged += 1
        except aiomqtt.MqttError as exc:
            failure = str(exc)
        finally:
            window.release()

    try:
        async with address.client(client_id, max_inflight=max_inflight) as client:
            first = items[0].t_offset_s if items else 0.0
            started = time.monotonic()
            tasks: set[asyncio.Task[None]] = set()
            last_report = started
            for sent, entry in enumerate(items, start=1):
                delay = started + (entry.t_offset_s - first) / speed - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    break
                await window.acquire()
                task = asyncio.create_task(send(entry))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if progress is not None and time.monotonic() - last_report >= 2.0:  # noqa: PLR2004
                    last_report = time.monotonic()
                    progress(ReplayProgress(total=len(items), sent=sent, acknowledged=acknowledged,
                                            elapsed_s=last_report - started))  # fmt: skip
            if tasks:
                await asyncio.gather(*tasks)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker at {address.host}:{address.port}: {exc}") from exc
    if failure is not None:
        raise BrokerError(f"the broker did not acknowledge a message: {failure}")
    return acknowledged
