"""A real Mosquitto for tests, started from a test variant of the repo's ``mosquitto.conf``.

The test variant differs from the production file only where a test has to differ:

* the service listener (1883) and the device listener (1884) move to free ports on
  127.0.0.1;
* ``persistence_location``, ``password_file``, ``acl_file`` and the log go into
  the test's work directory;
* ``user`` and ``pid_file`` lines are dropped. When the tests run as root, a
  ``user root`` line is added, because otherwise Mosquitto would switch to the
  ``mosquitto`` user, which cannot write into pytest's private ``tmp_path``.

Everything else (limits, persistence, per-listener settings) stays as shipped.
Every line that is rewritten must exist in the repo file. If one is missing,
:class:`BrokerConfigError` is raised, so the tested broker cannot silently
drift from the production configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingest.embedded_broker import accepts, free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.tls import TlsFiles

#: Where Debian puts the broker; ``/usr/sbin`` is often missing from a non-root PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
#: The listener the repo conf gives the Carewatch services (loopback).
SERVICE_LISTENER_PORT = 1883
#: The listener the repo conf gives the device gateways.
DEVICE_LISTENER_PORT = 1884
#: Seconds to wait for the broker to accept connections.
START_TIMEOUT_S = 10.0
#: Seconds to wait for a graceful stop before killing.
STOP_TIMEOUT_S = 10.0
#: Lines of the broker log quoted in a start failure.
_LOG_TAIL_LINES = 30


class BrokerConfigError(ValueError):
    """The repo's ``mosquitto.conf`` lacks a line the test variant must rewrite."""


class BrokerStartError(RuntimeError):
    """Mosquitto did not start or did not accept connections in time."""


