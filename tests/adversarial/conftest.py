"""One service run per module and backend: every hostile input goes through the same process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.adversarial.corpus import Case
from tests.adversarial.harness import RunResult, run_service
from tests.conftest import REPO_ROOT
from tests.support.broker import start_broker
from tests.support.database import MissingServiceError, fresh_database

Runner = Callable[[list[Case], tuple[str, ...]], RunResult]


@pytest.fixture(scope="module", params=["timescaledb", "postgresql"])
def corpus_runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """Runs a list of cases once on a fresh broker and database (memoised per module and backend)."""
    done: dict[int, RunResult] = {}
    workdir = tmp_path_factory.mktemp(f"adversarial-{request.param}")

    def run(cases: list[Case], routes: tuple[str, ...]) -> RunResult:
        if id(cases) not in done:
            broker = start_broker(REPO_ROOT, workdir / "mosquitto")
            try:
                with fresh_database(request.param) as dsn:
                    done[id(cases)] = run_service(
                        cases, broker=broker, dsn=dsn, workdir=workdir, routes=routes
                    )
            except MissingServiceError as exc:
                pytest.fail(str(exc), pytrace=False)
            finally:
                broker.stop()
        return done[id(cases)]

    return run


def write_log(result: RunResult, path: Path) -> None:
    path.write_text(result.log, encoding="utf-8")
