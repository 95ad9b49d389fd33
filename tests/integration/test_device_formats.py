"""Issue 11 part 6 end to end: what the new decodings become in the database, through a real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TestDatabase
from tests.integration.test_alert_flow import alerts_of
from tests.integration.test_ingest_service import count, ingest_factory, start_ingest, wait_for_count
from tests.support.broker import RunningBroker
from tests.support.publisher import Publisher
from tests.support.service import IngestProcess

__all__ = ["ingest_factory"]  # the fixture is shared

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

IMEI = "353456789012345"


def test_trv_sos_without_a_fix_alerts_and_stores_its_network_position(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    stamp = time.strftime("%y%m%d", time.gmtime()) + "V2232.9806N11404.9355E000.1"
    clock = time.strftime("%H%M%S", time.gmtime(time.time() - 10))
    frame = (
        f"TRVAP10{stamp}{clock}323.8706000908000502,460,0,9520,3671,01,zh-cn,00,"
        "HOME|74-DE-2B-44-88-8C|97&WORK|0C-4C-39-1A-7C-65|69#"
    )
    with Publisher(broker.service_port) as gateway:
        gateway.publish(f"carewatch/v1/iw-gw/{IMEI}/iw", frame.encode())
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM alerts", 1) == 1
    assert [row[0] for row in alerts_of(tsdb.dsn)] == ["panic"]
    assert wait_for_count(tsdb.dsn, "SELECT count(*) FROM device_events WHERE kind = 'location'", 1) == 1
    with psycopg.connect(tsdb.dsn) as conn:
        (detail,) = conn.execute("SELECT detail FROM device_events WHERE kind = 'location'").fetchone() or (
            None,
        )
    assert detail == {
        "position_source": "network",
        "cells": "460,0,9520,3671,",
        "wifi": "74:de:2b:44:88:8c,97;0c:4c:39:1a:7c:65,69",
    }
    assert "HOME" not in json.dumps(detail)


def test_scaip_low_battery_is_a_stored_device_fault_and_raises_no_alert(
    broker: RunningBroker, tsdb: TestDatabase, tmp_path: Path, ingest_factory: list[IngestProcess]
) -> None:
    start_ingest(ingest_factory, broker, tsdb.dsn, tmp_path)
    body = b"<mrq><ref>00001A86</ref><cid>26317</cid><dty>0002</dty><mty>ME</mty><stc>0016</stc></mrq>"
    care = b"<mrq><ref>00001A87</ref><cid>26317</cid><dty>0002</dty><mty>IN</mty><stc>0088</stc></mrq>"
    unknown = b"<mrq><ref>00001A88</ref><cid>26317</cid><dty>0002</dty><mty>IN</mty><stc>0077</stc></mrq>"
    with Publisher(broker.service_port) as gateway:
        for payload in (body, care, unknown):
            gateway.publish("carewatch/v1/scaip-gw/26317/scaip", payload)
    assert (
        wait_for_count(
            tsdb.dsn, "SELECT count(*) FROM device_events WHERE kind IN ('device_fault', 'care')", 2
        )
        == 2
    )
    assert (
        wait_for_count(tsdb.dsn, "SELECT count(*) FROM quarantine WHERE reason = 'unsupported_frame'", 1) == 1
    )
    with psycopg.connect(tsdb.dsn) as conn:
        rows = conn.execute("SELECT kind, detail FROM device_events ORDER BY kind").fetchall()
    assert rows == [
        ("care", {"activity": "presence", "code": "stc 0088"}),
        ("device_fault", {"fault": "low_battery", "code": "stc 0016"}),
    ]
    assert count(tsdb.dsn, "SELECT count(*) FROM alerts") == 0
