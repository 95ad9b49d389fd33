import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ConfigError, MqttProtocolError
from ingest.settings import MqttSettings
from ingest.wire import (
    DISCONNECT,
    MQTT_3_1_1,
    PINGREQ,
    Ack,
    ConnAck,
    ConnectOptions,
    PacketReader,
    PacketType,
    Prop,
    Publish,
    _read_varint,
    encode_connect,
    encode_pubacks,
    encode_publish,
    encode_publish_v4,
    encode_subscribe,
    encode_subscribe_v4,
    encode_varint,
)

HYPOTHESIS = settings(database=None, deadline=None)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def parse_one(data: bytes) -> object:
    packets = PacketReader().feed(data)
    assert len(packets) == 1
    return packets[0]


# --- Variable Byte Integer (1.5.5) ---------------------------------------------------------

VARINT_VECTORS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (16_383, "ff7f"),
    (16_384, "808001"),
    (2_097_151, "ffff7f"),
    (2_097_152, "80808001"),
    (268_435_455, "ffffff7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINT_VECTORS)
def test_varint_encodes_the_spec_boundary_values(value, encoded):
    assert encode_varint(value) == h(encoded)


@pytest.mark.parametrize(("value", "encoded"), VARINT_VECTORS)
def test_varint_decodes_the_spec_boundary_values(value, encoded):
    assert _read_varint(h(encoded), 0) == (value, len(encoded) // 2)


@pytest.mark.parametrize("value", [-1, 268_435_456])
def test_varint_outside_the_spec_range_cannot_be_encoded(value):
    with pytest.raises(ValueError, match="out of range"):
        encode_varint(value)


@HYPOTHESIS
@given(value=st.integers(min_value=0, max_value=268_435_455), prefix=st.binary(max_size=4))
def test_varint_round_trips_at_any_offset(value, prefix):
    encoded = encode_varint(value)
    assert _read_varint(prefix + encoded + b"\xff", len(prefix)) == (
        value,
        len(prefix) + len(encoded),
    )


@HYPOTHESIS
@given(value=st.integers(min_value=128, max_value=268_435_455))
def test_truncated_varint_reads_as_incomplete(value):
    encoded = encode_varint(value)
    assert _read_varint(encoded[:-1], 0) is None


def test_varint_longer_than_four_bytes_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="variable byte integer"):
        _read_varint(h("ffffffff01"), 0)


# --- encoders against hand-computed bytes ----------------------------------------------------


def test_connect_with_defaults_has_the_exact_mqtt5_layout():
    expected = h(
        "10 1c"  # CONNECT, remaining length 28
        "0004 4d515454"  # protocol name "MQTT"
        "05"  # protocol level 5
        "00"  # flags: no clean start, no credentials
        "001e"  # keep alive 30 s
        "0d"  # properties length 13
        "11 00093a80"  # session expiry interval 604800 s
        "21 2710"  # receive maximum 10000
        "27 00050000"  # maximum packet size 327680 (the broker's 262144 + headroom)
        "0002 6377"  # client id "cw"
    )
    assert encode_connect(ConnectOptions(client_id="cw")) == expected


def test_connect_with_clean_start_and_credentials_has_the_exact_mqtt5_layout():
    options = ConnectOptions(
        client_id="ingest",
        keepalive_s=60,
        session_expiry_s=0,
        receive_maximum=100,
        clean_start=True,
        username="gw",
        password="pw",  # noqa: S106 - a test credential
    )
    expected = h(
        "10 28"  # CONNECT, remaining length 40
        "0004 4d515454 05"
        "c2"  # user name + password + clean start
        "003c"  # keep alive 60 s
        "0d 11 00000000 21 0064"  # session expiry 0, receive maximum 100
        "27 00050000"  # maximum packet size
        "0006 696e67657374"  # client id "ingest"
        "0002 6777"  # user name "gw"
        "0002 7077"  # password "pw" (binary data)
    )
    assert encode_connect(options) == expected


def test_connect_flags_bit_7_marks_a_user_name_alone():
    packet = encode_connect(ConnectOptions(client_id="c", username="u"))
    assert packet[9] == 0x80
    assert packet.endswith(h("0001 63 0001 75"))


def test_connect_flags_bit_6_marks_a_password_alone():
    packet = encode_connect(ConnectOptions(client_id="c", password="p"))  # noqa: S106
    assert packet[9] == 0x40
    assert packet.endswith(h("0001 63 0001 70"))


def test_connect_encodes_a_non_ascii_client_id_as_utf8_with_its_byte_length():
    packet = encode_connect(ConnectOptions(client_id="\u00e9"))
    assert packet.endswith(h("0002 c3a9"))


def test_subscribe_has_the_exact_layout_with_retain_handling_2():
    expected = h(
        "82 14"  # SUBSCRIBE with reserved flags 0010, remaining length 20
        "0007"  # packet id
        "00"  # no properties
        "000e" + b"carewatch/v1/#".hex() + "21"  # options: retain handling 2, QoS 1
    )
    assert encode_subscribe(7, "carewatch/v1/#") == expected


def test_subscribe_at_qos_0_keeps_retain_handling_2():
    assert encode_subscribe(1, "t", qos=0)[-1] == 0x20


def test_publish_qos0_has_no_packet_id():
    assert encode_publish("a/b", b"hi", qos=0) == h("30 08 0003 612f62 00 6869")


def test_publish_qos1_retained_carries_packet_id_and_flags():
    assert encode_publish("a/b", b"hi", qos=1, packet_id=10, retain=True) == h(
        "33 0a 0003 612f62 000a 00 6869"
    )


def test_publish_with_long_payload_uses_a_two_byte_remaining_length():
    packet = encode_publish("t", bytes(200), qos=0)
    assert packet[:3] == h("30 cc01")  # 2 + 1 + 1 + 200 = 204
    assert len(packet) == 3 + 204


def test_pubacks_are_concatenated_success_acks_without_reason_code():
    assert encode_pubacks([1, 258]) == h("4002 0001 4002 0102")


def test_no_pubacks_is_an_empty_write():
    assert encode_pubacks([]) == b""


def test_pingreq_and_disconnect_constants_match_the_spec():
    assert (h("c000"), h("e000")) == (PINGREQ, DISCONNECT)


# --- PacketReader: PUBLISH ----------------------------------------------------------------


def test_reader_parses_qos0_publish_without_properties():
    assert parse_one(h("30 08 0003 612f62 00 6869")) == Publish("a/b", b"hi", 0, 0, False, False)


def test_reader_parses_qos1_publish_without_properties():
    assert parse_one(h("32 0a 0003 612f62 1234 00 6869")) == Publish("a/b", b"hi", 1, 0x1234, False, False)


def test_reader_skips_publish_properties_to_find_the_payload():
    properties = (
        "02 0000003c"  # message expiry interval
        "0b 8101"  # subscription identifier 129 (varint)
        "26 0001 6b 0001 76"  # user property k=v
        "01 01"  # payload format indicator
        "03 0004 6a736f6e"  # content type "json"
    )
    packet = h("32 22 0003 612f62 1234 18" + properties + "7b7d")
    assert parse_one(packet) == Publish("a/b", b"{}", 1, 0x1234, False, False)


def test_reader_parses_qos0_publish_with_properties():
    packet = h("30 0d 0003 612f62 05 02 0000003c 6869")
    assert parse_one(packet) == Publish("a/b", b"hi", 0, 0, False, False)


def test_reader_reports_dup_and_retain_flags():
    publish = parse_one(h("3b 0a 0003 612f62 0001 00 6869"))
    assert isinstance(publish, Publish)
    assert publish.dup
    assert publish.retain
    assert publish.qos == 1


def test_reader_reports_dup_without_retain():
    publish = parse_one(h("3a 0a 0003 612f62 0001 00 6869"))
    assert isinstance(publish, Publish)
    assert (publish.dup, publish.retain) == (True, False)


def test_reader_parses_publish_with_empty_payload():
    assert parse_one(h("30 06 0003 612f62 00")) == Publish("a/b", b"", 0, 0, False, False)


def test_reader_decodes_utf8_topic():
    assert parse_one(h("30 05 0002 c3a9 00")).topic == "\u00e9"


def test_publish_with_qos_2_is_refused_with_qos_not_supported():
    # We subscribe at QoS 1, so the broker must downgrade; see wire._qos_error.
    with pytest.raises(MqttProtocolError, match="QoS 2") as caught:
        PacketReader().feed(h("34 08 0003 612f62 0001 00"))
    assert caught.value.reason_code == 0x9B


def test_publish_with_qos_3_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="QoS 3"):
        PacketReader().feed(h("36 08 0003 612f62 0001 00"))


