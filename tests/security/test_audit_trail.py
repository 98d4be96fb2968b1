"""The audit trail never raises and cannot be flooded by the sandboxed code.

Attacks: tool arguments the JSON encoder chokes on (ints past 4,300 digits, NaN, bytes, sets,
objects whose repr fails), values built to make one line huge (long text, millions of tiny
items, deep nesting), a payload hidden past the truncation point, a loop of denied calls that
would make the host write and sync its disk for each, a lost record that the chain alone
cannot show. Controls: ordinary events are written whole, one line each, and verify passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import securepy
from securepy import _audit, _audit_record
from securepy._audit import MAX_LINE_BYTES, open_auditor, verify_audit_log


def lines_of(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes().splitlines()
    assert all(len(line) + 1 <= MAX_LINE_BYTES for line in raw)
    return [json.loads(line) for line in raw]


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class NotAStringRepr:
    def __repr__(self) -> Any:
        return 42


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = {
    "huge-int": 10**5000,
    "negative-huge-int": -(2**100_000),
    "nan-inf": [float("nan"), float("inf"), -float("inf")],
    "bytes": b"\x00\xff" * 1_000_000,
    "bytearray": bytearray(b"x" * 100),
    "set": {1, 2, 10**6000},
    "frozenset-key": {frozenset({1}): "v", (1, 2): "t", 10**5000: "big"},
    "broken-repr": BrokenRepr(),
    "non-str-repr": NotAStringRepr(),
    "long-text": "a" * 5_000_000,
    "escapes": "\x00\u2028\udcff" * 200_000,
    "many-tiny": [[0]] * 1_000_000,
    "wide-dict": {str(i): i for i in range(100_000)},
    "deep": nested(500),
    "complex": 1 + 2j,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_any_value_is_recorded_in_a_bounded_json_line(name: str, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    received: list[dict[str, Any]] = []
    auditor = open_auditor("s1", log, received.append)
    assert auditor is not None
    auditor.emit("tool_call", {"tool": "t", "arguments": {"x": HOSTILE[name]}})
    auditor.emit("tool_error", {"tool": "t", "message": HOSTILE[name]})
    auditor.close()
    events = lines_of(log)
    assert [e["seq"] for e in events] == [1, 2]
    assert verify_audit_log(log).ok
    for record in received:  # the callback gets only JSON-serialisable records
        json.dumps(record, allow_nan=False)


def test_control_ordinary_values_are_written_whole(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    arguments = {"table": "users", "limit": 10, "ratio": 0.5, "tags": ["a", "b"], "ok": True}
    auditor.emit("tool_call", {"tool": "query", "arguments": arguments})
    auditor.close()
    (event,) = lines_of(log)
    assert event["arguments"] == arguments
    assert "arguments_sha256" not in event


def test_a_payload_past_the_cut_stays_visible_with_size_and_hash(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    text = "harmless " * 10_000 + "rm -rf / # PAYLOAD"
    rows = [*range(10_000), "LAST-ROW-PAYLOAD"]
    auditor.emit("tool_call", {"tool": "t", "arguments": {"text": text, "rows": rows}})
    auditor.close()
    (event,) = lines_of(log)
    assert event["arguments"]["text"].endswith("rm -rf / # PAYLOAD")
    assert "...[truncated: " in event["arguments"]["text"]
    assert event["arguments"]["rows"][-1] == "LAST-ROW-PAYLOAD"
    assert event["arguments_size"] > len(text)
    assert len(event["arguments_sha256"]) == 64


def test_a_huge_int_argument_from_the_sandbox_is_audited_not_raised(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    received: list[dict[str, Any]] = []

    def echo(x: Any) -> str:
        """Echo."""
        return "ran"

    tool = securepy.Tool(
        "echo",
        "Echo.",
        echo,
        parameters={"type": "object", "properties": {"x": {}}, "required": ["x"]},
    )
    with securepy.Session([tool], sandbox=False, audit_log=log, audit=received.append) as session:
        assert session.execute("echo(10**5000)").value == "ran"
        assert session.execute("echo(1)").value == "ran"  # control
    events = lines_of(log)
    call = next(e for e in events if e["event"] == "tool_call")
    assert call["arguments"]["x"]["$type"] == "int"
    assert verify_audit_log(log).ok
    for record in received:
        json.dumps(record, allow_nan=False)


@pytest.mark.sandbox
def test_a_flood_of_denied_calls_is_aggregated(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    tool = securepy.Tool("nope", "Always denied.", lambda: None, approve=lambda call: "no")
    code = """
n = 0
for _ in range(3000):
    try:
        nope()
    except PolicyError:
        n += 1
n
"""
    with securepy.Session([tool], audit_log=log) as session:
        assert session.execute(code, timeout=120).value == 3000
    events = lines_of(log)
    assert len(events) < 3 * _audit.BURST_RECORDS * 10  # not thousands of synced lines
    written = sum(1 for e in events if e["event"] == "policy_denied")
    aggregated = [e for e in events if e["event"] == "events_aggregated"]
    counted = sum(e["count"] for e in aggregated if e["aggregated_event"] == "policy_denied")
    assert written + counted == 3000
    assert all(e["tools"] == {"nope": e["count"]} for e in aggregated)
    assert verify_audit_log(log).ok


def test_control_a_few_denied_calls_are_each_written(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    tool = securepy.Tool("nope", "Always denied.", lambda: None, approve=lambda call: "no")
    code = "for _ in range(5):\n    try:\n        nope()\n    except PolicyError:\n        pass"
    with securepy.Session([tool], sandbox=False, audit_log=log) as session:
        session.execute(code)
    events = lines_of(log)
    assert sum(1 for e in events if e["event"] == "policy_denied") == 5
    assert not [e for e in events if e["event"] == "events_aggregated"]


def test_verify_reports_a_record_lost_to_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    auditor.emit("one", {})
    real_append = _audit.AuditFile.append

    def failing(self: Any, record: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_audit.AuditFile, "append", failing)
    auditor.emit("lost", {})  # logged, not raised
    monkeypatch.setattr(_audit.AuditFile, "append", real_append)
    auditor.emit("three", {})
    auditor.close()
    result = verify_audit_log(log)
    assert not result.ok
    assert result.broken_line == 2
    assert result.gaps == (
        "line 2: session s1 jumps from seq 1 to 3 (1 records missing: a "
        "write failed or lines were removed)",
    )


def test_control_an_intact_log_has_no_gaps(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for session_id in ("a", "b"):
        auditor = open_auditor(session_id, log, None)
        assert auditor is not None
        auditor.emit("one", {})
        auditor.emit("two", {})
        auditor.close()
    result = verify_audit_log(log)
    assert result.ok and result.gaps == () and result.lines == 4


def test_a_failing_record_builder_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    calls = []

    def explode(value: Any, budget: list[int], depth: int) -> Any:
        calls.append(1)
        raise RecursionError("boom")

    monkeypatch.setattr(_audit_record, "_json_safe", explode)
    auditor.emit("x", {"field": 1})
    auditor.close()
    (event,) = lines_of(log)
    assert event["event"] == "x" and event["record_error"] == "RecursionError" and calls
