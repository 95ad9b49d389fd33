"""``carewatch`` sub-commands: gateway credentials for the broker (issue 4).

The secret is written to standard output once and nowhere else: not to the
log, not to a file. Everything else (reload hints, confirmations) goes to
standard error, so ``carewatch gateways add gw-1 > gw-1.creds`` captures the
credentials alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.gateways import (
    GatewayCredentials,
    GatewayCredentialsError,
    add_gateway,
    list_gateways,
    reload_broker,
    remove_gateway,
)
from ingest.options import env

if TYPE_CHECKING:
    import argparse

DEFAULT_PASSWORD_FILE = "/etc/mosquitto/carewatch/passwd"  # noqa: S105 - a path, not a password
DEFAULT_ACL_FILE = "/etc/mosquitto/carewatch/acl"
#: The device listener of the shipped mosquitto.conf.
DEVICE_LISTENER_PORT = 1884
RELOAD_HINT = (
    "the broker reads this file on start and reload only: run `systemctl reload mosquitto` "
    "(or `kill -HUP $(pidof mosquitto)`), or pass --reload-pid"
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this family's sub-commands to the ``carewatch`` parser."""
    gateways = commands.add_parser(
        "gateways",
        help="broker credentials of device gateways",
        description="Each gateway logs in to the device listener with its id as username and may "
        "publish only under carewatch/v1/<id>/.",
    )
    sub = gateways.add_subparsers(dest="gateways_command", required=True, metavar="GATEWAYS_COMMAND")

    add = sub.add_parser(
        "add",
        help="create a gateway's credentials and print them once",
        description="Create a random secret, store its hash in the broker's password file, make sure "
        "the ACL confines the gateway to its own topics, and print the credentials (only this once).",
    )
    add.add_argument("gateway_id", metavar="ID", help="gateway id: [A-Za-z0-9_-]{1,64}, not 'alerts'")
    add.add_argument(
        "--rotate", action="store_true", help="replace the secret of an existing gateway (the old one stops)"
    )
    add.add_argument(
        "--broker-host",
        default="<broker-host>",
        help="host name gateways reach the broker by, for the URL printed",
    )
    add.add_argument("--json", action="store_true", help="print the credentials as one JSON object")
    _add_files(add, acl=True, reload=True)
    add.set_defaults(handler=_add)

    listing = sub.add_parser("list", help="gateway ids that have credentials")
    _add_files(listing, acl=False, reload=False)
    listing.set_defaults(handler=_list)

    remove = sub.add_parser("remove", help="delete a gateway's credentials")
    remove.add_argument("gateway_id", metavar="ID")
    _add_files(remove, acl=False, reload=True)
    remove.set_defaults(handler=_remove)


def _add_files(parser: argparse.ArgumentParser, *, acl: bool, reload: bool) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        default=Path(env("CAREWATCH_MOSQUITTO_PASSWORD_FILE", str(DEFAULT_PASSWORD_FILE))),
        help="Mosquitto password_file (env CAREWATCH_MOSQUITTO_PASSWORD_FILE; default %(default)s)",
    )
    if acl:
        parser.add_argument(
            "--acl-file",
            type=Path,
            default=Path(env("CAREWATCH_MOSQUITTO_ACL_FILE", str(DEFAULT_ACL_FILE))),
            help="Mosquitto acl_file (env CAREWATCH_MOSQUITTO_ACL_FILE; default %(default)s)",
        )
    if reload:
        parser.add_argument(
            "--reload-pid",
            type=int,
            metavar="PID",
            help="send SIGHUP to this Mosquitto process so the change takes effect now",
        )


def _fail(exc: GatewayCredentialsError) -> int:
    sys.stderr.write(f"carewatch: {exc}\n")
    return 1


def _reload(args: argparse.Namespace) -> int:
    if args.reload_pid is None:
        sys.stderr.write(f"note: {RELOAD_HINT}\n")
        return 0
    try:
        reload_broker(args.reload_pid)
    except GatewayCredentialsError as exc:
        return _fail(exc)
    sys.stderr.write(f"broker (pid {args.reload_pid}) told to reload\n")
    return 0


def _add(args: argparse.Namespace) -> int:
    try:
        credentials = add_gateway(args.password_file, args.acl_file, args.gateway_id, rotate=args.rotate)
    except GatewayCredentialsError as exc:
        return _fail(exc)
    sys.stdout.write(_render(credentials, args.broker_host, as_json=args.json))
    sys.stdout.flush()
    return _reload(args)


def _render(credentials: GatewayCredentials, broker_host: str, *, as_json: bool) -> str:
    url = f"mqtt://{broker_host}:{DEVICE_LISTENER_PORT}"
    topics = f"{credentials.topic_prefix}/{{device_id}}/{{channel}}"
    if as_json:
        record = {
            "gateway_id": credentials.gateway_id,
            "username": credentials.username,
            "password": credentials.password,
            "topic_prefix": credentials.topic_prefix,
            "url": url,
        }
        return json.dumps(record) + "\n"
    return (
        f"gateway_id: {credentials.gateway_id}\n"
        f"username:   {credentials.username}\n"
        f"password:   {credentials.password}\n"
        f"topics:     {topics}\n"
        f"url:        {url} (TLS: mqtts://{broker_host}:8883 when enabled)\n"
        "The password is shown only now: store it in the gateway's configuration.\n"
    )


def _list(args: argparse.Namespace) -> int:
    try:
        ids = list_gateways(args.password_file)
    except GatewayCredentialsError as exc:
        return _fail(exc)
    sys.stdout.writelines(f"{gateway_id}\n" for gateway_id in ids)
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        remove_gateway(args.password_file, args.gateway_id)
    except GatewayCredentialsError as exc:
        return _fail(exc)
    sys.stderr.write(f"removed gateway {args.gateway_id}\n")
    return _reload(args)
