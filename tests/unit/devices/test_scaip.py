from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import DecodeContext, Decoded, Kind, Rejection, RejectReason, TimeSource, scaip
from tests.unit.devices.helpers import HYPOTHESIS, as_bytes, decoder, emitted, load_cases, only_rejection

CASES = load_cases("scaip")
RECEIVED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KINDS = {
    "panic": Kind.PANIC,
    "alarm": Kind.ALARM,
    "fall": Kind.FALL,
    "heartbeat": Kind.HEARTBEAT,
    "cancel": Kind.CANCEL,
    "none": None,
}


def context(device_id=None, received_at=RECEIVED_AT):
    return DecodeContext(received_at=received_at, device_id=device_id)


def mrq(**tags) -> bytes:
    body = "".join(f"<{name}>{value}</{name}>" for name, value in tags.items())
    return f"<mrq>{body}</mrq>".encode()


run = decoder(scaip.decode, as_bytes, received_at=RECEIVED_AT)


# --- golden cases from the shared sample ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden(case):
    expect = case["expect"]
    assert expect["time"] is None  # SCAIP has no time
    decoded = run(case["raw"].encode())
    assert decoded.rejections == []
    kind = KINDS[expect["kind"]]
    assert [event.kind for event in decoded.events] == ([] if kind is None else [kind])
    for event in decoded.events:
        assert event.device_id == expect["device_id"]
        assert event.observed_at == RECEIVED_AT
        assert event.time_source is TimeSource.RECEIVED
        assert event.flags == frozenset()
        if kind is Kind.ALARM:
            assert event.fields["label"] == expect["alarm"]


# --- message types ---------------------------------------------------------------------------


@pytest.mark.parametrize("stc", ["0009", "102", "10", "0067", ""])
def test_ping_is_a_heartbeat_whatever_its_status(stc):
    assert emitted(run(mrq(ref="1", mty="PI", cid="42", dty="0002", stc=stc))) == [(Kind.HEARTBEAT, {})]


@pytest.mark.parametrize("stc", ["0010", "0067", "0019", ""])
def test_reset_message_is_a_cancel(stc):
    assert emitted(run(mrq(mty="RE", cid="42", dty="0003", stc=stc))) == [(Kind.CANCEL, {})]


@pytest.mark.parametrize(
    ("stc", "what"), [("0067", "stc 0067"), ("", "no usable stc"), ("X1", "no usable stc")]
)
def test_information_message_with_an_unknown_code_is_quarantined_not_an_alarm(stc, what):
    decoded = run(mrq(mty="IN", cid="42", dty="0002", stc=stc))
    assert decoded == Decoded(
        [],
        [Rejection(RejectReason.UNSUPPORTED_FRAME, f"SCAIP IN message with an unknown status code ({what})")],
    )


@pytest.mark.parametrize("mty", ["ME", "IN", "", "XX"])
@pytest.mark.parametrize("stc", ["16", "016", "0016"])
@pytest.mark.parametrize("dty", ["0002", "0003", "0005", "0007"])
def test_low_battery_is_a_device_fault_never_a_panic_or_alarm(mty, stc, dty):
    decoded = run(mrq(mty=mty, cid="42", dty=dty, stc=stc))
    assert [(e.kind, dict(e.fields)) for e in decoded.events] == [
        (Kind.DEVICE_FAULT, {"fault": "low_battery", "code": f"stc {stc}"})
    ]
    assert not any(event.is_life_safety for event in decoded.events)


@pytest.mark.parametrize(
    ("stc", "activity"),
    [("0088", "presence"), ("88", "presence"), ("0110", "assistance"), ("0111", "intervention_complete")],
)
@pytest.mark.parametrize("mty", ["ME", "IN"])
def test_care_codes_are_care_events_never_an_alarm(stc, activity, mty):
    decoded = run(mrq(mty=mty, cid="42", dty="0002", stc=stc))
    assert emitted(decoded) == [(Kind.CARE, {"activity": activity, "code": f"stc {stc}"})]


