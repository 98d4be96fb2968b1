"""``interrupt()``: stop the code a session is running, keeping its state when the code stops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest
import securepy
from securepy import errors

KEPT = r"^KeyboardInterrupt: the code was stopped by interrupt\(\); the session kept its state$"
LOST = (
    r"^KeyboardInterrupt: the code did not stop when interrupted, so the session was killed "
    r"and restarted; its state is lost$"
)
IGNORES_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"


def slow_lookup(key: str) -> str:
    """A host tool that takes its time."""
    time.sleep(0.5)
    return key


def _run_then_interrupt(session: securepy.Session, code: str) -> tuple[bool, BaseException]:
    started = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            session.execute, code, on_output=lambda s, t: started.set(), timeout=60
        )
        assert started.wait(20)
        kept = session.interrupt()
        error = future.exception(20)
    assert error is not None
    return kept, error


def test_interrupt_stops_the_code_and_keeps_the_state() -> None:
    with securepy.Session(sandbox=False) as session:
        session.execute("kept = 41")
        began = time.monotonic()
        kept, error = _run_then_interrupt(session, "print('go')\nwhile True:\n    pass")
        assert time.monotonic() - began < 10
        assert kept is True
        assert isinstance(error, errors.ExecutionError)
        with pytest.raises(errors.ExecutionError, match=KEPT):
            raise error
        assert error.stdout == "go\n"
        assert session.execute("kept + 1").value == 42


def test_interrupt_kills_code_that_ignores_it_and_the_session_restarts() -> None:
    with securepy.Session(sandbox=False) as session:
        session.execute("kept = 41")
        kept, error = _run_then_interrupt(
            session, IGNORES_SIGINT + "print('go')\nwhile True:\n    pass"
        )
        assert kept is False
        with pytest.raises(errors.ExecutionError, match=LOST):
            raise error
        assert session.is_alive()
        with pytest.raises(errors.ExecutionError, match=r"^NameError: name 'kept'"):
            session.execute("kept")


def test_interrupt_during_a_host_tool_call_keeps_the_state() -> None:
    with securepy.Session([slow_lookup], sandbox=False) as session:
        session.execute("kept = 1")
        kept, error = _run_then_interrupt(session, "print('go')\nwhile True:\n    slow_lookup('k')")
        assert kept is True
        with pytest.raises(errors.ExecutionError, match=KEPT):
            raise error
        assert session.execute("kept").value == 1


def test_interrupt_with_nothing_running_does_nothing() -> None:
    with securepy.Session(sandbox=False) as session:
        session.execute("kept = 1")
        assert session.interrupt() is True
        assert session.execute("kept").value == 1
    assert session.interrupt() is True  # closed: nothing runs either


async def test_async_interrupt_stops_the_code_and_keeps_the_state() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        await session.execute("kept = 41")
        started = asyncio.Event()
        task = asyncio.ensure_future(
            session.execute(
                "print('go')\nwhile True:\n    pass",
                on_output=lambda s, t: started.set(),
                timeout=60,
            )
        )
        await asyncio.wait_for(started.wait(), 20)
        assert await session.interrupt() is True
        with pytest.raises(errors.ExecutionError, match=KEPT):
            await task
        assert (await session.execute("kept + 1")).value == 42


async def test_async_interrupt_kills_code_that_ignores_it() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        started = asyncio.Event()
        task = asyncio.ensure_future(
            session.execute(
                IGNORES_SIGINT + "print('go')\nwhile True:\n    pass",
                on_output=lambda s, t: started.set(),
                timeout=60,
            )
        )
        await asyncio.wait_for(started.wait(), 20)
        assert await session.interrupt() is False
        with pytest.raises(errors.ExecutionError, match=LOST):
            await task
        assert (await session.execute("1 + 1")).value == 2
