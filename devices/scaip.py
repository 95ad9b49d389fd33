"""Codec for SCAIP social-alarm messages (SS 91100:2014 / CLC/TS 50134-9).

Framing:
    A social-alarm unit (home unit with its pendants, fall detectors and fixed triggers)
    sends a SIP ``MESSAGE`` whose body, content type ``application/scaip+xml``, is one XML
    document with the root ``<mrq>`` (message request). The receiver answers with an
    ``<mrs>`` echoing ``<ref>``; that reply and the optional voice call that follows are
    the gateway's business, not this codec's: the payload here is the XML body of one
    request. Children are short tags in any order; their text is stripped because vendors
    pad it (Doro sends ``<cid> 12345</cid>``). Tag names are matched case-insensitively and
    without namespace. Unknown tags are ignored; a repeated tag counts once (the first).

Safety:
    The XML is parsed with the standard library only after any markup declaration
    (``<!DOCTYPE``, ``<!ENTITY``, ``<!ELEMENT``...; comments and CDATA are fine) has been
    refused, so that no entity can be declared and expanded (billion laughs, external
    entities). SCAIP never uses a DTD. The body is read as UTF-8 (Latin-1 as a fallback)
    and parsed as text, so an encoding declaration cannot hide a declaration from that
    check.

Damaged bodies (see :mod:`devices.scaip_xml`):
    Characters XML forbids (a raw control character, ``&#0;``) are replaced before parsing,
    so a body well-formed but for them is decoded as usual; its event is flagged
    ``malformed_frame`` and the body is still rejected (``malformed_frame``), so the raw
    bytes are kept. A body that still cannot be parsed (cut short, a second root) yields its
    rejection and, only when its status code's class is an alarm (``10``) and its message
    type is not a heartbeat or a reset, the event the mapping below gives, flagged
    ``malformed_frame`` and identified by a readable ``<cid>`` or else the topic's device.
    A body with a declaration is never salvaged: it is refused as a whole.

Fields:
    ``ref`` message reference (echoed in the reply; kept as ``msg_id`` when at most 64
    characters, but not used alone as the event key because some units restart their
    counter, see Time); ``mty`` message type; ``cid`` controller id, the device identity
    (``context.device_id`` only when it is missing); ``dty`` device type; ``did`` sub-device
    id (which pendant or detector: no canonical field, not part of the identity); ``stc``
    status code; ``lco`` location code (where the trigger is installed: no canonical field);
    ``crd`` callback route (``gsm:+46...``, ``sip:``, ``no-voice:``); ``cha`` call handling;
    ``pri`` priority. None of the last three affects the event.

Message types:
    ``PI`` heartbeat (its status code is ignored); ``RE`` reset / withdrawn alarm -> ``cancel``;
    ``ME`` alarm message, also assumed when ``mty`` is missing (the reference material says
    so) or unknown (then flagged ``unknown_message_type``: an alarm must not be dropped for a
    type we do not know); ``IN`` information: its status code is mapped like an alarm's, but
    a code we do not know is quarantined (``unsupported_frame``), not raised as an alarm.

Status codes, by class:
    Codes are written with 2, 3 or 4 digits by different vendors (``10``, ``010``,
    ``0010``), so they are compared as numbers. The standard is paywalled and no public
    receiver we could find lists its table, so the table below holds only codes named by a
    source we can cite (a third-party receiver implementation, the reference notes of
    ``shared/reference/device-formats.md`` section 7, and the field reports of issue 11):

    * alarm: ``10`` manual alarm (a person pressed a trigger) -> ``panic``, whatever the device
      type (a fall detector's own button is a press, not a detected fall);
    * technical: ``16`` low battery -> ``device_fault`` (``fault: low_battery``): maintenance
      work, never a panic nor an alarm;
    * care: ``88`` presence (a carer arrived after an alarm), ``110`` assistance, ``111``
      intervention complete -> ``care`` (``activity`` says which): part of handling an
      incident, never an alarm;
    * reset: ``19`` (cancel, per a receiver implementation), ``92`` and ``93`` -> ``cancel``;
    * normal: ``70`` -> ``heartbeat`` (the unit reports that all is well: a sign of life).

    A code of no known class in an alarm message is an alarm: by device type, 5 (fall
    detector) -> ``fall`` (stage ``alarm``); 3 (personal trigger), 4 (fixed trigger) and 7
    (panic button) -> ``panic``; anything else (e.g. telealarm ``0067`` from the home unit,
    type 2) -> ``alarm`` labelled ``stc <code as written>`` (or ``stc missing``). Safety
    first: a technical code missing from the table therefore raises an alarm an operator
    can dismiss, rather than a panic being lost as a "fault". ``device_fault`` and ``care``
    carry the code as written in ``code`` (``stc 0016``) so that operators see what the unit said.

Time:
    SCAIP carries no time: every event is filed under the receive time, and its key is a
    digest of the body and that time, so a later alarm with a reused ``ref`` is never taken
    for an old one. A SIP retransmission of the same request is therefore a second event;
    it joins the alert the first one raised.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from devices import scaip_xml
from devices.canonical import Decoded, Rejection, event_key, make_event
from devices.codec import MALFORMED_FRAME_FLAG, guarded, rejected
from devices.errors import RejectReason
from devices.events import LIFE_SAFETY_KINDS, Event, FieldValue, Kind

if TYPE_CHECKING:
    from devices.codec import DecodeContext

#: ``<!`` that is neither a comment nor CDATA: a DTD or one of its declarations.
_DECLARATION_RE = re.compile(r"<!(?!--|\[CDATA\[)")
_CODE_RE = re.compile(r"[0-9]{1,9}")
_MAX_ID_LENGTH = 64
_MAX_LABEL_LENGTH = 64
_REPLACED = "\ufffd"
_REPAIRED = "SCAIP XML held characters XML forbids (replaced before parsing)"

#: Status codes whose class is known -> the event they are (see the module docstring).
_STATUS_TABLE: dict[int, tuple[Kind, dict[str, FieldValue]]] = {
    10: (Kind.PANIC, {}),  # manual alarm
    16: (Kind.DEVICE_FAULT, {"fault": "low_battery"}),
    19: (Kind.CANCEL, {}),
    70: (Kind.HEARTBEAT, {}),  # normal
    88: (Kind.CARE, {"activity": "presence"}),
    92: (Kind.CANCEL, {}),
    93: (Kind.CANCEL, {}),
    110: (Kind.CARE, {"activity": "assistance"}),
    111: (Kind.CARE, {"activity": "intervention_complete"}),
}
#: Kinds whose events carry the status code as written, for the operator.
_CODED_KINDS = frozenset({Kind.DEVICE_FAULT, Kind.CARE})
_FALL_DETECTOR = 5
_PANIC_DEVICE_TYPES = frozenset({3, 4, 7})

#: What an alarm message means: the kind and its value fields.
_Alarm = tuple[Kind, dict[str, FieldValue]]
#: What a request means: the kind, its value fields and the flags to set.
_Meaning = tuple[Kind, dict[str, FieldValue], frozenset[str]]


def decode(payload: bytes, context: DecodeContext) -> Decoded:
    """Decode the XML body of one SCAIP request (``<mrq>``).

    Never raises: any unexpected failure becomes an ``invalid_structure`` rejection.

    Args:
        payload: the ``application/scaip+xml`` body.
        context: receive time, and a fallback identity for a message without ``cid``.

    Returns:
        The events and rejections the payload yields.
    """
    return guarded(_decode, payload, context, detail="unexpected error in a SCAIP payload")


def _decode(payload: bytes, context: DecodeContext) -> Decoded:
    raw_text = _text(payload)
    if _DECLARATION_RE.search(raw_text):
        return rejected(RejectReason.INVALID_STRUCTURE, "SCAIP XML must not contain a DTD or declarations")
    text, repaired = scaip_xml.repair(raw_text)
    tags = _parse(text)
    if isinstance(tags, Rejection):
        if tags.reason is RejectReason.MALFORMED_FRAME:
            return _salvage(raw_text, text, tags, context)
        return Decoded([], [tags])
    return _request(tags, raw_text, context, repaired=repaired)


def _request(tags: dict[str, str], raw_text: str, context: DecodeContext, *, repaired: bool) -> Decoded:
    """Decode the tags of a parsed request (``repaired``: characters were replaced first)."""
    device_id = _device_id(tags.get("cid", ""), context)
    if not device_id:
        return rejected(RejectReason.MISSING_FIELD, "no device identity")
    outcome = _meaning(tags)
    if isinstance(outcome, Rejection):
        return Decoded([], [outcome])
    kind, fields, flags = outcome
    rejections: list[Rejection] = []
    if repaired:
        # Decoded all the same (a panic must not be lost to a control character in a side
        # field), but the body was not XML: the raw bytes go to quarantine with the event.
        flags |= {MALFORMED_FRAME_FLAG}
        rejections.append(Rejection(RejectReason.MALFORMED_FRAME, _REPAIRED))
    ref = tags.get("ref", "")
    msg_id = ref if 0 < len(ref) <= _MAX_ID_LENGTH else None
    event = _event(device_id, (kind, fields, flags), raw_text, msg_id, context)
    if isinstance(event, Event):
        return Decoded([event], rejections)
    return Decoded([], [*rejections, event])


def _salvage(raw_text: str, text: str, failure: Rejection, context: DecodeContext) -> Decoded:
    """Raise the alarm of a body the parser refused, when its status code's class is an alarm.

    Only a code the table classes as an alarm counts (an unknown code is an alarm only
    because a *readable* message says it is an alarm message); a message type that is not an
    alarm's (``PI``, ``RE``) raises nothing. The rejection is kept either way.
    """
    tags = scaip_xml.salvage(text)
    known = _by_class(tags.get("stc"))
    if known is None or known[0] not in LIFE_SAFETY_KINDS:
        return Decoded([], [failure])
    cid = tags.get("cid", "")
    device_id = _device_id(cid if len(cid) <= _MAX_ID_LENGTH else "", context)
    meaning = _meaning(tags)
    if not device_id or isinstance(meaning, Rejection) or meaning[0] not in LIFE_SAFETY_KINDS:
        return Decoded([], [failure])
    kind, fields, flags = meaning
    event = _event(device_id, (kind, fields, flags | {MALFORMED_FRAME_FLAG}), raw_text, None, context)
    return Decoded([event] if isinstance(event, Event) else [], [failure])


def _device_id(cid: str, context: DecodeContext) -> str | None:
    """The ``cid``, else the session's device; a repaired ``cid`` only when there is no session.

    A ``cid`` whose characters were replaced names no known device: its alarm would reach
    no one's record, so the topic's device is believed first.
    """
    if cid and _REPLACED not in cid:
        return cid
    return context.device_id or cid or None


def _event(
    device_id: str, meaning: _Meaning, raw_text: str, msg_id: str | None, context: DecodeContext
) -> Event | Rejection:
    kind, fields, flags = meaning
    # Not ``ref`` alone: some units count refs from zero again after a restart, and the
    # alert store never raises the same occurrence key twice. The receive time keeps two
    # alarms apart; the payload (with its ref) keeps two messages of one instant apart.
    item = {"payload": raw_text, "kind": kind.value, "received_at": context.received_at.isoformat()}
    return make_event(
        device_id=device_id,
        kind=kind,
        device_time=None,
        fields=fields,
        msg_id=msg_id,
        event_key=event_key(kind, None, item),
        flags=flags,
        received_at=context.received_at,
        policy=context.policy,
        time_required=False,
    )


def _parse(text: str) -> dict[str, str] | Rejection:
    """Return the stripped text of each child of ``<mrq>`` by tag name (declarations already refused)."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - the caller refused declarations: no entity can expand
    except ET.ParseError:
        # Most often a body cut short by the gateway: the frame, not the message, is broken.
        return Rejection(RejectReason.MALFORMED_FRAME, "SCAIP payload is not well-formed XML")
    if _local_name(root.tag) != "mrq":
        # Well-formed, but not a request: a response (<mrs>) echoed back, or another document.
        return Rejection(RejectReason.UNSUPPORTED_FRAME, "SCAIP root element must be <mrq>")
    tags: dict[str, str] = {}
    for child in root:
        tags.setdefault(_local_name(child.tag), "".join(child.itertext()).strip())
    return tags


