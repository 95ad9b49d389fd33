"""A broker for ``carewatch demo``: the real Mosquitto when installed, else amqtt in-process.

The demo must run on a laptop with nothing installed, and must not touch a
system broker. :func:`start_mosquitto` runs the repo's ``mosquitto.conf``
with only what a local demo has to change (a free loopback port, persistence
and log in a private directory, no device listener and so no password file
or ACL). Without Mosquitto, :class:`EmbeddedBroker` runs amqtt, a pure-Python
MQTT 3.1.1 broker; the ingest then connects with ``?protocol=3.1.1`` (the
URL :attr:`EmbeddedBroker.url` returns says so).

amqtt runs in a thread of its own with its own event loop rather than as a
subprocess: a thread dies with the process whatever ends it (Ctrl-C, an
exception, SIGKILL), so there is never an orphaned broker holding a port,
and it does not share the ingest's event loop, whose latency is measured.
Its sessions live in memory: a persistent session (clean session off)
survives the consumer's reconnects, not the demo process. amqtt has no
in-flight limit, so the 3.1.1 session bounds unacknowledged messages itself
(see :mod:`ingest.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ingest.errors import IngestError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

logger = logging.getLogger(__name__)

#: Where Debian puts the broker; ``/usr/sbin`` is often missing from a non-root PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")
#: The listener the repo conf gives the Carewatch services (loopback, anonymous).
SERVICE_LISTENER_PORT = 1883
#: Seconds to wait for a broker to accept connections.
START_TIMEOUT_S = 10.0
#: Seconds to wait for a graceful stop before killing.
STOP_TIMEOUT_S = 10.0


class EmbeddedBrokerError(IngestError):
    """A demo broker could not be configured, started or stopped.

    Attributes:
        detail: what the broker said (a log tail), when there is something.
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(f"{message}\n{detail}" if detail else message)
        self.detail = detail


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    """Tell whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- Mosquitto -----------------------------------------------------------------------


def find_mosquitto() -> str | None:
    """The ``mosquitto`` binary on PATH or in the sbin directories, or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    return shutil.which("mosquitto", path=path)


def render_demo_config(repo_conf: Path, workdir: Path, *, service_port: int) -> str:
    """The repo's Mosquitto configuration, changed only where a local demo must differ.

    The service listener moves to ``127.0.0.1:service_port``; the device
    listener block (with its password file and ACL) goes, since nothing
    outside this machine connects; ``persistence_location`` and the log go
    into ``workdir``; ``user`` and ``pid_file`` go, and when running as root
    ``user root`` is added (Mosquitto would otherwise switch to a user that
    cannot write the private ``workdir``). Limits, persistence and queueing
    stay as shipped, so the demo behaves like production.

    Raises:
        EmbeddedBrokerError: a line to rewrite is missing, or a path holds
            whitespace (Mosquitto cannot read such paths).
    """
    if any(ch.isspace() for ch in str(workdir)):
        raise EmbeddedBrokerError(f"demo directory {workdir} must contain no whitespace")
    out: list[str] = []
    seen = {"service listener": 0, "persistence_location": 0, "log_dest": 0}
    for line, key in _service_lines(repo_conf.read_text(encoding="utf-8").splitlines()):
        if key == "listener":
            seen["service listener"] += 1
            out.append(f"listener {service_port} 127.0.0.1")
        elif key == "persistence_location":
            seen[key] += 1
            out.append(f"persistence_location {workdir}/")
        elif key == "log_dest":
            seen[key] += 1
            if seen[key] == 1:
                out.append(f"log_dest file {workdir / 'mosquitto.log'}")
        elif key not in {"user", "pid_file"}:
            out.append(line)
    missing = [name for name, count in seen.items() if count == 0]
    if missing or seen["service listener"] != 1:
        raise EmbeddedBrokerError(
            f"{repo_conf} cannot be turned into a demo config: lacks {missing or 'one'}"
        )
    if os.geteuid() == 0:
        out[:0] = ["# demo: stay root, so the broker can write its private directory", "user root"]
    return "\n".join(out) + "\n"


def _service_lines(lines: list[str]) -> Iterator[tuple[str, str]]:
    """Each line with its directive, minus the settings of every listener but the service one."""
    in_other_listener = False
    for line in lines:
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key == "listener":
            in_other_listener = words[1:2] != [str(SERVICE_LISTENER_PORT)]
        if not (in_other_listener and key):
            yield line, key


