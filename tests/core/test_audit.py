"""The audit log: events and their fields in real sessions, the hash chain, file safety."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import securepy
from securepy._audit import (
    VerifyResult,
    check_audit_path,
    open_auditor,
    verify_audit_log,
)
from securepy._audit_record import GENESIS_HASH

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def only(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [e for e in events if e["event"] == name]
    assert len(found) == 1, f"expected one {name}, got {found}"
    return found[0]


# -- every event, with its fields, from a real session -------------------------------------


@pytest.fixture
def audited_run(tmp_path: Path) -> tuple[Path, list[dict[str, Any]], str]:
    """One session that goes through every event; returns (log path, callback events, id)."""
    log = tmp_path / "audit.jsonl"
    received: list[dict[str, Any]] = []

    def double(x: int) -> int:
        return x * 2

    def broken() -> None:
        raise KeyError("missing")

    def deny_all(call: Any) -> str:
        return f"refused {call.tool} with {dict(call.arguments)}"

    tools = [
        securepy.Tool("double", "Double a number.", double),
        securepy.Tool("broken", "Always fails.", broken),
        securepy.Tool("secret", "Denied.", lambda key: key, args={"key": str}, approve=deny_all),
    ]
    limits = securepy.Limits(memory_bytes=256 * 1024 * 1024)
    with securepy.Session(
        tools,
        sandbox=False,
        limits=limits,
        audit_log=log,
        audit=received.append,
        max_code_length=50_000,
    ) as session:
        session_id = session.id
        assert session.execute("print('hi'); double(21)").value == 42
        with pytest.raises(securepy.ExecutionError):
            session.execute("broken()")
        caught = session.execute(
            "try:\n    secret('db')\nexcept PolicyError as e:\n    seen = str(e)\nseen"
        )
        assert caught.value == "refused secret with {'key': 'db'}"
        with pytest.raises(securepy.ExecutionError, match=r"^ZeroDivisionError: "):
            session.execute("1/0")
        with pytest.raises(securepy.ExecutionTimeout):
            session.execute("while True: pass", timeout=0.3)
        with pytest.raises(securepy.ResourceLimitError):
            session.execute("x = bytearray(2 * 1024**3)")
        with pytest.raises(securepy.PolicyError):
            session.execute("x" * 50_001)
        session.restart()
    return log, received, session_id


def test_every_line_has_the_common_fields_in_order(
    audited_run: tuple[Path, list[dict[str, Any]], str],
) -> None:
    log, _, session_id = audited_run
    events = read_events(log)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert list(event)[:4] == ["timestamp", "event", "session_id", "seq"]
        assert list(event)[-2:] == ["prev_hash", "hash"]
        assert TIMESTAMP.match(event["timestamp"])
        assert event["session_id"] == session_id
    assert events[0]["event"] == "session_start"
    assert events[-1]["event"] == "session_close"


def test_the_event_sequence(audited_run: tuple[Path, list[dict[str, Any]], str]) -> None:
    log, _, _ = audited_run
    assert [e["event"] for e in read_events(log)] == [
        "session_start",
        "execute_start",
        "tool_call",
        "tool_result",
        "execute_complete",
        "execute_start",
        "tool_call",
        "tool_error",
        "execute_error",
        "execute_start",
        "tool_call",
        "policy_denied",
        "execute_complete",
        "execute_start",
        "execute_error",
        "execute_start",
        "execute_timeout",
        "execute_start",
        "limit_exceeded",
        "policy_denied",
        "session_restart",
        "session_close",
    ]


def test_session_events_fields(audited_run: tuple[Path, list[dict[str, Any]], str]) -> None:
    log, _, _ = audited_run
    events = read_events(log)
    start = only(events, "session_start")
    assert start["sandbox"] is False
    assert isinstance(start["pid"], int) and start["pid"] > 0
    assert start["limits"]["memory_bytes"] == 256 * 1024 * 1024
    restart = only(events, "session_restart")
    assert restart["reason"] == "restart() was called"
    assert restart["pid"] != start["pid"]


def test_execute_events_fields(audited_run: tuple[Path, list[dict[str, Any]], str]) -> None:
    log, _, _ = audited_run
    events = read_events(log)
    first = next(e for e in events if e["event"] == "execute_start")
    code = "print('hi'); double(21)"
    assert first["code"] == code
    assert first["sha256"] == hashlib.sha256(code.encode()).hexdigest()
    complete = next(e for e in events if e["event"] == "execute_complete")
    assert complete["stdout_bytes"] == 3 and complete["stderr_bytes"] == 0
    assert 0 < complete["duration"] < 30
    assert complete["cpu_seconds"] >= 0 and complete["peak_memory_bytes"] > 0
    errors = [e for e in events if e["event"] == "execute_error"]
    assert [e["type"] for e in errors] == ["ToolError", "ZeroDivisionError"]
    assert errors[1]["message"] == "division by zero"
    timeout = only(events, "execute_timeout")
    assert timeout["timeout"] == 0.3 and timeout["state_kept"] is True
    limit = only(events, "limit_exceeded")
    assert limit["limit"] == "memory"


def test_tool_events_fields(audited_run: tuple[Path, list[dict[str, Any]], str]) -> None:
    log, _, _ = audited_run
    events = read_events(log)
    calls = [e for e in events if e["event"] == "tool_call"]
    assert [(c["tool"], c["arguments"]) for c in calls] == [
        ("double", {"x": 21}),
        ("broken", {}),
        ("secret", {"key": "db"}),
    ]
    result = only(events, "tool_result")
    assert result["tool"] == "double" and result["result_size"] > 0
    assert 0 <= result["duration"] < 30
    error = only(events, "tool_error")
    assert error["tool"] == "broken" and error["type"] == "KeyError"
    assert error["message"] == "'missing'"


def test_policy_denied_for_a_tool_and_for_an_execute(
    audited_run: tuple[Path, list[dict[str, Any]], str],
) -> None:
    log, _, _ = audited_run
    denied = [e for e in read_events(log) if e["event"] == "policy_denied"]
    assert denied[0]["what"] == "tool_call"
    assert denied[0]["tool"] == "secret"
    assert denied[0]["arguments"] == {"key": "db"}
    assert denied[0]["reason"] == "refused secret with {'key': 'db'}"
    assert denied[1]["what"] == "execute"
    assert denied[1]["reason"] == ("the code is 50001 characters long, over max_code_length=50000")


def test_the_callback_gets_the_same_dicts_as_the_file(
    audited_run: tuple[Path, list[dict[str, Any]], str],
) -> None:
    log, received, _ = audited_run
    assert received == read_events(log)


def test_the_chain_of_a_real_session_verifies(
    audited_run: tuple[Path, list[dict[str, Any]], str],
) -> None:
    log, _, _ = audited_run
    events = read_events(log)
    result = verify_audit_log(log)
    assert result == VerifyResult(True, len(events), None, "", events[-1]["hash"])
    assert events[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert HEX64.match(after["hash"])
        assert after["prev_hash"] == before["hash"]


async def test_async_session_writes_the_same_events(tmp_path: Path) -> None:
    log = tmp_path / "async.jsonl"
    tool = securepy.Tool("double", "Double.", lambda x: x * 2, args={"x": int})
    async with securepy.AsyncSession([tool], sandbox=False, audit_log=log) as session:
        assert (await session.execute("double(2)")).value == 4
    assert [e["event"] for e in read_events(log)] == [
        "session_start",
        "execute_start",
        "tool_call",
        "tool_result",
        "execute_complete",
        "session_close",
    ]
    assert verify_audit_log(log).ok


# -- bounding what goes into a line ---------------------------------------------------------


def test_long_code_keeps_head_and_tail_with_its_length_and_hash(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    code = "x = 1\n" + "#" * 20_000 + "\nimport os  # the payload after the cut"
    with securepy.Session(sandbox=False, audit_log=log) as session:
        session.execute(code)
    start = only(read_events(log), "execute_start")
    assert start["code"].startswith(code[:7_000])
    assert start["code"].endswith("import os  # the payload after the cut")
    assert len(start["code"]) < 10_100
    assert "...[truncated: " in start["code"]
    assert start["code_length"] == len(code)
    assert start["sha256"] == start["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()


def test_tool_arguments_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    echo = securepy.Tool(
        "echo", "Echo.", lambda text, items: len(text), args={"text": str, "items": list}
    )
    with securepy.Session([echo], sandbox=False, audit_log=log) as session:
        assert session.execute("echo('a' * 200_000, list(range(10_000)))").value == 200_000
    call = only(read_events(log), "tool_call")
    assert len(json.dumps(call["arguments"])) < 6_000
    assert call["arguments"]["text"].startswith("aaaa")
    assert "truncated" in call["arguments"]["text"]
    assert len(log.read_bytes()) < 30_000


def test_values_that_are_not_json_are_written_as_tagged_text(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None

    class Odd:
        def __repr__(self) -> str:
            return "<Odd>"

    auditor.emit(
        "custom",
        {
            "thing": Odd(),
            "nan": float("nan"),
            "tuple": (1, b"x"),
            "keys": {1: "one"},
            "seq": "not allowed to override",
        },
    )
    auditor.close()
    (event,) = read_events(log)
    assert event["thing"] == {"$type": f"{__name__}.{Odd.__qualname__}", "text": "<Odd>"}
    assert event["nan"] == {"$type": "float", "text": "nan"}
    assert event["tuple"] == [1, {"$type": "bytes", "length": 1, "text": "b'x'"}]
    assert event["keys"] == {"1": "one"}
    assert event["seq"] == 1
    assert verify_audit_log(log).ok


def test_no_sinks_means_no_auditor() -> None:
    assert open_auditor("s1", None, None) is None


# -- tamper evidence ------------------------------------------------------------------------


@pytest.fixture
def chained_log(tmp_path: Path) -> Path:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    for index in range(6):
        auditor.emit("execute_start", {"code": f"x = {index}"})
    auditor.close()
    assert verify_audit_log(log) == VerifyResult(True, 6, None, "", read_events(log)[-1]["hash"])
    return log


def rewrite(log: Path, lines: list[str]) -> None:
    log.write_text("".join(lines))


@pytest.mark.parametrize("line", [0, 3, 5], ids=["first", "middle", "last"])
def test_editing_any_line_is_detected_at_that_line(chained_log: Path, line: int) -> None:
    lines = chained_log.read_text().splitlines(keepends=True)
    lines[line] = lines[line].replace(f"x = {line}", "x = 9")
    rewrite(chained_log, lines)
    result = verify_audit_log(chained_log)
    assert (result.ok, result.broken_line) == (False, line + 1)
    assert result.reason == "the line's content does not match its hash: it was edited"


def test_editing_a_line_and_its_hash_is_detected_at_the_next_line(chained_log: Path) -> None:
    lines = chained_log.read_text().splitlines(keepends=True)
    record = json.loads(lines[2])
    record["code"] = "x = 99"
    del record["hash"]
    body = json.dumps(record)
    digest = hashlib.sha256(body.encode()).hexdigest()
    lines[2] = f'{body[:-1]}, "hash": "{digest}"}}\n'
    rewrite(chained_log, lines)
    result = verify_audit_log(chained_log)
    assert (result.ok, result.broken_line) == (False, 4)
    assert result.reason.startswith("the line's prev_hash does not match the line before it")


@pytest.mark.parametrize("line", [0, 2], ids=["first", "middle"])
def test_deleting_a_line_is_detected(chained_log: Path, line: int) -> None:
    lines = chained_log.read_text().splitlines(keepends=True)
    del lines[line]
    rewrite(chained_log, lines)
    result = verify_audit_log(chained_log)
    assert (result.ok, result.broken_line) == (False, line + 1)


def test_deleting_the_last_line_changes_the_head(chained_log: Path) -> None:
    # A chain cannot show lines cut from its end; comparing the head with a copy kept
    # elsewhere (the audit= callback sees every hash) can.
    head = verify_audit_log(chained_log).head
    lines = chained_log.read_text().splitlines(keepends=True)
    rewrite(chained_log, lines[:-1])
    result = verify_audit_log(chained_log)
    assert result.ok and result.lines == 5 and result.head != head


@pytest.mark.parametrize("pair", [(0, 1), (2, 4), (4, 5)], ids=["start", "apart", "end"])
def test_reordering_lines_is_detected(chained_log: Path, pair: tuple[int, int]) -> None:
    lines = chained_log.read_text().splitlines(keepends=True)
    first, second = pair
    lines[first], lines[second] = lines[second], lines[first]
    rewrite(chained_log, lines)
    result = verify_audit_log(chained_log)
    assert (result.ok, result.broken_line) == (False, first + 1)


def test_inserting_a_line_is_detected(chained_log: Path) -> None:
    lines = chained_log.read_text().splitlines(keepends=True)
    lines.insert(3, lines[1])
    rewrite(chained_log, lines)
    assert verify_audit_log(chained_log).broken_line == 4


def test_a_line_cut_short_by_a_crash_is_reported_and_later_writes_stay_whole(
    chained_log: Path,
) -> None:
    data = chained_log.read_bytes()
    chained_log.write_bytes(data + b'{"timestamp": "2025-01-0')
    result = verify_audit_log(chained_log)
    assert (result.ok, result.broken_line) == (False, 7)
    assert result.reason.startswith("the line is incomplete")
    auditor = open_auditor("s2", chained_log, None)
    assert auditor is not None
    auditor.emit("session_start", {})
    auditor.close()
    lines = chained_log.read_text().splitlines()
    assert lines[6] == '{"timestamp": "2025-01-0'
    assert json.loads(lines[7])["session_id"] == "s2"
    assert verify_audit_log(chained_log).broken_line == 7


def test_a_new_session_continues_the_chain_of_an_existing_file(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for _ in range(2):
        with securepy.Session(sandbox=False, audit_log=log) as session:
            session.execute("1")
    events = read_events(log)
    assert len({e["session_id"] for e in events}) == 2
    assert verify_audit_log(log).ok


def test_an_empty_file_verifies(tmp_path: Path) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_bytes(b"")
    assert verify_audit_log(log) == VerifyResult(True, 0, None, "", GENESIS_HASH)


# -- sharing one file -----------------------------------------------------------------------


def test_concurrent_sessions_in_threads_write_whole_chained_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    tool = securepy.Tool("echo", "Echo.", lambda text: text, args={"text": str})
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with securepy.Session([tool], sandbox=False, audit_log=log) as session:
                for index in range(5):
                    session.execute(f"echo('{index}' * 5000)")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = read_events(log)
    assert len(events) == 4 * (2 + 5 * 4)
    for session_id in {e["session_id"] for e in events}:
        seqs = [e["seq"] for e in events if e["session_id"] == session_id]
        assert seqs == list(range(1, len(seqs) + 1))
    assert verify_audit_log(log).ok


def test_many_threads_on_one_auditor_keep_sequence_order(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = open_auditor("s1", log, None)
    assert auditor is not None
    threads = [
        threading.Thread(target=lambda: [auditor.emit("tick", {"n": n}) for n in range(50)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    auditor.close()
    assert [e["seq"] for e in read_events(log)] == list(range(1, 401))
    assert verify_audit_log(log).ok


WRITER = """
import sys
from securepy._audit import open_auditor
auditor = open_auditor(sys.argv[2], sys.argv[1], None)
for n in range(200):
    auditor.emit("tick", {"n": n, "pad": "x" * 3000})
