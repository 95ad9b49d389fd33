"""The backoff policy on its own: pure arithmetic, randomness injected."""

from __future__ import annotations

import pytest

from ingest.reconnect import Backoff


def no_jitter() -> float:
    return 0.0


def full_jitter() -> float:
    return 1.0


def test_delays_grow_exponentially_up_to_the_cap():
    backoff = Backoff(initial_s=0.5, max_s=30.0, multiplier=2.0, jitter=0.25, random=no_jitter)
    delays = [backoff.next_delay_s() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_jitter_only_shortens_and_by_at_most_its_fraction():
    backoff = Backoff(initial_s=4.0, max_s=4.0, jitter=0.25, random=full_jitter)
    assert backoff.next_delay_s() == pytest.approx(3.0)


def test_jitter_spreads_processes_that_failed_together():
    values = iter([0.0, 0.5, 0.9])
    backoff = Backoff(initial_s=8.0, max_s=8.0, jitter=0.5, random=lambda: next(values))
    assert [backoff.next_delay_s() for _ in range(3)] == pytest.approx([8.0, 6.0, 4.4])


def test_a_floor_from_the_reason_code_wins_over_a_short_exponential_delay():
    backoff = Backoff(initial_s=0.5, max_s=30.0, jitter=0.25, random=no_jitter)
    assert backoff.next_delay_s(floor_s=60.0) == 60.0
    assert backoff.next_delay_s() == 1.0  # the floor did not skip the exponential count


def test_the_floor_is_jittered_too():
    backoff = Backoff(jitter=0.25, random=full_jitter)
    assert backoff.next_delay_s(floor_s=30.0) == pytest.approx(22.5)


def test_reset_starts_again_from_the_initial_delay():
    backoff = Backoff(initial_s=1.0, max_s=10.0, random=no_jitter)
    for _ in range(5):
        backoff.next_delay_s()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay_s() == 1.0


def test_the_attempt_count_stops_at_the_cap_so_a_long_outage_cannot_overflow():
    backoff = Backoff(initial_s=0.5, max_s=30.0, random=no_jitter)
    for _ in range(100_000):
        backoff.next_delay_s()
    assert backoff.attempt == 6
    assert backoff.next_delay_s() == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": 0.0}, {"initial_s": 5.0, "max_s": 1.0}, {"multiplier": 0.5}, {"jitter": 1.0}],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]):
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)
