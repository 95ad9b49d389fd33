"""A scripted MQTT "broker" for unit tests of the session: a real socket, bytes chosen by the test.

The test accepts each connection, reads what the client sent (framed, not
interpreted) and answers with bytes built by ``ingest.wire`` encoders or by
hand, so every transition of :class:`ingest.session.MqttSession` can be
driven exactly, including the ones a real broker never makes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from ingest import wire


@dataclass(frozen=True)
class Frame:
    """One control packet from the client: its type, the low nibble of byte 1, its body."""

    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        """The packet id of a SUBSCRIBE, PUBLISH (QoS > 0) or PUBACK."""
        if self.kind == wire.PacketType.PUBLISH:
            topic_len = int.from_bytes(self.body[:2])
            return int.from_bytes(self.body[2 + topic_len : 4 + topic_len])
        return int.from_bytes(self.body[:2])


def connack(reason_code: int = 0, *, session_present: bool = False, properties: bytes = b"") -> bytes:
    """An MQTT 5 CONNACK."""
    body = bytes((int(session_present), reason_code)) + wire.encode_varint(len(properties)) + properties
    return b"\x20" + wire.encode_varint(len(body)) + body


def suback(packet_id: int, *codes: int) -> bytes:
    """An MQTT 5 SUBACK with no properties."""
    body = packet_id.to_bytes(2) + b"\x00" + bytes(codes)
    return b"\x90" + wire.encode_varint(len(body)) + body


class PeerConnection:
    """One accepted client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_frame(self, timeout_s: float = 5.0) -> Frame | None:
        """The next packet from the client; None once it closed the connection."""
        async with asyncio.timeout(timeout_s):
            try:
                first = await self.reader.readexactly(1)
                length, shift = 0, 0
                while True:
                    byte = (await self.reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await self.reader.readexactly(length)
            except asyncio.IncompleteReadError:
                return None
        return Frame(first[0] >> 4, first[0] & 0x0F, body)

    async def expect(self, kind: int, timeout_s: float = 5.0) -> Frame:
        """The next packet of ``kind``, skipping PINGREQs."""
        while True:
            frame = await self.read_frame(timeout_s)
            assert frame is not None, f"connection closed while waiting for packet type {kind}"
            if frame.kind != wire.PacketType.PINGREQ:
                assert frame.kind == kind, f"expected packet type {kind}, got {frame}"
                return frame

    async def handshake(self, *, reason_code: int = 0, properties: bytes = b"") -> Frame:
        """Read the CONNECT and answer with a CONNACK; return the CONNECT."""
        connect = await self.expect(wire.PacketType.CONNECT)
        self.send(connack(reason_code, properties=properties))
        return connect

    async def grant(self, *codes: int) -> Frame:
        """Read a SUBSCRIBE and answer with a SUBACK of ``codes``."""
        subscribe = await self.expect(wire.PacketType.SUBSCRIBE)
        self.send(suback(subscribe.packet_id, *codes))
        return subscribe

    def send(self, data: bytes) -> None:
        """Write raw bytes to the client."""
        self.writer.write(data)

    async def closed_by_client(self, timeout_s: float = 5.0) -> list[Frame]:
        """Every packet the client sends until it closes the connection."""
        frames: list[Frame] = []
        while (frame := await self.read_frame(timeout_s)) is not None:
            frames.append(frame)
        return frames

    def close(self) -> None:
        """Drop the connection from the broker side."""
        self.writer.close()


class ScriptedPeer:
    """A listening socket on 127.0.0.1; each accepted connection goes to :meth:`accept`."""

    def __init__(self) -> None:
        self._accepted: asyncio.Queue[PeerConnection] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._connections: list[PeerConnection] = []
        self.port = 0

    async def __aenter__(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        for connection in self._connections:
            connection.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = PeerConnection(reader, writer)
        self._connections.append(connection)
        await self._accepted.put(connection)

    async def accept(self, timeout_s: float = 5.0) -> PeerConnection:
        """The next client connection."""
        async with asyncio.timeout(timeout_s):
            return await self._accepted.get()
