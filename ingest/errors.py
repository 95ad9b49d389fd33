"""The ingest package's exceptions: each carries the data a caller branches on."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error raised by the ingest package."""


class MqttError(IngestError):
    """The MQTT connection failed or broke."""


class MqttProtocolError(MqttError):
    """The broker sent something that is not valid MQTT 5 for us.

    Attributes:
        reason_code: the MQTT 5 DISCONNECT reason the session sends before
            closing: 0x81 malformed packet, 0x9B QoS not supported...
    """

    def __init__(self, message: str, *, reason_code: int = 0x81) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MqttDisconnectError(MqttError):
    """The broker ended the session with a DISCONNECT packet (MQTT 5 only).

    Attributes:
        reason_code: the DISCONNECT reason code (3.14.2.1), e.g. 0x8E session
            taken over.
    """

    def __init__(self, reason_code: int, reason_string: str | None = None) -> None:
        detail = f": {reason_string}" if reason_string else ""
        super().__init__(f"broker sent DISCONNECT 0x{reason_code:02x}{detail}")
        self.reason_code = reason_code


class MqttRedeliveryError(MqttError):
    """We ended the session ourselves so the broker redelivers messages whose handler failed.

    Attributes:
        failed_messages: how many messages the handler failed on.
    """

    def __init__(self, failed_messages: int) -> None:
        super().__init__(f"ended the session to have {failed_messages} failed message(s) redelivered")
        self.failed_messages = failed_messages


class MqttTlsError(MqttError):
    """The TLS handshake failed: wrong CA, hostname mismatch, bad client certificate."""


class MqttConnectError(MqttError):
    """The broker refused CONNECT.

    Attributes:
        reason_code: the CONNACK reason code (MQTT 5, 3.2.2.2), e.g. 0x86 bad
            user name or password, 0x87 not authorized.
    """

    def __init__(self, reason_code: int) -> None:
        super().__init__(f"broker refused the connection (reason code 0x{reason_code:02x})")
        self.reason_code = reason_code


class SubscribeError(MqttError):
    """The broker refused a subscription.

    Attributes:
        topic_filter: the filter that was refused.
        reason_code: the SUBACK reason code.
    """

    def __init__(self, topic_filter: str, reason_code: int) -> None:
        super().__init__(f"subscription to {topic_filter!r} refused (0x{reason_code:02x})")
        self.topic_filter = topic_filter
        self.reason_code = reason_code


class ConfigError(IngestError):
    """A setting is malformed (a URL, a port...)."""
