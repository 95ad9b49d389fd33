"""Per-gateway broker credentials: Mosquitto's password file and ACL, edited safely.

A gateway's MQTT username is its gateway id, and the ACL line
``pattern write carewatch/v1/%u/#`` lets it write its own subtree only. The
password file is written here in Python, in Mosquitto 2.0's format
``user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`` (12-byte
salt, 64-byte hash, the layout ``mosquitto_passwd`` writes; checked against
2.0.11's tool and broker). Writing it ourselves avoids handing the secret to
a subprocess command line (visible in ``ps``) and lets one lock and one
atomic rename cover the read-modify-write.

Hash iterations: 101, Mosquitto's own default, on purpose.
    The broker checks the hash on every CONNECT in its single thread, so a
    reconnect storm costs ``gateways x hash time`` of broker CPU during which
    no message (a panic included) is routed. Measured with OpenSSL's PBKDF2
    on the 2-core target:

    ==========  =========  ======================  =======================
    iterations  per check  1,000 gateways at once  10,000 clients at once
    ==========  =========  ======================  =======================
    101         0.08 ms    0.08 s                  0.8 s
    1,000       0.7 ms     0.7 s                   7 s
    10,000      8.8 ms     8.8 s                   88 s
    100,000     88 ms      88 s                    15 min
    210,000     232 ms     232 s                   39 min
    ==========  =========  ======================  =======================

    210,000 is OWASP's figure for human passwords. Stretching buys
    ``log2(iterations)`` bits of work (17.7 bits at 210,000), which matters
    for a guessable password and not at all for ours: each secret is
    ``secrets.token_urlsafe(32)``, 256 random bits, out of reach of any
    brute force with or without stretching. So the count only costs the
    broker, and only during the outage a reconnect storm follows. 101 keeps
    a 1,000-gateway storm under a tenth of a second. Mosquitto 2.0 takes the
    count from each line, so raising it later needs no broker change.

The ACL needs no per-gateway line: the one ``pattern`` covers every user,
and per-user copies of it could only drift from it (a removed gateway whose
ACL lines linger, or the reverse). :func:`ensure_acl_pattern` therefore only
checks the pattern is there and appends it when missing. What keeps the
pattern safe is the id rule (``[A-Za-z0-9_-]{1,64}``, see
``deploy/mosquitto/acl``), which :func:`check_gateway_id` enforces.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import signal
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devices.topics import RESERVED_GATEWAY_IDS, TOPIC_ROOT, is_valid_id
from ingest.errors import IngestError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: PBKDF2 iterations of new entries; see the module docstring for the measurements.
HASH_ITERATIONS = 101
#: Salt length ``mosquitto_passwd`` 2.0 uses.
SALT_BYTES = 12
#: Random bytes in a secret: 256 bits, so stretching adds nothing (module docstring).
SECRET_BYTES = 32
#: Mosquitto's identifier of PBKDF2-HMAC-SHA512 password hashes.
PBKDF2_SHA512_ID = "7"
#: The ACL line that grants every gateway its own subtree and nothing else.
ACL_PATTERN = f"pattern write {TOPIC_ROOT}/%u/#"
#: Usernames the ACL gives service rights (deploy/mosquitto/acl); never gateways.
SERVICE_USERNAMES = frozenset({"carewatch-ingest"})
#: Mode of a new password or ACL file: the broker's group reads it, nobody else.
NEW_FILE_MODE = 0o640


class GatewayCredentialsError(IngestError):
    """A gateway's credentials could not be created, changed or removed.

    Attributes:
        gateway_id: the gateway concerned, when there is one.
        path: the file concerned, when there is one.
    """

    def __init__(self, message: str, *, gateway_id: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.gateway_id = gateway_id
        self.path = path


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """What a new gateway is configured with; shown once, never stored in clear."""

    gateway_id: str
    password: str = field(repr=False)

    @property
    def username(self) -> str:
        """The MQTT username, which is the gateway id (the ACL depends on it)."""
        return self.gateway_id

    @property
    def topic_prefix(self) -> str:
        """Where the gateway may publish: ``<prefix>/{device_id}/{channel}``."""
        return f"{TOPIC_ROOT}/{self.gateway_id}"


def check_gateway_id(gateway_id: str) -> None:
    """Refuse an id the ACL pattern cannot confine or that belongs to the service.

    Raises:
        GatewayCredentialsError: the id is malformed, reserved or a service user.
    """
    if not is_valid_id(gateway_id):
        raise GatewayCredentialsError(
            f"invalid gateway id {gateway_id!r}: it must match [A-Za-z0-9_-]{{1,64}}",
            gateway_id=gateway_id,
        )
    if gateway_id in RESERVED_GATEWAY_IDS or gateway_id in SERVICE_USERNAMES:
        raise GatewayCredentialsError(f"gateway id {gateway_id!r} is reserved", gateway_id=gateway_id)


def new_secret() -> str:
    """A fresh random password: URL-safe, so it survives configs and MQTT URLs unquoted."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """Hash ``password`` as Mosquitto 2.0 stores it (``$7$...``)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"${PBKDF2_SHA512_ID}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against a ``$7$`` hash, as the broker does on CONNECT.

    Raises:
        GatewayCredentialsError: the hash is not in the ``$7$`` format.
    """
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != PBKDF2_SHA512_ID or not parts[2].isdigit():  # noqa: PLR2004
        raise GatewayCredentialsError("not a Mosquitto PBKDF2-SHA512 ($7$) hash")
    try:
        salt, expected = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise GatewayCredentialsError("malformed base64 in a $7$ hash") from exc
    actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(actual, expected)


# -- the password file -------------------------------------------------------------


def _username(line: str) -> str | None:
    """The user a password-file line is for; None for comments and blank lines."""
    text = line.strip()
    if not text or text.startswith("#") or ":" not in text:
        return None
    return text.split(":", 1)[0]


def read_password_hashes(passwd_file: Path) -> dict[str, str]:
    """Username -> stored hash, in file order; empty when the file does not exist.

    Raises:
        GatewayCredentialsError: the file cannot be read.
    """
    entries: dict[str, str] = {}
    for line in _read_lines(passwd_file):
        user = _username(line)
        if user is not None:
            entries[user] = line.strip().split(":", 1)[1]
    return entries


def list_gateways(passwd_file: Path) -> list[str]:
    """The gateway ids that have credentials, sorted; service users are left out.

    Raises:
        GatewayCredentialsError: the file cannot be read.
    """
    return sorted(
        user
        for user in read_password_hashes(passwd_file)
        if is_valid_id(user) and user not in SERVICE_USERNAMES and user not in RESERVED_GATEWAY_IDS
    )


def add_gateway(
    passwd_file: Path,
    acl_file: Path,
    gateway_id: str,
    *,
    rotate: bool = False,
    make_secret: Callable[[], str] = new_secret,
) -> GatewayCredentials:
    """Create (or with ``rotate``, replace) a gateway's secret and make sure the ACL confines it.

    The broker reads the files only on start and on SIGHUP; see :func:`reload_broker`.

    Args:
        passwd_file: Mosquitto's ``password_file``; created when missing.
        acl_file: Mosquitto's ``acl_file``; created when missing.
        gateway_id: the new gateway, which is also its MQTT username.
        rotate: replace an existing entry (the old secret stops working
            after the reload). Without it an existing entry is an error, so a
            typo cannot lock a working gateway out.
        make_secret: the secret generator.

    Returns:
        The credentials, which exist nowhere else in clear.

    Raises:
        GatewayCredentialsError: invalid or reserved id, an existing entry
            without ``rotate``, a missing one with it, or a file error.
    """
    check_gateway_id(gateway_id)
    with _locked(passwd_file):
        lines = _read_lines(passwd_file)
        index = _entry_index(lines, gateway_id)
        if index is not None and not rotate:
            raise GatewayCredentialsError(
                f"gateway {gateway_id!r} already has credentials (use --rotate to replace them)",
                gateway_id=gateway_id,
                path=passwd_file,
            )
        if index is None and rotate:
            raise GatewayCredentialsError(
                f"gateway {gateway_id!r} has no credentials to rotate",
                gateway_id=gateway_id,
                path=passwd_file,
            )
        credentials = GatewayCredentials(gateway_id, make_secret())
        entry = f"{gateway_id}:{hash_password(credentials.password)}"
        if index is None:
            lines.append(entry)
        else:
            lines[index] = entry
        ensure_acl_pattern(acl_file)
        _replace_file(passwd_file, lines)
    return credentials


def remove_gateway(passwd_file: Path, gateway_id: str) -> None:
    """Delete a gateway's entry; it can no longer log in once the broker reloads.

    Raises:
        GatewayCredentialsError: the gateway has no entry, or a file error.
    """
    check_gateway_id(gateway_id)
    with _locked(passwd_file):
        lines = _read_lines(passwd_file)
        index = _entry_index(lines, gateway_id)
        if index is None:
            raise GatewayCredentialsError(
                f"gateway {gateway_id!r} has no credentials", gateway_id=gateway_id, path=passwd_file
            )
        del lines[index]
        _replace_file(passwd_file, lines)


def _entry_index(lines: list[str], user: str) -> int | None:
    found = [i for i, line in enumerate(lines) if _username(line) == user]
    if len(found) > 1:
        # Mosquitto would use one of them; which one is not ours to guess.
        raise GatewayCredentialsError(f"user {user!r} appears {len(found)} times", gateway_id=user)
    return found[0] if found else None


# -- the ACL -----------------------------------------------------------------------


def ensure_acl_pattern(acl_file: Path) -> bool:
    """Make sure the ACL has the gateway pattern; return True if it had to be added.

    ``pattern`` lines apply to every user wherever they stand in the file, so
    appending is enough.

    Raises:
        GatewayCredentialsError: the file cannot be read or written.
    """
    lines = _read_lines(acl_file)
    if any(" ".join(line.split()) == ACL_PATTERN for line in lines):
        return False
    _replace_file(
        acl_file,
        [
            *lines,
            "# Added by `carewatch gateways add`: each gateway writes only its own subtree.",
            ACL_PATTERN,
        ],
    )
    return True


# -- the broker ----------------------------------------------------------------------


def reload_broker(pid: int) -> None:
    """Ask Mosquitto to re-read its password file and ACL (SIGHUP, as ``systemctl reload`` does).

    Raises:
        GatewayCredentialsError: no such process, or not ours to signal.
    """
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise GatewayCredentialsError(f"cannot signal broker pid {pid}: {exc.strerror}") from exc


# -- files -------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayCredentialsError(f"cannot read {path}: {exc}", path=path) from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise edits of files in ``path``'s directory (two concurrent adds would lose one).

    The lock is on the directory itself, so no lock file is left beside the
    broker's files.
    """
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise GatewayCredentialsError(f"cannot open directory {path.parent}: {exc}", path=path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace_file(path: Path, lines: list[str]) -> None:
    """Write ``path`` anew by rename, so the broker never reads half a file.

    An existing file keeps its mode, owner and group: the broker's user
    reads it through the group (root:mosquitto 0640 on Debian). A new file
    gets mode 0640 and its directory's group.
    """
    try:
        previous = path.stat()
    except FileNotFoundError:
        previous = None
    except OSError as exc:
        raise GatewayCredentialsError(f"cannot stat {path}: {exc}", path=path) from exc
    parent = path.parent.stat()
    mode = stat.S_IMODE(previous.st_mode) if previous else NEW_FILE_MODE
    uid = previous.st_uid if previous else -1
    gid = previous.st_gid if previous else parent.st_gid
    text = "".join(f"{line}\n" for line in lines)
    try:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise GatewayCredentialsError(f"cannot write in {path.parent}: {exc}", path=path) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), mode)
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(out.fileno(), uid, gid)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temp_name).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temp_name).unlink()
        raise GatewayCredentialsError(f"cannot replace {path}: {exc}", path=path) from exc
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
