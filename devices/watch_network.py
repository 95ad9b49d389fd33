"""The cell towers and WiFi access points of "3G*" watch position frames (see :mod:`devices.network`).

After the status word a ``UD``/``AL``/``WT`` frame lists ``cell count, timing advance, MCC, MNC,
{LAC, CID, rssi} per cell, WiFi count, {SSID, MAC, rssi} per access point, accuracy``
(vendor document and Traccar's ``WatchProtocolDecoder``). Two things make it unreliable to
read by position: with zero cells some firmware omits the timing advance, MCC and MNC, and
SSIDs may hold commas. So the towers are read by position only when the count says there are
some and every code is a plain number, and the access points are found by their shape: a MAC
address followed by a signal level, wherever it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.network import MAX_CELLS, Cell, network_fields, normal_mac, plain_code, rssi

if TYPE_CHECKING:
    from devices.events import FieldValue

_FIRST = 16  # the cell count, right after the status word
_HEAD = 4  # cell count, timing advance, MCC, MNC
_PER_CELL = 3  # LAC, CID, rssi
_MAX_COUNT_DIGITS = 2


def position_fields(values: list[bytes]) -> dict[str, FieldValue]:
    """Network fields of a position frame's values (after its type), or none."""
    texts = [value.decode("latin-1").strip() for value in values[_FIRST:]]
    return network_fields(_cells(texts), _access_points(texts))


def _cells(texts: list[str]) -> list[Cell]:
    raw_count = texts[0] if texts else ""
    if not raw_count.isdecimal() or not raw_count.isascii() or len(raw_count) > _MAX_COUNT_DIGITS:
        return []
    count = min(int(raw_count), MAX_CELLS)
    if count == 0 or len(texts) < _HEAD + _PER_CELL * count:
        return []
    mcc, mnc = plain_code(texts[2]), plain_code(texts[3])
    if mcc is None or mnc is None:
        return []
    cells: list[Cell] = []
    for index in range(_HEAD, _HEAD + _PER_CELL * count, _PER_CELL):
        lac, cid = plain_code(texts[index]), plain_code(texts[index + 1])
        if lac is None or cid is None:
            return []  # the layout is not what we think: keep nothing rather than wrong towers
        cells.append(Cell(mcc, mnc, lac, cid, rssi(texts[index + 2])))
    return cells


def _access_points(texts: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for index, text in enumerate(texts):
        mac = normal_mac(text)
        if mac is not None:
            level = rssi(texts[index + 1]) if index + 1 < len(texts) else ""
            found.append((mac, level))
    return found
