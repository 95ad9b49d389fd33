"""Mosquitto's own counters (``$SYS``) as Prometheus metrics.

The broker is where messages can vanish without the ingest ever seeing them:
a queue over ``max_queued_messages`` drops silently, and only
``$SYS/broker/publish/messages/dropped`` says so. Mosquitto has no Prometheus
endpoint, so the service reads ``$SYS`` and re-exports it.

A separate, throw-away connection is used (clean session, QoS 0): statistics
must never share fate, flow control or session state with the telemetry
session, and losing one sample costs nothing (the broker republishes every
``sys_interval``, and ``$SYS`` topics are retained, so a new subscriber gets
the latest values at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.waits import wait_for_stop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ingest.settings import MqttSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SysTopic:
    """One ``$SYS`` value and the metric it becomes.

    Attributes:
        topic: the broker's topic (checked against Mosquitto 2.0.11).
        metric: the metric name (``_total`` is added to counters on exposition).
        kind: ``counter`` for totals since broker start, ``gauge`` for levels.
        doc: the metric's help text.
    """

    topic: str
    metric: str
    kind: str
    doc: str


SYS_TOPICS: tuple[SysTopic, ...] = (
    SysTopic(
        "$SYS/broker/publish/messages/dropped",
        "carewatch_broker_publish_dropped_messages",
        "counter",
        "Messages the broker dropped (queue limits, inflight limits), since the broker started",
    ),
    SysTopic(
        "$SYS/broker/publish/messages/received",
        "carewatch_broker_publish_received_messages",
        "counter",
        "PUBLISH messages the broker received, since it started",
    ),
    SysTopic(
        "$SYS/broker/publish/messages/sent",
        "carewatch_broker_publish_sent_messages",
        "counter",
        "PUBLISH messages the broker sent, since it started",
    ),
    SysTopic(
        "$SYS/broker/store/messages/count",
        "carewatch_broker_store_messages",
        "gauge",
        "Messages held in the broker's store (queued for sessions, retained)",
    ),
    SysTopic(
        "$SYS/broker/store/messages/bytes",
        "carewatch_broker_store_bytes",
        "gauge",
        "Payload bytes held in the broker's store",
    ),
    SysTopic(
        "$SYS/broker/clients/connected",
        "carewatch_broker_clients_connected_clients",
        "gauge",
        "Clients connected to the broker",
    ),
    SysTopic(
        "$SYS/broker/uptime",
        "carewatch_broker_uptime_seconds",
        "gauge",
        "Seconds since the broker started",
    ),
)
_BY_TOPIC = {entry.topic: entry for entry in SYS_TOPICS}


def parse_value(payload: bytes) -> float | None:
    """The number at the start of a ``$SYS`` payload (``"12"``, ``"3600 seconds"``), else None."""
    words = payload.decode("ascii", errors="replace").split()
    if not words:
        return None
    try:
        return float(words[0])
    except ValueError:
        return None


class BrokerStats(Collector):
    """The latest ``$SYS`` values, exposed at scrape time."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, float] = {}
        self._updated_mono: float | None = None
        self._monotonic = monotonic
        self.subscribed = False

    def update(self, topic: str, payload: bytes) -> bool:
        """Record one ``$SYS`` message; False when the topic or value is not one we export."""
        entry = _BY_TOPIC.get(topic)
        value = parse_value(payload)
        if entry is None or value is None:
            return False
        self._values[entry.metric] = value
        self._updated_mono = self._monotonic()
        return True

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (Prometheus client interface)."""
        up = GaugeMetricFamily(
            "carewatch_broker_stats_up", "1 while subscribed to the broker's $SYS statistics"
        )
        up.add_metric([], 1.0 if self.subscribed else 0.0)
        yield up
        if self._updated_mono is not None:
            age = GaugeMetricFamily(
                "carewatch_broker_stats_age_seconds", "Seconds since the last $SYS value arrived"
            )
            age.add_metric([], self._monotonic() - self._updated_mono)
            yield age
        for entry in SYS_TOPICS:
            value = self._values.get(entry.metric)
            if value is None:
                continue
            family: Metric = (
                CounterMetricFamily(entry.metric, entry.doc)
                if entry.kind == "counter"
                else GaugeMetricFamily(entry.metric, entry.doc)
            )
            family.add_metric([], value)  # type: ignore[attr-defined]
            yield family

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: families appear once the broker has reported them."""
        return ()


async def watch_broker(
    settings: MqttSettings,
    stats: BrokerStats,
    stop: asyncio.Event,
    *,
    retry_s: float = 5.0,
) -> None:
    """Keep a ``$SYS`` subscription up and feed ``stats``, until stopped."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client(
                settings.host,
                settings.port,
                identifier=f"{settings.client_id}-sys",
                username=settings.username,
                password=settings.password,
                tls_context=settings.ssl_context(),
                clean_session=True,
                keepalive=settings.keepalive_s,
            ) as client:
                await client.subscribe([(entry.topic, 0) for entry in SYS_TOPICS])
                stats.subscribed = True
                reader = asyncio.ensure_future(_read(client, stats))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader  # re-raises a connection loss as MqttError
        except aiomqtt.MqttError as exc:
            logger.warning("broker statistics unavailable (%s)", exc, extra={"event": "broker_stats_retry"})
        finally:
            stats.subscribed = False
        await wait_for_stop(stop, retry_s)


async def _read(client: aiomqtt.Client, stats: BrokerStats) -> None:
    async for message in client.messages:
        payload = message.payload
        if isinstance(payload, bytes | bytearray):
            stats.update(message.topic.value, bytes(payload))