@HYPOTHESIS
@given(
    topic=st.text(min_size=1, max_size=100),
    payload=st.binary(max_size=400),
    qos=st.sampled_from([0, 1]),
    packet_id=st.integers(min_value=1, max_value=65535),
    retain=st.booleans(),
)
def test_encoded_publish_reads_back_unchanged(topic, payload, qos, packet_id, retain):
    packet = encode_publish(topic, payload, qos=qos, packet_id=packet_id, retain=retain)
    expected_id = packet_id if qos else 0
    assert parse_one(packet) == Publish(topic, payload, qos, expected_id, False, retain)


# --- PacketReader: control packets --------------------------------------------------------


def test_reader_parses_connack_without_properties():
    assert parse_one(h("20 03 01 00 00")) == ConnAck(True, 0, {})


def test_reader_parses_connack_with_no_property_length_at_all():
    assert parse_one(h("20 02 00 00")) == ConnAck(False, 0, {})


def test_reader_parses_connack_refusal_reason_code():
    assert parse_one(h("20 03 00 87 00")).reason_code == 0x87


def test_reader_parses_connack_properties_of_every_wire_type():
    properties = (
        "21 0014"  # receive maximum 20 (u16)
        "24 01"  # maximum QoS 1 (byte)
        "22 000a"  # topic alias maximum 10 (u16)
        "27 00100000"  # maximum packet size 1 MiB (u32)
        "13 003c"  # server keep alive 60 (u16)
        "12 0003 632d31"  # assigned client identifier "c-1" (string)
        "26 0001 6b 0001 76"  # user property (skipped)
        "25 00"  # retain available 0 (byte)
    )
    connack = parse_one(h("20 22 01 00 1f" + properties))
    assert connack == ConnAck(
        True,
        0,
        {
            Prop.RECEIVE_MAXIMUM: 20,
            Prop.MAXIMUM_QOS: 1,
            Prop.TOPIC_ALIAS_MAXIMUM: 10,
            Prop.MAXIMUM_PACKET_SIZE: 1 << 20,
            Prop.SERVER_KEEP_ALIVE: 60,
            0x12: "c-1",
            0x25: 0,
        },
    )


