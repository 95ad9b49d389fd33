"""Network position data: the cell towers and WiFi access points a device saw.

A watch without a GPS fix (indoors, where most falls happen) still reports what radio
networks it hears. That is what responders can locate it by, so a codec keeps it on the
location event as ``position_source: "network"`` with ``cells`` and ``wifi``, instead of
dropping the position because there is no fix.

Event fields are scalars (they are stored as one jsonb object and shown to operators), so
the lists are compact strings: ``cells`` is ``mcc,mnc,lac,cid,rssi`` per tower and ``wifi``
is ``mac,rssi`` per access point, records separated by ``;``, in the device's order. LAC and
CID are kept as written (some firmware writes them in hexadecimal); an unknown rssi is empty.
MACs are normalised to lower-case ``aa:bb:cc:dd:ee:ff``. SSIDs are deliberately not kept:
they are names people choose ("Anna's iPhone", a family name), a geolocation lookup needs
only the MAC, and they are the part of these frames most likely to hold hostile text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devices.events import FieldValue

__all__ = ["Cell", "network_fields", "normal_mac", "plain_code", "rssi"]

#: Bounds on what one event keeps: enough to locate a device, never an unbounded field.
MAX_CELLS = 16
MAX_ACCESS_POINTS = 32

_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?:[-:][0-9A-Fa-f]{2}){5}")
_CODE_RE = re.compile(r"[0-9A-Fa-f]{1,10}")
_RSSI_RE = re.compile(r"[+-]?\d{1,3}")


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell tower as the device wrote it."""

    mcc: str
    mnc: str
    lac: str
    cid: str
    rssi: str = ""


def normal_mac(text: str) -> str | None:
    """A MAC address as ``aa:bb:cc:dd:ee:ff``, or None when ``text`` is not one."""
    text = text.strip()
    if _MAC_RE.fullmatch(text) is None:
        return None
    return text.lower().replace("-", ":")


def plain_code(text: str) -> str | None:
    """A tower code (MCC, MNC, LAC, CID) as written, or None when it is not digits/hex."""
    text = text.strip()
    return text if _CODE_RE.fullmatch(text) else None


def rssi(text: str) -> str:
    """A signal strength as written, or empty when it is not a small integer."""
    text = text.strip()
    return text if _RSSI_RE.fullmatch(text) else ""


def network_fields(cells: list[Cell], access_points: list[tuple[str, str]]) -> dict[str, FieldValue]:
    """The event fields for what a device heard, or none when it heard nothing usable.

    Args:
        cells: the towers (already validated with :func:`plain_code`).
        access_points: ``(mac, rssi)`` pairs (``mac`` from :func:`normal_mac`).
    """
    towers = [cell for cell in cells if cell.cid.strip("0") and cell.mcc.strip("0")]
    if not towers and not access_points:
        return {}
    fields: dict[str, FieldValue] = {"position_source": "network"}
    if towers:
        fields["cells"] = ";".join(f"{c.mcc},{c.mnc},{c.lac},{c.cid},{c.rssi}" for c in towers[:MAX_CELLS])
    if access_points:
        fields["wifi"] = ";".join(f"{mac},{level}" for mac, level in access_points[:MAX_ACCESS_POINTS])
    return fields
