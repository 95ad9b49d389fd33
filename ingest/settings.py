"""Settings of the ingest service, parsed once at the edge and passed in."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from alerts import AlertPolicy
from devices.registry import Enforcement
from ingest.batcher import BatchSettings
from ingest.errors import ConfigError
from ingest.pipeline import PipelineSettings
from ingest.retention import RetentionSettings
from ingest.schema import TimescaleMode
from rules import RulesConfig

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=carewatch"
DEFAULT_METRICS_PORT = 9308
DEFAULT_CLIENT_ID = "carewatch-ingest"
#: MQTT versions the ingest speaks, as written in ``?protocol=`` -> protocol level.
MQTT_PROTOCOLS = {"5": 5, "3.1.1": 4}


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """Where and how to reach the broker.

    Attributes:
        host: broker host.
        port: broker port.
        tls: use TLS (``mqtts://``).
        username: optional user name.
        password: optional password (never logged).
        client_id: fixed id: the broker keeps the session (and queues for it)
            under this id, so every restart resumes where the last one stopped.
        keepalive_s: MQTT keep-alive.
        receive_maximum: unacknowledged messages the broker may send us.
        session_expiry_s: how long the broker keeps our session while we are away.
        ca_file: PEM file of the CA(s) that signed the broker's certificate,
            for ``mqtts://`` with a private CA; None trusts the system store.
            The host name is always verified against the certificate: there
            is deliberately no option to turn that off.
        cert_file: PEM client certificate, for a broker that requires
            mutual TLS (``require_certificate true``).
        key_file: its private key (None: the key is in ``cert_file``).
        protocol: ``"5"`` (default) or ``"3.1.1"``, for brokers without MQTT 5
            (the demo's embedded amqtt). Chosen explicitly, never by falling
            back on a refused CONNECT: 3.1.1 loses retain handling (retained
            messages come again on every subscribe; storing them is
            idempotent, so they cost work, not duplicates) and the
            broker-side Receive Maximum (the session pauses reading
            instead), and a production ingest should not drop to that
            silently because a broker was misconfigured.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = DEFAULT_CLIENT_ID
    keepalive_s: int = 30
    receive_maximum: int = 10_000
    session_expiry_s: int = 7 * 24 * 3600
    protocol: str = "5"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in MQTT_PROTOCOLS:
            raise ConfigError(
                f"MQTT protocol must be one of {', '.join(MQTT_PROTOCOLS)}, not {self.protocol!r}"
            )
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ConfigError("--mqtt-ca-file, --mqtt-cert-file and --mqtt-key-file need an mqtts:// URL")
        if self.key_file and not self.cert_file:
            raise ConfigError("--mqtt-key-file needs --mqtt-cert-file")

    @property
    def protocol_level(self) -> int:
        """The CONNECT protocol level of :attr:`protocol` (5, or 4 for 3.1.1)."""
        return MQTT_PROTOCOLS[self.protocol]

    @classmethod
    def from_url(cls, url: str) -> MqttSettings:
        """Parse ``mqtt://[user:pass@]host:port[?protocol=3.1.1]`` (or ``mqtts://`` for TLS).

        Raises:
            ConfigError: the URL is not of that form.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError("MQTT URL must look like mqtt://[user:pass@]host:port")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError("MQTT URL has an invalid port") from None
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query, keep_blank_values=True)
        if set(query) - {"protocol"} or len(query.get("protocol", [])) > 1:
            raise ConfigError("the only MQTT URL parameter is protocol=5 or protocol=3.1.1, once")
        protocol = query.get("protocol", ["5"])[0]
        return cls(
            host=parts.hostname, port=port, tls=tls, username=username, password=password, protocol=protocol
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://``, else None.

        It verifies the broker's certificate against :attr:`ca_file` (or the
        system store) and its host name, with TLS 1.2 at least.

        Raises:
            ConfigError: a CA, certificate or key file cannot be read.
        """
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the MQTT TLS files: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestSettings:
    """Everything ``carewatch ingest`` needs.

    Attributes:
        mqtt: the broker.
        dsn: libpq connection string of the database.
        metrics_host: address of the /metrics, /healthz and /readyz endpoint.
        metrics_port: its port; 0 disables it.
        timescale: whether to use TimescaleDB.
        batch: how messages are grouped into transactions.
        pipeline: input limits.
        rules: rule thresholds (defaults, per profile, elder and device).
        alert_policy: deadlines and escalation of alerts.
        shutdown_timeout_s: how long SIGTERM waits for the last commit.
        registry: when unknown and mismatched devices are quarantined.
        retention: how long each class of data is kept.
    """

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    dsn: str = DEFAULT_DSN
    metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from another host
    metrics_port: int = DEFAULT_METRICS_PORT
    timescale: TimescaleMode = TimescaleMode.AUTO
    batch: BatchSettings = field(default_factory=BatchSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    rules: RulesConfig = field(default_factory=RulesConfig.default)
    alert_policy: AlertPolicy = field(default_factory=AlertPolicy)
    shutdown_timeout_s: float = 15.0
    registry: Enforcement = Enforcement.AUTO
    retention: RetentionSettings = field(default_factory=RetentionSettings)
