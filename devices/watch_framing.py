"""Framing of the "3G*" watch protocol: cutting one TCP read into ``[MM*ID*LEN*CONTENT]`` frames.

The rules (bracket depth, SSIDs holding brackets, ``0x7D`` escapes, a new header before an end
meaning a cut frame) are documented in :mod:`devices.watch`; this module only applies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from devices.errors import RejectReason

__all__ = ["Broken", "Frame", "frame_type", "split"]

#: ``[`` maker ``*`` id ``*`` [4-hex index ``*``] hex length ``*``.
_HEADER: Final = re.compile(
    rb"\[([0-9A-Z]{2})\*([0-9A-Za-z_-]{0,64})\*(?:([0-9A-Fa-f]{4})\*)?([0-9A-Fa-f]{1,8})\*"
)
_WHITESPACE: Final = frozenset(b" \t\r\n\x00")
_OPEN: Final = ord("[")
_CLOSE: Final = ord("]")
_ESCAPE: Final = ord("}")
_ESCAPED: Final = frozenset(range(0x01, 0x06))
#: Bytes that are no part of a type name: controls, space, DEL and every non-ASCII byte.
_NOT_PRINTABLE: Final = bytes(range(0x21)) + bytes(range(0x7F, 0x100))


@dataclass(frozen=True, slots=True)
class Frame:
    """One well-delimited frame."""

    raw: bytes
    device_id: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Broken:
    """Bytes that are not a frame: the reason and what is wrong.

    ``partial`` is what an unterminated frame held (its header was whole): an ``AL`` frame cut
    short is still an alarm, so the codec reads what it can of it.
    """

    reason: RejectReason
    detail: str
    partial: Frame | None = None


def split(payload: bytes) -> list[Frame | Broken]:
    """Cut a payload into frames and the broken parts between them."""
    items: list[Frame | Broken] = []
    size = len(payload)
    position = _skip_whitespace(payload, 0)
    while position < size:
        if payload[position] != _OPEN:
            resume = _next_header(payload, position)
            items.append(Broken(RejectReason.MALFORMED_FRAME, "bytes outside a frame"))
            position = _skip_whitespace(payload, resume)
            continue
        header = _HEADER.match(payload, position)
        if header is None:
            resume = _next_header(payload, position + 1)
            items.append(Broken(RejectReason.MALFORMED_FRAME, "frame header is not [MM*ID*LEN*"))
            position = _skip_whitespace(payload, resume)
            continue
        end = _frame_end(payload, header.end())
        device_id = header.group(2).decode("ascii")
        if end is None:
            resume = _next_header(payload, header.end())
            partial = Frame(payload[position:resume], device_id, payload[header.end() : resume])
            items.append(Broken(RejectReason.MALFORMED_FRAME, "unterminated frame", partial))
            position = _skip_whitespace(payload, resume)
            continue
        items.append(Frame(payload[position : end + 1], device_id, payload[header.end() : end]))
        position = _skip_whitespace(payload, end + 1)
    return items


def frame_type(raw: bytes) -> tuple[str, bool]:
    r"""The upper-case type name at the start of a frame's content, and whether it was wrapped.

    A NUL or other non-printable byte a gateway left before or after the type (``\x00AL_LTE``)
    is stripped, so the frame is still recognised (an ``AL`` frame is an alarm); bytes inside
    the name are kept, so ``L\x00K`` stays an unknown type rather than a guess.
    """
    stripped = raw.strip(_NOT_PRINTABLE)
    wrapped = bool(stripped) and len(stripped) != len(raw.strip())
    return stripped.decode("ascii", errors="replace").upper(), wrapped


def _skip_whitespace(payload: bytes, position: int) -> int:
    size = len(payload)
    while position < size and payload[position] in _WHITESPACE:
        position += 1
    return position


def _next_header(payload: bytes, position: int) -> int:
    """Where the next frame header starts, or the end of the payload."""
    found = _HEADER.search(payload, position)
    return len(payload) if found is None else found.start()


def _is_boundary(payload: bytes, position: int) -> bool:
    """Tell whether a frame may end just before ``position``: end of payload or next header."""
    position = _skip_whitespace(payload, position)
    return position >= len(payload) or _HEADER.match(payload, position) is not None


def _frame_end(payload: bytes, start: int) -> int | None:
    """Index of the ``]`` that closes the frame whose content starts at ``start``.

    Prefers the bracket that balances the depth when it is followed by the end of the payload
    or the next header; else the first closing bracket that is so followed (an SSID with a lone
    bracket); else the depth-balanced one (trailing garbage is then rejected on its own).
    """
    size = len(payload)
    depth = 1
    first_boundary: int | None = None
    balanced: int | None = None
    index = start
    while index < size:
        byte = payload[index]
        if byte == _ESCAPE and index + 1 < size and payload[index + 1] in _ESCAPED:
            index += 2
            continue
        if byte == _OPEN:
            if _HEADER.match(payload, index) is not None:
                break  # the next frame starts: this one was cut short unless an end was seen
            depth += 1
        elif byte == _CLOSE:
            depth -= 1
            if _is_boundary(payload, index + 1):
                if depth == 0:
                    return index
                if first_boundary is None:
                    first_boundary = index
            if depth == 0 and balanced is None:
                balanced = index
        index += 1
    return first_boundary if first_boundary is not None else balanced
