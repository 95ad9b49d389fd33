"""What a device frame means.

``devices`` owns the topic contract, the canonical event vocabulary and the
codecs that turn device payloads into canonical events. It does no I/O.
"""

from devices.canonical import Decoded, Rejection, decode_canonical, event_key, make_event
from devices.codec import Codec, DecodeContext
from devices.errors import DecodeError, DevicesError, RejectReason
from devices.events import LIFE_SAFETY_KINDS, READING_METRICS, Event, FieldValue, Kind, TimeSource
from devices.timing import TimePolicy, parse_ts
from devices.topics import (
    ALERTS_PREFIX,
    SUBSCRIPTION,
    TOPIC_ROOT,
    TopicParts,
    format_topic,
    is_outbound,
    is_valid_id,
    parse_topic,
)

__all__ = [
    "ALERTS_PREFIX",
    "LIFE_SAFETY_KINDS",
    "READING_METRICS",
    "SUBSCRIPTION",
    "TOPIC_ROOT",
    "Codec",
    "DecodeContext",
    "DecodeError",
    "Decoded",
    "DevicesError",
    "Event",
    "FieldValue",
    "Kind",
    "RejectReason",
    "Rejection",
    "TimePolicy",
    "TimeSource",
    "TopicParts",
    "decode_canonical",
    "event_key",
    "format_topic",
    "is_outbound",
    "is_valid_id",
    "make_event",
    "parse_topic",
    "parse_ts",
]
