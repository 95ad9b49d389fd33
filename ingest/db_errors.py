"""What a database error means for the message that met it: classified once, here.

Every part of ingest that talks to PostgreSQL asks :func:`classify` what an
error means instead of guessing from the exception type where it caught it,
because the three answers lead to opposite actions:

* **unavailable**: the database cannot be reached or is going away
  (connection refused or lost, admin shutdown, too many connections). No
  message is at fault. Retry the same batch with capped backoff for as long
  as it takes; the broker keeps every unacknowledged message meanwhile.
* **transient**: the database is up but this attempt lost a race
  (serialization failure, deadlock, lock or statement timeout). Retry, but
  a bounded number of times: an error that recurs on every attempt is
  about the data after all.
* **data**: the database (or psycopg, before sending) refuses a *value*:
  class 22 and 23, 54000 "program limit exceeded", a NUL in a text
  parameter, a string Python cannot encode as UTF-8, an integer too large
  for its column. Retrying the same rows can never succeed: find the
  messages at fault and quarantine only them.
* **configuration**: the settings are wrong (no such database, bad
  credentials, no pg_hba entry). At start-up the service exits with the
  message instead of retrying in silence; while running (a password
  rotated under us) it is treated as unavailable, loudly.
* **programming**: our SQL is wrong for this schema (class 42, 0A), or an
  error nobody classified. Bounded retries, then the batch is isolated like
  a data error so the rest of the fleet keeps flowing; logged as an error.

Connection failures carry no SQLSTATE in psycopg (libpq reports them as
text), so those are recognised by libpq's and the server's fixed phrases.
"""

from __future__ import annotations

from enum import StrEnum

import psycopg
from psycopg import errors as pg_errors


class ErrorClass(StrEnum):
    """What an error means for the work that met it (also the metrics' ``cause`` label)."""

    UNAVAILABLE = "db_unavailable"
    TRANSIENT = "transient"
    DATA = "data_error"
    CONFIGURATION = "configuration"
    PROGRAMMING = "programming_error"


#: SQLSTATE classes (first two characters) and codes, by meaning.
_UNAVAILABLE_CLASSES = frozenset({"08", "57", "53", "58"})
_UNAVAILABLE_EXCEPT = frozenset({"57014"})  # query_canceled (a statement timeout): transient
_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03", "57014", "25P03"})
_TRANSIENT_CLASSES = frozenset({"40"})
_DATA_CLASSES = frozenset({"22", "23"})
_DATA_CODES = frozenset({"54000", "54001", "54011", "54023"})
_CONFIGURATION_CODES = frozenset({"3D000", "28000", "28P01", "42501"})

#: What libpq and the server say when a connection attempt fails for a setting.
_CONFIGURATION_PHRASES = (
    "does not exist",  # database "x" / role "x" does not exist
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
    "invalid connection option",
    "invalid dsn",
    'missing "=" after',
    "could not translate host name",
)


def classify(exc: BaseException) -> ErrorClass:
    """Say what ``exc`` means for the work that raised it."""
    if isinstance(exc, UnicodeError | OverflowError):
        # psycopg raises these before sending: a lone surrogate cannot be
        # encoded to UTF-8, an integer does not fit its binary type.
        return ErrorClass.DATA
    if isinstance(exc, TimeoutError):
        return ErrorClass.UNAVAILABLE
    if not isinstance(exc, psycopg.Error):
        return ErrorClass.PROGRAMMING
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return _classify_without_sqlstate(exc)
    return _classify_sqlstate(sqlstate)


def _classify_sqlstate(sqlstate: str) -> ErrorClass:
    category = sqlstate[:2]
    if sqlstate in _CONFIGURATION_CODES:
        return ErrorClass.CONFIGURATION
    if sqlstate in _TRANSIENT_CODES or category in _TRANSIENT_CLASSES:
        return ErrorClass.TRANSIENT
    if category in _UNAVAILABLE_CLASSES and sqlstate not in _UNAVAILABLE_EXCEPT:
        return ErrorClass.UNAVAILABLE
    if category in _DATA_CLASSES or sqlstate in _DATA_CODES:
        return ErrorClass.DATA
    return ErrorClass.PROGRAMMING


def _classify_without_sqlstate(exc: psycopg.Error) -> ErrorClass:
    if isinstance(exc, psycopg.DataError):
        return ErrorClass.DATA  # client side: "PostgreSQL text fields cannot contain NUL (0x00) bytes"
    if isinstance(exc, psycopg.ProgrammingError | psycopg.NotSupportedError):
        return ErrorClass.PROGRAMMING
    if isinstance(exc, psycopg.OperationalError) and is_configuration_message(str(exc)):
        return ErrorClass.CONFIGURATION
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | pg_errors.ConnectionTimeout):
        return ErrorClass.UNAVAILABLE
    return ErrorClass.PROGRAMMING


def is_configuration_message(message: str) -> bool:
    """Tell whether a connection failure's text names a wrong setting, not an outage."""
    lowered = message.lower()
    return any(phrase in lowered for phrase in _CONFIGURATION_PHRASES)


def short_reason(exc: BaseException) -> str:
    """The first line of the database's message, for a quarantine detail or a log line.

    Server messages name the constraint or the offending byte class, never
    the row; psycopg's client-side messages likewise. Truncated so a huge
    message cannot bloat the quarantine table.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # The text may quote the very character that was refused (a lone surrogate).
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")[:300]
    return f"{sqlstate}: {text}" if sqlstate else f"{type(exc).__name__}: {text}"
