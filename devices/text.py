"""Text and JSON hygiene at the ``devices/`` boundary: what leaves ``devices/`` is clean.

Device text is untrusted. PostgreSQL ``text``/``jsonb`` cannot hold U+0000, psycopg cannot
encode a lone surrogate to UTF-8, control characters corrupt logs and terminals, and a bidi
override (U+202E) makes an operator read a device id or button backwards. So every string
of an event is sanitised once, in :func:`devices.canonical.make_event` (through which every
codec builds its events), and every rejection detail when its :class:`Rejection` is built:

* **Replaced** by U+FFFD: C0 controls U+0000-U+001F (tab and newline included: no event
  field is multi-line), DEL U+007F, C1 controls U+0080-U+009F, lone surrogates
  U+D800-U+DFFF, the bidi marks U+200E/U+200F, embeddings and overrides U+202A-U+202E and
  isolates U+2066-U+2069. One character for one, so lengths are unchanged.
* **Limits** (characters, checked before replacing): :data:`MAX_MSG_ID` for ``msg_id``,
  :data:`MAX_DEVICE_ID` for device ids (wider than the topic's 64: OwnTracks names a device
  ``user/device`` and Zigbee2MQTT by its friendly name), :data:`MAX_TEXT_FIELD` for any
  string field. Integer fields must fit in 64 bits, float fields must be finite.

:func:`load_json` is the one JSON parser of every JSON codec: it never raises and turns
hostile documents (nesting deeper than :data:`MAX_JSON_DEPTH`, integers of more than 4300
digits, invalid UTF-8, syntax errors) into a :class:`JsonError` with a clear detail.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

import pydantic_core

from devices.errors import RejectReason

#: Characters no string leaving ``devices/`` may contain (see the module docstring).
FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
REPLACEMENT: Final = "\ufffd"

MAX_MSG_ID: Final = 64
MAX_DEVICE_ID: Final = 128
#: Longer event keys (and unclean ones) are replaced by a digest of their raw text.
MAX_EVENT_KEY: Final = 128
MAX_TEXT_FIELD: Final = 256
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Deeper JSON is refused: no device format nests more than a few levels.
MAX_JSON_DEPTH: Final = 32

#: Event flags set here.
SANITISED_TEXT: Final = "sanitised_text"
TRUNCATED_TEXT: Final = "truncated_text"

_search = FORBIDDEN.search


def is_clean(text: str) -> bool:
    """Tell whether ``text`` holds none of the :data:`FORBIDDEN` characters.

    Every forbidden character is non-printable (categories Cc, Cs, Cf), so the C-speed
    ``isprintable`` answers for nearly all text; the regex only for the rest (e.g. text
    with a no-break space, which is clean but not "printable").
    """
    return text.isprintable() or _search(text) is None


def clean(text: str) -> str:
    """Return ``text`` with every :data:`FORBIDDEN` character replaced by U+FFFD."""
    if is_clean(text):
        return text
    return FORBIDDEN.sub(REPLACEMENT, text)


def raw_utf8(text: str) -> bytes:
    """Encode text that may hold lone surrogates, keeping them apart from U+FFFD (for digests)."""
    return text.encode("utf-8", "surrogatepass")


class JsonError(ValueError):
    """A payload is not a JSON document Carewatch accepts.

    Attributes:
        reason: the closed-vocabulary reason.
        detail: what is wrong, never quoting the payload.
        not_utf8: the payload is not valid UTF-8 (a codec may still salvage a panic from it).
    """

    def __init__(self, reason: RejectReason, detail: str, *, not_utf8: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.not_utf8 = not_utf8


_NESTING = f"nesting deeper than {MAX_JSON_DEPTH}"
#: sys.get_int_max_str_digits()'s default: longer integers are not converted.
_INT_MAX_DIGITS = 4300


def load_json(payload: bytes | str) -> Any:  # noqa: ANN401 - JSON is any shape; codecs check it
    r"""Parse a JSON payload; NaN, Infinity and 1e400 come back as floats for the codec to judge.

    The fast parser (pydantic_core's) refuses lone surrogate escapes (``"\ud800"``), which a
    device may well send in a panic's text: those documents are parsed again by the standard
    library, whose strings the caller sanitises.

    Raises:
        JsonError: ``malformed_json`` for invalid UTF-8, a syntax error, nesting deeper than
            :data:`MAX_JSON_DEPTH` or an integer of more than 4300 digits.
    """
    try:
        document = pydantic_core.from_json(payload, allow_inf_nan=True)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise JsonError(RejectReason.MALFORMED_JSON, _NESTING) from None
        document = _load_slowly(payload)
    if type(document) is dict:
        # Most payloads are one flat object: look no deeper than its values.
        for value in document.values():
            if type(value) is dict or type(value) is list:
                if _too_deep(document):
                    raise JsonError(RejectReason.MALFORMED_JSON, _NESTING)
                break
    elif type(document) is list and _too_deep(document):
        raise JsonError(RejectReason.MALFORMED_JSON, _NESTING)
    return document


def _load_slowly(payload: bytes | str) -> Any:  # noqa: ANN401 - as load_json
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            detail = f"payload is not valid UTF-8 (byte {exc.start})"
            raise JsonError(RejectReason.MALFORMED_JSON, detail, not_utf8=True) from None
    else:
        text = payload
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise JsonError(RejectReason.MALFORMED_JSON, _NESTING) from None
    except json.JSONDecodeError as exc:
        raise JsonError(RejectReason.MALFORMED_JSON, f"not valid JSON: {exc.msg} (char {exc.pos})") from None
    except ValueError:
        # int() refuses more than sys.get_int_max_str_digits() (4300) digits.
        raise JsonError(RejectReason.MALFORMED_JSON, "integer of more than 4300 digits") from None


def _parse_int(text: str) -> int | float:
    """An integer, or infinity for one of more digits than Python converts (it is beyond any float).

    ``int()`` refuses more than 4300 digits; such a number is out of every
    range a field has, so the codec judges it per field (a panic carrying one
    in a side field is still a panic) instead of losing the whole payload.
    """
    if len(text) > _INT_MAX_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _too_deep(document: dict[str, object] | list[object]) -> bool:
    """Tell whether containers nest deeper than :data:`MAX_JSON_DEPTH` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= MAX_JSON_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False
