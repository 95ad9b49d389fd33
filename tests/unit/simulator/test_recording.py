"""Recording files: exact bytes round-trip through JSON Lines; bad lines are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.errors import RecordingError
from simulator.recording import Record, parse_record, read_recording


def test_record_round_trips_arbitrary_bytes(tmp_path: Path) -> None:
    records = [
        Record(t_offset_s=0.0, topic="carewatch/v1/gw/dev/json", payload=b'{"a":1}', qos=1, retain=False),
        Record(
            t_offset_s=1.25, topic="carewatch/v1/gw/dev/watch", payload=bytes(range(256)), qos=1, retain=True
        ),
    ]
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(r.to_json_line() + "\n" for r in records) + "\n", encoding="utf-8")
    assert read_recording(path) == records


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not a JSON object"),
        ('{"t_offset_s": -1, "topic": "t", "payload_b64": ""}', "t_offset_s"),
        ('{"t_offset_s": 1, "topic": "", "payload_b64": ""}', "topic"),
        ('{"t_offset_s": 1, "topic": "t", "payload_b64": "***"}', "base64"),
        ('{"t_offset_s": 1, "topic": "t", "payload_b64": "", "qos": 3}', "qos"),
    ],
)
def test_bad_line_is_reported_with_its_number(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "rec.jsonl"
    good = Record(t_offset_s=0.0, topic="t", payload=b"x", qos=1, retain=False).to_json_line()
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(RecordingError, match=problem) as caught:
        read_recording(path)
    assert caught.value.line == 2
    assert str(caught.value).startswith(f"{path}:2:")


def test_parse_record_defaults() -> None:
    record = parse_record('{"t_offset_s": 2, "topic": "t", "payload_b64": "eA=="}', path="p", number=1)
    assert (record.payload, record.qos, record.retain) == (b"x", 1, False)
