"""Which codec decodes which format: the topic's channel segment picks one.

``carewatch/v1/{gateway}/{device}/{channel}``: ``json`` is Carewatch's
canonical JSON; the other channels are vendor formats relayed as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices import iw, owntracks, scaip, traccar, watch, z2m
from devices.canonical import Decoded, Rejection, decode_canonical
from devices.errors import RejectReason
from devices.sniff import salvage_unparsed

if TYPE_CHECKING:
    from collections.abc import Mapping

    from devices.codec import Codec, DecodeContext


def _canonical(payload: bytes, context: DecodeContext) -> Decoded:
    if context.device_id is None:
        return Decoded([], [Rejection(RejectReason.MISSING_FIELD, "no device identity")])
    return decode_canonical(
        payload, device_id=context.device_id, received_at=context.received_at, policy=context.policy
    )


#: A payload rejected whole for these reasons did not parse: see devices.sniff.
_UNPARSED = frozenset({RejectReason.MALFORMED_JSON, RejectReason.INVALID_STRUCTURE})


def _salvaging(fmt: str, codec: Codec) -> Codec:
    """``codec``, and for a payload it could not parse at all, the panic or fall the bytes name."""

    def decode(payload: bytes, context: DecodeContext) -> Decoded:
        decoded = codec(payload, context)
        if decoded.events or not decoded.rejections or decoded.rejections[0].reason not in _UNPARSED:
            return decoded
        salvaged = salvage_unparsed(payload, fmt, context, decoded.rejections[0])
        return Decoded(salvaged.events, decoded.rejections)

    return decode


#: channel (and ``carewatch decode --format``) -> codec
CODECS: Mapping[str, Codec] = {
    "json": _salvaging("json", _canonical),
    "watch": watch.decode,
    "iw": iw.decode,
    "z2m": _salvaging("z2m", z2m.decode),
    "traccar": _salvaging("traccar", traccar.decode),
    "scaip": scaip.decode,
    "owntracks": owntracks.decode,
}


def codec_for(channel: str) -> Codec | None:
    """The codec of a topic channel, or None when no codec knows it."""
    return CODECS.get(channel)
