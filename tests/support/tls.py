"""Throw-away certificates for TLS tests: a CA and a server certificate it signs.

Made with the ``openssl`` command line (Debian's ``openssl`` package, present
wherever Mosquitto is), so the tests need no Python crypto package.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one CA and of a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise RuntimeError("openssl not found (install the Debian package `openssl`)")
    result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_ca(directory: Path, name: str = "carewatch-test-ca") -> tuple[Path, Path]:
    """A self-signed CA valid for a day; returns its certificate and key files."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_server_tls(directory: Path, *, host: str = "localhost") -> TlsFiles:
    """A CA and a server certificate for ``host`` alone (127.0.0.1 is not in it) signed by it."""
    ca_cert, ca_key = make_ca(directory)
    key, request, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(request), "-subj", f"/CN={host}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    key.chmod(0o644)  # the broker may run as another user in CI
    return TlsFiles(ca_cert, cert, key)


def make_client_cert(directory: Path, ca: TlsFiles, name: str = "carewatch-ingest") -> tuple[Path, Path]:
    """A client certificate for ``name`` signed by ``ca``'s CA; returns the certificate and key files."""
    key, request, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n", encoding="utf-8"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request),
        "-CA", str(ca.ca_file), "-CAkey", str(ca.ca_file.with_suffix(".key")),
        "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key
