import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    ALERTS_PREFIX,
    SUBSCRIPTION,
    DecodeError,
    RejectReason,
    TopicParts,
    format_topic,
    is_outbound,
    is_valid_id,
    parse_topic,
)

ID_ALPHABET = string.ascii_letters + string.digits + "_-"
valid_ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
channels = st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=32)
HYPOTHESIS = settings(database=None, deadline=None)


def _parse_or_reason(topic: str) -> TopicParts | RejectReason:
    try:
        return parse_topic(topic)
    except DecodeError as exc:
        return exc.reason


def _bad_topic_reason(topic: str) -> RejectReason:
    with pytest.raises(DecodeError) as info:
        parse_topic(topic)
    return info.value.reason


def test_well_formed_topic_parses_into_gateway_device_and_channel():
    assert parse_topic("carewatch/v1/gw-1/dev_2/json") == TopicParts("gw-1", "dev_2", "json")


def test_subscription_covers_the_whole_v1_tree():
    assert SUBSCRIPTION == "carewatch/v1/#"


def test_id_of_exactly_64_characters_is_accepted():
    long_id = "a" * 64
    assert parse_topic(f"carewatch/v1/{long_id}/{long_id}/json").device_id == long_id


@pytest.mark.parametrize("value", ["a", "Z", "0", "_", "-", "Gw_01-x"])
def test_ids_from_the_allowed_alphabet_are_valid(value):
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 65,
        "a+b",
        "a#b",
        "a/b",
        "a b",
        "a.b",
        "caf\u00e9",
        "abc\n",
        "\u0661\u0662",
    ],
)
def test_ids_outside_the_allowed_alphabet_or_length_are_invalid(value):
    assert not is_valid_id(value)


@pytest.mark.parametrize(
    "topic",
    [
        "carewatch/v1/gw/dev",
        "carewatch/v1/gw/dev/json/extra",
        "carewatch/v1/gw/dev/json/",
        "/carewatch/v1/gw/dev/json",
        "carewatch/v2/gw/dev/json",
        "Carewatch/v1/gw/dev/json",
        "other/v1/gw/dev/json",
        "",
    ],
)
def test_topic_with_wrong_shape_or_root_is_bad_topic(topic):
    assert _bad_topic_reason(topic) is RejectReason.BAD_TOPIC


@pytest.mark.parametrize("gateway_id", ["", "g+", "#", "g w", "g" * 65, "g\u00e9"])
def test_topic_with_invalid_gateway_id_is_bad_topic(gateway_id):
    assert _bad_topic_reason(f"carewatch/v1/{gateway_id}/dev/json") is RejectReason.BAD_TOPIC


@pytest.mark.parametrize("device_id", ["", "d+", "#", "d w", "d" * 65, "d\u00e9"])
def test_topic_with_invalid_device_id_is_bad_topic(device_id):
    assert _bad_topic_reason(f"carewatch/v1/gw/{device_id}/json") is RejectReason.BAD_TOPIC


@pytest.mark.parametrize("channel", ["", "+", "#", "JSON", "js on", "c" * 33])
def test_topic_with_invalid_channel_is_bad_topic(channel):
    assert _bad_topic_reason(f"carewatch/v1/gw/dev/{channel}") is RejectReason.BAD_TOPIC


def test_reserved_alerts_gateway_id_is_bad_topic():
    assert _bad_topic_reason("carewatch/v1/alerts/dev/json") is RejectReason.BAD_TOPIC


def test_bad_topic_detail_names_the_offending_part():
    with pytest.raises(DecodeError) as info:
        parse_topic("carewatch/v1/gw/d+v/json")
    assert "device id" in info.value.detail


def test_alert_stream_topics_are_outbound():
    assert is_outbound(f"{ALERTS_PREFIX}resident-7/panic")


def test_alerts_prefix_is_the_alerts_subtree_of_v1():
    assert ALERTS_PREFIX == "carewatch/v1/alerts/"


@pytest.mark.parametrize(
    "topic",
    [
        "carewatch/v1/gw/dev/json",
        "carewatch/v1/alertsX/dev/json",
        "carewatch/v1/alerts",
        "carewatch/v2/alerts/x",
        "x/carewatch/v1/alerts/x",
    ],
)
def test_device_and_look_alike_topics_are_not_outbound(topic):
    assert not is_outbound(topic)


def test_format_topic_builds_the_documented_layout():
    assert format_topic("gw", "dev", "json") == "carewatch/v1/gw/dev/json"


@pytest.mark.parametrize(("gateway_id", "device_id"), [("g/x", "dev"), ("gw", "d+"), ("", "dev")])
def test_format_topic_refuses_invalid_ids(gateway_id, device_id):
    with pytest.raises(ValueError, match="invalid id"):
        format_topic(gateway_id, device_id, "json")


def test_format_topic_refuses_reserved_alerts_gateway():
    with pytest.raises(ValueError, match="alerts"):
        format_topic("alerts", "dev", "json")


@HYPOTHESIS
@given(gateway_id=valid_ids.filter(lambda g: g != "alerts"), device_id=valid_ids, channel=channels)
def test_any_valid_ids_round_trip_through_format_and_parse(gateway_id, device_id, channel):
    topic = format_topic(gateway_id, device_id, channel)
    assert parse_topic(topic) == TopicParts(gateway_id, device_id, channel)


@HYPOTHESIS
@given(value=st.text(max_size=80))
def test_is_valid_id_agrees_with_the_documented_pattern(value):
    expected = 1 <= len(value) <= 64 and all(char in ID_ALPHABET for char in value)
    assert is_valid_id(value) is expected


@HYPOTHESIS
@given(topic=st.text(max_size=120))
def test_parse_topic_either_parses_losslessly_or_raises_bad_topic(topic):
    outcome = _parse_or_reason(topic)
    if isinstance(outcome, TopicParts):
        assert topic == f"carewatch/v1/{outcome.gateway_id}/{outcome.device_id}/{outcome.channel}"
    else:
        assert outcome is RejectReason.BAD_TOPIC