def test_connack_with_unknown_property_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="unknown property"):
        PacketReader().feed(h("20 05 00 00 02 7f 00"))


def test_connack_property_overrunning_its_length_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="overrun"):
        PacketReader().feed(h("20 08 00 00 02 27 00000001"))


def test_reader_parses_suback_reason_codes():
    assert parse_one(h("90 04 0007 00 01")) == Ack(PacketType.SUBACK, 7, (1,))


def test_reader_parses_suback_with_reason_string_and_several_codes():
    packet = h("90 0a 0007 05 1f 0002 6e6f 00 87")
    assert parse_one(packet) == Ack(PacketType.SUBACK, 7, (0, 0x87), "no")


def test_reader_parses_puback_without_reason_code_as_success():
    assert parse_one(h("40 02 0005")) == Ack(PacketType.PUBACK, 5, (0,))


def test_reader_parses_puback_reason_code():
    assert parse_one(h("40 03 0005 10")) == Ack(PacketType.PUBACK, 5, (0x10,))


def test_reader_parses_puback_with_reason_code_and_empty_properties():
    assert parse_one(h("40 04 0005 87 00")) == Ack(PacketType.PUBACK, 5, (0x87,))


def test_reader_parses_pingresp():
    assert parse_one(h("d0 00")) == Ack(PacketType.PINGRESP, 0, ())


