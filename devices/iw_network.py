"""The cell towers and WiFi access points of IW / TRV frames (see :mod:`devices.network`).

Layouts (Traccar's ``TrvProtocolDecoder`` and its test frames):

* Position frames (``AP01``, ``AP10``, ``YP03``, ``YP14``): after the fixed-width block come
  ``MCC,MNC,LAC,CID`` of the serving cell (no signal level), then, on some firmware, WiFi
  access points as ``SSID|MAC|rssi`` records joined by ``&`` (``AP10`` puts its alarm code,
  language and a reply flag before them). The access points start at the first field that
  holds a ``|``; SSIDs may hold commas, so the rest of the frame is read as one text.
* The network list ``AP02,language,reply,n,MCC,MNC,LAC|CID|rssi (n times),m,WiFi records``:
  what a watch sends when it has no fix at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.network import Cell, network_fields, normal_mac, plain_code, rssi

if TYPE_CHECKING:
    from devices.events import FieldValue

_CELL_FIELDS = slice(1, 5)  # MCC, MNC, LAC, CID after the block
_LIST_HEAD = 5  # language, reply, cell count, MCC, MNC
_MAX_LIST_CELLS = 64
_CELL_CODES = 4  # MCC, MNC, LAC, CID
_RECORD_PARTS = 3  # LAC|CID|rssi, SSID|MAC|rssi


def position_fields(fields: list[str]) -> dict[str, FieldValue]:
    """Network fields of a position frame split on commas (block first), or none."""
    cells: list[Cell] = []
    codes = [plain_code(value) for value in fields[_CELL_FIELDS]]
    if len(codes) == _CELL_CODES and all(code is not None for code in codes):
        mcc, mnc, lac, cid = (code or "" for code in codes)
        cells.append(Cell(mcc, mnc, lac, cid))
    start = next((index for index, value in enumerate(fields) if "|" in value), None)
    access_points = _access_points(",".join(fields[start:])) if start is not None else []
    return network_fields(cells, access_points)


def list_fields(body: str) -> dict[str, FieldValue] | str:
    """Network fields of an ``AP02`` body, or what is wrong with it (for a rejection detail)."""
    fields = body.lstrip(",").split(",")
    if len(fields) < _LIST_HEAD:
        return "network list is cut short"
    raw_count = fields[2].strip()
    mcc, mnc = plain_code(fields[3]), plain_code(fields[4])
    if not (raw_count.isdecimal() and raw_count.isascii() and len(raw_count) <= len(str(_MAX_LIST_CELLS))):
        return "network list header is malformed"
    count = int(raw_count)
    if count > _MAX_LIST_CELLS or mcc is None or mnc is None:
        return "network list header is malformed"
    records = fields[_LIST_HEAD : _LIST_HEAD + count]
    if len(records) < count:
        return "network list is cut short"
    cells: list[Cell] = []
    for record in records:
        parts = record.split("|")
        codes = [plain_code(part) for part in parts[:2]]
        if len(parts) != _RECORD_PARTS or None in codes:
            return "cell record is malformed"
        cells.append(Cell(mcc, mnc, codes[0] or "", codes[1] or "", rssi(parts[2])))
    wifi_text = ",".join(fields[_LIST_HEAD + count + 1 :])
    return network_fields(cells, _access_points(wifi_text))


def _access_points(text: str) -> list[tuple[str, str]]:
    """``(mac, rssi)`` of each ``SSID|MAC|rssi`` record joined by ``&``; unusable ones are skipped."""
    found: list[tuple[str, str]] = []
    for record in text.split("&"):
        parts = record.split("|")
        if len(parts) < _RECORD_PARTS:  # an SSID may itself hold "|": the MAC is second from the end
            continue
        mac = normal_mac(parts[-2])
        if mac is not None:
            found.append((mac, rssi(parts[-1])))
    return found
