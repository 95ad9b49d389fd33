"""The adversarial corpus through the real service, Mosquitto and database (issue 11, part 7).

One service run per backend carries every input of :mod:`tests.adversarial.corpus`, a clean
heart-rate stream interleaved with it, and a clean panic after it; each test checks one
property of that run.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.adversarial.conftest import Runner
from tests.adversarial.corpus import ROUTES, build_corpus
from tests.adversarial.harness import PANIC_DEADLINE_S, RunResult, describe

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

CORPUS = build_corpus()


@pytest.fixture(scope="module")
def run(corpus_runner: Runner) -> RunResult:
    return corpus_runner(CORPUS, ROUTES)


def test_corpus_is_large_and_covers_every_channel_and_route() -> None:
    channels = Counter(case.channel for case in CORPUS)
    assert len(CORPUS) >= 300
    assert set(channels) == {"json", "watch", "iw", "z2m", "traccar", "scaip", "owntracks", "topic"}
    assert {c.category for c in CORPUS} >= {"route-z2m", "route-owntracks"}
    assert all(channels[name] >= 10 for name in channels)
    # Each life-safety vendor channel has garbled alarms in it.
    life_safety = Counter(case.channel for case in CORPUS if case.life_safety)
    assert all(life_safety[name] >= 5 for name in ("json", "watch", "iw", "z2m", "traccar", "scaip"))


def test_every_input_is_stored_or_quarantined(run: RunResult) -> None:
    vanished = run.vanished()
    assert not vanished, "neither stored nor quarantined (vanished): " + describe(vanished)


def test_every_quarantine_reason_is_from_the_vocabulary(run: RunResult) -> None:
    assert run.quarantined, "nothing was quarantined at all"
    assert run.bad_reasons() == {}


def test_clean_devices_keep_flowing_through_the_poison(run: RunResult) -> None:
    assert run.clean_stored == run.clean_expected, (
        f"clean readings stored {sum(run.clean_stored.values())} of {sum(run.clean_expected.values())}"
    )


def test_clean_panic_after_the_poison_alerts_within_2_s(run: RunResult) -> None:
    assert run.panic_latency_s is not None, "the clean panic raised no alert within 10 s"
    assert run.panic_latency_s <= PANIC_DEADLINE_S


def test_every_garbled_panic_or_fall_alerts(run: RunResult) -> None:
    silent = run.silent_life_safety()
    assert not silent, "garbled life-safety input without an emergency alert: " + describe(silent)


def test_service_stayed_up_received_each_message_once_and_the_db_was_never_unavailable(
    run: RunResult,
) -> None:
    assert run.running is None, run.running
    # The service also receives its own alert stream (carewatch/v1/alerts/#), counted as ignored.
    assert run.received - run.ignored == run.published
    assert run.db_unavailable_failures == 0