@dataclass(frozen=True)
class RunningBroker:
    """A Mosquitto process started by :func:`start_broker`.

    Attributes:
        service_port: the loopback service listener (anonymous, no ACL).
        device_port: the device-gateway listener (password file and ACL).
        workdir: holds the rendered config, password file, ACL, log and
            persistence file.
        process: the broker process.
        tls_port: the extra TLS listener (anonymous, loopback), if one was asked for.
    """

    service_port: int
    device_port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    tls_port: int | None = None

    @property
    def url(self) -> str:
        """The MQTT URL of the service listener."""
        return f"mqtt://127.0.0.1:{self.service_port}"

    @property
    def log_file(self) -> Path:
        """The broker's log file."""
        return self.workdir / "mosquitto.log"

    def stop(self) -> None:
        """Stop gracefully (SIGTERM; Mosquitto writes its persistence file), then wait.

        Falls back to SIGKILL if the broker has not exited after ``STOP_TIMEOUT_S``.
        """
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> RunningBroker:
        """Stop gracefully and start again on the same ports, config and persistence file."""
        self.stop()
        return _launch(self.workdir, self.service_port, self.device_port, self.tls_port)

    def kill(self) -> None:
        """Kill without warning (SIGKILL), as a crash would, and reap the process."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _checked_path(path: Path, what: str) -> str:
    text = str(path)
    if not text or any(ch.isspace() for ch in text):
        raise BrokerConfigError(f"{what} path {text!r} must be non-empty and contain no whitespace")
    return text


def render_test_config(
    repo_conf: Path,
    workdir: Path,
    *,
    service_port: int,
    device_port: int,
    passwd_file: Path,
    acl_file: Path,
) -> str:
    """Render the test variant of the repo's Mosquitto configuration.

    Rewrites only the two listener ports (both bound to 127.0.0.1),
    ``persistence_location``, ``password_file``, ``acl_file`` and the log
    destination. It drops ``user`` and ``pid_file`` lines, and adds
    ``user root`` when running as root (see the module docstring). Comments
    and every other line are kept as they are.

    Args:
        repo_conf: the production ``mosquitto.conf``.
        workdir: directory for persistence and the log.
        service_port: replaces the service listener's port 1883.
        device_port: replaces the device listener's port 1884.
        passwd_file: replaces every ``password_file`` path.
        acl_file: replaces every ``acl_file`` path.

    Returns:
        The configuration text.

    Raises:
        BrokerConfigError: if a line to rewrite is missing or ambiguous, if the
            repo conf has an active listener other than 1883 and 1884, or if a
            path contains whitespace (Mosquitto cannot read such paths).
    """
    listeners = {
        str(SERVICE_LISTENER_PORT): ("service listener", f"listener {service_port} 127.0.0.1"),
        str(DEVICE_LISTENER_PORT): ("device listener", f"listener {device_port} 127.0.0.1"),
    }
    replacements = {
        "persistence_location": f"persistence_location {_checked_path(workdir, 'workdir')}/",
        "password_file": f"password_file {_checked_path(passwd_file, 'password_file')}",
        "acl_file": f"acl_file {_checked_path(acl_file, 'acl_file')}",
        # Every log_dest goes; the first one's place gets the single test log file.
        "log_dest": f"log_dest file {_checked_path(workdir / 'mosquitto.log', 'log')}",
    }
    seen = dict.fromkeys([*(name for name, _ in listeners.values()), *replacements], 0)
    out: list[str] = []
    for number, line in enumerate(repo_conf.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key == "listener":
            port = words[1] if len(words) > 1 else ""
            if port not in listeners:
                raise BrokerConfigError(
                    f"{repo_conf}:{number}: unexpected active listener {line.strip()!r}; "
                    "the test variant knows only ports 1883 and 1884"
                )
            name, replacement = listeners[port]
            seen[name] += 1
            out.append(replacement)
        elif key in replacements:
            seen[key] += 1
            if key != "log_dest" or seen[key] == 1:
                out.append(replacements[key])
        elif key not in {"user", "pid_file"}:
            out.append(line)

    once = ("service listener", "device listener", "persistence_location")
    problems = [f"{name} appears {seen[name]} times (expected once)" for name in once if seen[name] != 1]
    problems += [f"no active {name} line" for name in seen if name not in once and seen[name] == 0]
    if problems:
        raise BrokerConfigError(f"{repo_conf} cannot be turned into a test config: " + "; ".join(problems))

    if os.geteuid() == 0:
        out.insert(0, "# tests: stay root, so the broker can write the test's private workdir")
        out.insert(1, "user root")
    return "\n".join(out) + "\n"


def _executable(name: str) -> str:
    found = shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        raise BrokerStartError(f"{name} not found (install the Debian package `mosquitto`)")
    return found


def _write_passwd(passwd_file: Path, entries: dict[str, str]) -> None:
    passwd_file.write_text("", encoding="utf-8")
    passwd_file.chmod(0o600)
    tool = _executable("mosquitto_passwd")
    for username, password in entries.items():
        result = subprocess.run(
            [tool, "-b", str(passwd_file), username, password],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise BrokerStartError(f"mosquitto_passwd failed for user {username!r}: {detail}")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<{path.name} unreadable: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path.name} empty>"


def start_broker(
    repo_root: Path,
    workdir: Path,
    *,
    passwd_entries: dict[str, str] | None = None,
    tls: TlsFiles | None = None,
    require_client_cert: bool = False,
) -> RunningBroker:
    """Start Mosquitto from the test variant of ``repo_root/mosquitto.conf``.

    Args:
        repo_root: the checkout holding ``mosquitto.conf`` and ``deploy/mosquitto/acl``.
        workdir: created if missing. Receives the config, password file, ACL
            copy, log and persistence file.
        passwd_entries: username -> password for the device listener. If None
            or empty, the password file is empty and nobody can log in there.
        tls: if given, one more listener on a free loopback port speaks
            MQTT over TLS with these files (anonymous, like the service
            listener): the shipped listener C is commented out, so a test
            cannot simply uncomment it.
        require_client_cert: the TLS listener then wants a client
            certificate signed by ``tls.ca_file`` (mutual TLS).

    Returns:
        The running broker, accepting TCP connections on both listeners.

    Raises:
        BrokerConfigError: if the repo conf cannot be turned into a test config.
        BrokerStartError: if a tool is missing, a password entry is refused,
            or the broker exits or does not accept connections within
            ``START_TIMEOUT_S`` (the message quotes the broker's log and
            stderr).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    service_port = free_port()
    device_port = free_port()
    while device_port == service_port:
        device_port = free_port()

    passwd_file = workdir / "passwd"
    _write_passwd(passwd_file, passwd_entries or {})
    acl_file = workdir / "acl"
    shutil.copyfile(repo_root / "deploy" / "mosquitto" / "acl", acl_file)
    config = render_test_config(
        repo_root / "mosquitto.conf",
        workdir,
        service_port=service_port,
        device_port=device_port,
        passwd_file=passwd_file,
        acl_file=acl_file,
    )
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        config += (
            f"\n# tests: a TLS listener\nlistener {tls_port} 127.0.0.1\n"
            f"cafile {_checked_path(tls.ca_file, 'cafile')}\n"
            f"certfile {_checked_path(tls.cert_file, 'certfile')}\n"
            f"keyfile {_checked_path(tls.key_file, 'keyfile')}\n"
            "tls_version tlsv1.2\nallow_anonymous true\n"
            f"require_certificate {'true' if require_client_cert else 'false'}\n"
        )
    (workdir / "mosquitto.conf").write_text(config, encoding="utf-8")
    return _launch(workdir, service_port, device_port, tls_port)


def _launch(workdir: Path, service_port: int, device_port: int, tls_port: int | None) -> RunningBroker:
    """Run Mosquitto on ``workdir/mosquitto.conf`` and wait until every listener accepts."""
    conf_file = workdir / "mosquitto.conf"
    stderr_file = workdir / "mosquitto.stderr"
    with stderr_file.open("wb") as stderr:
        process = subprocess.Popen(
            [_executable("mosquitto"), "-c", str(conf_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    broker = RunningBroker(service_port, device_port, workdir, process, tls_port)
    ports = [port for port in (service_port, device_port, tls_port) if port is not None]

    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(accepts(port) for port in ports):
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            broker.kill()
            state = f"exited with {process.returncode}" if exited else "timed out"
            raise BrokerStartError(
                f"mosquitto {state} before accepting connections on 127.0.0.1:{service_port}"
                f" (config {conf_file})\n--- mosquitto.log (tail) ---\n{_tail(broker.log_file)}"
                f"\n--- stderr (tail) ---\n{_tail(stderr_file)}"
            )
        time.sleep(0.05)
    return broker