@pytest.mark.parametrize("stc", ["0010", "10", "0019", "0070"])
def test_information_message_with_a_known_code_is_decoded_by_its_class(stc):
    expected = {"0010": Kind.PANIC, "10": Kind.PANIC, "0019": Kind.CANCEL, "0070": Kind.HEARTBEAT}[stc]
    assert [e.kind for e in run(mrq(mty="IN", cid="42", dty="0002", stc=stc)).events] == [expected]


@pytest.mark.parametrize("mty", ["pi", "Pi", " PI "])
def test_message_type_case_and_padding(mty):
    payload = f"<mrq><mty>{mty}</mty><cid>42</cid></mrq>".encode()
    assert emitted(run(payload)) == [(Kind.HEARTBEAT, {})]


@pytest.mark.parametrize("mty", [None, "ME", "me", ""])
def test_missing_message_type_is_an_alarm_message(mty):
    tags = {"cid": "42", "dty": "0004", "stc": "0010"}
    if mty is not None:
        tags["mty"] = mty
    assert emitted(run(mrq(**tags))) == [(Kind.PANIC, {})]


def test_unknown_message_type_is_decoded_as_an_alarm_and_flagged():
    decoded = run(mrq(mty="XX", cid="42", dty="0002", stc="0067"))
    assert emitted(decoded) == [(Kind.ALARM, {"label": "stc 0067"})]
    assert decoded.events[0].flags == {"unknown_message_type"}


# --- status codes and device types -----------------------------------------------------------


@pytest.mark.parametrize("stc", ["10", "010", "0010", " 0010 "])
@pytest.mark.parametrize("dty", ["2", "0002", "3", "4", "0005", "7", "", "99"])
def test_manual_alarm_is_a_panic_on_any_device(stc, dty):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.PANIC, {})]


@pytest.mark.parametrize("stc", ["19", "0019", "92", "0092", "093", "0093"])
@pytest.mark.parametrize("dty", ["0002", "0005", "0007"])
def test_cancel_codes(stc, dty):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.CANCEL, {})]


@pytest.mark.parametrize("stc", ["70", "0070", "070"])
@pytest.mark.parametrize("dty", ["0002", "0005", "0003"])
def test_normal_status_is_a_sign_of_life(stc, dty):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.HEARTBEAT, {})]


@pytest.mark.parametrize("dty", ["5", "05", "0005"])
@pytest.mark.parametrize("stc", ["0067", "0011", "", "X1"])
def test_fall_detector_alarm_is_a_fall(dty, stc):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.FALL, {"stage": "alarm"})]


@pytest.mark.parametrize("dty", ["3", "0003", "4", "0004", "7", "0007"])
@pytest.mark.parametrize("stc", ["0067", "0011", ""])
def test_trigger_alarm_is_a_panic(dty, stc):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.PANIC, {})]


@pytest.mark.parametrize(
    ("dty", "stc", "label"),
    [
        ("0002", "0067", "stc 0067"),
        ("2", "67", "stc 67"),
        ("", "0001", "stc 0001"),
        ("0002", "A1", "stc A1"),
        ("0099", "0100", "stc 0100"),
        ("0002", "", "stc missing"),
        ("0002", "9" * 80, "stc " + "9" * 60),
    ],
)
def test_unmapped_alarms_are_never_dropped(dty, stc, label):
    assert emitted(run(mrq(mty="ME", cid="42", dty=dty, stc=stc))) == [(Kind.ALARM, {"label": label})]


def test_alarm_message_without_status_or_device_type():
    assert emitted(run(mrq(cid="42"))) == [(Kind.ALARM, {"label": "stc missing"})]


# --- layout ----------------------------------------------------------------------------------


