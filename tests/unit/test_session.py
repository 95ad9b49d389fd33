"""MqttSession driven through every transition against a scripted peer (tests/support/scripted_peer.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ingest import wire
from ingest.errors import (
    MqttConnectError,
    MqttDisconnectError,
    MqttError,
    MqttProtocolError,
    MqttRedeliveryError,
    SubscribeError,
)
from ingest.session import MqttSession, State
from tests.support.scripted_peer import PeerConnection, ScriptedPeer

REPO = Path(__file__).resolve().parents[2]
PUBLISH, PUBACK, DISCONNECT = wire.PacketType.PUBLISH, wire.PacketType.PUBACK, wire.PacketType.DISCONNECT

Received = list[wire.Publish]


def ignore(session: MqttSession, packet: wire.Publish) -> None:
    """A publish handler for tests that receive nothing."""


def run(scenario: Callable[[ScriptedPeer], Awaitable[None]]) -> None:
    async def main() -> None:
        async with ScriptedPeer() as peer:
            await scenario(peer)

    asyncio.run(main())


async def connect(
    peer: ScriptedPeer,
    *,
    on_publish: Callable[[MqttSession, wire.Publish], None] | None = None,
    protocol_level: int = wire.MQTT_5,
    connack_properties: bytes = b"",
    on_callback_failure: Callable[[str], None] | None = None,
    redeliver_after_s: float = 60.0,
) -> tuple[MqttSession, PeerConnection, Received]:
    received: Received = []

    def keep(session: MqttSession, packet: wire.Publish) -> None:
        received.append(packet)

    opening = asyncio.create_task(
        MqttSession.open(
            host="127.0.0.1",
            port=peer.port,
            options=wire.ConnectOptions(client_id="cw", keepalive_s=0, protocol_level=protocol_level),
            on_publish=on_publish or keep,
            on_callback_failure=on_callback_failure,
            redeliver_after_s=redeliver_after_s,
            timeout_s=5,
        )
    )
    connection = await peer.accept()
    if protocol_level == wire.MQTT_5:
        await connection.handshake(properties=connack_properties)
    else:
        await connection.expect(wire.PacketType.CONNECT)
        connection.send(b"\x20\x02\x00\x00")
    return await opening, connection, received


def publish(topic: str, packet_id: int, payload: bytes = b"{}", *, qos: int = 1) -> bytes:
    return wire.encode_publish(topic, payload, qos=qos, packet_id=packet_id)


async def closed_with(session: MqttSession) -> BaseException | None:
    async with asyncio.timeout(5):
        return await session.closed


# --- CONNECT and CONNACK ----------------------------------------------------------------------


def test_connect_announces_maximum_packet_size_and_the_states_run_in_order():
    async def scenario(peer: ScriptedPeer) -> None:
        opening = asyncio.create_task(
            MqttSession.open(
                host="127.0.0.1",
                port=peer.port,
                options=wire.ConnectOptions(client_id="cw", keepalive_s=0),
                on_publish=ignore,
            )
        )
        connection = await peer.accept()
        connect = await connection.expect(wire.PacketType.CONNECT)
        assert b"\x27" + wire.MAX_PACKET_SIZE.to_bytes(4) in connect.body
        connection.send(b"\x20\x03\x00\x00\x00")
        session = await opening
        assert session.state is State.CONNECTED
        closing = asyncio.create_task(session.close())
        frames = await connection.closed_by_client()
        assert [f.kind for f in frames] == [DISCONNECT]
        await closing
        assert session.state is State.CLOSED

    run(scenario)


def test_maximum_packet_size_is_never_below_what_the_shipped_broker_accepts_from_gateways():
    # The broker may drop a message for a client whose Maximum Packet Size it
    # exceeds; that message was already acknowledged to the gateway.
    conf = (REPO / "mosquitto.conf").read_text()
    broker_limit = int(re.search(r"^max_packet_size (\d+)$", conf, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert broker_limit <= wire.MAX_PACKET_SIZE


def test_a_packet_above_our_maximum_is_refused_as_too_large():
    with pytest.raises(MqttProtocolError) as caught:
        wire.PacketReader(1000).feed(b"\x30" + wire.encode_varint(1001))
    assert caught.value.reason_code == 0x95


@pytest.mark.parametrize("code", [0x86, 0x87, 0x8A, 0x9F])
def test_a_refused_connack_raises_with_its_reason_code(code: int):
    async def scenario(peer: ScriptedPeer) -> None:
        opening = asyncio.create_task(
            MqttSession.open(
                host="127.0.0.1",
                port=peer.port,
                options=wire.ConnectOptions(client_id="cw"),
                on_publish=ignore,
            )
        )
        connection = await peer.accept()
        await connection.handshake(reason_code=code)
        with pytest.raises(MqttConnectError) as caught:
            await opening
        assert caught.value.reason_code == code

    run(scenario)


def test_a_peer_that_never_answers_connect_times_out():
    async def scenario(peer: ScriptedPeer) -> None:
        opening = asyncio.create_task(
            MqttSession.open(
                host="127.0.0.1",
                port=peer.port,
                options=wire.ConnectOptions(client_id="cw"),
                on_publish=ignore,
                timeout_s=0.2,
            )
        )
        await peer.accept()
        with pytest.raises(MqttError, match="timed out"):
            await opening

    run(scenario)


# --- losing the session ------------------------------------------------------------------------


def test_a_server_disconnect_ends_the_session_with_its_reason_code():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        connection.send(wire.encode_disconnect(0x8E))
        cause = await closed_with(session)
        assert isinstance(cause, MqttDisconnectError)
        assert cause.reason_code == 0x8E
        assert session.state is State.CLOSED
        assert not session.is_open

    run(scenario)


def test_the_broker_closing_the_socket_ends_the_session():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        connection.close()
        await closed_with(session)
        assert session.state is State.CLOSED

    run(scenario)


def test_a_malformed_packet_gets_disconnect_0x81_then_the_connection_closes():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, received = await connect(peer)
        connection.send(b"\x30\xff\xff\xff\xff\x01")  # a variable byte integer of five bytes
        frames = await connection.closed_by_client()
        assert [(f.kind, f.body[:1]) for f in frames] == [(DISCONNECT, b"\x81")]
        cause = await closed_with(session)
        assert isinstance(cause, MqttProtocolError)
        assert received == []

    run(scenario)


def test_a_qos2_publish_is_refused_with_0x9b_and_never_acknowledged_or_handed_on():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, received = await connect(peer)
        connection.send(publish("carewatch/v1/gw/d/panic", 7, qos=2))
        frames = await connection.closed_by_client()
        assert [(f.kind, f.body[:1]) for f in frames] == [(DISCONNECT, b"\x9b")]
        assert received == []
        await closed_with(session)

    run(scenario)


def test_mqtt311_has_no_disconnect_reason_so_a_malformed_packet_just_closes():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer, protocol_level=wire.MQTT_3_1_1)
        connection.send(b"\xe0\x00")  # 3.1.1 brokers never send DISCONNECT
        assert await connection.closed_by_client() == []
        assert isinstance(await closed_with(session), MqttProtocolError)

    run(scenario)


# --- SUBSCRIBE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("granted", [0x01, 0x02])
def test_a_subscription_granted_at_least_qos1_succeeds(granted: int):
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        subscribing = asyncio.create_task(session.subscribe("carewatch/v1/#", qos=1))
        await connection.grant(granted)
        await subscribing
        assert session._pending == {}

    run(scenario)


@pytest.mark.parametrize("granted", [0x00, 0x80, 0x87])
def test_a_subscription_granted_below_qos1_or_refused_fails_loudly(
    granted: int, caplog: pytest.LogCaptureFixture
):
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        subscribing = asyncio.create_task(session.subscribe("carewatch/v1/#", qos=1))
        await connection.grant(granted)
        with pytest.raises(SubscribeError) as caught:
            await subscribing
        assert caught.value.reason_code == granted
        await session.close()

    with caplog.at_level(logging.ERROR, logger="ingest.session"):
        run(scenario)
    assert "refused or downgraded" in caplog.text


# --- inbound PUBLISH and the callback guard ----------------------------------------------------


def test_a_raising_callback_neither_stops_reading_nor_acknowledges_the_message(
    caplog: pytest.LogCaptureFixture,
):
    hooked: list[str] = []

    async def scenario(peer: ScriptedPeer) -> None:
        handled: list[int] = []

        def fragile(session: MqttSession, packet: wire.Publish) -> None:
            if packet.packet_id in {2, 3}:
                raise ValueError(f"secret payload {packet.payload!r}")
            if packet.packet_id == 4:
                raise KeyError(packet.topic)
            handled.append(packet.packet_id)

        session, connection, _ = await connect(peer, on_publish=fragile, on_callback_failure=hooked.append)
        connection.send(b"".join(publish("carewatch/v1/gw/d/hr", pid, b"top secret") for pid in range(1, 6)))
        async with asyncio.timeout(5):
            while len(handled) < 2:
                await asyncio.sleep(0.01)
        assert handled == [1, 5]
        assert session.is_open
        assert session.callback_failures == 3
        assert session.ack(handled)
        acked = [await connection.expect(PUBACK) for _ in handled]
        assert [frame.packet_id for frame in acked] == [1, 5]
        await session.close()
        assert [f.kind for f in await connection.closed_by_client()] == [DISCONNECT]  # no PUBACK 2, 3, 4

    with caplog.at_level(logging.ERROR, logger="ingest.callback_guard"):
        run(scenario)
    assert hooked == ["ValueError", "ValueError", "KeyError"]
    failures = [r for r in caplog.records if getattr(r, "event", "") == "mqtt_callback_failed"]
    assert [r.getMessage().split()[3] for r in failures] == ["ValueError", "KeyError"]  # once per kind
    assert "secret" not in caplog.text


def test_after_a_callback_failure_the_session_ends_normally_so_the_broker_redelivers():
    async def scenario(peer: ScriptedPeer) -> None:
        def fragile(session: MqttSession, packet: wire.Publish) -> None:
            if packet.packet_id == 1:
                raise ValueError
            session.ack([packet.packet_id])

        session, connection, _ = await connect(peer, on_publish=fragile, redeliver_after_s=0.3)
        connection.send(publish("t", 1) + publish("t", 2))
        frames = await connection.closed_by_client()
        # The good message's PUBACK goes out first, then a normal DISCONNECT (session kept).
        assert [(f.kind, f.body) for f in frames] == [(PUBACK, b"\x00\x02"), (DISCONNECT, b"")]
        cause = await closed_with(session)
        assert isinstance(cause, MqttRedeliveryError)
        assert cause.failed_messages == 1

    run(scenario)


def test_a_raising_failure_hook_is_contained_too():
    def boom(kind: str) -> None:
        raise RuntimeError(kind)

    async def scenario(peer: ScriptedPeer) -> None:
        def fragile(session: MqttSession, packet: wire.Publish) -> None:
            raise ValueError

        session, connection, _ = await connect(peer, on_publish=fragile, on_callback_failure=boom)
        connection.send(publish("t", 1))
        async with asyncio.timeout(5):
            while session.callback_failures < 1:
                await asyncio.sleep(0.01)
        assert session.is_open
        await session.close()

    run(scenario)


# --- outbound PUBLISH --------------------------------------------------------------------------


def test_70000_timed_out_publishes_do_not_exhaust_the_packet_id_space():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        drain = asyncio.create_task(connection.closed_by_client(timeout_s=60))  # reads, never acks

        async def one() -> None:
            with pytest.raises(TimeoutError):
                await session.publish("carewatch/v1/alerts/a", b"{}", timeout_s=0.05)

        for _ in range(14):
            await asyncio.gather(*(one() for _ in range(5_000)))
        assert session._pending == {}
        drain.cancel()
        # The id space is whole again: the next publish gets an id and its PUBACK completes it.
        publishing = asyncio.create_task(session.publish("carewatch/v1/alerts/a", b"{}", timeout_s=5))
        await asyncio.sleep(0.05)
        frames = [f for f in await _frames_until(connection, PUBLISH) if f.kind == PUBLISH]
        connection.send(wire.encode_pubacks([frames[-1].packet_id]))
        await publishing
        assert session._pending == {}
        await session.close()

    run(scenario)


async def _frames_until(connection: PeerConnection, kind: int) -> list[wire.Packet | object]:
    frames = []
    while True:
        frame = await connection.read_frame()
        assert frame is not None
        frames.append(frame)
        if frame.kind == kind:
            return frames


def test_a_publish_on_a_lost_connection_fails_and_frees_its_id():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        publishing = asyncio.create_task(session.publish("t", b"{}", timeout_s=5))
        await connection.expect(PUBLISH)
        connection.close()
        with pytest.raises(MqttError):
            await publishing
        assert session._pending == {}

    run(scenario)


def test_a_refused_puback_raises():
    async def scenario(peer: ScriptedPeer) -> None:
        session, connection, _ = await connect(peer)
        publishing = asyncio.create_task(session.publish("t", b"{}", timeout_s=5))
        frame = await connection.expect(PUBLISH)
        connection.send(b"\x40\x03" + frame.packet_id.to_bytes(2) + b"\x87")
        with pytest.raises(MqttError, match="0x87"):
            await publishing
        assert session._pending == {}
        await session.close()

    run(scenario)


def test_a_broker_that_stops_answering_pings_ends_the_session_by_keep_alive():
    async def scenario(peer: ScriptedPeer) -> None:
        opening = asyncio.create_task(
            MqttSession.open(
                host="127.0.0.1",
                port=peer.port,
                options=wire.ConnectOptions(client_id="cw", keepalive_s=1),
                on_publish=ignore,
            )
        )
        connection = await peer.accept()
        await connection.handshake()
        session = await opening
        pings = asyncio.create_task(connection.closed_by_client())  # reads PINGREQs, never answers
        cause = await closed_with(session)
        assert isinstance(cause, MqttError)
        assert "keep-alive" in str(cause)
        assert session.state is State.CLOSED
        frames = await pings
        assert {f.kind for f in frames} == {wire.PacketType.PINGREQ}

    run(scenario)


def test_a_server_keep_alive_in_connack_is_obeyed():
    async def scenario(peer: ScriptedPeer) -> None:
        # Server Keep Alive 1 s overrides our 0 (no keep-alive): pings start.
        session, connection, _ = await connect(peer, connack_properties=b"\x13\x00\x01")
        frame = await connection.read_frame(timeout_s=3)
        assert frame is not None
        assert frame.kind == wire.PacketType.PINGREQ
        await session.close()

    run(scenario)
