"""Where the alarm code of an IW ``AP10`` frame is, when its comma fields may have shifted.

The code is the fifth comma field after the fixed-width block (after ``MCC,MNC,LAC,CID``),
then comes the language (``zh-cn``, ``zhcn``, ``en``). A garbled cell field can swallow or add
a comma (``460,0`` turned into one NUL); the code is then read from the wrong place, and a
wrong ``00`` silences an SOS. So the position is believed only when the four cell fields are
tower codes and the code is a code; otherwise the code is the field just before the first
field that looks like a language, and the frame is reported as shifted.
"""

from __future__ import annotations

import re
from typing import Final

from devices.network import plain_code

__all__ = ["locate_code"]

_CODE_FIELD: Final = 5  # after the block, MCC, MNC, LAC and CID
_CELL_FIELDS: Final = slice(1, 5)
_CELL_COUNT: Final = 4
_CODE: Final = re.compile(r"\d{1,3}")
#: A language tag as the watches write it: ``zh-cn``, ``zhcn``, ``zh_CN``, ``en``.
_LANGUAGE: Final = re.compile(r"[A-Za-z]{2,3}(?:[-_]?[A-Za-z]{2,4})?")


def locate_code(fields: list[str]) -> tuple[str, bool]:
    """The alarm code as written ('' when none can be found) and whether the fields had shifted.

    Args:
        fields: the frame's body split on commas, the fixed-width block first.
    """
    cells = fields[_CELL_FIELDS]
    raw = fields[_CODE_FIELD].strip() if len(fields) > _CODE_FIELD else ""
    in_place = len(cells) == _CELL_COUNT and all(plain_code(value) is not None for value in cells)
    if in_place and (not raw or _CODE.fullmatch(raw)):
        # Missing or numeric where it belongs: as written (a missing code is the caller's to judge).
        return raw, False
    for index in range(2, len(fields)):
        before = fields[index - 1].strip()
        if _LANGUAGE.fullmatch(fields[index].strip()) and _CODE.fullmatch(before):
            return before, True
    return "", True
