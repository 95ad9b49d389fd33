"""A fast QoS 1 publisher for the throughput benchmark, run as its own process.

    python bench/publish.py --url mqtt://127.0.0.1:PORT --count N --devices D --seed S

It uses Carewatch's own MQTT 5 client (:class:`ingest.session.MqttSession`),
keeps ``--inflight`` publishes outstanding at once (each awaits its PUBACK;
the session also honours the broker's Receive Maximum), and builds every
payload before the clock starts, so that it is not the bottleneck (the
session joins the packets written in one event-loop pass into one ``send``).

Every message is one canonical ``heart_rate`` object on
``carewatch/v1/bench-gw/dev{i % D}/json`` whose ``ts`` and ``msg_id`` are
unique, so each message becomes exactly one row of ``readings``.

With ``--wait-go`` it connects, builds the payloads, prints
``{"event": "ready"}`` and waits for a line on stdin before publishing: the
benchmark driver starts its clock when it sends that line, so interpreter
start-up and payload building are never measured. When done it prints one
JSON line with ``count``, ``seconds`` and ``rate``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

# Runs as a script from any directory: make the checkout importable even
# without the editable install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import wire
from ingest.errors import ConfigError
from ingest.session import MqttSession
from ingest.settings import MqttSettings

GATEWAY = "bench-gw"


def build_messages(
    count: int, devices: int, seed: int, *, now_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """``count`` (topic, payload) pairs, each one unique readings row.

    Timestamps are one millisecond apart, ending a minute before now (well
    inside the ingest service's plausibility window), so they are unique per
    device and increasing.
    """
    rng = random.Random(seed)
    end_ms = (now_ms if now_ms is not None else int(time.time() * 1000)) - 60_000
    start_ms = end_ms - count
    topics = [f"carewatch/v1/{GATEWAY}/dev{d}/json" for d in range(devices)]
    messages = []
    for seq in range(count):
        payload = {
            "ts": start_ms + seq,
            "kind": "heart_rate",
            "bpm": rng.randint(40, 180),
            # Unique per message; the random tail only brings the payload to
            # a realistic size (about 105 bytes).
            "msg_id": f"bench-{seed}-{seq:010d}-{rng.getrandbits(64):016x}",
        }
        messages.append((topics[seq % devices], json.dumps(payload).encode()))
    return messages


async def publish_all(session: MqttSession, messages: list[tuple[str, bytes]], inflight: int) -> None:
    """Publish everything at QoS 1 with at most ``inflight`` PUBACKs outstanding."""
    iterator = iter(messages)

    async def worker() -> None:
        for topic, payload in iterator:  # shared iterator: each message taken once
            await session.publish(topic, payload, qos=1, timeout_s=120.0)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(inflight, len(messages))):
            tasks.create_task(worker())


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Connect, build, optionally wait for the go line, publish, report."""
    try:
        broker = MqttSettings.from_url(args.url)
    except ConfigError as exc:
        raise SystemExit(f"--url: {exc}") from None
    session = await MqttSession.open(
        host=broker.host,
        port=broker.port,
        options=wire.ConnectOptions(
            client_id=args.client_id or f"bench-pub-{os.getpid()}",
            clean_start=True,
            session_expiry_s=0,  # a publisher leaves nothing behind on the broker
            username=broker.username,
            password=broker.password,
        ),
        ssl_context=broker.ssl_context(),
        on_publish=lambda _session, _packet: None,
    )
    messages = build_messages(args.count, args.devices, args.seed)
    sizes = [len(p) for _, p in messages]
    if args.wait_go:
        print(json.dumps({"event": "ready"}), flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            await session.close()
            raise SystemExit("stdin closed before the go line")
    started = time.perf_counter()
    await publish_all(session, messages, args.inflight)
    seconds = time.perf_counter() - started
    await session.close()
    return {
        "event": "done",
        "count": args.count,
        "seconds": round(seconds, 6),
        "rate": round(args.count / seconds, 1) if seconds > 0 else None,
        "inflight": args.inflight,
        "payload_bytes_min": min(sizes, default=0),
        "payload_bytes_max": max(sizes, default=0),
    }


def main() -> int:
    """Parse the command line and publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="mqtt://[user:pass@]host:port of the broker")
    parser.add_argument("--count", type=int, default=100_000, help="messages to publish")
    parser.add_argument("--devices", type=int, default=100, help="distinct device ids")
    parser.add_argument("--seed", type=int, default=1, help="seed of the bpm values and msg_id prefix")
    parser.add_argument("--inflight", type=int, default=1000, help="publishes awaiting their PUBACK at once")
    parser.add_argument("--client-id", default="", help="MQTT client id (default bench-pub-<pid>)")
    parser.add_argument("--wait-go", action="store_true", help="print ready, wait for a stdin line, then go")
    args = parser.parse_args()
    if args.count < 1 or args.devices < 1 or args.inflight < 1:
        parser.error("--count, --devices and --inflight must be positive")
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
