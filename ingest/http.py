"""A tiny HTTP endpoint for ``/metrics``, ``/healthz`` and ``/readyz``.

Written on asyncio streams rather than prometheus_client's threaded server so
that readiness is read from the same event loop that owns the state, with no
locking, and so one port serves all three paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)


class StatusServer:
    """Serves metrics and health over HTTP/1.0-style one-shot responses."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ready: Callable[[], tuple[bool, str]],
        host: str,
        port: int,
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        assert self._server is not None  # noqa: S101 - after start()
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.split()
            path = parts[1].decode(errors="replace").split("?")[0] if len(parts) > 1 else "/"
            status, content_type, body = self._route(path)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            # Liveness: the loop answers. It reports connectivity but stays 200
            # through a broker or database outage, because restarting the
            # service cannot fix either, and a restart drops the messages held
            # unacknowledged in memory (the broker redelivers, but later).
            _, detail = self._ready()
            return "200 OK", "text/plain", b"ok " + detail.encode() + b"\n"
        if path == "/readyz":
            # Readiness: 503 while the broker or the database is unreachable,
            # so an orchestrator (and Prometheus' probe) can see and route it.
            ok, detail = self._ready()
            return (
                ("200 OK" if ok else "503 Service Unavailable"),
                "text/plain",
                detail.encode() + b"\n",
            )
        return "404 Not Found", "text/plain", b"not found\n"
