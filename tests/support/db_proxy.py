"""A TCP proxy in front of PostgreSQL that can make the database stall or go down on demand.

Used by the database-outage test and ``bench/db_outage.py``: the service is
given the proxy's port in its DSN, and the test decides what the database
looks like from the service's side.

* :meth:`DbProxy.stall`: every connection stays open but no byte moves in
  either direction (the proxy stops reading, so TCP flow control holds both
  ends back), and new connections are accepted and then held the same way.
  This is a hung database: queries neither answer nor fail.
* :meth:`DbProxy.drop`: every connection is closed and the port refuses new
  ones (the listening socket is closed). This is a database that is down.
* :meth:`DbProxy.restore`: back to forwarding, on the same port.

The proxy runs its own asyncio loop in a daemon thread, so synchronous tests
and benchmark drivers can call it directly; every call returns once the
change has taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

#: Bytes read per chunk; at most one chunk per direction is held during a stall.
_CHUNK = 65_536


class DbProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int, *, listen_port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = listen_port
        self.state = "stopped"
        self.connections_total = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="db-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control (any thread) ---------------------------------------------

    def start(self) -> DbProxy:
        """Listen and forward; returns self (``port`` is then the listening port)."""
        self._thread.start()
        self._call(self._start())
        return self

    def stall(self) -> None:
        """Hold every byte in both directions; keep (and accept) connections."""
        self._call(self._set_flowing(flowing=False))
        self.state = "stalled"

    def drop(self) -> None:
        """Close every connection and refuse new ones."""
        self._call(self._drop())
        self.state = "down"

    def restore(self) -> None:
        """Forward again (after a stall, the held bytes go first; after a drop, listen again)."""
        self._call(self._restore())
        self.state = "forwarding"

    def stop(self) -> None:
        """Close everything and end the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._call(self._drop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        self.state = "stopped"

    @property
    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._writers) // 2

    def __enter__(self) -> DbProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inside the proxy's loop ------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None], timeout_s: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.state = "forwarding"

    async def _set_flowing(self, *, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _drop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _restore(self) -> None:
        await self._set_flowing(flowing=True)
        if self._server is None:
            await self._listen()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections_total += 1
        self._writers.add(client_w)
        try:
            await self._flowing.wait()  # a stalled database does not even answer the startup packet
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except (OSError, asyncio.CancelledError):
            self._writers.discard(client_w)
            client_w.transport.abort()
            return
        self._writers.add(server_w)
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer, (client_w, server_w)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for end in pair:  # one side gone: close both, as a real connection would
                self._writers.discard(end)
                end.transport.abort()
