"""Session and AsyncSession behaviour, each scenario run through both twins."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Any

import pytest
import securepy
from securepy import errors


def query_db(table: str, limit: int = 3) -> list[dict[str, Any]]:
    """Rows of a table."""
    return [{"table": table, "id": i} for i in range(limit)]


def test_value_of_the_last_expression(twin: Any) -> None:
    session = twin()
    assert session.execute("1 + 1").value == 2
    assert session.execute("x = 5").value is None
    assert session.execute("x * 2").value == 10


def test_state_persists_between_executes(twin: Any) -> None:
    session = twin()
    session.execute("import math\ndata = [1, 2, 3]")
    assert session.execute("math.fsum(data)").value == 6.0


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
        with pytest.raises(errors.SessionBusyError, match="busy running another execute"):
            session.execute("1")
        with pytest.raises(errors.SessionBusyError, match="restart it after the execute"):
            session.restart()
        thread.join()
        assert outcome[0].stdout == "go\n"
        assert session.is_alive()  # busy is not closed: the session is healthy
        session.restart()  # control: once the execute returned
        assert session.execute("1 + 1").value == 2


async def test_concurrent_execute_or_restart_on_an_async_session_is_refused_alike() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        started = asyncio.Event()
        task = asyncio.ensure_future(session.execute(
            "print('go')\nimport time\ntime.sleep(1)", on_output=lambda s, t: started.set()))
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(errors.SessionBusyError, match="busy running another execute"):
            await session.execute("1")
        with pytest.raises(errors.SessionBusyError, match="restart it after the execute"):
            await session.restart()
        assert (await task).stdout == "go\n"
        await session.restart()  # control: once the execute returned
        assert (await session.execute("1 + 1")).value == 2


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
