"""The one classification of database errors: every SQLSTATE family the issue names, and psycopg's own."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from ingest.db_errors import ErrorClass, classify, is_configuration_message, short_reason


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("08006", ErrorClass.UNAVAILABLE),  # connection failure
        ("57P01", ErrorClass.UNAVAILABLE),  # admin shutdown
        ("57P03", ErrorClass.UNAVAILABLE),  # cannot connect now (starting up)
        ("53300", ErrorClass.UNAVAILABLE),  # too many connections
        ("40001", ErrorClass.TRANSIENT),  # serialization failure
        ("40P01", ErrorClass.TRANSIENT),  # deadlock
        ("55P03", ErrorClass.TRANSIENT),  # lock not available
        ("57014", ErrorClass.TRANSIENT),  # statement timeout
        ("22P05", ErrorClass.DATA),  # untranslatable character (\u0000 in jsonb)
        ("22021", ErrorClass.DATA),  # NUL byte in text
        ("22003", ErrorClass.DATA),  # numeric value out of range
        ("23514", ErrorClass.DATA),  # check violation
        ("23505", ErrorClass.DATA),  # unique violation
        ("54000", ErrorClass.DATA),  # program limit exceeded (a row too big)
        ("3D000", ErrorClass.CONFIGURATION),  # database does not exist
        ("28P01", ErrorClass.CONFIGURATION),  # bad password
        ("42P01", ErrorClass.PROGRAMMING),  # undefined table: our bug, or not migrated
        ("P0001", ErrorClass.PROGRAMMING),  # a trigger's RAISE: nobody classified it
    ],
)
def test_sqlstates_are_classified_by_what_they_mean(sqlstate: str, expected: ErrorClass) -> None:
    exc = pg_errors.lookup(sqlstate)("server message")
    assert classify(exc) is expected


def test_client_side_errors_are_data_errors() -> None:
    assert (
        classify(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
        is ErrorClass.DATA
    )
    assert classify(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")) is ErrorClass.DATA
    assert classify(OverflowError("int too big to convert")) is ErrorClass.DATA


def test_connection_failures_without_sqlstate() -> None:
    refused = psycopg.OperationalError(
        'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    )
    assert classify(refused) is ErrorClass.UNAVAILABLE
    missing = psycopg.OperationalError('connection failed: FATAL:  database "nope" does not exist')
    assert classify(missing) is ErrorClass.CONFIGURATION
    assert classify(psycopg.OperationalError("FATAL:  password authentication failed for user x")) is (
        ErrorClass.CONFIGURATION
    )
    assert classify(psycopg.InterfaceError("the connection is closed")) is ErrorClass.UNAVAILABLE
    assert classify(TimeoutError()) is ErrorClass.UNAVAILABLE
    assert not is_configuration_message("server closed the connection unexpectedly")


def test_an_error_of_our_own_is_programming() -> None:
    assert classify(KeyError("x")) is ErrorClass.PROGRAMMING


def test_short_reason_is_storable_text() -> None:
    reason = short_reason(UnicodeEncodeError("utf-8", "a\ud800\x00", 1, 2, "surrogates not allowed"))
    reason.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in reason
    long = short_reason(pg_errors.lookup("22021")("x" * 5000 + "\nDETAIL: the row"))
    assert long.startswith("22021: ")
    assert len(long) < 320
    assert "DETAIL" not in long  # only the first line: never the row's values
