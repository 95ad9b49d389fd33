"""One MQTT 5 (or 3.1.1) connection on asyncio, with acknowledgement left to the caller.

The broker forgets a QoS 1 message when we send its PUBACK, so this class
never acknowledges anything by itself: the ingest service calls
:meth:`MqttSession.ack` only after the database COMMIT of everything the
message carried. Inbound PUBLISH packets are handed to a synchronous
callback straight from ``data_received`` (no queue in between) so a read of
hundreds of packets costs one pass of the parser.

The session bounds unacknowledged QoS 1 messages itself, on both protocols:
once ``receive_maximum`` of them have been handed on and not acknowledged it
stops reading the socket and stops handing on what it has already read, and
TCP flow control holds the broker back, until :meth:`MqttSession.ack` brings
the count down. The handler therefore never holds more than
``receive_maximum`` unacknowledged messages; the packets of the one socket
read that crossed the bound wait, parsed, in the backlog.

* MQTT 3.1.1 (``ConnectOptions.protocol_level = 4``) has no Receive Maximum:
  the broker sends as many as its own limit allows (Mosquitto's
  ``max_inflight_messages``; amqtt has none).
* MQTT 5 has one, and we send it in CONNECT, but Mosquitto 2.0.11 does not
  always honour it: when acknowledgements stop while it holds a queued
  backlog for the session (a database that fails again while the service is
  still catching up), it sends the whole backlog, far beyond the Receive
  Maximum (measured: 3,000 unacknowledged messages with Receive Maximum 100,
  with paho-mqtt as the client too; 120,867 with 10,000 in
  ``bench/db_outage.py``). Without this bound every one of them would wait
  in memory for the database.

This costs one counter per QoS 1 message and one per acknowledgement batch.

The session is a small state machine (:class:`State`): CONNECTING until a
successful CONNACK, CONNECTED, CLOSING once we sent DISCONNECT, CLOSED when
the socket is gone. Every way out of CONNECTED ends in CLOSED with the
cause as the result of :attr:`MqttSession.closed` (an
:class:`~ingest.errors.MqttDisconnectError` carrying the broker's reason
code, a protocol error, a keep-alive timeout, or None for a plain close);
the owner decides from it how long to wait before reconnecting
(ingest/reasons.py, ingest/reconnect.py). The session never reconnects by
itself.

A malformed packet from the broker ends the session with an MQTT 5
DISCONNECT carrying the reason (0x81, or 0x9B for a QoS 2 PUBLISH, which we
never subscribe to: ingest/wire.py). An exception raised by the publish
callback never reaches the receive loop: the message stays unacknowledged,
the failure is counted and logged once per exception type, and reading
goes on; ``redeliver_after_s`` later the session ends itself normally, so
the broker redelivers that message on the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ingest import wire
from ingest.callback_guard import REDELIVER_AFTER_S, CallbackGuard, FailureHook
from ingest.errors import (
    MqttConnectError,
    MqttDisconnectError,
    MqttError,
    MqttProtocolError,
    MqttRedeliveryError,
    MqttTlsError,
    SubscribeError,
)

logger = logging.getLogger(__name__)

#: Receives each inbound PUBLISH with the session to acknowledge it on. It is
#: called before :meth:`MqttSession.open` returns when the broker has queued
#: messages for a persistent session, hence the session argument.
PublishHandler = Callable[["MqttSession", wire.Publish], None]

#: PUBLISH packets handed on per event-loop pass. One socket read can hold
#: hundreds; dispatching them all at once would hold the loop for tens of ms,
#: and every await of the life-safety lane (each a database round trip) would
#: wait behind it. Measured: this took the panic p99 from 160 ms to the figure
#: in the README.
DISPATCH_SLICE = 8

#: MQTT 5 reason codes at or above this are failures (2.4).
_FAILURE = 0x80


class State(enum.Enum):
    """Where a session is in its life; it only ever moves down this list."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


