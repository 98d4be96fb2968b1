"""Session and AsyncSession behaviour, each scenario run through both twins."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
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


def test_value_of_the_last_expression(twin: Any) -> None:
    session = twin()
    assert session.execute("1 + 1").value == 2
    assert session.execute("x = 5").value is None
    assert session.execute("x * 2").value == 10


def test_state_persists_between_executes(twin: Any) -> None:
    session = twin()
    session.execute("import math\ndata = [1, 2, 3]")
    assert session.execute("math.fsum(data)").value == 6.0


def test_stdout_stderr_and_text(twin: Any) -> None:
    session = twin()
    result = session.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n'v'")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.text == "out\n[stderr]\nerr\n'v'"
    assert result.duration > 0


def test_subprocess_output_is_captured(twin: Any) -> None:
    session = twin()
    result = session.execute("import subprocess\nsubprocess.run(['echo', 'from child'])")
    assert result.stdout == "from child\n"


def test_exception_becomes_execution_error_and_session_survives(twin: Any) -> None:
    session = twin()
    session.execute("kept = 'yes'")
    with pytest.raises(errors.ExecutionError) as info:
        session.execute("print('before')\ndef f():\n    raise ValueError('boom')\nf()")
    error = info.value
    assert str(error) == "ValueError: boom"
    assert error.type_name == "ValueError"
    assert error.message == "boom"
    assert error.stdout == "before\n"
    assert 'File "<cell-' in error.traceback and "in f" in error.traceback
    assert "_worker" not in error.traceback and "securepy" not in error.traceback
    assert session.execute("kept").value == "yes"


def test_syntax_errors_are_caught_on_the_host(twin: Any) -> None:
    session = twin()
    with pytest.raises(errors.CodeValidationError,
                       match=r"^.\(. was never closed \(line 2, column 5\)$"):
        session.execute("x = 1\ny = (")
    with pytest.raises(errors.ExecutionError, match="SyntaxError"):
        session.execute("x = (", validate=False)


def test_top_level_await(twin: Any) -> None:
    session = twin()
    assert session.execute("import asyncio\nawait asyncio.sleep(0)\n7").value == 7


def test_tools_are_real_functions_inside(twin: Any) -> None:
    session = twin(tools=[query_db])
    assert session.execute("query_db('cars', 2)").value == [
        {"table": "cars", "id": 0}, {"table": "cars", "id": 1}]
    assert session.execute("query_db(table='cars', limit=1)").value == [
        {"table": "cars", "id": 0}]
    assert session.execute("import inspect\nstr(inspect.signature(query_db))").value == (
        "(table: str, limit: int = 3)")
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


def test_output_streams_before_the_code_finishes(twin: Any) -> None:
    session = twin()
    first_line = threading.Event()
    seen: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        seen.append((stream, text))
        first_line.set()

    # The code waits for the host to have seen its first line: a file the test creates.
    marker = f"/tmp/securepy-stream-{os.getpid()}-{id(seen)}"

    def release() -> None:
        first_line.wait(10)
        with open(marker, "w"):
            pass

    helper = threading.Thread(target=release)
    helper.start()
    try:
        code = (f"import os, time\nprint('first')\nwhile not os.path.exists({marker!r}):\n"
                "    time.sleep(0.01)\nprint('second')")
        result = session.execute(code, on_output=on_output, timeout=20)
    finally:
        helper.join()
        if os.path.exists(marker):
            os.unlink(marker)
    assert seen == [("stdout", "first\n"), ("stdout", "second\n")]
    assert result.stdout == "first\nsecond\n"


def test_output_is_capped_with_a_marker(twin: Any) -> None:
    session = twin(max_output_bytes=1000)
    result = session.execute("print('x' * 5000)\nprint('more')")
    assert result.truncated
    assert result.stdout == "x" * 1000 + "\n[output truncated: over the 1000-byte output limit]\n"


def test_timeout_interrupts_and_keeps_state(twin: Any) -> None:
    session = twin()
    session.execute("kept = 1")
    with pytest.raises(errors.ExecutionTimeout) as info:
        session.execute("print('started')\nwhile True: pass", timeout=0.5)
    assert info.value.state_kept is True
    assert info.value.stdout == "started\n"
    assert isinstance(info.value, TimeoutError)
    assert session.execute("kept").value == 1


def test_timeout_kills_code_that_ignores_interrupts(twin: Any) -> None:
    session = twin()
    session.execute("kept = 1")
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True:\n    pass")
    with pytest.raises(errors.ExecutionTimeout, match="state is lost") as info:
        session.execute(code, timeout=0.5)
    assert info.value.state_kept is False
    assert session.is_alive()
    with pytest.raises(errors.ExecutionError, match="NameError"):
        session.execute("kept")


def test_timeout_none_means_no_timeout(twin: Any) -> None:
    session = twin(timeout=0.2)
    assert session.execute("import time\ntime.sleep(0.4)\n1", timeout=None).value == 1


def test_slow_host_tool_counts_against_the_timeout(twin: Any) -> None:
    release = threading.Event()

    def slow() -> str:
        """Waits."""
        release.wait(10)
        return "done"

    session = twin(tools=[securepy.Tool("slow", "Waits.", slow)])
    try:
        with pytest.raises(errors.ExecutionTimeout) as info:
            session.execute("slow()", timeout=0.5)
        assert info.value.state_kept is True
    finally:
        release.set()


def test_tool_with_its_own_timeout(twin: Any) -> None:
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "done"

    session = twin(tools=[securepy.Tool("slow", "Waits.", slow, timeout=0.3)])
    try:
        code = "try:\n    slow()\nexcept ToolError as e:\n    r = str(e)\nr"
        assert session.execute(code, timeout=10).value == (
            "slow() failed: TimeoutError: the tool did not finish within 0.3 s")
    finally:
        release.set()


def test_ten_megabyte_tool_result_and_value_cross_intact(twin: Any) -> None:
    blob = os.urandom(10 * 1024 * 1024)

    def fetch_blob() -> bytes:
        """Ten megabytes."""
        return blob

    session = twin(tools=[fetch_blob])
    assert session.execute("b = fetch_blob()\nlen(b)").value == len(blob)
    assert session.execute("b").value == blob
    text = session.execute("'é' * 5_000_000").value
    assert text == "é" * 5_000_000


def test_forged_frames_from_the_code_end_only_that_child(twin: Any) -> None:
    session = twin()
    session.execute("state = 1")
    code = ("import os, sys\nfd = int(sys.argv[2])\n"
            "os.write(fd, b'\\x00\\x00\\x00\\x05hello')\nimport time\ntime.sleep(5)")
    with pytest.raises(errors.ProtocolError, match="invalid frame"):
        session.execute(code)
    assert session.is_alive()
    assert session.execute("1 + 1").value == 2
    with pytest.raises(errors.ExecutionError, match="NameError"):
        session.execute("state")


def test_oversized_frame_from_the_code_is_refused(twin: Any) -> None:
    session = twin(max_frame_bytes=1024 * 1024)
    code = ("import os, sys, struct\nfd = int(sys.argv[2])\n"
            "os.write(fd, struct.pack('>I', 2**31))\nimport time\ntime.sleep(5)")
    with pytest.raises(errors.ProtocolError, match="over the 1048576-byte cap"):
        session.execute(code)
    assert session.execute("2").value == 2


def test_result_or_output_over_the_frame_cap_is_refused_and_state_kept(twin: Any) -> None:
    session = twin(max_frame_bytes=1024 * 1024, max_output_bytes=None)
    session.execute("kept = 1")
    with pytest.raises(errors.ResourceLimitError, match="over the host's 1048576-byte frame "
                                                        "limit") as info:
        session.execute("'x' * 2_000_000")
    assert (info.value.limit, info.value.state_kept) == ("output", True)
    # A huge print travels in several frames, each under the cap.
    assert len(session.execute("print('y' * 3_000_000)").stdout) == 3_000_001
    assert session.execute("kept").value == 1


def test_child_exit_is_reported_and_recovered(twin: Any) -> None:
    session = twin()
    with pytest.raises(errors.ProtocolError, match="died unexpectedly") as info:
        session.execute("print('last words')\nimport os\nos._exit(3)")
    assert info.value.stdout == "last words\n"
    assert session.execute("4").value == 4


def test_sys_exit_is_an_ordinary_error(twin: Any) -> None:
    session = twin()
    session.execute("kept = 1")
    with pytest.raises(errors.ExecutionError, match=r"^SystemExit: 2$"):
        session.execute("import sys\nsys.exit(2)")
    assert session.execute("kept").value == 1


def test_guards(twin: Any) -> None:
    session = twin(max_executions=2, max_code_length=20,
                   pre_execute_hook=lambda code: "forbidden" not in code)
    with pytest.raises(errors.PolicyError, match="over max_code_length=20"):
        session.execute("x = '" + "a" * 30 + "'")
    with pytest.raises(errors.PolicyError, match="pre_execute_hook refused"):
        session.execute("forbidden = 1")
    session.execute("1")
    session.execute("2")
    with pytest.raises(errors.PolicyError, match="max_executions=2"):
        session.execute("3")


def test_max_tool_calls_refuses_further_calls_inside(twin: Any) -> None:
    session = twin(tools=[query_db], max_tool_calls=2)
    code = ("out = []\nfor i in range(3):\n    try:\n        query_db('t', 0)\n"
            "        out.append('ok')\n    except PolicyError as e:\n"
            "        out.append(str(e))\nout")
    assert session.execute(code).value == [
        "ok", "ok", "this execution may make at most 2 tool calls (max_tool_calls)"]
    assert session.execute(code, max_tool_calls=None).value == ["ok", "ok", "ok"]


def test_closed_session_refuses(twin: Any) -> None:
    session = twin()
    session.close()
    session.close()
    assert not session.is_alive()
    with pytest.raises(errors.SessionClosedError, match="closed"):
        session.execute("1")


def test_restart_clears_state(twin: Any) -> None:
    session = twin()
    session.execute("x = 1")
    session.restart()
    with pytest.raises(errors.ExecutionError, match="NameError"):
        session.execute("x")


def test_concurrent_execute_on_one_session_is_refused() -> None:
    with securepy.Session(sandbox=False) as session:
        started = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            outcome.append(session.execute("print('go')\nimport time\ntime.sleep(1)",
                                           on_output=lambda s, t: started.set()))

        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(10)
        with pytest.raises(errors.SessionClosedError, match="busy running another execute"):
            session.execute("1")
        thread.join()
        assert outcome[0].stdout == "go\n"


def test_execute_python_one_shot() -> None:
    assert securepy.execute_python("sum(range(10))", sandbox=False) == 45
    assert securepy.execute_python("query_db('t', 1)", tools=[query_db], sandbox=False) == [
        {"table": "t", "id": 0}]
    with pytest.raises(errors.ExecutionError, match="ZeroDivisionError"):
        securepy.execute_python("1 / 0", sandbox=False)


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'timout'"):
        securepy.Session(sandbox=False, timout=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        securepy.Session(sandbox=False, timeout=-1)
    with pytest.raises(TypeError, match=r"limits must be a securepy\.Limits"):
        securepy.Session(sandbox=False, limits={"memory_bytes": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two tools are named 'query_db'"):
        securepy.Session([query_db, query_db], sandbox=False)


def test_no_leaks_across_200_sessions() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    workdirs = []
    for _ in range(200):
        with securepy.Session(sandbox=False) as session:
            session.execute("1")
            workdirs.append(session.execute("import os\nos.getcwd()").value)
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) - fds_before == set()
    assert [d for d in workdirs if os.path.exists(d)] == []


def test_garbage_collected_session_kills_its_child() -> None:
    session = securepy.Session(sandbox=False)
    pid = session._child.process.pid  # type: ignore[union-attr]
    del session
    gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_preload_imports_modules_before_ready() -> None:
    with securepy.Session(sandbox=False, preload=["json", "decimal"]) as session:
        assert session.execute("import sys\n'decimal' in sys.modules").value is True
    with pytest.raises(errors.SandboxUnavailableError,
                       match=r"^the worker failed to start: ModuleNotFoundError: preload of "
                             r"'no_such_module' failed: No module named 'no_such_module'$"):
        securepy.Session(sandbox=False, preload=["no_such_module"])
    with pytest.raises(TypeError, match="preload must be a list of module names"):
        securepy.Session(sandbox=False, preload="numpy")


@pytest.mark.sandbox
def test_sandbox_outlives_the_thread_that_started_it() -> None:
    # --die-with-parent watches the forking *thread*; sessions are often made in pool threads.
    made: list[securepy.Session] = []
    starter = threading.Thread(target=lambda: made.append(securepy.Session()))
    starter.start()
    starter.join()
    with made[0] as session:
        assert session.execute("1 + 1").value == 2


def echo(x: int) -> int:
    """Its argument."""
    return x


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


def test_timeout_while_a_serial_tool_runs_keeps_state(twin: Any) -> None:
    release = threading.Event()

    def stall() -> str:
        """Waits for the test."""
        release.wait(10)
        return "late"

    session = twin(tools=[echo, securepy.Tool("stall", "Waits.", stall)])
    session.execute("kept = echo(7)")
    try:
        with pytest.raises(errors.ExecutionTimeout) as info:
            session.execute("echo(1)\nstall()", timeout=0.5)
        assert info.value.state_kept is True
    finally:
        release.set()
    assert session.execute("kept + echo(1)").value == 8


def test_an_exception_in_on_output_propagates_and_the_session_recovers(twin: Any) -> None:
    session = twin()

    def on_output(stream: str, text: str) -> None:
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match=r"^callback bug$"):
        session.execute("print('x')\nimport time\ntime.sleep(0.2)\n1", on_output=on_output)
    assert session.execute("2 + 2").value == 4
