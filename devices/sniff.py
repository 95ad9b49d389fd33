"""Panics and falls in JSON payloads that cannot be parsed at all.

A payload cut short, nested ten thousand deep in a side field, or broken in
some other way is rejected as a whole (and kept raw in quarantine), but if it
plainly says "panic" or "fall" a person may be waiting for help: the alarm
must not wait for someone to read the quarantine. So a JSON codec whose
payload does not parse asks :func:`salvage_unparsed` whether the raw bytes
carry its format's life-safety marker, and if they do, emits that event,
filed under the receive time and flagged ``invalid_fields`` and
``unparsed_payload``, beside the rejection. An operator dismisses the rare
false alarm; a missed one cannot be undone.

The markers are each format's own alarm keys as its documents define them,
matched on the raw bytes (first :data:`SCAN_LIMIT` bytes): nothing else of
the payload is believed, not even its time.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from devices.canonical import Decoded
from devices.codec import EventSink
from devices.events import Kind

if TYPE_CHECKING:
    from devices.canonical import Rejection
    from devices.codec import DecodeContext

#: How much of a payload is searched (the pipeline admits at most 64 KiB).
SCAN_LIMIT = 64 * 1024

#: What is wrong with a salvaged event.
SALVAGE_FLAGS = frozenset({"invalid_fields", "unparsed_payload"})

_CANONICAL = re.compile(rb'"kind"\s*:\s*"(panic|fall|alarm)"')
_Z2M = re.compile(
    rb'"action"\s*:\s*"(emergency|panic|sos)(?:_[a-z0-9]+)?"'
    rb'|"sos"\s*:\s*(true)'
    rb'|"(?:fall_down_status|fall_status|status)"\s*:\s*"(fall|fall_alarm|falling)"'
)
_TRACCAR = re.compile(rb'"alarm"\s*:\s*"[^"]{0,64}?\b(sos|fallDown)\b')
_TRACCAR_ID = re.compile(rb'"uniqueId"\s*:\s*"([A-Za-z0-9_-]{1,64})"')

_KINDS = {
    b"panic": Kind.PANIC,
    b"alarm": Kind.ALARM,
    b"fall": Kind.FALL,
    b"emergency": Kind.PANIC,
    b"sos": Kind.PANIC,
    b"true": Kind.PANIC,
    b"fall_alarm": Kind.FALL,
    b"falling": Kind.FALL,
    b"fallDown": Kind.FALL,
}

#: format -> its life-safety marker
MARKERS = {"json": _CANONICAL, "z2m": _Z2M, "traccar": _TRACCAR}


def sniff(payload: bytes, marker: re.Pattern[bytes]) -> Kind | None:
    """The life-safety kind the raw payload names, if any (the first one found)."""
    match = marker.search(payload, 0, SCAN_LIMIT)
    if match is None:
        return None
    word = next(group for group in match.groups() if group is not None)
    return _KINDS[word]


def salvage_unparsed(
    payload: bytes, fmt: str, context: DecodeContext, rejection: Rejection, *, device_id: str | None = None
) -> Decoded:
    """The rejection of an unparsable payload, plus the panic or fall it plainly carries."""
    kind = sniff(payload, MARKERS[fmt])
    if fmt == "traccar" and device_id is None and (found := _TRACCAR_ID.search(payload, 0, SCAN_LIMIT)):
        device_id = found.group(1).decode("ascii")
    device_id = device_id or context.device_id
    if kind is None or not device_id:
        return Decoded([], [rejection])
    sink = EventSink(device_id, context)
    fields = {"stage": "alarm"} if kind is Kind.FALL else {}
    identity: dict[str, object] = {"unparsed": hashlib.sha256(payload).hexdigest()}
    sink.emit(kind, dict(fields), device_time=None, identity=identity, flags=SALVAGE_FLAGS)
    sink.rejections.append(rejection)
    return sink.result()
