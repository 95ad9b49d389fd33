"""What to do when the broker refuses or ends our session: one action per reason code.

A pure function from (packet type, MQTT 5 reason code) to an :class:`Action`
so the whole table is unit-tested. The owner of the session applies it: it
waits at least ``retry_after_s`` (on top of the exponential backoff), logs
``message`` at ``level`` and counts ``label``. MQTT 3.1.1 CONNACK return
codes arrive here already mapped to their MQTT 5 reason codes (ingest/wire.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingest.errors import (
    MqttConnectError,
    MqttDisconnectError,
    MqttProtocolError,
    MqttRedeliveryError,
    MqttTlsError,
    SubscribeError,
)
from ingest.wire import PacketType

#: Reason codes (MQTT 5, 2.4) the policy treats specially.
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_ID_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SESSION_TAKEN_OVER = 0x8E
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
CONNECTION_RATE_EXCEEDED = 0x9F

#: A configuration problem (credentials, ACL, client id) is not fixed by
#: retrying soon; try again rarely so an operator's fix is still picked up.
CONFIG_RETRY_S = 60.0
#: Another process uses our client id: each connect kicks the other one off.
#: Waiting this long keeps both to about one reconnect per minute.
TAKEOVER_RETRY_S = 30.0
#: The broker asked us to slow down.
QUOTA_RETRY_S = 10.0


@dataclass(frozen=True, slots=True)
class Action:
    """What the session's owner does about one refusal or disconnection.

    Attributes:
        retry_after_s: the least delay before the next attempt (0: backoff only).
        level: the logging level of ``message``.
        label: the metric label (a small closed set).
        message: why, for the operator (no payload, no credentials).
    """

    retry_after_s: float
    level: int
    label: str
    message: str


#: The label of a session taken over (the owner counts these separately).
TAKEOVER = "takeover"

#: A takeover inferred by :class:`ingest.reconnect.TakeoverSuspicion` (no 0x8E was sent).
SUSPECTED_TAKEOVER = Action(
    TAKEOVER_RETRY_S,
    logging.ERROR,
    TAKEOVER,
    "session keeps being closed right after connecting, without a reason: most likely another "
    "process connects with our client id (two ingests with the same --client-id?), "
    "or the broker keeps restarting",
)

#: A loss with no reason code (socket closed, keep-alive, TLS): plain backoff.
CONNECTION_LOST = Action(0.0, logging.WARNING, "lost", "connection lost")


def _config(label: str, message: str) -> Action:
    return Action(CONFIG_RETRY_S, logging.ERROR, label, message)


#: Reason codes with an action of their own, whichever packet carried them.
_BY_CODE = {
    BAD_USER_NAME_OR_PASSWORD: _config("bad_credentials", "bad user name or password: check the MQTT URL"),
    NOT_AUTHORIZED: _config("not_authorized", "not authorised: check the broker's password file and ACL"),
    CLIENT_ID_NOT_VALID: _config("client_id_rejected", "client id rejected by the broker"),
    UNSUPPORTED_PROTOCOL_VERSION: _config(
        "protocol_unsupported", "the broker does not speak this MQTT version (see ?protocol= in the MQTT URL)"
    ),
    SESSION_TAKEN_OVER: Action(
        TAKEOVER_RETRY_S,
        logging.ERROR,
        TAKEOVER,
        "session taken over: another process connected with our client id "
        "(two ingests with the same --client-id?)",
    ),
    QUOTA_EXCEEDED: Action(QUOTA_RETRY_S, logging.WARNING, "quota_exceeded", "broker quota exceeded"),
    CONNECTION_RATE_EXCEEDED: Action(
        QUOTA_RETRY_S, logging.WARNING, "rate_exceeded", "connection rate exceeded"
    ),
    MALFORMED_PACKET: Action(0.0, logging.ERROR, "protocol_error", "the broker reports a protocol error"),
    PROTOCOL_ERROR: Action(0.0, logging.ERROR, "protocol_error", "the broker reports a protocol error"),
    PACKET_TOO_LARGE: Action(0.0, logging.ERROR, "protocol_error", "the broker reports a packet too large"),
}
#: Granted QoS 0 (or refused): a message could be lost, which is never acceptable.
_SUBSCRIPTION_REFUSED = _config(
    "subscription_refused", "subscription refused or granted below QoS 1: check the broker's ACL"
)
_BROKER_CLOSED = Action(0.0, logging.WARNING, "lost", "broker closed the session")


def action_for(packet_type: PacketType, reason_code: int) -> Action:
    """The action for ``reason_code`` received in a CONNACK, DISCONNECT or SUBACK.

    0x8E exists only in DISCONNECT; in a SUBACK every code (a refusal, or a
    granted QoS 0) means the subscription is not good enough.
    """
    if packet_type == PacketType.SUBACK and reason_code not in (NOT_AUTHORIZED, QUOTA_EXCEEDED):
        return _SUBSCRIPTION_REFUSED
    action = _BY_CODE.get(reason_code)
    if action is not None and (reason_code != SESSION_TAKEN_OVER or packet_type == PacketType.DISCONNECT):
        return action
    if reason_code >= UNSPECIFIED_ERROR:
        return Action(0.0, logging.WARNING, "refused", f"broker reason 0x{reason_code:02x}")
    return _BROKER_CLOSED


#: A TLS handshake failure (wrong CA, host name mismatch, expired or refused
#: certificate) needs an operator; retry rarely, but do retry (a rotated
#: certificate fixes it without a restart).
TLS_RETRY_S = 30.0


#: Exceptions that carry a reason code, and the packet it came in.
_CARRIERS: tuple[tuple[type[MqttConnectError | MqttDisconnectError | SubscribeError], PacketType], ...] = (
    (MqttConnectError, PacketType.CONNACK),
    (MqttDisconnectError, PacketType.DISCONNECT),
    (SubscribeError, PacketType.SUBACK),
)


def action_for_error(exc: BaseException | None) -> Action:
    """The action for why a connect attempt failed or an established session ended.

    ``exc`` is what :meth:`MqttSession.open` or ``subscribe`` raised, or the
    result of :attr:`MqttSession.closed` (None: the broker closed the socket).
    """
    for kind, packet_type in _CARRIERS:
        if isinstance(exc, kind):
            return action_for(packet_type, exc.reason_code)
    if isinstance(exc, MqttRedeliveryError):
        return Action(0.0, logging.WARNING, "redelivery", str(exc))
    if isinstance(exc, MqttTlsError):
        return Action(TLS_RETRY_S, logging.ERROR, "tls", str(exc))
    if isinstance(exc, MqttProtocolError):
        return Action(0.0, logging.ERROR, "protocol_error", f"we refused the broker's packet: {exc}")
    if exc is None:
        return CONNECTION_LOST
    return Action(0.0, logging.WARNING, "failed", str(exc) or type(exc).__name__)
