"""Real frames of every codec, read from tests/fixtures/devices/, re-addressed to one device.

Every adversarial input concerns exactly one device, named in its topic and, for formats
whose frames carry their own identity (the watch ``[3G*ID*...]`` header, the IW login's IMEI,
SCAIP ``<cid>``, Traccar ``device.uniqueId``), in the frame as well, so that the
accounting after a run can be done per device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "devices"

#: The vendor channels of the topic contract (``json`` is canonical and built in corpus.py).
VENDOR_CHANNELS = ("watch", "iw", "z2m", "traccar", "scaip", "owntracks")


@dataclass(frozen=True, slots=True)
class Frame:
    """One real frame: where it comes from, what it means, and its bytes."""

    channel: str
    name: str
    raw: bytes
    #: The frame carries a panic, fall or alarm (the fixture's expected kind).
    life_safety: bool


@cache
def fixture_frames(channel: str) -> tuple[Frame, ...]:
    """The fixture cases of one channel, as they were captured."""
    frames = []
    for line in (FIXTURES / f"{channel}.jsonl").read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        kind = case["expect"].get("kind")
        frames.append(Frame(channel, case["id"], case["raw"].encode(), kind in {"panic", "fall", "alarm"}))
    return tuple(frames)


def frame(channel: str, name: str) -> Frame:
    for found in fixture_frames(channel):
        if found.name == name:
            return found
    raise KeyError(f"{channel}/{name}")


_WATCH_ID = re.compile(rb"^(\[[0-9A-Z]{2}\*)([0-9A-Za-z_-]*)(\*)")
_SCAIP_CID = re.compile(rb"(<cid>)([^<]*)(</cid>)")
_TRACCAR_UNIQUE = re.compile(rb'("uniqueId":")([^"]*)(")')


def readdress(channel: str, raw: bytes, device: str) -> bytes:
    """``raw`` with the identity it carries (if any) replaced by ``device``."""
    dev = device.encode()
    if channel == "watch":
        # Every frame of a multi-frame payload names the same watch.
        return re.sub(rb"(\[[0-9A-Z]{2}\*)([0-9A-Za-z_-]*)(\*)", rb"\g<1>" + dev + rb"\g<3>", raw)
    if channel == "scaip":
        return _SCAIP_CID.sub(rb"\g<1>" + dev + rb"\g<3>", raw, count=1)
    if channel == "traccar":
        return _TRACCAR_UNIQUE.sub(rb"\g<1>" + dev + rb"\g<3>", raw, count=1)
    if channel == "iw" and raw.upper().startswith(b"IWAP00"):
        return raw[:6] + dev
    return raw


def identity_span(channel: str, raw: bytes, device: str) -> tuple[int, int] | None:
    """Where ``device`` sits in ``raw`` (with one delimiter either side), for mutators to spare it."""
    dev = device.encode()
    if channel not in {"watch", "scaip", "traccar", "iw"}:
        return None
    at = raw.find(dev)
    if at < 0:
        return None
    return max(0, at - 1), min(len(raw), at + len(dev) + 1)


def sos_variants() -> dict[str, Frame]:
    """Life-safety frames of each vendor channel, real captures where the fixtures have one.

    IW has no SOS capture in the fixtures: its AP10 capture is rewritten to alarm code 01 (SOS),
    the only change. Owntracks has no alarm at all.
    """
    ap10 = frame("iw", "iw-ap10-no-alarm").raw.replace(b",00,zh-cn,", b",01,zh-cn,", 1)
    return {
        "watch-sos": frame("watch", "watch-al-lte-sos-1"),
        "watch-fall": frame("watch", "watch-al-fall-motion"),
        "watch-general": frame("watch", "watch-al-general-sg-2"),
        "iw-sos": Frame("iw", "iw-ap10-sos", ap10, life_safety=True),
        "z2m-sos": frame("z2m", "z2m-tuya-sos-emergency"),
        "traccar-sos": frame("traccar", "traccar-event-sos"),
        "scaip-alarm": frame("scaip", "scaip-possum-alarm-dty4"),
    }
