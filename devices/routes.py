"""Routes: topic layouts other than ``carewatch/v1/...``, mapped to a codec and a gateway.

Some device software cannot be told where to publish. Zigbee2MQTT writes to
``zigbee2mqtt/<friendly name>``, OwnTracks to ``owntracks/<user>/<device>``.
Rather than a bridge that republishes (one more process that can lose a
panic), the ingest service subscribes to those layouts directly. A route
says which codec reads them, under which gateway's authority they arrive
(the registry checks devices against it, exactly as for
``carewatch/v1/{gateway}/...``), and where the device id is: the segments
matched by ``+``, joined with ``-``.

Written ``FILTER=FORMAT@GATEWAY``, e.g. ``zigbee2mqtt/+=z2m@home-hub-7`` or
``owntracks/+/+=owntracks@phones``. Broker ACLs must give the software that
publishes there write access to its own prefix only.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.errors import DecodeError, DevicesError, RejectReason
from devices.topics import RESERVED_GATEWAY_IDS, TOPIC_ROOT, TopicParts, is_valid_id


class RouteError(DevicesError):
    """A route specification is invalid.

    Attributes:
        spec: the specification as given.
        detail: what is wrong with it.
    """

    def __init__(self, spec: str, detail: str) -> None:
        super().__init__(f"route {spec!r}: {detail}")
        self.spec = spec
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Route:
    """One topic layout: its MQTT filter, the codec that reads it and the gateway it speaks for."""

    topic_filter: str
    codec: str
    gateway_id: str

    @property
    def _levels(self) -> list[str]:
        return self.topic_filter.split("/")

    def match(self, topic: str) -> TopicParts | None:
        """The identity ``topic`` carries under this route, or None when it does not match.

        Raises:
            DecodeError: ``bad_topic`` when it matches but the device id is not a valid id.
        """
        levels = topic.split("/")
        pattern = self._levels
        if len(levels) != len(pattern):
            return None
        wild: list[str] = []
        for want, got in zip(pattern, levels, strict=True):
            if want == "+":
                wild.append(got)
            elif want != got:
                return None
        device_id = "-".join(wild)
        if not is_valid_id(device_id):
            raise DecodeError(
                RejectReason.BAD_TOPIC, "device id from the route must match [A-Za-z0-9_-]{1,64}"
            )
        return TopicParts(self.gateway_id, device_id, self.codec)


def parse_route(spec: str, formats: frozenset[str] | set[str]) -> Route:
    """Read ``FILTER=FORMAT@GATEWAY``.

    Raises:
        RouteError: a malformed part, an unknown format, or a filter that
            overlaps the service's own topics.
    """
    topic_filter, eq, rest = spec.partition("=")
    codec, at, gateway_id = rest.partition("@")
    if not (eq and at and topic_filter and codec and gateway_id):
        raise RouteError(spec, "expected FILTER=FORMAT@GATEWAY, e.g. zigbee2mqtt/+=z2m@hub-1")
    levels = topic_filter.split("/")
    if "+" not in levels:
        raise RouteError(spec, "the filter needs a + level: it names the device")
    if any(("+" in level or "#" in level) and level != "+" for level in levels) or "#" in levels:
        raise RouteError(spec, "only whole + levels are allowed (no #: every device must be named)")
    if topic_filter.startswith(("$", TOPIC_ROOT)):
        raise RouteError(spec, f"the filter may not cover $SYS or {TOPIC_ROOT}/")
    if codec not in formats:
        raise RouteError(spec, f"unknown format {codec!r}; one of {', '.join(sorted(formats))}")
    if not is_valid_id(gateway_id) or gateway_id in RESERVED_GATEWAY_IDS:
        raise RouteError(spec, "the gateway must match [A-Za-z0-9_-]{1,64} and not be reserved")
    return Route(topic_filter, codec, gateway_id)