def test_reader_parses_bare_disconnect_as_normal():
    assert parse_one(h("e0 00")) == Ack(PacketType.DISCONNECT, 0, (0,))


def test_reader_parses_disconnect_reason_code_without_properties():
    assert parse_one(h("e0 01 8b")) == Ack(PacketType.DISCONNECT, 0, (0x8B,))


def test_reader_parses_disconnect_with_reason_string():
    packet = h("e0 08 8b 06 1f 0003 627965")
    assert parse_one(packet) == Ack(PacketType.DISCONNECT, 0, (0x8B,), "bye")


@pytest.mark.parametrize(
    "packet",
    ["10 00", "50 02 0001", "60 02 0001", "70 02 0001", "82 00", "b0 02 0001", "c0 00", "f0 00"],
)
def test_unexpected_packet_type_from_the_broker_is_a_protocol_error(packet):
    with pytest.raises(MqttProtocolError, match="unexpected packet type"):
        PacketReader().feed(h(packet))


# --- PacketReader: framing ------------------------------------------------------------------

STREAM_PACKETS = [
    h("20 03 00 00 00"),
    h("90 04 0001 00 01"),
    encode_publish("carewatch/v1/gw/dev/json", b'{"kind":"panic"}', qos=1, packet_id=1),
    encode_publish("carewatch/v1/gw/dev/json", bytes(300), qos=0),
    h("40 02 0009"),
    h("d0 00"),
    h("3b 0a 0003 612f62 0002 00 6869"),
    h("e0 08 8b 06 1f 0003 627965"),
]
STREAM = b"".join(STREAM_PACKETS)


def _expected_stream_packets() -> list[object]:
    return PacketReader().feed(STREAM)


def test_reader_returns_every_packet_of_one_read_in_order():
    packets = PacketReader().feed(STREAM)
    assert [type(p).__name__ for p in packets] == [
        "ConnAck",
        "Ack",
        "Publish",
        "Publish",
        "Ack",
        "Ack",
        "Publish",
        "Ack",
    ]


def test_reader_returns_nothing_for_a_partial_packet():
    assert PacketReader().feed(STREAM_PACKETS[2][:-1]) == []


def test_reader_completes_a_packet_when_its_last_byte_arrives():
    reader = PacketReader()
    packet = STREAM_PACKETS[2]
    reader.feed(packet[:-1])
    assert reader.feed(packet[-1:]) == [parse_one(packet)]


def test_reader_waits_for_a_remaining_length_split_across_reads():
    reader = PacketReader()
    packet = STREAM_PACKETS[3]  # remaining length takes two bytes
    assert reader.feed(packet[:2]) == []
    assert reader.feed(packet[2:]) == [parse_one(packet)]


def test_reader_fed_one_byte_at_a_time_yields_the_same_packets():
    reader = PacketReader()
    packets = [p for i in range(len(STREAM)) for p in reader.feed(STREAM[i : i + 1])]
    assert packets == _expected_stream_packets()


def test_reader_fed_the_stream_split_at_every_position_yields_the_same_packets():
    expected = _expected_stream_packets()
    for split in range(len(STREAM) + 1):
        reader = PacketReader()
        packets = reader.feed(STREAM[:split]) + reader.feed(STREAM[split:])
        assert packets == expected, f"split at byte {split}"


@HYPOTHESIS
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_reader_fed_the_stream_in_random_chunks_yields_the_same_packets(cuts):
    reader = PacketReader()
    bounds = [0, *sorted(cuts), len(STREAM)]
    packets = [p for a, b in itertools.pairwise(bounds) for p in reader.feed(STREAM[a:b])]
    assert packets == _expected_stream_packets()


def test_packet_over_max_packet_bytes_is_a_protocol_error_before_its_body_arrives():
    with pytest.raises(MqttProtocolError, match="exceeds the limit"):
        PacketReader(max_packet_bytes=10).feed(h("30 0b"))


def test_packet_of_exactly_max_packet_bytes_is_accepted():
    packet = encode_publish("a/b", b"hi", qos=1, packet_id=1)  # remaining length 10
    assert PacketReader(max_packet_bytes=10).feed(packet) == [parse_one(packet)]


