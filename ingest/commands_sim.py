"""``carewatch`` sub-commands: simulate, record, replay and score (issue 5).

Only this module reads the environment for them (``CAREWATCH_MQTT_URL``,
``CAREWATCH_DSN``), like ``ingest.cli`` does for the others; the simulator
and the scorer receive plain values.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.options import env
from ingest.settings import DEFAULT_DSN, DEFAULT_MQTT_URL

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine
    from typing import Any

    from simulator.publisher import Progress


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this family's sub-commands to the ``carewatch`` parser."""
    mqtt_default = env("CAREWATCH_MQTT_URL", DEFAULT_MQTT_URL)
    dsn_default = env("CAREWATCH_DSN", DEFAULT_DSN)

    simulate = commands.add_parser(
        "simulate",
        help="publish a simulated fleet and a scenario's incidents to the broker",
        description="Plan a deterministic run (same --seed, same messages) and publish it at QoS 1, "
        "SPEED times faster than real time. The sim clock ends at about the wall time the run "
        "started, so device timestamps are never in the future. Progress goes to stderr.",
    )
    simulate.add_argument("--scenario", required=True, help="scenario TOML file, or a bundled name (demo...)")
    simulate.add_argument("--devices", type=int, help="fleet size (default: the scenario's)")
    simulate.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    simulate.add_argument("--duration", help="sim duration, e.g. 30m (default: the scenario's)")
    simulate.add_argument("--speed", type=float, help="sim seconds per wall second (default: the scenario's)")
    simulate.add_argument("--mqtt-url", default=mqtt_default, help="broker (env CAREWATCH_MQTT_URL)")
    simulate.add_argument("--client-id", default="carewatch-sim", help="MQTT client id")
    simulate.add_argument("--manifest", type=Path, help="write the run's ground truth here (for score)")
    simulate.add_argument(
        "--registry-out", type=Path, help="write the fleet as a device-registry CSV and go on"
    )
    simulate.add_argument(
        "--rules-out",
        type=Path,
        help="write a rules TOML for carewatch ingest --rules: the scenario's overrides and each "
        "device's profile (needed while no device registry is loaded)",
    )
    simulate.add_argument(
        "--plan-only", action="store_true", help="write the files asked for, publish nothing"
    )
    simulate.set_defaults(handler=_simulate)

    record = commands.add_parser("record", help="capture live broker traffic to JSON Lines")
    record.add_argument("--out", type=Path, required=True, help="the JSON Lines file to write")
    record.add_argument("--topic", default="carewatch/v1/#", help="topic filter (default %(default)s)")
    record.add_argument("--mqtt-url", default=mqtt_default, help="broker (env CAREWATCH_MQTT_URL)")
    record.add_argument("--duration", type=float, metavar="S", help="stop after S wall seconds")
    record.add_argument("--count", type=int, help="stop after this many messages")
    record.add_argument("--include-alerts", action="store_true", help="also keep carewatch/v1/alerts/...")
    record.set_defaults(handler=_record)

    replay = commands.add_parser("replay", help="publish a recording again with its timing scaled")
    replay.add_argument("file", type=Path, metavar="FILE", help="a recording made by carewatch record")
    replay.add_argument("--speed", type=float, default=1.0, help="divide the recorded gaps by this")
    replay.add_argument("--mqtt-url", default=mqtt_default, help="broker (env CAREWATCH_MQTT_URL)")
    replay.set_defaults(handler=_replay)

    score = commands.add_parser("score", help="check a run stored in the database against its scenario")
    score.add_argument("--scenario", required=True, help="scenario TOML file, or a bundled name")
    score.add_argument("--dsn", default=dsn_default, help="database (env CAREWATCH_DSN)")
    score.add_argument("--manifest", type=Path, help="the manifest simulate wrote (enables every check)")
    score.add_argument("--devices", type=int, help="fleet size of the run (without a manifest)")
    score.add_argument("--seed", type=int, help="seed of the run (without a manifest)")
    score.set_defaults(handler=_score)


def _fail(message: str) -> int:
    print(f"carewatch: {message}", file=sys.stderr)
    return 2


def _run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


def _show_progress(progress: Progress) -> None:
    from simulator.durations import format_duration  # noqa: PLC0415 - keeps ``carewatch decode`` fast

    line = (
        f"sim {format_duration(progress.sim_elapsed_s)}/{format_duration(progress.sim_total_s)}  "
        f"sent {progress.sent}/{progress.planned}  acked {progress.acknowledged}  "
        f"dups {progress.duplicates}  {progress.rate_per_s:.0f} msg/s"
    )
    print(
        line if progress.done else line + "\r", end="\n" if progress.done else "", file=sys.stderr, flush=True
    )


