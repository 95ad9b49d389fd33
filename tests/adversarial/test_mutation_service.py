"""Mutated real frames of every codec through the real service (hypothesis, derandomised).

150 mutations per codec (canonical JSON and the six vendor formats; z2m and OwnTracks half on
their routes) go through ONE service run per backend, interleaved with the clean stream and
followed by the clean panic, with the same accounting as the hand-written corpus.
"""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import Runner
from tests.adversarial.corpus import ROUTES
from tests.adversarial.harness import PANIC_DEADLINE_S, RunResult, describe
from tests.adversarial.mutation import CHANNELS, mutated_cases

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

PER_CODEC = 150
MUTATED = [
    case for channel in CHANNELS for case in mutated_cases(channel, PER_CODEC, prefix=f"adv-m-{channel[:2]}")
]


@pytest.fixture(scope="module")
def run(corpus_runner: Runner) -> RunResult:
    return corpus_runner(MUTATED, ROUTES)


def test_every_mutated_frame_is_stored_or_quarantined(run: RunResult) -> None:
    vanished = run.vanished()
    assert not vanished, "neither stored nor quarantined (vanished): " + describe(vanished)


def test_every_quarantine_reason_is_from_the_vocabulary(run: RunResult) -> None:
    assert run.quarantined, "nothing was quarantined at all"
    assert run.bad_reasons() == {}


def test_clean_devices_keep_flowing_through_the_mutations(run: RunResult) -> None:
    assert run.clean_stored == run.clean_expected, (
        f"clean readings stored {sum(run.clean_stored.values())} of {sum(run.clean_expected.values())}"
    )


def test_clean_panic_after_the_mutations_alerts_within_2_s(run: RunResult) -> None:
    assert run.panic_latency_s is not None, "the clean panic raised no alert within 10 s"
    assert run.panic_latency_s <= PANIC_DEADLINE_S


def test_service_stayed_up_and_the_db_was_never_unavailable(run: RunResult) -> None:
    assert run.running is None, run.running
    assert run.received - run.ignored == run.published
    assert run.db_unavailable_failures == 0
