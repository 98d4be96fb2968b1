"""Timeouts of an execute and of a tool, each scenario run through both twins."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import securepy
from securepy import errors


def echo(x: int) -> int:
    """Its argument."""
    return x


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