auditor.close()
"""


def test_several_processes_share_one_chained_file(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log), f"p{i}"]) for i in range(3)
    ]
    assert [p.wait(60) for p in processes] == [0, 0, 0]
    events = read_events(log)
    assert len(events) == 600
    assert verify_audit_log(log).ok


# -- the file itself ------------------------------------------------------------------------


def test_the_file_is_created_owner_only(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    old = os.umask(0)
    try:
        with securepy.Session(sandbox=False, audit_log=log):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def refused(path: Path, what: str) -> str:
    return (
        rf"^the audit log {re.escape(repr(str(path)))} {what}; audit_log= must name a "
        r"regular file \(or a new one to create\) in a directory you control, not a "
        r"symlink, a directory or a device$"
    )


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(ValueError, match=refused(link, "is a symbolic link")):
        securepy.Session(sandbox=False, audit_log=link)
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=refused(dangling, "is a symbolic link")):
        securepy.Session(sandbox=False, audit_log=dangling)
    assert not (tmp_path / "nowhere").exists()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=refused(tmp_path, "is a directory")):
        securepy.Session(sandbox=False, audit_log=tmp_path)


def test_a_device_is_refused() -> None:
    with pytest.raises(ValueError, match=refused(Path("/dev/null"), "is a device")):
        securepy.Session(sandbox=False, audit_log="/dev/null")


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=refused(fifo, "is not a regular file")):
        securepy.Session(sandbox=False, audit_log=fifo)


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "audit.jsonl"
    with pytest.raises(
        ValueError,
        match=r"^cannot open the audit log .*: its directory .* "
        r"does not exist; create it or pass another "
        r"audit_log= path$",
    ):
        securepy.Session(sandbox=False, audit_log=path)


def test_check_audit_path_refuses_early_without_creating(tmp_path: Path) -> None:
    check_audit_path(tmp_path / "new.jsonl")
    assert not (tmp_path / "new.jsonl").exists()
    with pytest.raises(ValueError, match=refused(tmp_path, "is a directory")):
        check_audit_path(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"^cannot open the audit log .*: its directory .* "
        r"does not exist; create it or pass another",
    ):
        check_audit_path(tmp_path / "no" / "a.jsonl")


def test_a_failing_callback_is_logged_and_the_session_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "audit.jsonl"

    def explode(event: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    with (
        caplog.at_level(logging.WARNING, logger="securepy"),
        securepy.Session(sandbox=False, audit_log=log, audit=explode) as session,
    ):
        assert session.execute("6 * 7").value == 42
    failures = [r for r in caplog.records if "audit callback failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert [e["event"] for e in read_events(log)][-1] == "session_close"


def test_the_callback_alone_gets_events_without_a_chain() -> None:
    received: list[dict[str, Any]] = []
    with securepy.Session(sandbox=False, audit=received.append) as session:
        session.execute("1")
    assert [e["event"] for e in received] == [
        "session_start",
        "execute_start",
        "execute_complete",
        "session_close",
    ]
    assert all("hash" not in e for e in received)


@pytest.mark.sandbox
def test_a_sandboxed_session_is_audited(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lookup = securepy.Tool("lookup", "Look up.", lambda key: key.upper(), args={"key": str})
    with securepy.Session([lookup], audit_log=log) as session:
        assert session.execute("lookup('a')").value == "A"
    events = read_events(log)
    assert [e["event"] for e in events] == [
        "session_start",
        "execute_start",
        "tool_call",
        "tool_result",
        "execute_complete",
        "session_close",
    ]
    assert events[0]["sandbox"] is True
    assert verify_audit_log(log).ok