def test_tags_in_any_order_with_padding_and_declaration():
    payload = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<mrq>\n  <stc> 0010 </stc>\n  <crd>gsm:+46701234567</crd>\n'
        b"  <cid>  991122 </cid>\n  <lco>012</lco><did>03</did>\n  <dty>0003</dty>\n  <ref>A7</ref>\n</mrq>\n"
    )
    decoded = run(payload)
    assert emitted(decoded) == [(Kind.PANIC, {})]
    assert decoded.events[0].device_id == "991122"
    assert decoded.events[0].msg_id == "A7"


def test_upper_case_tags_and_namespace():
    payload = b'<MRQ xmlns="urn:scaip"><CID>42</CID><MTY>ME</MTY><STC>0010</STC></MRQ>'
    assert emitted(run(payload)) == [(Kind.PANIC, {})]


def test_byte_order_mark_and_latin1_body():
    payload = "\ufeff<mrq><cid>42</cid><mty>PI</mty></mrq>".encode()
    assert emitted(run(payload)) == [(Kind.HEARTBEAT, {})]
    latin1 = "<mrq><cid>42</cid><crd>sip:björn@example</crd><stc>10</stc></mrq>".encode("latin-1")
    assert emitted(run(latin1)) == [(Kind.PANIC, {})]


def test_comment_and_cdata_are_allowed():
    payload = b"<mrq><!-- unit 7 --><cid>42</cid><stc><![CDATA[0010]]></stc></mrq>"
    assert emitted(run(payload)) == [(Kind.PANIC, {})]


def test_repeated_tag_counts_once():
    assert emitted(run(b"<mrq><cid>42</cid><stc>0010</stc><stc>0070</stc></mrq>")) == [(Kind.PANIC, {})]


def test_unknown_tags_are_ignored():
    assert emitted(run(mrq(cid="42", mty="PI", xyz="1", pri="1", cha="1"))) == [(Kind.HEARTBEAT, {})]


# --- identity and keys -----------------------------------------------------------------------


def test_cid_is_the_identity_even_with_a_session_id():
    assert run(mrq(cid="26317", mty="PI"), device_id="session").events[0].device_id == "26317"


@pytest.mark.parametrize("cid", [None, "", "   "])
def test_missing_cid_falls_back_to_the_session(cid):
    tags = {"mty": "ME", "stc": "0010"}
    if cid is not None:
        tags["cid"] = cid
    assert run(mrq(**tags), device_id="unit-9").events[0].device_id == "unit-9"
    rejection = only_rejection(run(mrq(**tags)))
    assert rejection.reason is RejectReason.MISSING_FIELD
    assert rejection.detail == "no device identity"


def test_ref_is_the_message_id():
    event = run(mrq(ref="00001A85", cid="42", stc="0010")).events[0]
    assert event.msg_id == "00001A85"
    assert run(mrq(ref="r" * 65, cid="42", stc="0010")).events[0].msg_id is None


def test_a_reused_ref_is_a_new_alarm():
    payload = mrq(ref="0001", cid="42", stc="0010")
    first = run(payload).events[0]
    redelivered = run(payload).events[0]
    after_restart = run(payload, received_at=RECEIVED_AT + timedelta(days=3)).events[0]
    assert first.event_key == redelivered.event_key
    assert first.event_key != after_restart.event_key
    assert first.event_key != "0001"


# --- malformed and hostile bodies ------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b"<mrq><cid>&lol2;</cid><stc>0010</stc></mrq>"
)


