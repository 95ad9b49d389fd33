"""Encoding what a device does as the bytes its real counterpart would send.

Each channel of the topic contract has one encoder here, written against the
codecs in ``devices`` (``devices.codecs.CODECS``): the unit tests decode every
payload produced here with those codecs, so a drift on either side fails a
test instead of silently producing quarantine at ingest.

A format carries only what its devices really report: the 3G watch has no
"I'm OK" frame, SCAIP carries no time, OwnTracks only positions. ``SUPPORTED``
says which kinds a channel can encode and ``TIMED`` which of them carry the
device's own time; the rest are filed under the receive time by ingest, which
matters for rules that run on device time (a heart-rate episode must be sent
in a timed format to be judged at raised speed).

The 3G and IW watches report their battery in keep-alive frames (no time)
rather than position frames: their health frames are filed under the receive
time, which moves the rule engine's per-device clock to the wall clock, and a
position frame stamped with the (earlier) sim time would then count as late
and never raise ``battery_low``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from devices import Kind

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from devices import FieldValue

CHANNELS: Final = ("json", "watch", "iw", "traccar", "scaip", "z2m", "owntracks")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ALL_KINDS: Final = frozenset(Kind)
SUPPORTED: Final[Mapping[str, frozenset[Kind]]] = {
    "json": _ALL_KINDS,
    "watch": frozenset(
        {
            Kind.HEARTBEAT,
            Kind.HEART_RATE,
            Kind.SPO2,
            Kind.BODY_TEMP,
            Kind.PANIC,
            Kind.FALL,
            Kind.BATTERY,
            Kind.LOCATION,
            Kind.WORN,
        }
    ),
    "iw": frozenset(
        {
            Kind.HEARTBEAT,
            Kind.HEART_RATE,
            Kind.SPO2,
            Kind.BODY_TEMP,
            Kind.PANIC,
            Kind.FALL,
            Kind.BATTERY,
            Kind.LOCATION,
            Kind.ONLINE,
        }
    ),
    "traccar": frozenset(
        {
            Kind.HEARTBEAT,
            Kind.HEART_RATE,
            Kind.SPO2,
            Kind.BODY_TEMP,
            Kind.BATTERY,
            Kind.LOCATION,
            Kind.PANIC,
            Kind.FALL,
            Kind.WORN,
            Kind.ONLINE,
            Kind.OFFLINE,
        }
    ),
    "scaip": frozenset({Kind.HEARTBEAT, Kind.PANIC, Kind.FALL, Kind.CANCEL}),
    "z2m": frozenset({Kind.HEARTBEAT, Kind.BATTERY, Kind.PANIC, Kind.FALL, Kind.ONLINE, Kind.OFFLINE}),
    "owntracks": frozenset({Kind.HEARTBEAT, Kind.LOCATION, Kind.BATTERY, Kind.OFFLINE}),
}
#: Kinds whose payload carries the device's time in each channel.
TIMED: Final[Mapping[str, frozenset[Kind]]] = {
    "json": _ALL_KINDS,
    "watch": frozenset({Kind.PANIC, Kind.FALL, Kind.LOCATION, Kind.WORN}),
    "iw": frozenset({Kind.PANIC, Kind.FALL, Kind.LOCATION}),
    "traccar": SUPPORTED["traccar"],
    "scaip": frozenset(),
    "z2m": frozenset({Kind.HEARTBEAT, Kind.BATTERY, Kind.PANIC, Kind.FALL}),
    "owntracks": frozenset({Kind.HEARTBEAT, Kind.LOCATION, Kind.BATTERY}),
}

_WATCH_SOS: Final = 1 << 16
_WATCH_REMOVED: Final = 1 << 20
_WATCH_FALL: Final = 1 << 21
_IW_SOS: Final = 1
_IW_FALL: Final = 5
_SCAIP_PANIC_BUTTON: Final = 7
_SCAIP_FALL_DETECTOR: Final = 5
_SCAIP_MANUAL_ALARM: Final = 10


@dataclass(frozen=True, slots=True)
class Sample:
    """One thing a device reports, in canonical terms (``kind`` and its canonical fields)."""

    kind: Kind
    fields: Mapping[str, FieldValue]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """What a frame needs besides the sample: who sends it and the device's situation.

    Attributes:
        device_id: the device's id (vendor formats carry it in the frame too).
        battery_pct: the level position and keep-alive frames always report.
        lat: the position position frames report.
        lon: the position position frames report.
        seq: the device's message counter (``msg_id``, SCAIP ``ref``, Traccar ids).
    """

    device_id: str
    battery_pct: int
    lat: float
    lon: float
    seq: int


#: What a sample becomes once decoded, where a format says it another way: a keep-alive
#: without a heartbeat frame is a battery report; the watches' battery is a keep-alive.
_DECODED_AS: Final[Mapping[tuple[str, Kind], Kind]] = {
    ("traccar", Kind.HEARTBEAT): Kind.BATTERY,
    ("z2m", Kind.HEARTBEAT): Kind.BATTERY,
    ("owntracks", Kind.HEARTBEAT): Kind.BATTERY,
    ("watch", Kind.BATTERY): Kind.HEARTBEAT,
    ("iw", Kind.BATTERY): Kind.HEARTBEAT,
}


def decoded_kind(channel: str, kind: Kind) -> Kind:
    """The canonical kind a ``kind`` sample sent on ``channel`` decodes to."""
    return _DECODED_AS.get((channel, kind), kind)


def supports(channel: str, sample: Sample) -> bool:
    """Tell whether ``channel`` can express ``sample`` (only JSON can say a strap went back on)."""
    if sample.kind is Kind.WORN and sample.fields.get("on") is not False and channel != "json":
        return False
    return sample.kind in SUPPORTED.get(channel, frozenset())


def encode(channel: str, sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    """The payload a device on ``channel`` sends for ``sample`` at ``device_time``.

    Raises:
        ValueError: the channel cannot express the sample (see :func:`supports`).
    """
    if not supports(channel, sample):
        raise ValueError(f"channel {channel!r} cannot carry a {sample.kind} sample")
    return _ENCODERS[channel](sample, device_time, state)


# --- canonical JSON ------------------------------------------------------------------------------


def _json(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    document: dict[str, object] = {"ts": _epoch_ms(device_time), "kind": sample.kind.value}
    document.update(sample.fields)
    document["msg_id"] = f"s{state.seq}"
    return _dumps(document)


# --- 3G* watch -----------------------------------------------------------------------------------


def _watch(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    kind = sample.kind
    content: str
    if kind in {Kind.HEARTBEAT, Kind.BATTERY}:
        content = f"LK,0,0,{_int(sample.fields.get('pct', state.battery_pct))}"
    elif kind is Kind.HEART_RATE:
        content = f"heart,{_int(sample.fields['bpm'])}"
    elif kind is Kind.SPO2:
        content = f"oxygen,1,{_int(sample.fields['pct'])}"
    elif kind is Kind.BODY_TEMP:
        content = f"btemp2,1,{_number(sample.fields['celsius'], 1)}"
    elif kind is Kind.PANIC:
        content = _watch_position("AL", device_time, state, _WATCH_SOS)
    elif kind is Kind.FALL:
        content = _watch_position("AL", device_time, state, _WATCH_FALL)
    elif kind is Kind.WORN:
        content = _watch_position("UD", device_time, state, _WATCH_REMOVED)
    else:  # location
        content = _watch_position("UD", device_time, state, 0)
    return f"[3G*{state.device_id}*{len(content):04X}*{content}]".encode("ascii")


def _watch_position(frame_type: str, device_time: datetime, state: DeviceState, status: int) -> str:
    fields = [
        frame_type,
        device_time.strftime("%d%m%y"),
        device_time.strftime("%H%M%S"),
        "A",
        f"{abs(state.lat):.6f}",
        "N" if state.lat >= 0 else "S",
        f"{abs(state.lon):.6f}",
        "E" if state.lon >= 0 else "W",
        "0.00",  # speed
        "0.0",  # course
        "0.0",  # altitude
        "7",  # satellites
        "100",  # gsm
        str(state.battery_pct),
        "0",  # steps
        "0",  # tumbles
        f"{status:08X}",
        "0",  # cell count
        "0",  # timing advance
    ]
    return ",".join(fields)


# --- IW ------------------------------------------------------------------------------------------


def _iw(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    kind = sample.kind
    battery = max(1, state.battery_pct)  # 000 is the watch's "level unknown"
    if kind in {Kind.HEARTBEAT, Kind.BATTERY}:
        level = max(1, _int(sample.fields.get("pct", battery)))
        frame = f"IWAP03,060009{level:03d}10000"
    elif kind is Kind.HEART_RATE:
        frame = f"IWAP49,{_int(sample.fields['bpm'])}"
    elif kind is Kind.SPO2:
        frame = f"IWAPHP,0,0,0,{_int(sample.fields['pct'])},0,0"
    elif kind is Kind.BODY_TEMP:
        frame = f"IWAP50,{_number(sample.fields['celsius'], 1)},{battery}"
    elif kind is Kind.ONLINE:
        frame = f"IWAP00{state.device_id}"
    elif kind in {Kind.PANIC, Kind.FALL}:
        code = _IW_SOS if kind is Kind.PANIC else _IW_FALL
        frame = f"IWAP10{_iw_block(device_time, state, battery)},460,0,9520,3671,{code:02d},en,00"
    else:
        frame = f"IWAP01{_iw_block(device_time, state, battery)},460,0,9520,3671"
    return f"{frame}#".encode("ascii")


def _iw_block(device_time: datetime, state: DeviceState, battery: int) -> str:
    lat_deg, lat_min = divmod(abs(state.lat) * 60.0, 60.0)
    lon_deg, lon_min = divmod(abs(state.lon) * 60.0, 60.0)
    return (
        f"{device_time:%y%m%d}A"
        f"{int(lat_deg):02d}{lat_min:07.4f}{'N' if state.lat >= 0 else 'S'}"
        f"{int(lon_deg):03d}{lon_min:07.4f}{'E' if state.lon >= 0 else 'W'}"
        f"000.0{device_time:%H%M%S}000.00"
        f"060009{battery:03d}00002"
    )


# --- Traccar forwarding --------------------------------------------------------------------------


def _traccar(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:  # noqa: C901 - one branch per kind
    device = {"id": 1000 + state.seq % 1000, "name": state.device_id, "uniqueId": state.device_id}
    when = device_time.isoformat(timespec="milliseconds")
    kind = sample.kind
    event_type: str | None = None
    alarm: str | None = None
    if kind is Kind.PANIC:
        event_type, alarm = "alarm", "sos"
    elif kind is Kind.FALL:
        event_type, alarm = "alarm", "fallDown"
    elif kind is Kind.WORN:
        event_type, alarm = "alarm", "removing"
    elif kind is Kind.ONLINE:
        event_type = "deviceOnline"
    elif kind is Kind.OFFLINE:
        event_type = "deviceOffline"
    if event_type is not None:
        event: dict[str, object] = {"id": state.seq, "type": event_type, "eventTime": when}
        if alarm is not None:
            event["attributes"] = {"alarm": alarm}
        return _dumps({"event": event, "device": device})
    attributes: dict[str, object] = {}
    with_fix = kind in {Kind.HEARTBEAT, Kind.LOCATION, Kind.BATTERY}
    if kind in {Kind.HEARTBEAT, Kind.BATTERY}:
        attributes["batteryLevel"] = _int(sample.fields.get("pct", state.battery_pct))
    elif kind is Kind.HEART_RATE:
        attributes["heartRate"] = _int(sample.fields["bpm"])
    elif kind is Kind.SPO2:
        attributes["bloodOxygen"] = _int(sample.fields["pct"])
    elif kind is Kind.BODY_TEMP:
        attributes["temp1"] = _number(sample.fields["celsius"], 1)
    position: dict[str, object] = {
        "id": state.seq,
        "protocol": "watch",
        "deviceTime": when,
        "fixTime": when,
        "valid": with_fix,
        "latitude": round(state.lat, 6) if with_fix else 0.0,
        "longitude": round(state.lon, 6) if with_fix else 0.0,
        "accuracy": 12.0 if with_fix else 0.0,
        "attributes": attributes,
    }
    return _dumps({"position": position, "device": device})


# --- SCAIP ---------------------------------------------------------------------------------------


def _scaip(sample: Sample, _device_time: datetime, state: DeviceState) -> bytes:
    head = f"<mrq><ref>{state.seq}</ref>"
    cid = f"<cid>{state.device_id}</cid>"
    if sample.kind is Kind.HEARTBEAT:
        body = f"{head}<mty>PI</mty>{cid}<dty>2</dty><stc>70</stc></mrq>"
    elif sample.kind is Kind.CANCEL:
        body = f"{head}<mty>RE</mty>{cid}<dty>3</dty><stc>92</stc></mrq>"
    elif sample.kind is Kind.FALL:
        body = (
            f"{head}<mty>ME</mty>{cid}<dty>{_SCAIP_FALL_DETECTOR}</dty><stc>0</stc><crd>no-voice:</crd></mrq>"
        )
    else:  # panic
        body = (
            f"{head}<mty>ME</mty>{cid}<dty>{_SCAIP_PANIC_BUTTON}</dty>"
            f"<stc>{_SCAIP_MANUAL_ALARM}</stc><crd>no-voice:</crd></mrq>"
        )
    return body.encode("utf-8")


# --- Zigbee2MQTT ---------------------------------------------------------------------------------


def _z2m(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    kind = sample.kind
    if kind in {Kind.ONLINE, Kind.OFFLINE}:
        return _dumps({"state": kind.value})
    document: dict[str, object] = {}
    if kind is Kind.PANIC:
        document["action"] = "emergency"
    elif kind is Kind.FALL:
        document["fall_down_status"] = "fall"
    else:
        document["presence"] = False
    pct = sample.fields.get("pct", state.battery_pct)
    document["battery"] = _int(pct)
    document["linkquality"] = 120
    document["last_seen"] = device_time.isoformat(timespec="milliseconds")
    return _dumps(document)


# --- OwnTracks -----------------------------------------------------------------------------------


def _owntracks(sample: Sample, device_time: datetime, state: DeviceState) -> bytes:
    tst = int(device_time.timestamp())
    if sample.kind is Kind.OFFLINE:
        return _dumps({"_type": "lwt", "tst": tst})
    pct = sample.fields.get("pct", state.battery_pct)
    return _dumps(
        {
            "_type": "location",
            "tid": state.device_id[-2:],
            "lat": round(state.lat, 6),
            "lon": round(state.lon, 6),
            "acc": 12,
            "batt": _int(pct),
            "conn": "m",
            "tst": tst,
        }
    )


# --- helpers -------------------------------------------------------------------------------------


def _dumps(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a numeric field was expected")
    return round(value)


def _number(value: object, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a numeric field was expected")
    return f"{value:.{digits}f}"


_ENCODERS: Final[dict[str, Callable[[Sample, datetime, DeviceState], bytes]]] = {
    "json": _json,
    "watch": _watch,
    "iw": _iw,
    "traccar": _traccar,
    "scaip": _scaip,
    "z2m": _z2m,
    "owntracks": _owntracks,
}