def _simulate(args: argparse.Namespace) -> int:  # noqa: C901 - a composition root
    from simulator.durations import parse_duration_s  # noqa: PLC0415
    from simulator.errors import SimulatorError  # noqa: PLC0415
    from simulator.fleet import REGISTRY_COLUMNS, registry_rows  # noqa: PLC0415
    from simulator.publisher import run_simulation  # noqa: PLC0415
    from simulator.scenario import resolve_scenario  # noqa: PLC0415
    from simulator.timeline import build_plan  # noqa: PLC0415

    try:
        scenario = resolve_scenario(args.scenario)
        duration_s = parse_duration_s(args.duration) if args.duration else None
        if args.devices is not None and args.devices < 1:
            return _fail("--devices must be at least 1")
        plan = build_plan(scenario, devices=args.devices, seed=args.seed, duration_s=duration_s)
    except (SimulatorError, ValueError) as exc:
        return _fail(str(exc))
    if args.registry_out is not None:
        with args.registry_out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(REGISTRY_COLUMNS))
            writer.writeheader()
            writer.writerows(registry_rows(plan.fleet))
    if args.rules_out is not None:
        args.rules_out.write_text(plan.rules_toml(), encoding="utf-8")
    speed = args.speed if args.speed is not None else scenario.speed
    if speed <= 0:
        return _fail("--speed must be positive")
    print(
        f"scenario {scenario.name}: {len(plan.fleet.devices)} devices "
        f"on {len(plan.fleet.gateways)} gateways, "
        f"{len(plan.messages)} messages over {plan.duration_ms / 1000:g} sim s at speed {speed:g} "
        f"(~{plan.duration_ms / 1000 / speed:.0f} s), seed {plan.seed}",
        file=sys.stderr,
    )
    for skipped in plan.skipped:
        print(f"note: {skipped} starts after the shortened run ends: left out", file=sys.stderr)
    if args.plan_only:
        return 0

    async def main(stop: asyncio.Event) -> int:
        result = await run_simulation(
            plan,
            mqtt_url=args.mqtt_url,
            speed=speed,
            stop=stop,
            progress=_show_progress,
            client_id=args.client_id,
        )
        if args.manifest is not None:
            result.manifest.save(args.manifest)
        return 1 if result.stopped_early else 0

    try:
        return _run_until_signal(main)
    except SimulatorError as exc:
        return _fail(str(exc))


def _record(args: argparse.Namespace) -> int:
    from simulator.errors import SimulatorError  # noqa: PLC0415
    from simulator.recording import record  # noqa: PLC0415

    async def main(stop: asyncio.Event) -> int:
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        ready = asyncio.Event()

        async def announce() -> None:
            await ready.wait()
            # Scripts wait for this line before starting what they record.
            print(f"recording {args.topic} to {args.out}", file=sys.stderr, flush=True)

        announcer = asyncio.create_task(announce())
        with args.out.open("w", encoding="utf-8") as out:
            count = await record(
                args.mqtt_url,
                out,
                topic_filter=args.topic,
                stop=stop,
                max_messages=args.count,
                include_alerts=args.include_alerts,
                ready=ready,
            )
        announcer.cancel()
        print(f"recorded {count} messages to {args.out}", file=sys.stderr)
        return 0

    try:
        return _run_until_signal(main)
    except (SimulatorError, OSError) as exc:
        return _fail(str(exc))


def _replay(args: argparse.Namespace) -> int:
    from simulator.errors import SimulatorError  # noqa: PLC0415
    from simulator.recording import ReplayProgress, read_recording, replay  # noqa: PLC0415

    def show(progress: ReplayProgress) -> None:
        print(
            f"sent {progress.sent}/{progress.total}  acked {progress.acknowledged}  "
            f"{progress.sent / max(progress.elapsed_s, 1e-9):.0f} msg/s",
            file=sys.stderr,
        )

    if args.speed <= 0:
        return _fail("--speed must be positive")
    try:
        records = read_recording(args.file)
    except SimulatorError as exc:
        return _fail(str(exc))

    async def main(stop: asyncio.Event) -> int:
        acknowledged = await replay(
            records, mqtt_url=args.mqtt_url, speed=args.speed, stop=stop, progress=show
        )
        print(f"replayed {acknowledged} of {len(records)} messages", file=sys.stderr)
        return 0 if acknowledged == len(records) else 1

    try:
        return _run_until_signal(main)
    except SimulatorError as exc:
        return _fail(str(exc))


def _score(args: argparse.Namespace) -> int:
    import psycopg  # noqa: PLC0415

    from ingest.scoring import score  # noqa: PLC0415
    from simulator.errors import SimulatorError  # noqa: PLC0415
    from simulator.manifest import load_manifest  # noqa: PLC0415
    from simulator.scenario import resolve_scenario  # noqa: PLC0415

    try:
        scenario = resolve_scenario(args.scenario)
        manifest = load_manifest(args.manifest) if args.manifest is not None else None
        card = score(scenario, args.dsn, manifest=manifest, devices=args.devices, seed=args.seed)
    except SimulatorError as exc:
        return _fail(str(exc))
    except psycopg.Error as exc:
        return _fail(f"database error: {exc}")
    print(card.render())
    return 0 if card.passed else 1
