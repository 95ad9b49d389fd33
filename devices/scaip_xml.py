"""Reading a SCAIP body that is not quite well-formed XML (issue 11: a garbled alarm still alerts).

Alarm units and their gateways damage bodies in two ways we have seen:

* **Characters XML forbids** (C0 controls but TAB, CR and LF; U+FFFE/U+FFFF; lone surrogates),
  raw or as a character reference (``&#0;``, ``&#x1;``, ``&#xD800;``), most often in a side
  field such as the location code. The parser refuses the whole document for one of them, so
  :func:`repair` replaces each, one for one, by U+FFFD (a reference by ``&#xFFFD;``) before
  parsing; the codec then decodes the body as usual, flags its event and still quarantines
  the raw bytes. Nothing else is changed: a repaired body holds no markup the raw one did not,
  so the codec's refusal of declarations (no entity can ever expand) applies to it unchanged.
* **Broken structure** (a body cut short, a second ``<mrq>`` after the first): nothing can be
  parsed, but a manual alarm must not be lost for it. :func:`salvage` reads the few tags an
  alarm needs (``stc``, ``mty``, ``dty``, ``cid``) from the text with bounded patterns; the codec
  raises an event from them only when the status code's class is an alarm (see
  :mod:`devices.scaip`), never from any other code. Comments and CDATA are skipped first, so a
  commented-out ``<stc>10</stc>`` raises nothing. A tag's text counts only when its end tag
  starts (``</``): a value cut short could be a different code.
"""

from __future__ import annotations

import re
from typing import Final

#: Raw characters XML 1.0 forbids (section 2.2): C0 controls but TAB, LF, CR; surrogates; U+FFFE/F.
_FORBIDDEN: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: A decimal or hexadecimal character reference, its digits bounded (longer ones are invalid).
_CHAR_REF: Final = re.compile(r"&#(?:([0-9]{1,12})|x([0-9A-Fa-f]{1,12}));")
_REPLACEMENT_REF: Final = "&#xFFFD;"
_MAX_CHAR: Final = 0x10FFFF
#: Comments and CDATA sections, skipped before salvaging (non-greedy, so linear).
_HIDDEN: Final = re.compile(r"<!--.*?(?:-->|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)", re.DOTALL)
#: What a request starts with: an optional XML declaration, then ``<mrq`` (any namespace prefix).
_REQUEST_ROOT: Final = re.compile(
    r"\s*(?:<\?xml[^<>]{0,256}\?>\s*)?<(?:[A-Za-z_][\w.-]{0,31}:)?mrq[\s>/]", re.IGNORECASE
)
_SALVAGED_TAGS: Final = ("stc", "mty", "dty", "cid")
_MAX_SALVAGED_TEXT: Final = 64


def repair(text: str) -> tuple[str, bool]:
    """Return ``text`` with every character XML forbids replaced, and whether there was one."""
    repaired = _CHAR_REF.sub(_replace_reference, _FORBIDDEN.sub("\ufffd", text))
    return repaired, repaired != text


def _replace_reference(match: re.Match[str]) -> str:
    decimal, hexadecimal = match.groups()
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    return match.group(0) if _is_xml_char(code) else _REPLACEMENT_REF


def _is_xml_char(code: int) -> bool:
    """XML 1.0 ``Char``: what a reference may name is what may be written raw."""
    return code <= _MAX_CHAR and _FORBIDDEN.fullmatch(chr(code)) is None


_TAG_PATTERNS: Final = {
    name: re.compile(
        # Optional namespace prefix, optional attributes; the text ends where an end tag starts.
        rf"<(?:[A-Za-z_][\w.-]{{0,31}}:)?{name}(?:\s[^<>]{{0,256}})?>\s*([^<]{{0,{_MAX_SALVAGED_TEXT}}}?)\s*</",
        re.IGNORECASE,
    )
    for name in _SALVAGED_TAGS
}


def salvage(text: str) -> dict[str, str]:
    """The tags an alarm needs that can still be read from a body the parser refused.

    Each tag counts once (the first), like the parser's; a tag whose text is longer than
    64 characters, holds an entity reference or is not followed by an end tag is left out.
    Nothing is read from a body that does not start as a request (``<mrq>``): a reply
    (``<mrs>``) or another document is not an alarm, however broken.
    """
    visible = _HIDDEN.sub(" ", text)
    tags: dict[str, str] = {}
    if _REQUEST_ROOT.match(visible) is None:
        return tags
    for name, pattern in _TAG_PATTERNS.items():
        found = pattern.search(visible)
        if found is not None and "&" not in found.group(1):
            tags[name] = found.group(1).strip()
    return tags