@pytest.mark.parametrize(
    "payload",
    [
        BILLION_LAUGHS,
        b'<!DOCTYPE mrq SYSTEM "http://example.invalid/x.dtd"><mrq><cid>42</cid></mrq>',
        b'<!doctype mrq [<!entity x SYSTEM "file:///etc/passwd">]><mrq><cid>&x;</cid></mrq>',
        b'<mrq><cid>42</cid></mrq><!ENTITY x "y">',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><mrq/>'.encode("utf-16"),
    ],
)
def test_declarations_are_refused(payload):
    rejection = only_rejection(run(payload))
    # UTF-16 hides the declaration from the text check, but then the body is not parseable XML.
    assert rejection.reason in {RejectReason.INVALID_STRUCTURE, RejectReason.MALFORMED_FRAME}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"PI 26317",
        b"<mrq><cid>42</cid><stc>0070</stc>",
        b"<mrq><cid>42</cid><stc>0070</mrq>",
        b"<mrq><cid>42</cid></mrq><mrq><cid>43</cid></mrq>",
        b"<mrs><ref>1</ref><snu>0</snu></mrs>",
        b"<message><cid>42</cid></message>",
        b'{"cid": "42"}',
        b"<mrq><cid>&undefined;</cid></mrq>",
        b"\x00\x01\x02",
    ],
)
def test_malformed_bodies(payload):
    rejection = only_rejection(run(payload))
    # Broken XML is a broken frame; a well-formed document that is no request is not understood.
    well_formed_other = payload.startswith((b"<mrs>", b"<message>"))
    expected = RejectReason.UNSUPPORTED_FRAME if well_formed_other else RejectReason.MALFORMED_FRAME
    assert rejection.reason is expected
    assert "42" not in rejection.detail


# --- damaged bodies (issue 11: a garbled alarm still alerts) -------------------------------

MANUAL_ALARM = (
    "<mrq><ref>r1</ref><cid>42</cid><dty>0004</dty><mty>ME</mty><stc>0010</stc>{}<crd>gsm:</crd></mrq>"
)


def salvaged_panic(decoded: Decoded, device_id: str = "42") -> None:
    """One panic flagged malformed_frame, and the body rejected as malformed (raw bytes kept)."""
    assert [(event.kind, event.device_id) for event in decoded.events] == [(Kind.PANIC, device_id)]
    assert "malformed_frame" in decoded.events[0].flags
    assert decoded.events[0].time_source is TimeSource.RECEIVED
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.MALFORMED_FRAME]
    assert "42" not in decoded.rejections[0].detail


@pytest.mark.parametrize(
    "side",
    [
        "<lco>\x01\x02\x1b[2J</lco>",
        "<lco>&#0;&#x1;&#xD800;</lco>",
        "<lco>&#1114112;&#99999999999999;</lco>",
        "<ref>\x00</ref>",
        "<lco>\ufffe</lco>",
        "<!-- \x1b -->",
    ],
)
def test_characters_xml_forbids_in_a_side_field_do_not_lose_the_alarm(side):
    salvaged_panic(run(MANUAL_ALARM.format(side).encode()))


def test_nul_message_type_is_repaired_and_the_alarm_kept():
    body = MANUAL_ALARM.format("").replace("<mty>ME</mty>", "<mty>\x00</mty>")
    salvaged_panic(run(body.encode()))


def test_nul_in_the_callback_route_of_a_real_capture():
    body = "<mrq><ref>1925996942</ref><cid>42</cid><dty>4</dty><stc>10</stc><crd>gsm:\x00</crd></mrq>"
    salvaged_panic(run(body.encode()))


def test_a_repaired_body_that_is_no_alarm_is_decoded_and_still_quarantined():
    decoded = run(b"<mrq><cid>42</cid><mty>PI</mty><stc>0067</stc><lco>\x00</lco></mrq>")
    assert [event.kind for event in decoded.events] == [Kind.HEARTBEAT]
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.MALFORMED_FRAME]


def test_valid_character_references_are_kept():
    decoded = run(mrq(cid="4&#50;", stc="0010"))
    assert [(event.kind, event.device_id, event.flags) for event in decoded.events] == [
        (Kind.PANIC, "42", frozenset())
    ]
    assert decoded.rejections == []