def _text(payload: bytes) -> str:
    """Read the body as text (UTF-8, else Latin-1), without a byte-order mark."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = payload.decode("latin-1")
    return text.removeprefix("\ufeff").strip()


def _local_name(tag: object) -> str:
    """Return a tag name without its namespace, lower-cased (comments have no string tag)."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].lower()


def _code(text: str | None) -> int | None:
    """Return a numeric code (``10``, ``010`` and ``0010`` are the same), or None."""
    if text is None or _CODE_RE.fullmatch(text) is None:
        return None
    return int(text)


def _meaning(tags: dict[str, str]) -> _Meaning | Rejection:
    """Map a request's message type, then its status code's class, to an event."""
    message_type = tags.get("mty", "").upper()
    if message_type == "PI":
        return Kind.HEARTBEAT, {}, frozenset()
    if message_type == "RE":
        return Kind.CANCEL, {}, frozenset()
    raw_status = tags.get("stc")
    known = _by_class(raw_status)
    if known is not None:
        return known[0], known[1], frozenset()
    if message_type == "IN":
        what = f"stc {raw_status}" if _code(raw_status) is not None else "no usable stc"
        return Rejection(
            RejectReason.UNSUPPORTED_FRAME, f"SCAIP IN message with an unknown status code ({what})"
        )
    flags = frozenset() if message_type in {"", "ME"} else frozenset({"unknown_message_type"})
    kind, fields = _alarm_meaning(raw_status, _code(tags.get("dty")))
    return kind, fields, flags


def _by_class(raw_status: str | None) -> _Alarm | None:
    """The event of a status code whose class we know, or None for an unknown (or no) code."""
    status = _code(raw_status)
    known = _STATUS_TABLE.get(status) if status is not None else None
    if known is None:
        return None
    kind, fields = known
    if kind in _CODED_KINDS:
        return kind, {**fields, "code": f"stc {raw_status}"}
    return kind, dict(fields)


def _alarm_meaning(raw_status: str | None, device_type: int | None) -> _Alarm:
    """An alarm message whose status code has no known class: by device type, else a labelled alarm."""
    if device_type in _PANIC_DEVICE_TYPES:
        return Kind.PANIC, {}
    if device_type == _FALL_DETECTOR:
        return Kind.FALL, {"stage": "alarm"}
    label = f"stc {raw_status}" if raw_status else "stc missing"
    return Kind.ALARM, {"label": label[:_MAX_LABEL_LENGTH]}
