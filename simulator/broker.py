"""Where the broker is: ``mqtt://[user:pass@]host:port`` (``mqtts://`` for TLS)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiomqtt

from simulator.errors import SimulatorError


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    """A broker URL, parsed.

    Attributes:
        host: broker host.
        port: broker port.
        tls: ``mqtts://``.
        username: optional user (a gateway id on the device listener).
        password: optional password, never shown.
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse a broker URL.

        Raises:
            SimulatorError: not an ``mqtt://`` or ``mqtts://`` URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise SimulatorError("MQTT URL must look like mqtt://[user:pass@]host:port")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise SimulatorError("MQTT URL has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def client(self, identifier: str, *, max_inflight: int = 100) -> aiomqtt.Client:
        """An MQTT 3.1.1 client with a clean session: a tool, not a persistent subscriber."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            clean_session=True,
            max_inflight_messages=max_inflight,
            tls_context=ssl.create_default_context() if self.tls else None,
            timeout=30.0,
        )
