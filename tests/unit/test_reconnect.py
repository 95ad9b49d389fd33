"""The reconnect policy: the backoff and the takeover suspicion on their own (pure), then joined."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from ingest import reasons
from ingest.errors import MqttConnectError, MqttDisconnectError, MqttError
from ingest.metrics import IngestMetrics
from ingest.reconnect import HEALTHY_AFTER_S, Backoff, TakeoverSuspicion
from ingest.reconnect_policy import ReconnectPolicy


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


# --- TakeoverSuspicion -------------------------------------------------------------------------


def test_two_short_reasonless_sessions_in_a_row_are_a_suspected_takeover():
    suspicion = TakeoverSuspicion(healthy_after_s=10.0)
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=False)
    assert suspicion.session_ended(lasted_s=0.8, with_reason=False)
    assert suspicion.session_ended(lasted_s=0.3, with_reason=False)


def test_a_failed_connect_between_short_sessions_looks_like_a_broker_restart_not_a_rival():
    suspicion = TakeoverSuspicion()
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=False)
    suspicion.connect_failed()
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=False)


def test_a_healthy_session_or_one_ended_with_a_reason_clears_the_suspicion():
    suspicion = TakeoverSuspicion(healthy_after_s=10.0)
    suspicion.session_ended(lasted_s=0.5, with_reason=False)
    assert not suspicion.session_ended(lasted_s=30.0, with_reason=False)
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=False)
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=True)
    assert not suspicion.session_ended(lasted_s=0.5, with_reason=False)


# --- ReconnectPolicy: the parts joined, with their metrics --------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_the_policy_waits_per_reason_and_counts_connects_disconnects_and_takeovers(
    caplog: pytest.LogCaptureFixture,
):
    registry = CollectorRegistry()
    policy = ReconnectPolicy(IngestMetrics(registry), Backoff(random=no_jitter))
    with caplog.at_level(logging.INFO, logger="ingest.reconnect_policy"):
        assert policy.connect_failed_delay_s(MqttError("refused")) == 0.5
        assert policy.connect_failed_delay_s(MqttConnectError(0x87)) == reasons.CONFIG_RETRY_S
        policy.connected()
        assert policy.session_ended_delay_s(MqttDisconnectError(0x8E)) == reasons.TAKEOVER_RETRY_S
        policy.connected()
        assert policy.session_ended_delay_s(MqttDisconnectError(0x8E)) == reasons.TAKEOVER_RETRY_S
    assert sample(registry, "carewatch_ingest_mqtt_connects_total", outcome="failed") == 1
    assert sample(registry, "carewatch_ingest_mqtt_connects_total", outcome="not_authorized") == 1
    assert sample(registry, "carewatch_ingest_mqtt_connects_total", outcome="connected") == 2
    assert sample(registry, "carewatch_ingest_mqtt_disconnects_total", reason="takeover") == 2
    assert sample(registry, "carewatch_ingest_mqtt_session_takeovers_total") == 2
    takeover_lines = [r for r in caplog.records if "taken over" in r.getMessage()]
    assert [r.levelno for r in takeover_lines] == [logging.ERROR, logging.WARNING]  # an error once


def test_sessions_kicked_without_a_reason_become_a_suspected_takeover_with_the_long_wait():
    registry = CollectorRegistry()
    policy = ReconnectPolicy(IngestMetrics(registry), Backoff(random=no_jitter))
    policy.connected()
    assert policy.session_ended_delay_s(None) == 0.5
    policy.connected()
    assert policy.session_ended_delay_s(None) == reasons.TAKEOVER_RETRY_S
    assert sample(registry, "carewatch_ingest_mqtt_session_takeovers_total") == 1
    assert sample(registry, "carewatch_ingest_mqtt_disconnects_total", reason="lost") == 1


def test_the_backoff_restarts_only_after_a_healthy_session(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    policy = ReconnectPolicy(IngestMetrics(CollectorRegistry()), Backoff(random=no_jitter))
    for _ in range(3):
        policy.connect_failed_delay_s(MqttError("down"))
    policy.connected()
    clock[0] += 1.0
    assert policy.session_ended_delay_s(MqttDisconnectError(0x8B)) == 4.0  # short: no reset
    policy.connected()
    clock[0] += HEALTHY_AFTER_S
    assert policy.session_ended_delay_s(MqttDisconnectError(0x8B)) == 0.5  # healthy: reset