def test_default_limit_refuses_a_remaining_length_above_one_mebibyte():
    with pytest.raises(MqttProtocolError, match="exceeds the limit"):
        PacketReader().feed(b"\x30" + encode_varint((1 << 20) + 1))


def test_malformed_remaining_length_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="variable byte integer"):
        PacketReader().feed(h("30 ffffffff01"))


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param("30 00", id="publish-without-topic"),
        pytest.param("20 00", id="empty-connack"),
        pytest.param("30 04 0001 ff 00", id="publish-topic-not-utf8"),
        pytest.param("90 02 0001", id="suback-without-properties"),
    ],
)
def test_truncated_or_malformed_packet_is_a_protocol_error(packet):
    with pytest.raises(MqttProtocolError):
        PacketReader().feed(h(packet))


# --- MQTT 3.1.1 (protocol level 4) -------------------------------------------------------


def parse_one_v4(data: bytes) -> object:
    packets = PacketReader(protocol_level=MQTT_3_1_1).feed(data)
    assert len(packets) == 1
    return packets[0]


def test_v4_connect_has_the_exact_layout_without_properties():
    expected = h(
        "10 0e"  # CONNECT, remaining length 14
        "0004 4d515454"  # protocol name "MQTT"
        "04"  # protocol level 4 (3.1.1)
        "00"  # flags: clean session off, no credentials
        "001e"  # keep alive 30 s
        "0002 6377"  # client id "cw"; no properties anywhere
    )
    assert encode_connect(ConnectOptions(client_id="cw", protocol_level=MQTT_3_1_1)) == expected


def test_v4_connect_with_clean_session_and_credentials_has_the_exact_layout():
    options = ConnectOptions(
        client_id="ingest",
        keepalive_s=60,
        clean_start=True,
        username="gw",
        password="pw",  # noqa: S106 - a test credential
        protocol_level=MQTT_3_1_1,
    )
    expected = h("10 1a 0004 4d515454 04 c2 003c 0006 696e67657374 0002 6777 0002 7077")
    assert encode_connect(options) == expected


def test_an_unknown_protocol_level_is_refused():
    with pytest.raises(ValueError, match="protocol level 3"):
        ConnectOptions(client_id="c", protocol_level=3)
    with pytest.raises(ValueError, match="protocol level 6"):
        PacketReader(protocol_level=6)


def test_v4_subscribe_options_byte_is_the_qos_alone():
    expected = h("82 13 0007 000e" + b"carewatch/v1/#".hex() + "01")
    assert encode_subscribe_v4(7, "carewatch/v1/#") == expected
    assert encode_subscribe_v4(1, "t", qos=0)[-1] == 0


def test_v4_publish_has_no_properties_byte():
    assert encode_publish_v4("a/b", b"hi", qos=0) == h("30 07 0003 612f62 6869")
    assert encode_publish_v4("a/b", b"hi", qos=1, packet_id=10, retain=True) == h(
        "33 09 0003 612f62 000a 6869"
    )


def test_v4_reader_takes_the_byte_after_the_packet_id_as_payload():
    # In MQTT 5 the 0x00 would be an empty property length; in 3.1.1 it is payload.
    assert parse_one_v4(h("32 0a 0003 612f62 1234 00 6869")) == Publish(
        "a/b", b"\x00hi", 1, 0x1234, False, False
    )
    assert parse_one_v4(h("30 07 0003 612f62 6869")) == Publish("a/b", b"hi", 0, 0, False, False)


def test_v4_reader_reports_dup_and_retain_flags():
    assert parse_one_v4(h("3b 09 0003 612f62 0001 6869")) == Publish("a/b", b"hi", 1, 1, True, True)


def test_v4_publish_with_qos_3_is_a_protocol_error():
    with pytest.raises(MqttProtocolError, match="QoS 3"):
        PacketReader(protocol_level=MQTT_3_1_1).feed(h("36 07 0003 612f62 0001"))


