"""``mqtts://`` settings: the TLS context verifies the broker, and bad TLS options fail at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from ingest.cli import build_parser
from ingest.errors import ConfigError
from ingest.settings import MqttSettings
from tests.support.tls import make_client_cert, make_server_tls


def test_plain_mqtt_has_no_tls_context():
    assert MqttSettings.from_url("mqtt://127.0.0.1:1883").ssl_context() is None


def test_mqtts_always_verifies_the_certificate_and_the_host_name(tmp_path: Path):
    tls = make_server_tls(tmp_path)
    for settings in (
        MqttSettings.from_url("mqtts://broker:8883"),
        MqttSettings(host="broker", tls=True, ca_file=tls.ca_file),
    ):
        context = settings.ssl_context()
        assert context is not None
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_private_ca_is_the_trust_anchor(tmp_path: Path):
    tls = make_server_tls(tmp_path)
    context = MqttSettings(host="broker", tls=True, ca_file=tls.ca_file).ssl_context()
    assert context is not None
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "carewatch-test-ca"),),)]


def test_a_client_certificate_is_loaded(tmp_path: Path):
    tls = make_server_tls(tmp_path)
    cert, key = make_client_cert(tmp_path, tls)
    settings = MqttSettings(host="broker", tls=True, ca_file=tls.ca_file, cert_file=cert, key_file=key)
    assert settings.ssl_context() is not None


def test_unreadable_tls_files_are_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="TLS files"):
        MqttSettings(host="broker", tls=True, ca_file=tmp_path / "missing.crt").ssl_context()
    tls = make_server_tls(tmp_path)
    with pytest.raises(ConfigError, match="TLS files"):  # a CA certificate is not a client key pair
        MqttSettings(host="broker", tls=True, cert_file=tls.ca_file).ssl_context()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ca_file": Path("ca.crt")},
        {"cert_file": Path("c.crt")},
        {"tls": True, "key_file": Path("c.key")},
    ],
)
def test_tls_options_without_mqtts_or_a_key_without_a_certificate_are_refused(kwargs: dict[str, object]):
    with pytest.raises(ConfigError, match="mqtt"):
        MqttSettings(host="broker", **kwargs)  # type: ignore[arg-type]


def test_the_command_line_has_the_tls_flags_and_no_way_to_skip_verification():
    parser = build_parser()
    args = parser.parse_args(
        ["ingest", "--mqtt-url", "mqtts://b:8883", "--mqtt-ca-file", "ca.pem", "--mqtt-cert-file", "c.pem"]
    )
    assert (args.mqtt_ca_file, args.mqtt_cert_file, args.mqtt_key_file) == (
        Path("ca.pem"),
        Path("c.pem"),
        None,
    )
    help_text = parser._subparsers._group_actions[0].choices["ingest"].format_help()  # type: ignore[union-attr]
    assert "insecure" not in help_text
    assert "no-verify" not in help_text
