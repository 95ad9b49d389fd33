"""The benchmark's naive reference: one INSERT and one COMMIT per message.

    python bench/naive_subscriber.py --url mqtt://127.0.0.1:PORT --dsn DSN --count N

This is what a straightforward "Node-RED style" subscriber does, written
correctly: paho-mqtt 2.x with MQTT 5, a persistent session
(``clean_start=False`` plus a Session Expiry Interval) and manual
acknowledgement, so that each message is acknowledged only after its row is
committed; a crash loses nothing. It is simply unbatched: per message one
``json.loads``, one ``INSERT ... ON CONFLICT DO NOTHING`` (redeliveries are
harmless) and one ``COMMIT`` with synchronous psycopg, then the PUBACK.

It prints ``{"event": "ready"}`` once the broker has acknowledged the
subscription, and one JSON line at the end. It exits after ``--count`` rows
were committed, or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

SUBSCRIPTION = "carewatch/v1/#"
#: canonical kind -> (metric, value field), as Carewatch stores readings
METRICS = {
    "heart_rate": ("heart_rate_bpm", "bpm"),
    "spo2": ("spo2_pct", "pct"),
    "body_temp": ("body_temp_c", "celsius"),
    "battery": ("battery_pct", "pct"),
}
INSERT = (
    "INSERT INTO readings (time, device_id, metric, value, received_at, msg_id)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


class NaiveSubscriber:
    """Stores each message in its own transaction, then acknowledges it."""

    def __init__(self, conn: psycopg.Connection[Any], count: int) -> None:
        self.conn = conn
        self.count = count
        self.rows = 0
        self.messages = 0
        self.skipped = 0
        self.started: float | None = None

    def on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            print(json.dumps({"event": "connect_failed", "reason": str(reason)}), flush=True)
            client.disconnect()
            return
        client.subscribe(SUBSCRIPTION, qos=1)

    def on_subscribe(
        self, client: mqtt.Client, _userdata: object, _mid: int, reasons: list[ReasonCode], _props: object
    ) -> None:
        if any(r.is_failure for r in reasons):
            print(json.dumps({"event": "subscribe_failed"}), flush=True)
            client.disconnect()
            return
        print(json.dumps({"event": "ready"}), flush=True)

    def on_message(self, client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        self.messages += 1
        row = self.decode(msg.topic, msg.payload)
        if row is not None:
            with self.conn.cursor() as cur:
                cur.execute(INSERT, row)
                self.rows += max(cur.rowcount, 0)
            self.conn.commit()
        else:
            self.skipped += 1
        client.ack(msg.mid, msg.qos)  # only after the COMMIT
        if self.rows >= self.count:
            client.disconnect()

    @staticmethod
    def decode(topic: str, payload: bytes | bytearray) -> tuple[object, ...] | None:
        parts = topic.split("/")
        try:
            document = json.loads(payload)
            metric, field = METRICS[document["kind"]]
            return (
                datetime.fromtimestamp(document["ts"] / 1000, UTC),
                parts[3],
                metric,
                float(document[field]),
                datetime.now(UTC),
                document.get("msg_id") or "",
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="mqtt://[user:pass@]host:port of the broker")
    parser.add_argument("--dsn", required=True, help="libpq connection string of the database")
    parser.add_argument("--count", type=int, required=True, help="exit after this many rows are committed")
    parser.add_argument("--client-id", default="bench-naive", help="MQTT client id (persistent session)")
    parser.add_argument("--session-expiry", type=int, default=3600, help="session expiry interval, seconds")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    if parts.scheme != "mqtt" or not parts.hostname:
        parser.error("--url must look like mqtt://[user:pass@]host:port")

    conn = psycopg.connect(args.dsn, application_name="bench-naive")
    subscriber = NaiveSubscriber(conn, args.count)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password) if parts.password else None)
    client.on_connect = subscriber.on_connect
    client.on_subscribe = subscriber.on_subscribe
    client.on_message = subscriber.on_message

    stopped = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True
        client.disconnect()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = args.session_expiry
    client.connect(parts.hostname, parts.port or 1883, keepalive=30, clean_start=False, properties=properties)
    client.loop_forever()
    conn.close()
    seconds = time.perf_counter() - subscriber.started if subscriber.started is not None else 0.0
    print(
        json.dumps(
            {
                "event": "done",
                "rows": subscriber.rows,
                "messages": subscriber.messages,
                "skipped": subscriber.skipped,
                "seconds_from_first_message": round(seconds, 6),
            }
        ),
        flush=True,
    )
    return 0 if stopped or subscriber.rows >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
