"""Edge cases found in review: each once hung, corrupted or killed a session."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest
import securepy
from securepy import errors


def add(a: int, b: int) -> int:
    """Their sum."""
    return a + b


def test_on_output_raising_after_a_serial_tool_call_does_not_hang(twin: Any) -> None:
    session = twin(tools=[add])

    def on_output(stream: str, text: str) -> None:
        raise RuntimeError("callback bug")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^callback bug$"):
        session.execute("x = add(1, 2)\nprint('hi')\nx", on_output=on_output, timeout=20)
    assert time.monotonic() - started < 10
    assert session.execute("add(2, 2)").value == 4


def test_a_tool_raising_system_exit_still_answers(twin: Any) -> None:
    def quit_now() -> None:
        """Exits."""
        sys.exit(2)

    session = twin(tools=[securepy.Tool("quit_now", "Exits.", quit_now)])
    code = "try:\n    quit_now()\nexcept ToolError as e:\n    r = str(e)\nr"
    assert session.execute(code, timeout=20).value == "quit_now() failed: SystemExit: 2"


def test_a_tools_own_timeout_error_is_a_tool_error(twin: Any) -> None:
    async def flaky() -> None:
        """Times out upstream."""
        raise TimeoutError("upstream timed out")

    session = twin(tools=[securepy.Tool("flaky", "Times out.", flaky)])
    code = "try:\n    flaky()\nexcept ToolError as e:\n    r = str(e)\nr"
    assert session.execute(code, timeout=20).value == (
        "flaky() failed: TimeoutError: upstream timed out")


def test_large_concurrent_replies_do_not_interleave(twin: Any) -> None:
    async def big(n: int) -> str:
        """A long string."""
        await asyncio.sleep(0.01)
        return str(n) * 3_000_000

    session = twin(tools=[securepy.Tool("big", "Long.", big)])
    code = ("from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor(6) as ex:\n    res = list(ex.map(big, range(1, 7)))\n"
            "[(len(r), r[:1]) for r in res]")
    expected = [(3_000_000, str(n)) for n in range(1, 7)]
    for _ in range(2):
        assert session.execute(code, timeout=60).value == expected


def test_a_thread_left_running_may_call_tools_between_turns(twin: Any) -> None:
    session = twin(tools=[add])
    session.execute("import threading, time\nresults = []\n"
                    "def later():\n    time.sleep(0.3)\n    results.append(add(1, 2))\n"
                    "t = threading.Thread(target=later)\nt.start()")
    time.sleep(0.6)  # the thread's call waits in the socket until the next turn reads it
    assert session.execute("t.join(10)\nresults").value == [3]
    assert session.execute("1 + 1").value == 2


@pytest.mark.parametrize("code", ["return 1", "def f(a, a):\n    pass", "nonlocal x"],
                         ids=["return-outside", "duplicate-argument", "nonlocal-at-top"])
def test_compiler_syntax_errors_are_caught_on_the_host(code: str) -> None:
    with securepy.Session(sandbox=False) as session, pytest.raises(
            errors.CodeValidationError):
        session.execute(code)


def test_closing_a_session_stops_a_running_execute() -> None:
    session = securepy.Session(sandbox=False)
    outcome: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        try:
            session.execute("print('go')\nimport time\ntime.sleep(30)",
                            on_output=lambda s, t: started.set(), timeout=None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    begun = time.monotonic()
    session.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - begun < 5
    assert isinstance(outcome[0], errors.SessionClosedError)
    assert str(outcome[0]) == "the session was closed while this execute ran"


async def test_closing_an_async_session_stops_a_running_execute() -> None:
    session = securepy.AsyncSession(sandbox=False)
    started = asyncio.Event()
    task = asyncio.ensure_future(session.execute(
        "print('go')\nimport time\ntime.sleep(30)", on_output=lambda s, t: started.set(),
        timeout=None))
    await asyncio.wait_for(started.wait(), 10)
    begun = time.monotonic()
    await session.close()
    with pytest.raises(errors.SessionClosedError, match="closed while this execute ran"):
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - begun < 5


def test_a_refusal_right_after_a_relayed_tool_call_is_always_answered() -> None:
    """Single-threaded code's tool calls are run by a tool thread that then reads the next
    message itself; a call the host refuses (policy, max_calls) goes back to the caller to
    answer. However quickly that happens, the refusal must be sent (it once could be left
    unanswered, the code then waiting forever)."""

    def fetch(key: str) -> str:
        """Fetch a key."""
        return key.upper()

    def delete_all() -> str:
        """Delete everything."""
        return "deleted"

    tools = [securepy.Tool("fetch", "Fetch a key.", fetch, max_calls=2),
             securepy.Tool("delete_all", "Delete.", delete_all, approve=lambda request: False)]
    code = """
def attempt(f, *args):
    try:
        return f(*args)
    except (PolicyError, ToolError) as e:
        return type(e).__name__
[attempt(fetch, "a"), attempt(delete_all), attempt(fetch, "b"), attempt(fetch, "c")]
"""
    # The race was widest at a session's first relayed call (its tool thread is new).
    for _ in range(60):
        with securepy.Session(tools=tools, sandbox=False, timeout=5) as session:
            session.execute("from securepy_tools import PolicyError, ToolError")
            assert session.execute(code).value == ["A", "PolicyError", "B", "PolicyError"]
