"""Tool calls through a real child, each scenario run through both twins: how the code calls
host tools, how calls are refused, answered and recorded, and the call lifecycle seen from
legitimate code (the same rules under attack: tests/security/test_call_lifecycle.py; without a
process: test_turn.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest
import securepy
from securepy import errors


def query_db(table: str, limit: int = 3) -> list[dict[str, Any]]:
    """Rows of a table."""
    return [{"table": table, "id": i} for i in range(limit)]


async def double_later(x: int) -> int:
    """Twice x, after a pause."""
    await asyncio.sleep(0.01)
    return x * 2


def explode(message: str) -> None:
    """Always fails."""
    raise ValueError(message)


def echo(x: int) -> int:
    """Its argument."""
    return x


def add(a: int, b: int) -> int:
    """Their sum."""
    return a + b


def test_tools_are_real_functions_inside(twin: Any) -> None:
    session = twin(tools=[query_db])
    assert session.execute("query_db('cars', 2)").value == [
        {"table": "cars", "id": 0}, {"table": "cars", "id": 1}]
    assert session.execute("query_db(table='cars', limit=1)").value == [
        {"table": "cars", "id": 0}]
    assert session.execute("import inspect\nstr(inspect.signature(query_db))").value == (
        "(table: str, limit: int = 3) -> list[dict[str, Any]]")
    assert session.execute("query_db.__doc__, query_db.__name__").value == (
        "Rows of a table.", "query_db")
    assert session.execute("from securepy_tools import query_db as q\nq('a', 1)").value == [
        {"table": "a", "id": 0}]
    assert session.execute("import io, contextlib\nbuf = io.StringIO()\n"
                           "with contextlib.redirect_stdout(buf): help(query_db)\n"
                           "'Rows of a table.' in buf.getvalue()").value is True


def test_tool_calls_are_recorded(twin: Any) -> None:
    session = twin(tools=[query_db])
    result = session.execute("len(query_db('t', 1))")
    (call,) = result.tool_calls
    assert (call.name, call.arguments, call.ok, call.error) == ("query_db", {"table": "t",
                                                                            "limit": 1}, True, None)
    assert call.duration >= 0


def test_async_host_tools(twin: Any) -> None:
    session = twin(tools=[double_later])
    assert session.execute("double_later(21)").value == 42


def test_tool_exception_is_catchable_inside(twin: Any) -> None:
    session = twin(tools=[explode])
    code = ("try:\n    explode('kaboom')\nexcept ToolError as e:\n"
            "    caught = (type(e).__name__, str(e), e.tool, e.type_name)\ncaught")
    assert session.execute(code).value == (
        "ToolError", "explode() failed: ValueError: kaboom", "explode", "ValueError")
    with pytest.raises(errors.ExecutionError, match=r"^ToolError: explode\(\) failed"):
        session.execute("explode('x')")


BAD_CALLS = {
    "unknown-argument": ("query_db('t', color='red')", "got an unexpected keyword argument"),
    "missing-argument": ("query_db()",
                         "query_db() missing 1 required positional argument: 'table'"),
    "wrong-type": ("query_db('t', 'many')", "argument 'limit': Input should be a valid integer"),
}


@pytest.mark.parametrize(("code", "message"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_tool_arguments_are_refused_with_a_clear_message(twin: Any, code: str,
                                                             message: str) -> None:
    session = twin(tools=[query_db])
    with pytest.raises(errors.ExecutionError) as info:
        session.execute(code)
    assert message in str(info.value)


def test_host_validates_arguments_even_when_the_stub_is_bypassed(twin: Any) -> None:
    session = twin(tools=[query_db])
    # Hostile code skips the stub's signature and talks to the broker directly.
    code = ("brk = query_db.__globals__['_call'].__self__\n"
            "try:\n    brk.call('query_db', {'table': 't', 'evil': 1})\n"
            "except ToolError as e:\n    r = str(e)\nr")
    assert session.execute(code).value == "query_db(): unexpected argument 'evil'"
    code2 = ("try:\n    brk.call('no_such_tool', {})\nexcept ToolError as e:\n    r = str(e)\nr")
    assert session.execute(code2).value == (
        "there is no tool named 'no_such_tool'; available: query_db")


def test_max_tool_calls_refuses_further_calls_inside(twin: Any) -> None:
    session = twin(tools=[query_db], max_tool_calls=2)
    code = ("out = []\nfor i in range(3):\n    try:\n        query_db('t', 0)\n"
            "        out.append('ok')\n    except PolicyError as e:\n"
            "        out.append(str(e))\nout")
    assert session.execute(code).value == [
        "ok", "ok", "this execution may make at most 2 tool calls (max_tool_calls)"]
    assert session.execute(code, max_tool_calls=None).value == ["ok", "ok", "ok"]


def test_many_serial_tool_calls_keep_order_output_and_records(twin: Any) -> None:
    session = twin(tools=[echo])
    seen: list[str] = []
    result = session.execute("total = 0\nfor i in range(300):\n    total += echo(i)\n"
                             "    if i % 100 == 0:\n        print('at', i)\ntotal",
                             on_output=lambda stream, text: seen.append(text))
    assert result.value == sum(range(300))
    assert result.stdout == "at 0\nat 100\nat 200\n"
    assert "".join(seen) == result.stdout
    assert len(result.tool_calls) == 300
    assert [c.arguments["x"] for c in result.tool_calls[:3]] == [0, 1, 2]


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


def test_a_thread_may_hold_a_call_across_the_end_of_its_turn(twin: Any) -> None:
    """The host refuses a turn's end while one of its calls is outstanding; the worker waits
    for a call a thread of the code left running, so legitimate code is not hit."""

    def slow_add(a: int, b: int) -> int:
        """Their sum, slowly."""
        time.sleep(0.3)
        return a + b

    session = twin(tools=[securepy.Tool("slow_add", "Add slowly.", slow_add)])
    result = session.execute("import threading\nout = []\n"
                             "t = threading.Thread(target=lambda: out.append(slow_add(1, 2)))\n"
                             "t.start()\n'returned'", timeout=20)
    assert result.value == "returned"
    assert [c.name for c in result.tool_calls] == ["slow_add"]
    assert session.execute("t.join(10)\nout").value == [3]


def test_a_result_of_a_finished_turn_is_never_sent_to_a_later_one() -> None:
    release = threading.Event()

    def hold() -> str:
        """Waits for the test."""
        release.wait(10)
        return "late"

    with securepy.Session([securepy.Tool("hold", "Waits.", hold), echo],
                          sandbox=False) as session:
        sent: list[bytes] = []
        child = session._child
        assert child is not None
        send_frame = child.channel.send_frame

        def record(frame: bytes, deadline: float | None = None) -> None:
            sent.append(frame)
            send_frame(frame, deadline)

        child.channel.send_frame = record  # type: ignore[method-assign]
        with pytest.raises(errors.ExecutionTimeout):
            session.execute("hold()", timeout=0.5)
        release.set()
        time.sleep(0.3)  # the tool has returned "late" on the host by now
        assert session.execute("echo(5)").value == 5
        assert not [f for f in sent if b'"late"' in f]
        # Control: in time, the same tool's value is sent.
        assert session.execute("hold()").value == "late"
        assert [f for f in sent if b'"late"' in f]
