"""The ``carewatch`` command line.

Settings come from flags, falling back to ``CAREWATCH_*`` environment
variables, falling back to defaults that work on a developer's machine.
The command-line layer (this module, :mod:`ingest.options` and the
``ingest.commands_*`` families) is the only place that reads ``CAREWATCH_*``
variables; everything below it takes settings as arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, cast

import psycopg

import alerts
from alerts import State
from devices import DecodeContext, Event, parse_ts
from devices.codecs import CODECS
from devices.registry import Enforcement
from devices.routes import RouteError, parse_route
from ingest.errors import ConfigError, IngestError
from ingest.options import (
    add_dsn,
    add_mqtt_tls,
    add_retention,
    add_rules,
    env,
    retention_from,
)
from ingest.pipeline import PipelineSettings
from ingest.schema import TimescaleMode, migrate
from ingest.service import run_ingest
from ingest.settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_METRICS_PORT,
    DEFAULT_MQTT_URL,
    IngestSettings,
    MqttSettings,
)
from rules import RulesConfig, RulesConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger("carewatch")


def _add_timescale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timescale",
        choices=[m.value for m in TimescaleMode],
        default=env("CAREWATCH_TIMESCALE", TimescaleMode.AUTO.value),
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
        default=env("CAREWATCH_LOG_LEVEL", "INFO"),
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
        default=env("CAREWATCH_MQTT_URL", DEFAULT_MQTT_URL),
        help="mqtt://[user:pass@]host:port, or mqtts:// for TLS "
        "(env CAREWATCH_MQTT_URL; default %(default)s)",
    )
    ingest.add_argument(
        "--client-id",
        default=env("CAREWATCH_MQTT_CLIENT_ID", DEFAULT_CLIENT_ID),
        help="MQTT client id; the broker keeps the session under it (env CAREWATCH_MQTT_CLIENT_ID)",
    )
    add_mqtt_tls(ingest)
    add_dsn(ingest)
    ingest.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("CAREWATCH_METRICS_PORT", str(DEFAULT_METRICS_PORT))),
        help="port of /metrics, /healthz and /readyz; 0 disables "
        "(env CAREWATCH_METRICS_PORT; default %(default)s)",
    )
    ingest.add_argument(
        "--metrics-host",
        default=env("CAREWATCH_METRICS_HOST", "0.0.0.0"),  # noqa: S104 - scraped from another host
        help="address the metrics endpoint binds (env CAREWATCH_METRICS_HOST; default %(default)s)",
    )
    ingest.add_argument(
        "--receive-maximum",
        type=int,
        default=int(env("CAREWATCH_MQTT_RECEIVE_MAXIMUM", "10000")),
        help="most unacknowledged messages held at once: bounds memory during a database outage",
    )
    _add_timescale(ingest)
    add_rules(ingest)
    add_retention(ingest)
    ingest.add_argument(
        "--route",
        action="append",
        default=env("CAREWATCH_ROUTES", "").split(),
        metavar="FILTER=FORMAT@GATEWAY",
        help="also read another topic layout, e.g. zigbee2mqtt/+=z2m@hub-1 (the + levels name the "
        "device); repeatable (env CAREWATCH_ROUTES, space-separated)",
    )
    ingest.add_argument(
        "--registry",
        choices=[m.value for m in Enforcement],
        default=env("CAREWATCH_REGISTRY", Enforcement.AUTO.value),
        help="quarantine unknown and mismatched devices: auto (once any device is registered), "
        "enforce (always), off (env CAREWATCH_REGISTRY; default %(default)s)",
    )
    ingest.add_argument(
        "--escalate-after-s",
        type=float,
        default=float(env("CAREWATCH_ESCALATE_AFTER_S", "60")),
        help="escalate a critical alert not acknowledged this long, and again each time "
        "(env CAREWATCH_ESCALATE_AFTER_S; default %(default)s)",
    )

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_migrate = db_commands.add_parser("migrate", help="apply the schema (idempotent)")
    add_dsn(db_migrate)
    _add_timescale(db_migrate)

    alerts_cmd = commands.add_parser("alerts", help="list and work alerts")
    alert_commands = alerts_cmd.add_subparsers(dest="alerts_command", required=True, metavar="ALERTS_COMMAND")
    listing = alert_commands.add_parser("list", help="alerts, most urgent first")
    listing.add_argument("--state", choices=[s.value for s in State], help="only alerts in this state")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_dsn(listing)
    for action, verb in (
        ("ack", "acknowledge"),
        ("dispatch", "mark a responder sent for"),
        ("resolve", "resolve"),
    ):
        sub = alert_commands.add_parser(action, help=f"{verb} an alert")
        sub.add_argument("alert_id", type=int, metavar="ID")
        sub.add_argument("--by", required=True, help="who does it (recorded in the audit trail)")
        if action == "resolve":
            sub.add_argument("--note", help="what happened")
        add_dsn(sub)

    dispatch = commands.add_parser("dispatch", help="the dispatch queue")
    dispatch_commands = dispatch.add_subparsers(
        dest="dispatch_command", required=True, metavar="DISPATCH_COMMAND"
    )
    claim = dispatch_commands.add_parser("next", help="claim the most urgent open alert")
    claim.add_argument("--by", required=True, help="the dispatcher claiming it")
    claim.add_argument(
        "--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for an alert to arrive"
    )
    add_dsn(claim)

    decode = commands.add_parser(
        "decode",
        help="decode one device payload from stdin into canonical events",
        description="Read one raw payload from standard input and print the canonical events it "
        "yields, one JSON object per line. Nothing is printed for a payload that yields no event "
        "(exit 0); an undecodable one prints the reason on standard error (exit 2).",
    )
    decode.add_argument("--format", required=True, choices=sorted(CODECS), help="the payload's format")
    decode.add_argument(
        "--device-id", help="identity for formats whose payload carries none (IW, Zigbee2MQTT...)"
    )
    decode.add_argument(
        "--topic", help="the MQTT topic it came on (Zigbee2MQTT and OwnTracks put identity there)"
    )
    decode.add_argument(
        "--received-at",
        help="when it was received (RFC 3339 or epoch ms); default now; the time of frames without one",
    )

    _add_demo(commands)
    for module in _command_modules():
        module.add_commands(commands)
    return parser


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the whole pipeline on an embedded default and score it",
        description="Start a broker (Mosquitto with the repo's config when installed, else an embedded "
        "one), a database (embedded PostgreSQL unless --dsn), carewatch ingest and a dispatcher, play a "
        "bundled scenario with hundreds of devices, and print a scorecard. Exit 0 only if every "
        "expected alert was raised and nothing was lost. Ctrl-C stops everything it started.",
    )
    demo.add_argument("--scenario", default="demo", help="bundled scenario name or TOML file (default demo)")
    demo.add_argument("--devices", type=int, help="fleet size (default: the scenario's)")
    demo.add_argument("--seed", type=int, help="simulator seed (default: the scenario's)")
    demo.add_argument(
        "--speed", type=float, help="simulated seconds per wall second (default: the scenario's)"
    )
    demo.add_argument("--dsn", help="use this (empty) database instead of an embedded PostgreSQL")
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="which broker (default auto)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the work directory (logs, manifest)")


class CommandModule(Protocol):
    """A module that contributes sub-commands: each parser sets ``handler`` via ``set_defaults``."""

    def add_commands(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add this module's sub-commands; each sets ``handler=(args) -> exit status``."""


