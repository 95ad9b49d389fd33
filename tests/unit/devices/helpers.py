"""What the codec tests share: the golden fixtures, a decode call, and views of its result.

Each codec's test module keeps its own defaults (device id, receive time, topic) and passes
them to :func:`decoder`, so that a test names only what it varies.
"""

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Event, Kind, Rejection, RejectReason
from devices.codec import Codec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "devices"

#: Property tests run often and must not depend on a local example database.
HYPOTHESIS = settings(database=None, deadline=None, max_examples=300)

#: Any JSON value, small: what a random document holds where a codec expects a field.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)

#: The shared fixtures' kind names that are not canonical kinds.
EXPECTED_KIND = {"temperature": Kind.BODY_TEMP, "removed": Kind.WORN}

#: The field holding a single-value reading's value.
VALUE_FIELD = {
    Kind.HEART_RATE: "bpm",
    Kind.BODY_TEMP: "celsius",
    Kind.BATTERY: "pct",
    Kind.SPO2: "pct",
    Kind.STEPS: "count",
}


def load_cases(name: str) -> list[dict[str, Any]]:
    """The golden cases of ``tests/fixtures/devices/<name>.jsonl``, in file order."""
    lines = (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def as_bytes(raw: str | bytes) -> bytes:
    """Text formats: a test writes the frames as text, the codec gets their UTF-8 bytes."""
    return raw if isinstance(raw, bytes) else raw.encode()


def as_json(payload: object) -> bytes:
    """JSON formats: a test writes the document, the codec gets it serialised (bytes pass as they are)."""
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def decoder(
    codec: Codec,
    encode: Callable[[Any], bytes],
    *,
    received_at: datetime,
    device_id: str | None = None,
    topic: str | None = None,
) -> Callable[..., Decoded]:
    """Make a module's ``decode(raw, *, received_at=..., device_id=..., topic=...)`` with its defaults.

    Args:
        codec: the codec under test.
        encode: how a test's payload becomes bytes (:func:`as_bytes` or :func:`as_json`).
        received_at: the default receive time.
        device_id: the default session / routing identity.
        topic: the default MQTT topic.
    """
    default_device_id, default_received_at, default_topic = device_id, received_at, topic

    def decode(
        raw: object,
        *,
        device_id: str | None = default_device_id,
        received_at: datetime = default_received_at,
        topic: str | None = default_topic,
    ) -> Decoded:
        context = DecodeContext(received_at=received_at, device_id=device_id, topic=topic)
        return codec(encode(raw), context)

    return decode


def canonical_kind(name: str) -> Kind:
    """The canonical kind a shared fixture's kind name stands for."""
    return EXPECTED_KIND[name] if name in EXPECTED_KIND else Kind(name)


def kinds(decoded: Decoded) -> list[Kind]:
    """The kinds of the events, in order."""
    return [event.kind for event in decoded.events]


def emitted(decoded: Decoded) -> list[tuple[Kind, dict[str, Any]]]:
    """The events as (kind, fields), in order, asserting that nothing was rejected."""
    assert decoded.rejections == []
    return [(event.kind, dict(event.fields)) for event in decoded.events]


def of_kind(decoded: Decoded, kind: Kind) -> Event:
    """The one event of ``kind`` (asserting there is exactly one)."""
    matches = [event for event in decoded.events if event.kind is kind]
    assert len(matches) == 1, kinds(decoded)
    return matches[0]


def reasons(decoded: Decoded) -> list[RejectReason]:
    """The reasons of the rejections, in order."""
    return [rejection.reason for rejection in decoded.rejections]


def clean(decoded: Decoded) -> Decoded:
    """``decoded`` itself, asserting that nothing was rejected."""
    assert decoded.rejections == []
    return decoded


def only_rejection(decoded: Decoded) -> Rejection:
    """The one rejection of a payload that yielded no event."""
    assert decoded.events == []
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]
