"""Shared fixtures: real databases (TimescaleDB and plain PostgreSQL) and a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RunningBroker, start_broker
from tests.support.database import MissingServiceError, fresh_database

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # not a test class, despite the name

    """A throw-away database and the kind of server it lives on."""

    backend: str
    dsn: str


def _database(backend: str) -> Iterator[TestDatabase]:
    try:
        with fresh_database(backend) as dsn:
            yield TestDatabase(backend, dsn)
    except MissingServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["timescaledb", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    """A fresh database, once on TimescaleDB and once on plain PostgreSQL."""
    yield from _database(request.param)


@pytest.fixture
def tsdb() -> Iterator[TestDatabase]:
    """A fresh database on TimescaleDB (the production backend)."""
    yield from _database("timescaledb")


@pytest.fixture
def pgdb() -> Iterator[TestDatabase]:
    """A fresh database on plain PostgreSQL."""
    yield from _database("postgresql")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A real Mosquitto started from a test variant of the repo's mosquitto.conf."""
    running = start_broker(REPO_ROOT, tmp_path / "mosquitto")
    try:
        yield running
    finally:
        running.stop()
