"""Command-line options shared by the ``carewatch`` sub-command families.

Flags fall back to ``CAREWATCH_*`` environment variables, then to defaults
that work on a developer's machine; only the command-line layer reads the
environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.settings import DEFAULT_DSN

if TYPE_CHECKING:
    import argparse


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
