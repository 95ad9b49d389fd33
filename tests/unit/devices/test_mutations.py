"""Real frames of the SCAIP, IW/TRV, watch and OwnTracks codecs, damaged as links and firmware do.

Every codec runs under ``devices.codec.guarded``, so whether it raises is not the question. These
properties pin what a damaged frame still means:

* nothing is silent: a damaged payload yields events or rejections (each with a RejectReason),
  except where it became a frame known not to be telemetry (voice, images, configuration);
* a truncated alarm (a TCP read cut short, a modem dropping the tail) still yields a life-safety
  event or a rejection that puts it in quarantine: it is never read as an ordinary report;
* a damaged SCAIP technical or care code is never read as anything worse than the class it
  now names.

The frames are the golden fixtures (tests/fixtures/devices/, sources in its README) plus a few
further ones named below.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, RejectReason, iw, owntracks, scaip, watch
from devices.watch_framing import Frame, split
from tests.unit.devices.helpers import HYPOTHESIS, load_cases

RECEIVED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
IMEI = "353456789012345"
LIFE_SAFETY = {Kind.PANIC, Kind.FALL, Kind.ALARM}


def raws(name: str) -> list[bytes]:
    return [case["raw"].encode() for case in load_cases(name)]


def alarms(name: str) -> list[bytes]:
    return [
        case["raw"].encode()
        for case in load_cases(name)
        if case["expect"]["kind"] in {"panic", "fall", "alarm"}
    ]


#: A SCAIP manual alarm and a low battery report in the layout of the fixtures' captures.
SCAIP_MORE = [
    b"<mrq><ref>1925996942</ref><cid>10149471</cid><dty>0003</dty><mty>ME</mty><stc>0010</stc><crd>gsm:</crd></mrq>",
    b"<mrq><ref>00001A86</ref><cid>26317</cid><dty>0002</dty><mty>ME</mty><stc>0016</stc></mrq>",
]
OWNTRACKS_MORE = [
    b'{"_type":"transition","event":"leave","desc":"Home","lat":48.856826,"lon":2.292713,"tst":1777636680,"t":"c"}',
    b'{"_type":"steps","steps":1200,"from":1777633080,"to":1777636680,"tst":1777636680}',
    b'{"_type":"lwt","tst":1777636680}',
]

CODECS = {
    "scaip": (scaip.decode, raws("scaip") + SCAIP_MORE, None),
    "iw": (iw.decode, [raw + b"#" for raw in raws("iw")], IMEI),
    "watch": (watch.decode, raws("watch"), None),
    "owntracks": (owntracks.decode, raws("owntracks") + OWNTRACKS_MORE, "jane/nokia"),
}
ALARMS = {
    "scaip": [SCAIP_MORE[0], *alarms("scaip")],
    "iw": [raw + b"#" for raw in alarms("iw")],
    "watch": alarms("watch"),
}
TOKENS = [b"\x00", b"]", b"[", b"#", b",", b"|", b"&", b"*", b"<", b'"', b"\r\n"]


def run(codec_name: str, payload: bytes) -> Decoded:
    codec, _, device_id = CODECS[codec_name]
    return codec(
        payload, DecodeContext(received_at=RECEIVED_AT, device_id=device_id, topic="owntracks/jane/nokia")
    )


@st.composite
def damaged(draw: st.DrawFn, sources: dict[str, list[bytes]]) -> tuple[str, bytes]:
    """A real payload of one codec, truncated, with a byte replaced, or with a separator inserted."""
    name = draw(st.sampled_from(sorted(sources)))
    raw = draw(st.sampled_from(sources[name]))
    at = draw(st.integers(0, len(raw) - 1))
    how = draw(st.sampled_from(["truncate", "replace", "insert"]))
    if how == "truncate":
        return name, raw[:at]
    if how == "replace":
        return name, raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return name, raw[:at] + draw(st.sampled_from(TOKENS)) + raw[at:]


def known_not_telemetry(codec_name: str, payload: bytes) -> bool:
    """Whether every frame of ``payload`` is one its codec documents as not telemetry."""
    if codec_name == "watch":
        frames = split(payload)
        types = [
            item.content.split(b",")[0].strip().decode("latin-1").upper()
            for item in frames
            if isinstance(item, Frame)
        ]
        return (
            bool(frames) and len(types) == len(frames) and all(kind in watch._NOT_TELEMETRY for kind in types)
        )
    if codec_name == "iw":
        frames = [
            part.strip()
            for part in iw._FRAME_SPLIT_RE.split(payload.decode("utf-8", "replace"))
            if part.strip()
        ]
        headers = [iw._HEADER_RE.match(frame) for frame in frames]
        return bool(frames) and all(
            header is not None and f"{header[2].upper()}P{header[3].upper()}" in iw._NOT_TELEMETRY
            for header in headers
        )
    return False


@HYPOTHESIS
@given(damaged({name: sources for name, (_, sources, _) in CODECS.items()}))
def test_a_damaged_payload_is_never_silent(sample):
    name, payload = sample
    decoded = run(name, payload)
    assert all(isinstance(rejection.reason, RejectReason) for rejection in decoded.rejections)
    assert decoded.events or decoded.rejections or known_not_telemetry(name, payload), (name, payload)


@HYPOTHESIS
@given(
    st.sampled_from(sorted(ALARMS)).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from(ALARMS[name]))
    ),
    st.data(),
)
def test_a_truncated_alarm_is_still_an_alarm_or_quarantined(sample, data):
    name, raw = sample
    cut = data.draw(st.integers(1, len(raw) - 1))
    decoded = run(name, raw[:cut])
    assert {event.kind for event in decoded.events} & LIFE_SAFETY or decoded.rejections, (name, raw[:cut])


def test_the_alarm_samples_are_alarms_when_whole():
    for name, samples in ALARMS.items():
        assert samples, name
        for raw in samples:
            assert {event.kind for event in run(name, raw).events} & LIFE_SAFETY, (name, raw)


_PADDED = st.integers(0, 3).map(lambda zeros: "0" * zeros)


@HYPOTHESIS
@given(
    st.sampled_from(["16", "88", "110", "111"]),
    _PADDED,
    st.sampled_from(["ME", "IN", "", "me", "XX"]),
    st.text(alphabet="0123456789", max_size=4),
)
def test_technical_and_care_codes_are_never_an_alarm_however_written(code, zeros, mty, dty):
    body = f"<mrq><cid>42</cid><mty>{mty}</mty><dty>{dty}</dty><stc> {zeros}{code} </stc></mrq>".encode()
    decoded = scaip.decode(body, DecodeContext(received_at=RECEIVED_AT))
    assert [event.kind for event in decoded.events] in ([Kind.DEVICE_FAULT], [Kind.CARE])
    assert decoded.events[0].fields["code"] == f"stc {zeros}{code}"


def test_reports_with_nothing_in_them_are_rejected_not_silent():
    no_fix = "250601V0000.0000N00000.0000E000.0115930000.0006000900000502"
    empty_watch = b"[3G*8800000015*0040*UD,010625,120000,V,0,N,0,E,0,0,0,0,0,,0,0,00000000,0,0,0]"
    cases = [
        (iw.decode, f"IWAP01{no_fix},0,0,0,0#".encode(), IMEI),
        (watch.decode, empty_watch, None),
        (owntracks.decode, b'{"_type":"location","lat":0,"lon":0,"tst":1777636680}', "jane/nokia"),
    ]
    for codec, payload, device_id in cases:
        decoded = codec(payload, DecodeContext(received_at=RECEIVED_AT, device_id=device_id))
        assert decoded.events == []
        assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.NO_EVENTS], payload


def test_panic_without_a_fix_is_a_panic():
    """The one property every path above relies on, pinned on each codec's own no-fix alarm frame."""
    iw_sos = b"IWAP10250601V0000.0000N00000.0000E000.0115930000.0006000908000502,460,0,9520,3671,01,zh-cn,00#"
    watch_sos = b"[3G*6907919734*003e*AL_LTE,170525,214118,V,0,N,0,E,0,0,0,0,0,22,0,0,00010000,0,0,0]"
    assert Kind.PANIC in {
        event.kind
        for event in iw.decode(iw_sos, DecodeContext(received_at=RECEIVED_AT, device_id=IMEI)).events
    }
    assert Kind.PANIC in {
        event.kind for event in watch.decode(watch_sos, DecodeContext(received_at=RECEIVED_AT)).events
    }


def test_rejection_details_of_damaged_frames_name_no_payload_digits():
    damaged_sos = ALARMS["iw"][0].replace(b"0908000502", b"09080005")
    details = [rejection.detail for rejection in run("iw", damaged_sos).rejections]
    assert details
    assert not any(re.search(r"\d{4,}", detail) for detail in details)
