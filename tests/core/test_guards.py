"""Session guards and defaults: the code-length default, the cap on one execute's messages, and
what a session tells about itself (repr, verbose logs)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from securepy import _turn, errors


def lookup(key: str) -> str:
    """Echo a key."""
    return key


def explode() -> None:
    """Always fails."""
    raise ValueError("boom")


def test_code_length_is_capped_at_100000_characters_by_default(twin: Any) -> None:
    session = twin()
    assert session.execute("1" + " " * 99_999).value == 1  # control: exactly at the cap
    with pytest.raises(
        errors.PolicyError,
        match=r"^the code is 100001 characters long, over max_code_length=100000$",
    ):
        session.execute("1" + " " * 100_000)


def test_the_code_length_cap_can_be_turned_off(twin: Any) -> None:
    session = twin(max_code_length=None)
    assert session.execute("1" + " " * 200_000).value == 1


def test_messages_of_one_execute_are_capped(twin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_turn, "MAX_MESSAGES", 100)
    session = twin(tools=[lookup])
    session.execute("kept = 1")
    # Control: under the cap, output lines and tool calls alike.
    assert session.execute("for i in range(40):\n    print(i)\n    lookup('k')\n1").value == 1
    with pytest.raises(
        errors.ResourceLimitError,
        match=r"^the code sent more than 100 messages \(output lines and tool calls\) in one "
        r"execute; the child was stopped and the session restarted with a fresh namespace$",
    ) as caught:
        session.execute("for i in range(1000):\n    print(i)")
    assert caught.value.limit == "messages"
    assert caught.value.state_kept is False
    assert session.execute("2 + 2").value == 4


def test_repr_names_the_pid_and_the_tools(twin: Any) -> None:
    session = twin(tools=[lookup])
    inner = session.inner
    kind = type(inner).__name__
    pid = inner._child.process.pid
    assert repr(inner) == f"<securepy.{kind} {inner.id} open sandbox=False pid={pid} tools=1>"
    session.close()
    assert repr(inner) == f"<securepy.{kind} {inner.id} closed sandbox=False tools=1>"


def test_verbose_logs_each_tool_call(twin: Any, caplog: pytest.LogCaptureFixture) -> None:
    session = twin(tools=[lookup, explode], verbose=True)
    with caplog.at_level(logging.INFO, logger="securepy"):
        # A serial call (relayed by the tool thread), then two at once.
        session.execute(
            "lookup('a')\n"
            "import threading\n"
            "threads = [threading.Thread(target=lookup, args=('b',)) for _ in range(2)]\n"
            "[t.start() for t in threads]\n[t.join() for t in threads]\n"
            "try:\n    explode()\nexcept ToolError:\n    pass"
        )
    sid = session.inner.id
    lines = [
        re.sub(r"\d+\.\d+ s", "T s", r.getMessage())
        for r in caplog.records
        if "tool" in r.getMessage()
    ]
    assert lines == [f"session {sid}: tool lookup returned in T s"] * 3 + [
        f"session {sid}: tool explode failed in T s: ValueError"
    ]
