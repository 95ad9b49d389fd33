"""Why a payload could not become canonical events.

Reasons are a closed vocabulary because they are metric labels, quarantine
rows and operator dashboards at once: free text would explode all three.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Closed set of reasons a message (or part of one) is quarantined."""

    BAD_TOPIC = "bad_topic"
    UNSUPPORTED_CHANNEL = "unsupported_channel"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_JSON = "malformed_json"
    INVALID_STRUCTURE = "invalid_structure"
    NO_EVENTS = "no_events"
    UNKNOWN_KIND = "unknown_kind"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE_NUMBER = "non_finite_number"
    OUT_OF_RANGE = "out_of_range"
    UNEXPECTED_FIELD = "unexpected_field"
    BAD_TIMESTAMP = "bad_timestamp"
    CLOCK_SKEW = "clock_skew"
    INTERNAL_ERROR = "internal_error"
    #: A well-formed frame of a type the codec does not understand (a vendor message kind,
    #: an app's management message): quarantined so that it is seen, never silently dropped.
    UNSUPPORTED_FRAME = "unsupported_frame"
    #: A frame whose framing is broken: cut short, unterminated, bytes outside any frame.
    MALFORMED_FRAME = "malformed_frame"
    #: The database refused the decoded rows (a value it cannot hold).
    STORAGE_REJECTED = "storage_rejected"
    #: The registry is enforced and knows no such device.
    UNKNOWN_DEVICE = "unknown_device"
    #: The device is registered under another gateway than the topic's.
    GATEWAY_MISMATCH = "gateway_mismatch"
    #: Not a rejection: the message's events were stored (and fed the rules), but text in
    #: them was sanitised or cut short (devices/text.py); the row keeps the raw bytes.
    SANITISED_TEXT = "sanitised_text"


class DevicesError(Exception):
    """Base of every error raised by the devices package."""


class DecodeError(DevicesError):
    """A payload or topic does not follow its format.

    Attributes:
        reason: the closed-vocabulary reason, used as a metric label.
        detail: a short human explanation; never contains payload bytes or
            health values, because it is logged and shown to operators.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RegistryError(DevicesError):
    """A registry record or import file is invalid.

    Attributes:
        source: the file (or ``<args>``) the record came from.
        line: its 1-based line number, 0 when not from a file.
        detail: what is wrong, naming the column.
    """

    def __init__(self, source: str, line: int, detail: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {detail}")
        self.source = source
        self.line = line
        self.detail = detail
