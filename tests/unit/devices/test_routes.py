"""Routes: other topic layouts mapped to a codec and a gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from devices import DecodeError, RejectReason, TopicParts
from devices.codecs import CODECS
from devices.registry import Device, Registry
from devices.routes import Route, RouteError, parse_route
from ingest.envelope import Envelope
from ingest.pipeline import Pipeline, PipelineSettings

FORMATS = frozenset(CODECS)


def test_a_route_spec_gives_filter_format_and_gateway():
    assert parse_route("zigbee2mqtt/+=z2m@hub-1", FORMATS) == Route("zigbee2mqtt/+", "z2m", "hub-1")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("zigbee2mqtt/+", "expected FILTER=FORMAT@GATEWAY"),
        ("zigbee2mqtt/+=z2m", "expected FILTER=FORMAT@GATEWAY"),
        ("zigbee2mqtt/sos=z2m@hub", "needs a + level"),
        ("zigbee2mqtt/#=z2m@hub", "needs a + level"),
        ("zigbee2mqtt/+/#=z2m@hub", "no #"),
        ("zigbee2mqtt/+/dev+=z2m@hub", "only whole + levels"),
        ("carewatch/v1/+=json@hub", "may not cover"),
        ("$SYS/+=json@hub", "may not cover"),
        ("zigbee2mqtt/+=zigbee@hub", "unknown format 'zigbee'"),
        ("zigbee2mqtt/+=z2m@alerts", "gateway must match"),
        ("zigbee2mqtt/+=z2m@hub/1", "gateway must match"),
    ],
)
def test_a_bad_route_is_refused_with_the_reason(spec, fragment):
    with pytest.raises(RouteError) as caught:
        parse_route(spec, FORMATS)
    assert fragment in caught.value.detail


def test_the_plus_levels_name_the_device():
    owntracks = Route("owntracks/+/+", "owntracks", "phones")
    assert owntracks.match("owntracks/anna/iphone") == TopicParts("phones", "anna-iphone", "owntracks")
    assert owntracks.match("owntracks/anna") is None
    assert owntracks.match("owntracks/anna/iphone/event") is None
    assert owntracks.match("other/anna/iphone") is None


def test_a_matching_topic_with_an_unusable_device_name_is_a_bad_topic():
    with pytest.raises(DecodeError) as caught:
        Route("zigbee2mqtt/+", "z2m", "hub").match("zigbee2mqtt/living room button")
    assert caught.value.reason is RejectReason.BAD_TOPIC


def envelope(topic: str, payload: dict[str, object]) -> Envelope:
    return Envelope(
        topic=topic,
        payload=json.dumps(payload).encode(),
        packet_id=1,
        dup=False,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        received_mono=0.0,
    )


def test_the_pipeline_reads_a_routed_zigbee2mqtt_button_under_its_gateway():
    settings = PipelineSettings(routes=(Route("zigbee2mqtt/+", "z2m", "hub-1"),))
    rows = Pipeline(settings).process(envelope("zigbee2mqtt/sos-1", {"action": "emergency"}))
    assert rows.quarantine == []
    assert [(e.device_id, e.kind.value) for e in rows.decoded] == [("sos-1", "panic")]
    assert rows.gateway_id == "hub-1"
    assert rows.events[0][2] == "hub-1"


def test_routed_devices_are_checked_against_the_registry_like_any_other():
    settings = PipelineSettings(routes=(Route("zigbee2mqtt/+", "z2m", "hub-1"),))
    registry = Registry([Device(device_id="sos-1", gateway_id="hub-2", profile="sensor")])
    rows = Pipeline(settings, registry).process(envelope("zigbee2mqtt/sos-1", {"action": "emergency"}))
    assert rows.quarantine[0][4] == "gateway_mismatch"
    assert [e.kind.value for e, _ in rows.unverified] == ["panic"]


def test_without_a_route_a_foreign_topic_is_a_bad_topic():
    rows = Pipeline(PipelineSettings()).process(envelope("zigbee2mqtt/sos-1", {"action": "emergency"}))
    assert rows.quarantine[0][4] == "bad_topic"
