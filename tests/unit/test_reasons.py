"""The reason-code policy: one action per CONNACK/DISCONNECT/SUBACK reason code."""

from __future__ import annotations

import logging

import pytest

from ingest import reasons
from ingest.errors import (
    MqttConnectError,
    MqttDisconnectError,
    MqttError,
    MqttProtocolError,
    MqttRedeliveryError,
    MqttTlsError,
    SubscribeError,
)
from ingest.reasons import Action, action_for, action_for_error
from ingest.wire import PacketType

CONNACK, DISCONNECT, SUBACK = PacketType.CONNACK, PacketType.DISCONNECT, PacketType.SUBACK


@pytest.mark.parametrize(
    ("packet_type", "code", "retry_after_s", "level", "label"),
    [
        (DISCONNECT, 0x8E, reasons.TAKEOVER_RETRY_S, logging.ERROR, "takeover"),
        (CONNACK, 0x87, reasons.CONFIG_RETRY_S, logging.ERROR, "not_authorized"),
        (DISCONNECT, 0x87, reasons.CONFIG_RETRY_S, logging.ERROR, "not_authorized"),
        (CONNACK, 0x86, reasons.CONFIG_RETRY_S, logging.ERROR, "bad_credentials"),
        (CONNACK, 0x85, reasons.CONFIG_RETRY_S, logging.ERROR, "client_id_rejected"),
        (CONNACK, 0x84, reasons.CONFIG_RETRY_S, logging.ERROR, "protocol_unsupported"),
        (CONNACK, 0x97, reasons.QUOTA_RETRY_S, logging.WARNING, "quota_exceeded"),
        (DISCONNECT, 0x97, reasons.QUOTA_RETRY_S, logging.WARNING, "quota_exceeded"),
        (CONNACK, 0x9F, reasons.QUOTA_RETRY_S, logging.WARNING, "rate_exceeded"),
        (DISCONNECT, 0x9F, reasons.QUOTA_RETRY_S, logging.WARNING, "rate_exceeded"),
        (DISCONNECT, 0x81, 0.0, logging.ERROR, "protocol_error"),
        (DISCONNECT, 0x82, 0.0, logging.ERROR, "protocol_error"),
        (DISCONNECT, 0x95, 0.0, logging.ERROR, "protocol_error"),
        (CONNACK, 0x88, 0.0, logging.WARNING, "refused"),  # server unavailable
        (CONNACK, 0x89, 0.0, logging.WARNING, "refused"),  # server busy
        (DISCONNECT, 0x8B, 0.0, logging.WARNING, "refused"),  # server shutting down
        (DISCONNECT, 0x8D, 0.0, logging.WARNING, "refused"),  # keep-alive timeout
        (DISCONNECT, 0x00, 0.0, logging.WARNING, "lost"),  # normal disconnection by the server
        (SUBACK, 0x00, reasons.CONFIG_RETRY_S, logging.ERROR, "subscription_refused"),  # granted QoS 0
        (SUBACK, 0x80, reasons.CONFIG_RETRY_S, logging.ERROR, "subscription_refused"),
        (SUBACK, 0x87, reasons.CONFIG_RETRY_S, logging.ERROR, "not_authorized"),
        (SUBACK, 0x97, reasons.QUOTA_RETRY_S, logging.WARNING, "quota_exceeded"),
    ],
)
def test_every_listed_reason_code_has_its_action(
    packet_type: PacketType, code: int, retry_after_s: float, level: int, label: str
):
    action = action_for(packet_type, code)
    assert (action.retry_after_s, action.level, action.label) == (retry_after_s, level, label)
    assert action.message


def test_the_takeover_message_names_the_likely_cause():
    assert "client id" in action_for(DISCONNECT, 0x8E).message


def test_0x8e_outside_a_disconnect_is_not_a_takeover():
    assert action_for(CONNACK, 0x8E).label == "refused"


def test_the_long_waits_are_long_and_the_takeover_one_allows_a_few_reconnects_a_minute():
    assert reasons.CONFIG_RETRY_S >= 60
    assert 20 <= reasons.TAKEOVER_RETRY_S <= 60
    assert reasons.QUOTA_RETRY_S >= 5


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MqttConnectError(0x87), action_for(CONNACK, 0x87)),
        (MqttDisconnectError(0x8E), action_for(DISCONNECT, 0x8E)),
        (SubscribeError("carewatch/v1/#", 0x00), action_for(SUBACK, 0x00)),
        (None, reasons.CONNECTION_LOST),
    ],
)
def test_errors_carrying_a_reason_code_get_that_codes_action(exc: BaseException | None, expected: Action):
    assert action_for_error(exc) == expected


def test_tls_failures_wait_and_are_errors():
    action = action_for_error(MqttTlsError("TLS handshake with b:8883 failed: certificate verify failed"))
    assert (action.label, action.level, action.retry_after_s) == ("tls", logging.ERROR, reasons.TLS_RETRY_S)
    assert "certificate verify failed" in action.message


def test_our_refusal_of_a_broker_packet_is_an_error_with_plain_backoff():
    action = action_for_error(MqttProtocolError("malformed packet"))
    assert (action.label, action.level, action.retry_after_s) == ("protocol_error", logging.ERROR, 0.0)


def test_a_plain_connection_failure_is_a_warning_with_plain_backoff():
    action = action_for_error(MqttError("cannot connect to 127.0.0.1:1: refused"))
    assert (action.label, action.level, action.retry_after_s) == ("failed", logging.WARNING, 0.0)


def test_ending_the_session_for_a_redelivery_reconnects_at_once():
    action = action_for_error(MqttRedeliveryError(3))
    assert (action.label, action.level, action.retry_after_s) == ("redelivery", logging.WARNING, 0.0)
