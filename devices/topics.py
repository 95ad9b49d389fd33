"""The MQTT topic contract: ``carewatch/v1/{gateway_id}/{device_id}/{channel}``.

Identifiers are restricted to ``[A-Za-z0-9_-]{1,64}`` because Mosquitto's ACL
``pattern`` lines substitute the gateway's username into a topic: a ``/`` or a
wildcard in an id would let one gateway write into another's subtree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devices.errors import DecodeError, RejectReason

TOPIC_ROOT = "carewatch/v1"
#: Everything the ingest service subscribes to; wrong shapes are seen and quarantined.
SUBSCRIPTION = f"{TOPIC_ROOT}/#"
#: The service's own outbound alert stream; never device input.
ALERTS_PREFIX = f"{TOPIC_ROOT}/alerts/"
#: Gateway ids that may not be used because their subtree belongs to the service.
RESERVED_GATEWAY_IDS = frozenset({"alerts"})

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHANNEL_RE = re.compile(r"[a-z0-9_]{1,32}")


@dataclass(frozen=True, slots=True)
class TopicParts:
    """The identity a topic carries."""

    gateway_id: str
    device_id: str
    channel: str


def is_valid_id(value: str) -> bool:
    """Tell whether ``value`` is a usable gateway or device id."""
    return ID_RE.fullmatch(value) is not None


def is_outbound(topic: str) -> bool:
    """Tell whether ``topic`` is the service's own alert stream, not device input."""
    return topic.startswith(ALERTS_PREFIX)


def parse_topic(topic: str) -> TopicParts:
    """Split a device topic into its parts.

    Raises:
        DecodeError: with reason ``bad_topic`` when the shape or an id is wrong.
    """
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:  # noqa: PLR2004
        raise DecodeError(RejectReason.BAD_TOPIC, "expected carewatch/v1/{gateway}/{device}/{channel}")
    _, _, gateway_id, device_id, channel = parts
    if not is_valid_id(gateway_id) or gateway_id in RESERVED_GATEWAY_IDS:
        raise DecodeError(RejectReason.BAD_TOPIC, "gateway id must match [A-Za-z0-9_-]{1,64}")
    if not is_valid_id(device_id):
        raise DecodeError(RejectReason.BAD_TOPIC, "device id must match [A-Za-z0-9_-]{1,64}")
    if _CHANNEL_RE.fullmatch(channel) is None:
        raise DecodeError(RejectReason.BAD_TOPIC, "channel must match [a-z0-9_]{1,32}")
    return TopicParts(gateway_id, device_id, channel)


def format_topic(gateway_id: str, device_id: str, channel: str) -> str:
    """Build the topic a device (or its gateway) publishes on."""
    for value in (gateway_id, device_id):
        if not is_valid_id(value):
            raise ValueError(f"invalid id {value!r}")
    if gateway_id in RESERVED_GATEWAY_IDS:
        raise ValueError(f"gateway id {gateway_id!r} is reserved")
    if _CHANNEL_RE.fullmatch(channel) is None:
        raise ValueError(f"invalid channel {channel!r}")
    return f"{TOPIC_ROOT}/{gateway_id}/{device_id}/{channel}"
