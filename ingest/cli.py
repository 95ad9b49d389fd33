"""The ``carewatch`` command line.

Settings come from flags, falling back to ``CAREWATCH_*`` environment
variables, falling back to defaults that work on a developer's machine.
This module is the only place that reads the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg

from ingest.errors import ConfigError
from ingest.schema import TimescaleMode, migrate
from ingest.service import run_ingest
from ingest.settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_DSN,
    DEFAULT_METRICS_PORT,
    DEFAULT_MQTT_URL,
    IngestSettings,
    MqttSettings,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("carewatch")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        default=_env("CAREWATCH_DSN", DEFAULT_DSN),
        help="libpq connection string of the database (env CAREWATCH_DSN; default %(default)r)",
    )


def _add_timescale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timescale",
        choices=[m.value for m in TimescaleMode],
        default=_env("CAREWATCH_TIMESCALE", TimescaleMode.AUTO.value),
        help="use the TimescaleDB extension: auto (when present), require, off (env CAREWATCH_TIMESCALE)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = argparse.ArgumentParser(
        prog="carewatch",
        description="Carewatch: ingestion and alerting core for elder-care emergency devices.",
    )
    parser.add_argument(
        "--log-level",
        default=_env("CAREWATCH_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest",
        help="run the MQTT -> database ingest service",
        description="Subscribe to carewatch/v1/# at QoS 1 with a persistent session and store every "
        "message, acknowledging each one only after it is committed. SIGTERM drains and exits 0.",
    )
    ingest.add_argument(
        "--mqtt-url",
        default=_env("CAREWATCH_MQTT_URL", DEFAULT_MQTT_URL),
        help="mqtt://[user:pass@]host:port, or mqtts:// for TLS "
        "(env CAREWATCH_MQTT_URL; default %(default)s)",
    )
    ingest.add_argument(
        "--client-id",
        default=_env("CAREWATCH_MQTT_CLIENT_ID", DEFAULT_CLIENT_ID),
        help="MQTT client id; the broker keeps the session under it (env CAREWATCH_MQTT_CLIENT_ID)",
    )
    _add_dsn(ingest)
    ingest.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("CAREWATCH_METRICS_PORT", str(DEFAULT_METRICS_PORT))),
        help="port of /metrics, /healthz and /readyz; 0 disables "
        "(env CAREWATCH_METRICS_PORT; default %(default)s)",
    )
    ingest.add_argument(
        "--metrics-host",
        default=_env("CAREWATCH_METRICS_HOST", "0.0.0.0"),  # noqa: S104 - scraped from another host
        help="address the metrics endpoint binds (env CAREWATCH_METRICS_HOST; default %(default)s)",
    )
    ingest.add_argument(
        "--receive-maximum",
        type=int,
        default=int(_env("CAREWATCH_MQTT_RECEIVE_MAXIMUM", "10000")),
        help="most unacknowledged messages held at once: bounds memory during a database outage",
    )
    _add_timescale(ingest)

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_migrate = db_commands.add_parser("migrate", help="apply the schema (idempotent)")
    _add_dsn(db_migrate)
    _add_timescale(db_migrate)

    commands.add_parser("demo", help="run the whole pipeline on an embedded default (coming: issue 5)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carewatch`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "db":
            return asyncio.run(_db_migrate(args))
        if args.command == "demo":
            print("carewatch demo is coming (issue 5); see README for the test command.")
            return 0
    except ConfigError as exc:
        print(f"carewatch: {exc}", file=sys.stderr)
        return 2
    return 2


def _ingest(args: argparse.Namespace) -> int:
    mqtt = replace(
        MqttSettings.from_url(args.mqtt_url),
        client_id=args.client_id,
        receive_maximum=args.receive_maximum,
    )
    settings = IngestSettings(
        mqtt=mqtt,
        dsn=args.dsn,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        timescale=TimescaleMode(args.timescale),
    )

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_ingest(settings, stop)

    return asyncio.run(run())


async def _db_migrate(args: argparse.Namespace) -> int:
    try:
        async with await psycopg.AsyncConnection.connect(args.dsn, connect_timeout=10) as conn:
            info = await migrate(conn, timescale=TimescaleMode(args.timescale))
    except psycopg.Error as exc:
        print(f"carewatch: database error: {exc}", file=sys.stderr)
        return 1
    print(
        f"schema up to date on {info.backend} (timescaledb {info.timescaledb_version or '-'}, "
        f"licence {info.license or '-'})"
    )
    return 0
