"""Throw-away databases on the real servers the tests need.

The servers come from ``.ci/services up``, which exports their DSNs. A test
that needs one and finds it missing FAILS: a skipped database test is a
test that silently stopped protecting anything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: backend name -> environment variable holding a DSN of its server.
SERVER_ENV = {
    "timescaledb": "CAREWATCH_TEST_TIMESCALE_DSN",
    "postgresql": "CAREWATCH_TEST_POSTGRES_DSN",
}


class MissingServiceError(RuntimeError):
    """A service the tests need is not configured or not reachable."""


def server_dsn(backend: str) -> str:
    """The DSN of the server for ``backend``, or raise with how to provide it."""
    name = SERVER_ENV[backend]
    dsn = os.environ.get(name)
    if not dsn:
        raise MissingServiceError(
            f"{name} is not set: run `source <(.ci/services up)` or the README's test command"
        )
    return dsn


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """Create an empty database on the backend's server; drop it afterwards."""
    admin_dsn = server_dsn(backend)
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            if backend == "timescaledb":
                row = admin.execute(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
                ).fetchone()
                if row is None:
                    raise MissingServiceError(f"{SERVER_ENV[backend]} points at a server without TimescaleDB")
    except psycopg.OperationalError as exc:
        raise MissingServiceError(f"cannot reach the {backend} server ({exc})") from exc
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