#: Sub-command families kept in their own modules (imported lazily: ``decode`` stays fast).
_COMMAND_MODULE_NAMES = (
    "ingest.commands_devices",
    "ingest.commands_gateways",
    "ingest.commands_quarantine",
    "ingest.commands_sim",
)


def _command_modules() -> list[CommandModule]:
    return [cast("CommandModule", importlib.import_module(name)) for name in _COMMAND_MODULE_NAMES]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carewatch`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "ingest": _ingest,
        "db": lambda a: asyncio.run(_db_migrate(a)),
        "alerts": lambda a: asyncio.run(_alerts(a)),
        "dispatch": lambda a: asyncio.run(_alerts(a)),
        "decode": _decode,
        "demo": _demo,
    }
    handler = getattr(args, "handler", None) or handlers[args.command]
    try:
        return handler(args)
    except (ConfigError, RulesConfigError) as exc:
        print(f"carewatch: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from ingest.demo import DemoOptions, run_demo  # noqa: PLC0415 - pulls in the simulator
    from simulator.errors import SimulatorError  # noqa: PLC0415

    options = DemoOptions(
        scenario=args.scenario,
        devices=args.devices,
        seed=args.seed,
        speed=args.speed,
        dsn=args.dsn,
        broker=args.broker,
        keep=args.keep,
    )
    try:
        return run_demo(options)
    except (IngestError, SimulatorError) as exc:
        print(f"carewatch demo: {exc}", file=sys.stderr)
        return 1


def _ingest(args: argparse.Namespace) -> int:
    mqtt = replace(
        MqttSettings.from_url(args.mqtt_url),
        client_id=args.client_id,
        receive_maximum=args.receive_maximum,
        ca_file=args.mqtt_ca_file,
        cert_file=args.mqtt_cert_file,
        key_file=args.mqtt_key_file,
    )
    mqtt.ssl_context()  # a missing or unreadable TLS file is a start-up error, not a retry loop
    rules = RulesConfig.load(args.rules) if args.rules else RulesConfig.default()
    try:
        routes = tuple(parse_route(spec, frozenset(CODECS)) for spec in args.route)
    except RouteError as exc:
        raise ConfigError(str(exc)) from None
    settings = IngestSettings(
        rules=rules,
        alert_policy=alerts.AlertPolicy(escalate_after_s=args.escalate_after_s),
        mqtt=mqtt,
        dsn=args.dsn,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        timescale=TimescaleMode(args.timescale),
        registry=Enforcement(args.registry),
        retention=retention_from(args),
        pipeline=PipelineSettings(routes=routes),
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


_ACTIONS = {"ack": "acknowledge", "dispatch": "dispatch", "resolve": "resolve"}


async def _alerts(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        async with await psycopg.AsyncConnection.connect(args.dsn, connect_timeout=10) as conn:
            if args.command == "dispatch":
                await conn.set_autocommit(True)
                claimed = await alerts.wait_and_claim(
                    conn, by=args.by, timeout_s=args.wait, now=lambda: datetime.now(UTC)
                )
                if claimed is None:
                    print("no open alert waiting")
                    return 0
                print(alerts.alert_json(claimed))
                return 0
            if args.alerts_command == "list":
                found = await alerts.list_alerts(conn, state=args.state)
                for alert in found:
                    print(alerts.alert_json(alert) if args.json else _alert_line(alert, now))
                return 0
            async with conn.transaction():
                alert = await alerts.transition(
                    conn,
                    args.alert_id,
                    _ACTIONS[args.alerts_command],
                    by=args.by,
                    now=now,
                    note=getattr(args, "note", None),
                )
            print(f"alert {alert.id} is now {alert.state}")
            return 0
    except alerts.AlertsError as exc:
        print(f"carewatch: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"carewatch: database error: {exc}", file=sys.stderr)
        return 1


def _alert_line(alert: alerts.Alert, now: datetime) -> str:
    left_s = int((alert.sla_due_at - now).total_seconds())
    due = f"due in {left_s // 60}m{left_s % 60:02d}s" if left_s >= 0 else f"OVERDUE {-left_s // 60}m"
    return (
        f"{alert.id:>6}  {alert.state:<12} {alert.severity:<8} p{alert.priority:<4} {alert.rule:<16}"
        f" {alert.device_id:<20} x{alert.occurrence_count:<3} {due}"
    )


#: ``carewatch decode``'s exit status for a payload that is valid but yields no event.
_EXIT_NO_EVENTS = 3
_NO_EVENTS_WHY = (
    "the payload is well-formed but holds nothing Carewatch records "
    "(e.g. a voice, image or configuration frame, or a button's reset)"
)


def _decode(args: argparse.Namespace) -> int:
    try:
        received_at = parse_ts(_number_or_text(args.received_at)) if args.received_at else datetime.now(UTC)
    except ValueError as exc:
        print(f"carewatch: --received-at: {exc}", file=sys.stderr)
        return 2
    payload = sys.stdin.buffer.read()
    context = DecodeContext(received_at=received_at, device_id=args.device_id, topic=args.topic)
    decoded = CODECS[args.format](payload, context)
    for event in decoded.events:
        print(json.dumps(event_json(event, received_at), sort_keys=False))
    for rejection in decoded.rejections:
        print(f"carewatch: {rejection.reason}: {rejection.detail}", file=sys.stderr)
    if not decoded.events and not decoded.rejections:
        # Silence would look like success to a script: say why nothing came out.
        print(f"carewatch: no events: {_NO_EVENTS_WHY}", file=sys.stderr)
        return _EXIT_NO_EVENTS
    return 2 if decoded.rejections and not decoded.events else 0


def _number_or_text(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def event_json(event: Event, received_at: datetime) -> dict[str, object]:
    """A canonical event as ``carewatch decode`` prints it.

    ``time`` is what the payload says happened when (the device's time), or
    the receive time for payloads that carry none; ``time_source`` tells which.
    """
    device_time = event.device_time if event.device_time is not None else None
    if event.time_source.value == "device":
        device_time = event.observed_at
    shown = device_time if device_time is not None else event.observed_at
    document: dict[str, object] = {
        "device_id": event.device_id,
        "kind": event.kind.value,
        "time": _rfc3339(shown),
        **dict(event.fields),
        "time_source": "device" if device_time is not None else "received",
        "received_at": _rfc3339(received_at),
    }
    if event.flags:
        document["flags"] = sorted(event.flags)
    if event.msg_id is not None:
        document["msg_id"] = event.msg_id
    return document


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
