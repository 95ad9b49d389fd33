"""Command-line options shared by the ``carewatch`` sub-command families.

Flags fall back to ``CAREWATCH_*`` environment variables, then to defaults
that work on a developer's machine; only the command-line layer reads the
environment.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.settings import DEFAULT_DSN

if TYPE_CHECKING:
    import argparse

    from ingest.retention import RetentionSettings


def env(name: str, default: str) -> str:
    """The environment variable ``name``, or ``default``."""
    return os.environ.get(name, default)


def add_dsn(parser: argparse.ArgumentParser) -> None:
    """``--dsn``: the database."""
    parser.add_argument(
        "--dsn",
        default=env("CAREWATCH_DSN", DEFAULT_DSN),
        help="libpq connection string of the database (env CAREWATCH_DSN; default %(default)r)",
    )


def add_rules(parser: argparse.ArgumentParser) -> None:
    """``--rules``: the thresholds file (it may define more device profiles)."""
    parser.add_argument(
        "--rules",
        type=Path,
        default=os.environ.get("CAREWATCH_RULES") or None,
        help="TOML file of rule thresholds per profile, elder and device (env CAREWATCH_RULES)",
    )


def add_retention(parser: argparse.ArgumentParser) -> None:
    """``--retention-*``: one flag per :class:`ingest.retention.RetentionSettings` field."""
    from ingest.retention import RetentionSettings  # noqa: PLC0415 - only the ingest command needs it

    defaults = RetentionSettings()
    group = parser.add_argument_group("retention (see docs/configuration.md)")
    for spec in fields(RetentionSettings):
        flag = "--retention-" + spec.name.replace("_", "-")
        variable = "CAREWATCH_RETENTION_" + spec.name.upper()
        default = getattr(defaults, spec.name)
        if spec.name == "enabled":
            group.add_argument(
                "--retention",
                dest="retention_enabled",
                choices=["on", "off"],
                default=env(variable, "on" if default else "off"),
                help=f"prune old data (env {variable}; default %(default)s)",
            )
            continue
        group.add_argument(
            flag,
            dest=f"retention_{spec.name}",
            type=type(default),
            default=type(default)(env(variable, str(default))),
            help=f"(env {variable}; default %(default)s)",
        )


def retention_from(args: argparse.Namespace) -> RetentionSettings:
    """The settings :func:`add_retention` parsed."""
    from ingest.retention import RetentionSettings  # noqa: PLC0415

    values: dict[str, Any] = {
        spec.name: getattr(args, f"retention_{spec.name}")
        for spec in fields(RetentionSettings)
        if spec.name != "enabled"
    }
    return RetentionSettings(enabled=args.retention_enabled == "on", **values)


def add_mqtt_tls(parser: argparse.ArgumentParser) -> None:
    """``--mqtt-ca-file``, ``--mqtt-cert-file``, ``--mqtt-key-file``: TLS for ``mqtts://``.

    There is no flag to skip certificate or host name verification: an
    ingest that trusts any broker would acknowledge panics to an impostor.
    """
    group = parser.add_argument_group("MQTT over TLS (mqtts:// URLs)")
    for name, variable, text in (
        (
            "ca",
            "CAREWATCH_MQTT_CA_FILE",
            "PEM CA file that signed the broker's certificate (default: system store)",
        ),
        ("cert", "CAREWATCH_MQTT_CERT_FILE", "PEM client certificate, for brokers that require one"),
        ("key", "CAREWATCH_MQTT_KEY_FILE", "private key of --mqtt-cert-file (default: inside that file)"),
    ):
        group.add_argument(
            f"--mqtt-{name}-file",
            dest=f"mqtt_{name}_file",
            type=Path,
            default=os.environ.get(variable) or None,
            help=f"{text} (env {variable})",
        )