@pytest.mark.parametrize(
    "body",
    [
        MANUAL_ALARM.format("") + "<mrq>",
        MANUAL_ALARM.format("")[: -len("rq>")],
        MANUAL_ALARM.format("").replace("</crd></mrq>", "</crd></m"),
        "<mrq><cid>42</cid><stc>10</st",
        "<mrq><cid>42</cid><stc>0010</mrq>",
        "<mrq><cid>42</cid><stc>10</stc></mrq" + "\x00" * 10,
        "<?xml version='1.0'?><s:mrq xmlns:s='urn:x'><s:cid>42</s:cid><s:stc> 0010 </s:stc><lco>&bad</lco>",
    ],
)
def test_a_broken_body_with_a_manual_alarm_is_salvaged(body):
    salvaged_panic(run(body.encode()))


def test_a_salvaged_alarm_without_a_readable_cid_belongs_to_the_session():
    body = "<mrq><cid>4\x00</cid><stc>0010</stc></mrq><mrq>"
    salvaged_panic(run(body.encode(), device_id="session-7"), device_id="session-7")


@pytest.mark.parametrize(
    "body",
    [
        "<mrq><cid>42</cid><stc>0016</stc></mrq><mrq>",  # low battery: technical
        "<mrq><cid>42</cid><stc>0067</stc></mrq><mrq>",  # unknown code: not salvaged from broken XML
        "<mrq><cid>42</cid><stc>0070</stc></mrq><mrq>",
        "<mrq><cid>42</cid><stc>0019</stc></mrq><mrq>",
        "<mrq><cid>42</cid><mty>PI</mty><stc>0010</stc></mrq><mrq>",
        "<mrq><cid>42</cid><mty>RE</mty><stc>0010</stc></mrq><mrq>",
        "<mrq><cid>42</cid><stc>001",  # the code itself is cut: it may have been another
        "<mrq><cid>42</cid><!-- <stc>10</stc> --></mrq><mrq>",
        "<mrq><cid>42</cid><![CDATA[<stc>10</stc>]]></mrq><mrq>",
        "<mrs><cid>42</cid><stc>10</stc></mrs><mrs>",
        "<html><stc>10</stc></html",
    ],
)
def test_nothing_but_an_alarm_class_code_of_a_request_is_salvaged(body):
    decoded = run(body.encode())
    assert decoded.events == []
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.MALFORMED_FRAME]


def test_a_body_with_a_declaration_is_never_salvaged_nor_expanded():
    body = '<!DOCTYPE m [<!ENTITY x "&#0;">]><mrq><cid>42</cid><stc>10</stc><lco>&x;</lco></mrq><mrq>'
    decoded = run(body.encode())
    assert decoded.events == []
    assert [rejection.reason for rejection in decoded.rejections] == [RejectReason.INVALID_STRUCTURE]


# --- robustness ------------------------------------------------------------------------------


@HYPOTHESIS
@given(payload=st.binary(max_size=300))
def test_garbage_never_raises(payload):
    assert isinstance(run(payload), Decoded)


TAG_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@HYPOTHESIS
@given(
    tags=st.dictionaries(
        st.sampled_from(["ref", "mty", "cid", "dty", "did", "stc", "lco", "crd", "cha", "pri"]),
        TAG_TEXT | st.sampled_from(["PI", "ME", "RE", "IN", "0010", "0005", "0070", "19"]),
        max_size=8,
    )
)
def test_random_requests_never_raise(tags):
    body = "".join(f"<{name}>{value}</{name}>" for name, value in tags.items())
    decoded = scaip.decode(f"<mrq>{body}</mrq>".encode(errors="surrogatepass"), context(device_id="fallback"))
    assert isinstance(decoded, Decoded)
    # At most one event; a body repaired before parsing also has its rejection.
    assert len(decoded.events) <= 1
    assert len(decoded.rejections) <= 1
    assert decoded.events or decoded.rejections


def test_unexpected_error_becomes_a_rejection(monkeypatch):
    def explode(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(scaip, "_meaning", explode)
    rejection = only_rejection(run(mrq(cid="42", stc="0010")))
    assert rejection.reason is RejectReason.INVALID_STRUCTURE
    assert "boom" not in rejection.detail