@dataclass
class MosquittoBroker:
    """A Mosquitto process started by :func:`start_mosquitto`; stop it with :meth:`stop`.

    Attributes:
        port: the loopback service listener (anonymous).
        workdir: config, log and persistence file.
        process: the broker process.
        owns_workdir: remove ``workdir`` on stop (it was a temporary directory).
    """

    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    owns_workdir: bool = False

    @property
    def url(self) -> str:
        """The MQTT URL the ingest connects to (MQTT 5)."""
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its persistence file), SIGKILL after ``STOP_TIMEOUT_S``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_mosquitto(
    repo_conf: Path, workdir: Path | None = None, *, binary: str | None = None
) -> MosquittoBroker:
    """Start Mosquitto from the demo variant of ``repo_conf`` (see :func:`render_demo_config`).

    The broker runs in its own session (``start_new_session``), so a Ctrl-C
    reaches only the demo, which then stops the broker in order (SIGTERM,
    persistence saved) instead of both racing to exit.

    Args:
        repo_conf: the repo's ``mosquitto.conf``.
        workdir: config, log and persistence; a temporary directory
            (removed on stop) when None.
        binary: the ``mosquitto`` executable; :func:`find_mosquitto` when None.

    Raises:
        EmbeddedBrokerError: no binary, a config that cannot be adapted, or a
            broker that exits or does not accept connections in time.
    """
    binary = binary or find_mosquitto()
    if binary is None:
        raise EmbeddedBrokerError("mosquitto not found (install the Debian package `mosquitto`)")
    owns_workdir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="carewatch-demo-mqtt-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf_file = workdir / "mosquitto.conf"
    conf_file.write_text(render_demo_config(repo_conf, workdir, service_port=port), encoding="utf-8")
    stderr_file = workdir / "mosquitto.stderr"
    with stderr_file.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our binary, our config
            [binary, "-c", str(conf_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    broker = MosquittoBroker(port, workdir, process, owns_workdir)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            detail = _tail(workdir / "mosquitto.log") + _tail(stderr_file)
            broker.stop()
            raise EmbeddedBrokerError(f"mosquitto did not start on 127.0.0.1:{port}", detail=detail)
        time.sleep(0.05)
    return broker


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) + "\n"
    return ""


# -- amqtt ---------------------------------------------------------------------------


def amqtt_config(port: int) -> dict[str, Any]:
    """Configure amqtt 0.12 like to the repo's service listener.

    One TCP listener on loopback, anonymous access (like Mosquitto's 1883
    listener), and no other plugin: amqtt's default packet and event
    loggers would log topics per message, and ``$SYS`` is not needed.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@dataclass
class EmbeddedBroker:
    """amqtt in a background thread, serving MQTT 3.1.1 on a loopback port.

    Use as a context manager (``with`` or ``async with``), or call
    :meth:`start` and :meth:`stop`.

    Attributes:
        port: the port to serve; a free one when 0.
    """

    port: int = 0
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event | None = field(default=None, init=False, repr=False)
    _error: BaseException | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The MQTT URL the ingest connects to: 3.1.1, which is all amqtt speaks."""
        return f"mqtt://127.0.0.1:{self.port}?protocol=3.1.1"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start serving; return :attr:`url`.

        Raises:
            EmbeddedBrokerError: amqtt is not installed (``pip install
                'carewatch[demo]'``), or did not start in time.
        """
        try:
            broker_module = importlib.import_module("amqtt.broker")
        except ImportError as exc:
            raise EmbeddedBrokerError(
                "the embedded broker needs amqtt: pip install 'carewatch[demo]'"
            ) from exc
        if self._thread is not None:
            raise EmbeddedBrokerError("the embedded broker is already started")
        self.port = self.port or free_port()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(broker_module, ready), name="carewatch-embedded-broker", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise EmbeddedBrokerError(
                f"amqtt did not start on 127.0.0.1:{self.port}: {self._error or 'timed out'}"
            )
        return self.url

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Shut amqtt down and join its thread (a daemon: it dies with the process anyway)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended between the check and the call
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout_s)
        # amqtt 0.12 leaves the sockets of connections that died or never sent
        # CONNECT unclosed when it shuts down; their ResourceWarnings would
        # otherwise fire at some later garbage collection, far from the cause.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        if thread.is_alive():
            logger.warning(
                "embedded broker did not stop in %.0f s", timeout_s, extra={"event": "broker_stop_slow"}
            )
        self._thread = self._loop = self._stopping = None

    def _serve(self, broker_module: Any, ready: threading.Event) -> None:  # noqa: ANN401 - amqtt is untyped
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            broker = broker_module.Broker(amqtt_config(self.port))
            await broker.start()
            ready.set()
            try:
                await self._stopping.wait()
            finally:
                await broker.shutdown()

        try:
            asyncio.run(serve())
        except Exception as exc:  # reported to start(), which raises it  # noqa: BLE001
            self._error = exc
            ready.set()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


@contextlib.contextmanager
def demo_broker(repo_conf: Path) -> Iterator[str]:
    """Yield the MQTT URL of a demo broker: Mosquitto when installed, else amqtt.

    Raises:
        EmbeddedBrokerError: neither could be started.
    """
    binary = find_mosquitto()
    if binary is not None and repo_conf.is_file():
        with start_mosquitto(repo_conf, binary=binary) as mosquitto:
            yield mosquitto.url
        return
    logger.info("mosquitto not found; using the embedded amqtt broker (MQTT 3.1.1)")
    with EmbeddedBroker() as embedded:
        yield embedded.url