@HYPOTHESIS
@given(
    topic=st.text(min_size=1, max_size=100),
    payload=st.binary(max_size=400),
    qos=st.sampled_from([0, 1]),
    packet_id=st.integers(min_value=1, max_value=65535),
    retain=st.booleans(),
)
def test_v4_encoded_publish_reads_back_unchanged(topic, payload, qos, packet_id, retain):
    packet = encode_publish_v4(topic, payload, qos=qos, packet_id=packet_id, retain=retain)
    expected_id = packet_id if qos else 0
    assert parse_one_v4(packet) == Publish(topic, payload, qos, expected_id, False, retain)


@pytest.mark.parametrize(
    ("return_code", "reason_code"),
    [(0, 0x00), (1, 0x84), (2, 0x85), (3, 0x88), (4, 0x86), (5, 0x87), (6, 0x80), (0xFF, 0x80)],
)
def test_v4_connack_return_codes_map_to_mqtt5_reason_codes(return_code, reason_code):
    assert parse_one_v4(bytes((0x20, 0x02, 0x00, return_code))) == ConnAck(False, reason_code, {})


def test_v4_connack_session_present():
    assert parse_one_v4(h("20 02 01 00")) == ConnAck(True, 0, {})


def test_v4_suback_return_codes_keep_their_values():
    assert parse_one_v4(h("90 04 0007 01 80")) == Ack(PacketType.SUBACK, 7, (1, 0x80))


def test_v4_puback_and_pingresp():
    assert parse_one_v4(h("40 02 0005")) == Ack(PacketType.PUBACK, 5, (0,))
    assert parse_one_v4(h("d0 00")) == Ack(PacketType.PINGRESP, 0, ())


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param("20 03 00 00 00", id="connack-with-property-length"),
        pytest.param("20 01 00", id="short-connack"),
        pytest.param("90 02 0001", id="suback-without-return-code"),
        pytest.param("40 03 0005 10", id="puback-with-reason-code"),
        pytest.param("e0 00", id="server-disconnect"),
        pytest.param("30 00", id="publish-without-topic"),
    ],
)
def test_v4_reader_refuses_mqtt5_shapes_and_truncation(packet):
    with pytest.raises(MqttProtocolError):
        PacketReader(protocol_level=MQTT_3_1_1).feed(h(packet))


V4_STREAM = b"".join(
    [
        h("20 02 00 00"),
        h("90 03 0001 01"),
        encode_publish_v4("carewatch/v1/gw/dev/json", b'{"kind":"panic"}', qos=1, packet_id=1),
        encode_publish_v4("carewatch/v1/gw/dev/json", bytes(300), qos=0),
        h("40 02 0009"),
        h("d0 00"),
    ]
)


def test_v4_reader_fed_the_stream_split_at_every_position_yields_the_same_packets():
    expected = PacketReader(protocol_level=MQTT_3_1_1).feed(V4_STREAM)
    assert [type(p).__name__ for p in expected] == ["ConnAck", "Ack", "Publish", "Publish", "Ack", "Ack"]
    for split in range(len(V4_STREAM) + 1):
        reader = PacketReader(protocol_level=MQTT_3_1_1)
        assert reader.feed(V4_STREAM[:split]) + reader.feed(V4_STREAM[split:]) == expected


# --- choosing the protocol (MqttSettings) ------------------------------------------------


def test_mqtt_url_chooses_protocol_3_1_1():
    settings = MqttSettings.from_url("mqtt://u:p@broker:1883?protocol=3.1.1")
    assert (settings.protocol, settings.protocol_level, settings.host, settings.port) == (
        "3.1.1",
        MQTT_3_1_1,
        "broker",
        1883,
    )


def test_mqtt_url_defaults_to_mqtt5():
    assert MqttSettings.from_url("mqtt://broker").protocol_level == 5
    assert MqttSettings.from_url("mqtt://broker?protocol=5").protocol_level == 5


@pytest.mark.parametrize(
    "url",
    ["mqtt://b?protocol=3.1", "mqtt://b?protocol=", "mqtt://b?proto=5", "mqtt://b?protocol=5&protocol=3.1.1"],
)
def test_mqtt_url_with_an_unknown_protocol_or_parameter_is_refused(url):
    with pytest.raises(ConfigError):
        MqttSettings.from_url(url)
