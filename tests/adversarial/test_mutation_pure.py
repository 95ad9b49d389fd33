"""Properties of every codec under byte-level mutation of its real frames (no service).

* Nothing vanishes: a non-empty payload yields events or rejections, unless its codec
  documents that payload as meaning nothing (mutation.NOTHING lists those cases).
* A garbled SOS/fall frame still yields a life-safety event or a rejection with a reason from
  the vocabulary; whatever it yields belongs to the frame's device.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.codec import DecodeContext
from devices.codecs import CODECS
from tests.adversarial.frames import readdress
from tests.adversarial.harness import REASON_VOCABULARY
from tests.adversarial.mutation import (
    CHANNELS,
    OPERATIONS,
    alarm_key_gone,
    base_frames,
    life_safety_frames,
    may_mean_nothing,
    mutate,
)

DEVICE = "adv-p-0001"
PURE = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _decode(channel: str, payload: bytes) -> Any:
    context = DecodeContext(
        received_at=datetime.now(UTC), device_id=DEVICE, topic=f"carewatch/v1/gw/{DEVICE}/{channel}"
    )
    return CODECS[channel](payload, context)


def _substantive(payload: bytes) -> bool:
    return bool(payload.strip(b" \t\r\n\x00"))


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_mutated_frame_never_yields_neither_events_nor_rejections(channel: str) -> None:
    @PURE
    @given(st.sampled_from(base_frames(channel)), OPERATIONS)
    def check(base: Any, operations: list[tuple[str, int, Any]]) -> None:
        payload = mutate(channel, readdress(channel, base.raw, DEVICE), DEVICE, operations)
        decoded = _decode(channel, payload)
        if _substantive(payload) and not may_mean_nothing(channel, payload):
            assert decoded.events or decoded.rejections, f"{base.name} mutated to {payload[:200]!r} vanished"
        for rejection in decoded.rejections:
            assert str(rejection.reason) in REASON_VOCABULARY

    check()


@pytest.mark.parametrize("channel", [c for c in CHANNELS if life_safety_frames(c)])
def test_a_garbled_sos_or_fall_frame_alerts_or_is_rejected_with_a_reason(channel: str) -> None:
    @PURE
    @given(st.sampled_from(life_safety_frames(channel)), OPERATIONS)
    def check(base: Any, operations: list[tuple[str, int, Any]]) -> None:
        payload = mutate(channel, readdress(channel, base.raw, DEVICE), DEVICE, operations)
        decoded = _decode(channel, payload)
        if may_mean_nothing(channel, payload) or alarm_key_gone(channel, payload):
            return  # e.g. the alarm word itself mutated into an action z2m documents as no alarm
        life_safety = [event for event in decoded.events if event.is_life_safety]
        reasons = [str(rejection.reason) for rejection in decoded.rejections]
        assert life_safety or reasons, f"{base.name} mutated to {payload[:200]!r}: no alarm and no reason"
        assert set(reasons) <= REASON_VOCABULARY
        assert {event.device_id for event in decoded.events} <= {DEVICE}

    check()


@pytest.mark.parametrize("channel", [c for c in CHANNELS if life_safety_frames(c)])
def test_an_untouched_sos_frame_is_a_life_safety_event(channel: str) -> None:
    # Guards the two properties above against a base that was never an alarm.
    for base in life_safety_frames(channel):
        decoded = _decode(channel, readdress(channel, base.raw, DEVICE))
        assert any(event.is_life_safety for event in decoded.events), base.name
