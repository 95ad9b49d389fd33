"""The alert store on real TimescaleDB and plain PostgreSQL, with the clock passed in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import alerts
from ingest.schema import migrate
from tests.conftest import TestDatabase

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def request(
    action: str = "raise",
    *,
    rule: str = "panic",
    severity: str = "critical",
    key: str = "p1",
    device: str = "d1",
) -> alerts.AlertRequest:
    return alerts.AlertRequest(
        action=action,
        rule=rule,
        device_id=device,
        severity=severity,
        emergency=severity == "critical",
        dedup_key=f"{device}:{rule}",
        occurrence_key=key,
        triggered_at=T0,
        due_at=T0 + timedelta(seconds=30),
    )


async def run(dsn: str, *steps: tuple[str, Any]) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await migrate(conn)
        for kind, arg in steps:
            async with conn.transaction():
                if kind == "apply":
                    requests, now = arg
                    await alerts.apply(conn, requests, now=now)
                else:
                    await alerts.escalate_due(conn, now=arg)


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_unacknowledged_critical_alert_escalates_every_minute_until_acknowledged(
    any_db: TestDatabase,
) -> None:
    asyncio.run(
        run(
            any_db.dsn,
            ("apply", ([request()], T0)),
            ("escalate", T0 + timedelta(seconds=59)),
            ("escalate", T0 + timedelta(seconds=60)),
            ("escalate", T0 + timedelta(seconds=120)),
        )
    )
    assert rows(any_db.dsn, "SELECT escalation_level, priority FROM alerts") == [(2, 350)]
    assert rows(any_db.dsn, "SELECT payload->>'reason' FROM alert_outbox ORDER BY id") == [
        ("raised",),
        ("reminder",),
        ("reminder",),
    ]

    async def acknowledge() -> None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn) as conn, conn.transaction():
            await alerts.transition(conn, 1, "acknowledge", by="anna", now=T0 + timedelta(seconds=130))
            await alerts.escalate_due(conn, now=T0 + timedelta(seconds=400))

    asyncio.run(acknowledge())
    assert rows(any_db.dsn, "SELECT escalation_level, next_escalation_at FROM alerts") == [(2, None)]


def test_sla_breach_is_recorded_once_in_the_audit_trail(any_db: TestDatabase) -> None:
    asyncio.run(
        run(
            any_db.dsn,
            ("apply", ([request(rule="battery_low", severity="warning")], T0)),
            ("escalate", T0 + timedelta(minutes=29)),
            ("escalate", T0 + timedelta(minutes=30)),
            ("escalate", T0 + timedelta(minutes=31)),
        )
    )
    assert rows(any_db.dsn, "SELECT sla_breached_at, escalation_level FROM alerts") == [
        (T0 + timedelta(minutes=30), 0)
    ]
    assert rows(any_db.dsn, "SELECT action FROM alert_events ORDER BY id") == [("raised",), ("sla_breached",)]


def test_presses_add_to_the_open_alert_and_redelivery_counts_once(any_db: TestDatabase) -> None:
    presses = [request(key=f"p{i}") for i in range(3)]
    asyncio.run(run(any_db.dsn, ("apply", (presses, T0)), ("apply", (presses, T0 + timedelta(seconds=5)))))
    assert rows(any_db.dsn, "SELECT occurrence_count, priority, state FROM alerts") == [(3, 320, "open")]


def test_a_press_after_resolution_opens_a_new_alert_but_a_redelivered_one_does_not(
    any_db: TestDatabase,
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn) as conn:
            await migrate(conn)
            async with conn.transaction():
                await alerts.apply(conn, [request(key="p1")], now=T0)
                await alerts.transition(conn, 1, "resolve", by="anna", now=T0)
                await alerts.apply(conn, [request(key="p1")], now=T0)  # redelivered
                await alerts.apply(conn, [request(key="p2")], now=T0)  # a new press

    asyncio.run(scenario())
    assert rows(any_db.dsn, "SELECT id, state, occurrence_count FROM alerts ORDER BY id") == [
        (1, "resolved", 1),
        (2, "open", 1),
    ]


def test_warning_upgraded_to_critical_keeps_one_alert_and_tightens_the_deadline(any_db: TestDatabase) -> None:
    asyncio.run(
        run(
            any_db.dsn,
            ("apply", ([request(rule="fall", severity="major", key="w")], T0)),
            ("apply", ([request(rule="fall", severity="critical", key="a")], T0 + timedelta(seconds=40))),
        )
    )
    assert rows(any_db.dsn, "SELECT severity, emergency, sla_due_at, occurrence_count FROM alerts") == [
        ("critical", True, T0 + timedelta(seconds=40, minutes=15), 2)
    ]


def test_conditions_that_end_clear_open_alerts_but_not_ones_being_handled(any_db: TestDatabase) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn) as conn:
            await migrate(conn)
            async with conn.transaction():
                await alerts.apply(conn, [request(rule="spo2_low", key="a", device="d1")], now=T0)
                await alerts.apply(conn, [request(rule="spo2_low", key="b", device="d2")], now=T0)
                await alerts.transition(conn, 2, "acknowledge", by="anna", now=T0)
                await alerts.apply(
                    conn,
                    [
                        request("clear", rule="spo2_low", key="c1", device="d1"),
                        request("clear", rule="spo2_low", key="c2", device="d2"),
                    ],
                    now=T0,
                )

    asyncio.run(scenario())
    assert rows(any_db.dsn, "SELECT device_id, state FROM alerts ORDER BY id") == [
        ("d1", "cleared"),
        ("d2", "acknowledged"),
    ]


def test_claims_never_hand_the_same_alert_to_two_dispatchers(any_db: TestDatabase) -> None:
    asyncio.run(run(any_db.dsn, ("apply", ([request(device=f"d{i}", key=f"k{i}") for i in range(5)], T0))))

    async def claim(name: str) -> int | None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn) as conn, conn.transaction():
            claimed = await alerts.claim_next(conn, by=name, now=T0)
            await asyncio.sleep(0.2)  # hold the row lock while the others claim
            return None if claimed is None else claimed.id

    async def many() -> list[int | None]:
        return await asyncio.gather(*(claim(f"dispatcher-{i}") for i in range(7)))

    claimed = asyncio.run(many())
    ids = [i for i in claimed if i is not None]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert claimed.count(None) == 2


def test_a_waiting_dispatcher_is_woken_by_a_new_alert_not_by_polling(any_db: TestDatabase) -> None:
    asyncio.run(run(any_db.dsn))  # schema only

    async def scenario() -> tuple[alerts.Alert | None, float]:
        loop = asyncio.get_running_loop()
        async with await psycopg.AsyncConnection.connect(any_db.dsn, autocommit=True) as waiter:
            started = loop.time()
            claim = asyncio.create_task(
                alerts.wait_and_claim(waiter, by="anna", timeout_s=20, now=lambda: T0, poll_s=15)
            )
            await asyncio.sleep(0.5)
            await run(any_db.dsn, ("apply", ([request()], T0)))
            claimed = await claim
            return claimed, loop.time() - started

    claimed, waited_s = asyncio.run(scenario())
    assert claimed is not None
    assert claimed.claimed_by == "anna"
    assert waited_s < 5  # the 15 s poll never had to fire


def test_a_dispatcher_with_nothing_to_do_gives_up_after_its_wait(any_db: TestDatabase) -> None:
    asyncio.run(run(any_db.dsn))

    async def scenario() -> alerts.Alert | None:
        async with await psycopg.AsyncConnection.connect(any_db.dsn, autocommit=True) as waiter:
            return await alerts.wait_and_claim(waiter, by="anna", timeout_s=0.5, now=lambda: T0, poll_s=0.2)

    assert asyncio.run(scenario()) is None