class MqttSession(asyncio.Protocol):
    """A connected MQTT 5 client session.

    Create it with :meth:`open`; it is closed when :attr:`closed` is done.
    """

    def __init__(
        self,
        options: wire.ConnectOptions,
        on_publish: PublishHandler,
        on_callback_failure: FailureHook | None = None,
        redeliver_after_s: float = REDELIVER_AFTER_S,
    ) -> None:
        self._options = options
        self.state = State.CONNECTING
        self._guard = CallbackGuard(on_callback_failure, self._end_for_redelivery, redeliver_after_s)
        self._v4 = options.protocol_level == wire.MQTT_3_1_1
        self._user_on_publish = on_publish
        # A 3.1.1 broker cannot be told our Maximum Packet Size, so its reader
        # keeps the codec's larger default rather than refusing what it sends.
        self._reader = wire.PacketReader(
            wire.V4_MAX_PACKET_BYTES if self._v4 else options.max_packet_size,
            protocol_level=options.protocol_level,
        )
        self._encode_publish = wire.encode_publish_v4 if self._v4 else wire.encode_publish
        self._encode_subscribe = wire.encode_subscribe_v4 if self._v4 else wire.encode_subscribe
        #: QoS 1 messages handed on and not yet acknowledged (module docstring).
        self._unacked = 0
        self._paused_by_flow = False
        loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[wire.ConnAck] = loop.create_future()
        self._pending: dict[int, asyncio.Future[wire.Ack]] = {}
        self._next_packet_id = 0
        self._last_rx = time.monotonic()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._send_quota: asyncio.Semaphore | None = None
        self._outbox: list[bytes] = []
        self._backlog: deque[wire.Packet] = deque()
        self._reading_paused_by_owner = False
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.session_present = False

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port: int,
        options: wire.ConnectOptions,
        on_publish: PublishHandler,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        on_callback_failure: FailureHook | None = None,
        redeliver_after_s: float = REDELIVER_AFTER_S,
    ) -> MqttSession:
        """Connect, send CONNECT and wait for a successful CONNACK.

        Raises:
            MqttConnectError: the broker refused us (bad credentials...).
            MqttTlsError: the TLS handshake failed (certificate, hostname).
            MqttError: the connection failed or timed out.
        """
        loop = asyncio.get_running_loop()
        session = cls(options, on_publish, on_callback_failure, redeliver_after_s)
        try:
            async with asyncio.timeout(timeout_s):
                await loop.create_connection(lambda: session, host, port, ssl=ssl_context)
                session._write(wire.encode_connect(options))
                connack = await asyncio.shield(session._connack)
        except ssl.SSLError as exc:
            session.abort()
            detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise MqttTlsError(f"TLS handshake with {host}:{port} failed: {detail}") from exc
        except (OSError, TimeoutError) as exc:
            session.abort()
            raise MqttError(f"cannot connect to {host}:{port}: {str(exc) or 'timed out'}") from exc
        if connack.reason_code >= _FAILURE:
            session.abort()
            raise MqttConnectError(connack.reason_code)
        session.state = State.CONNECTED
        session.session_present = connack.session_present
        keepalive = connack.properties.get(wire.Prop.SERVER_KEEP_ALIVE, options.keepalive_s)
        receive_maximum = connack.properties.get(wire.Prop.RECEIVE_MAXIMUM, 65_535)
        session._send_quota = asyncio.Semaphore(int(receive_maximum))
        session._keepalive_task = asyncio.create_task(
            session._keepalive(int(keepalive)),
            name=f"mqtt[{options.client_id}].keepalive",
        )
        return session

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP/TLS only
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Parse whatever arrived and dispatch each packet."""
        self._last_rx = time.monotonic()
        try:
            packets = self._reader.feed(data)
        except MqttProtocolError as exc:
            logger.exception(
                "mqtt protocol error from the broker; disconnecting (0x%02x)",
                exc.reason_code,
                extra={"event": "mqtt_protocol_error"},
            )
            self._fail(exc, disconnect_reason=exc.reason_code)
            return
        if not self._backlog and not self._paused_by_flow and len(packets) <= DISPATCH_SLICE:
            for index, packet in enumerate(packets):
                if self._paused_by_flow:  # at the bound: the rest waits for acknowledgements
                    self._backlog.extend(packets[index:])
                    return
                self._dispatch(packet)
            return
        if not self._backlog and self._transport is not None:
            # Finish this read a slice per loop pass; read no more meanwhile,
            # so arrival order and the memory bound both hold.
            self._transport.pause_reading()
            if not self._paused_by_flow:
                asyncio.get_running_loop().call_soon(self._dispatch_backlog)
        self._backlog.extend(packets)

    def _dispatch_backlog(self) -> None:
        backlog = self._backlog
        for _ in range(min(DISPATCH_SLICE, len(backlog))):
            if self._paused_by_flow:
                return  # at the bound: _release() carries on once acknowledgements come
            self._dispatch(backlog.popleft())
        if backlog:
            if not self._paused_by_flow:
                asyncio.get_running_loop().call_soon(self._dispatch_backlog)
        elif (
            self.is_open
            and not self._reading_paused_by_owner
            and not self._paused_by_flow
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._transport.resume_reading()

    def _dispatch(self, packet: wire.Packet) -> None:
        if not self.is_open:
            return  # never acknowledged: the broker redelivers it to the next session
        if isinstance(packet, wire.Publish):
            try:
                self._on_publish_bounded(packet)
            except Exception as exc:  # noqa: BLE001 - nothing may stop the receive loop
                self._guard.failed(packet, exc)
        elif isinstance(packet, wire.ConnAck):
            if not self._connack.done():
                self._connack.set_result(packet)
        else:
            self._on_ack(packet)

    def _end_for_redelivery(self) -> None:
        """End the session normally so the broker resends what the callback failed on."""
        if not self.is_open or self._transport is None:
            return
        logger.warning(
            "ending the mqtt session so the broker redelivers %d message(s) whose handler failed",
            self._guard.failures,
            extra={"event": "mqtt_redelivery"},
        )
        self.state = State.CLOSING
        self._flush_outbox()  # acknowledgements already queued still count
        self._transport.write(wire.DISCONNECT)
        self._transport.close()
        self.connection_lost(MqttRedeliveryError(self._guard.failures))

    def _on_publish_bounded(self, packet: wire.Publish) -> None:
        """Count what awaits acknowledgement; stop reading at the bound (module docstring)."""
        if packet.qos:
            self._unacked += 1
            if (
                self._unacked >= self._options.receive_maximum
                and not self._paused_by_flow
                and self._transport is not None
            ):
                self._paused_by_flow = True
                self._transport.pause_reading()
        self._user_on_publish(self, packet)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail everything that waits on this connection."""
        error = exc or MqttError("connection closed")
        waiters: list[asyncio.Future[Any]] = [self._connack, *self._pending.values()]
        for future in waiters:
            if not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved: a lost waiter is not an error here
        self._pending.clear()
        self.state = State.CLOSED
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        self._guard.cancel()
        if not self.closed.done():
            self.closed.set_result(exc)

    # -- client operations ----------------------------------------------

    @property
    def callback_failures(self) -> int:
        """Inbound messages whose callback raised (left unacknowledged)."""
        return self._guard.failures

    @property
    def is_open(self) -> bool:
        """Tell whether the connection is still up."""
        return not self.closed.done()

    async def subscribe(self, topic_filter: str, *, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe and wait for the SUBACK.

        Raises:
            SubscribeError: the broker refused the filter (ACL), or granted a
                lower QoS than asked: at QoS 0 it would not redeliver a
                message we failed to store, so that is a failure too.
        """
        packet_id, future = self._expect()
        try:
            self._write(self._encode_subscribe(packet_id, topic_filter, qos=qos))
            async with asyncio.timeout(timeout_s):
                suback = await future
        finally:
            self._pending.pop(packet_id, None)
        code = suback.reason_codes[0] if suback.reason_codes else _FAILURE
        if code >= _FAILURE or code < qos:
            logger.error(
                "subscription to %r refused or downgraded (0x%02x, asked QoS %d)",
                topic_filter,
                code,
                qos,
                extra={"event": "mqtt_subscribe_refused"},
            )
            raise SubscribeError(topic_filter, code)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        """Publish; at QoS 1, return only once the broker has acknowledged it.

        Raises:
            MqttError: the connection broke or the broker refused the message.
        """
        if qos == 0:
            self._write(self._encode_publish(topic, payload, qos=0, retain=retain))
            return
        assert self._send_quota is not None  # noqa: S101 - set by open()
        async with self._send_quota, asyncio.timeout(timeout_s):
            packet_id, future = self._expect()
            try:
                self._write(self._encode_publish(topic, payload, qos=qos, packet_id=packet_id, retain=retain))
                puback = await future
            finally:
                # A timed-out or failed publish must give its id back, or
                # 65,535 of them exhaust the id space for good.
                self._pending.pop(packet_id, None)
        # 0x10 "no matching subscribers" is a success for a publisher.
        if puback.reason_codes and puback.reason_codes[0] >= _FAILURE:
            raise MqttError(f"publish to {topic!r} refused (0x{puback.reason_codes[0]:02x})")

    def ack(self, packet_ids: list[int]) -> bool:
        """Acknowledge delivered QoS 1 messages; False if the connection is gone.

        A message we could not acknowledge is redelivered by the broker (with
        the DUP flag) once we reconnect, so losing the connection here costs a
        duplicate, never a message.
        """
        if not packet_ids:
            return True
        if not self.is_open or self._transport is None or self._transport.is_closing():
            return False
        self._write(wire.encode_pubacks(packet_ids))
        self._release(len(packet_ids))
        return True

    def _release(self, acknowledged: int) -> None:
        """Resume once acknowledgements bring us back under the bound (module docstring)."""
        self._unacked = max(0, self._unacked - acknowledged)
        if (
            self._paused_by_flow
            and self._unacked < self._options.receive_maximum
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._paused_by_flow = False
            self._last_rx = time.monotonic()  # the keep-alive clock restarts with reading
            if self._backlog:  # hand on what was read first; it resumes reading when done
                asyncio.get_running_loop().call_soon(self._dispatch_backlog)
            elif not self._reading_paused_by_owner:
                self._transport.resume_reading()

    def pause_reading(self) -> None:
        """Stop taking new messages (the broker keeps them for our session)."""
        self._reading_paused_by_owner = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Disconnect normally; the broker keeps the session for its expiry."""
        if self.is_open and self._transport is not None:
            self.state = State.CLOSING
            self._flush_outbox()
            self._transport.write(wire.DISCONNECT)
            self._transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.closed

    def abort(self) -> None:
        """Drop the connection at once (used on failures)."""
        if self._transport is not None:
            self._transport.abort()

    # -- internals ---------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Queue bytes for the socket; everything queued in one loop pass goes in one send.

        A transport write is a system call when its buffer is empty, so many
        concurrent publishes would otherwise cost one ``send()`` each.
        """
        if self._transport is None or self._transport.is_closing():
            raise MqttError("connection closed")
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append(data)

    def _flush_outbox(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _expect(self) -> tuple[int, asyncio.Future[wire.Ack]]:
        for _ in range(65_535):
            self._next_packet_id = self._next_packet_id % 65_535 + 1
            if self._next_packet_id not in self._pending:
                future: asyncio.Future[wire.Ack] = asyncio.get_running_loop().create_future()
                self._pending[self._next_packet_id] = future
                return self._next_packet_id, future
        raise MqttError("no free packet identifier")

    def _on_ack(self, packet: wire.Ack) -> None:
        if packet.kind == wire.PacketType.DISCONNECT:
            code = packet.reason_codes[0] if packet.reason_codes else 0
            # Logged by the owner, with the policy for this reason code.
            self._fail(MqttDisconnectError(code, packet.reason_string))
            return
        future = self._pending.pop(packet.packet_id, None)
        if future is not None and not future.done():
            future.set_result(packet)

    def _fail(self, exc: MqttError, *, disconnect_reason: int | None = None) -> None:
        """End the session at once with ``exc``; tell an MQTT 5 broker why if we know."""
        if self._transport is not None:
            if disconnect_reason is not None and not self._v4 and not self._transport.is_closing():
                self.state = State.CLOSING
                self._outbox.clear()
                self._transport.write(wire.encode_disconnect(disconnect_reason))
                self._transport.close()  # flushes the DISCONNECT, then closes
            else:
                self._transport.abort()
        self.connection_lost(exc)

    async def _keepalive(self, keepalive_s: int) -> None:
        """Ping at half the keep-alive; drop a connection that has gone quiet."""
        if keepalive_s <= 0:
            return
        interval = keepalive_s / 2
        while self.is_open:
            await asyncio.sleep(interval)
            # While 3.1.1 flow control holds reads, PINGRESPs wait unread in
            # the socket: silence then says nothing about the broker.
            if not self._paused_by_flow and time.monotonic() - self._last_rx > keepalive_s * 1.5:
                logger.warning("mqtt keep-alive timed out", extra={"event": "mqtt_keepalive_timeout"})
                self._fail(MqttError("keep-alive timed out"))
                return
            with contextlib.suppress(MqttError):
                self._write(wire.PINGREQ)
