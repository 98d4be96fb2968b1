"""Concurrent tool calls from inside the sandbox, async tools on the caller's loop, cancellation.

Each "in flight at once" test uses host tools that wait for each other (a threading.Barrier or
an asyncio.Event that only the last arrival sets). If the calls were serialized, the first call
would wait for the others forever: the barrier times out, the tool fails, and the test fails
instead of passing by luck.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy
from securepy import errors

PARTIES = 3
SANDBOX_MODES = [
    pytest.param(False, id="unsandboxed"),
    pytest.param(True, id="sandboxed", marks=pytest.mark.sandbox),
]

THREADS_CODE = f"""
import threading
results = {{}}
def call(n):
    results[n] = meet(n)
threads = [threading.Thread(target=call, args=(n,)) for n in range({PARTIES})]
for t in threads: t.start()
for t in threads: t.join()
[results[n] for n in range({PARTIES})]
"""

GATHER_CODE = f"""
import asyncio
await asyncio.gather(*(meet.aio(n) for n in range({PARTIES})))
"""


def barrier_tool() -> securepy.Tool:
    """A sync tool whose calls all wait until PARTIES of them are in flight."""
    barrier = threading.Barrier(PARTIES, timeout=10)

    def meet(n: int) -> int:
        """Wait for the others, then answer for n."""
        barrier.wait()
        return n * 10

    return securepy.Tool("meet", "Wait for the others.", meet)


def event_tool(expected_loop: list[asyncio.AbstractEventLoop]) -> securepy.Tool:
    """An async tool whose calls all wait on the caller's loop until PARTIES are in flight."""
    arrived: list[int] = []
    everyone: list[asyncio.Event] = []

    async def meet(n: int) -> int:
        """Wait for the others, then answer for n."""
        loop = asyncio.get_running_loop()
        assert loop is expected_loop[0], "the async tool did not run on the caller's loop"
        if not everyone:
            everyone.append(asyncio.Event())
        arrived.append(n)
        if len(arrived) == PARTIES:
            everyone[0].set()
        async with asyncio.timeout(10):
            await everyone[0].wait()
        return n * 10

    return securepy.Tool("meet", "Wait for the others.", meet)


@pytest.fixture
def sync_session() -> Iterator[Callable[..., securepy.Session]]:
    made: list[securepy.Session] = []

    def make(**options: Any) -> securepy.Session:
        session = securepy.Session(**options)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
@pytest.mark.parametrize("code", [THREADS_CODE, GATHER_CODE], ids=["threads", "gather"])
def test_sync_session_runs_tool_calls_at_once(sync_session: Any, sandbox: bool,
                                              code: str) -> None:
    session = sync_session(tools=[barrier_tool()], sandbox=sandbox, timeout=30)
    result = session.execute(code)
    assert result.value == [0, 10, 20]
    assert sorted(call.arguments["n"] for call in result.tool_calls) == [0, 1, 2]
    assert all(call.ok for call in result.tool_calls)


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
@pytest.mark.parametrize("code", [THREADS_CODE, GATHER_CODE], ids=["threads", "gather"])
async def test_async_session_runs_sync_tools_at_once(sandbox: bool, code: str) -> None:
    async with securepy.AsyncSession(tools=[barrier_tool()], sandbox=sandbox,
                                     timeout=30) as session:
        result = await session.execute(code)
    assert result.value == [0, 10, 20]


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
@pytest.mark.parametrize("code", [THREADS_CODE, GATHER_CODE], ids=["threads", "gather"])
async def test_async_tools_are_awaited_together_on_the_callers_loop(sandbox: bool,
                                                                    code: str) -> None:
    loop = [asyncio.get_running_loop()]
    async with securepy.AsyncSession(tools=[event_tool(loop)], sandbox=sandbox,
                                     timeout=30) as session:
        result = await session.execute(code)
    assert result.value == [0, 10, 20]


def test_each_reply_reaches_its_caller(sync_session: Any) -> None:
    def echo(tag: str) -> str:
        """Return the tag after a random pause, so replies come back out of order."""
        time.sleep(random.uniform(0, 0.003))
        return tag

    session = sync_session(tools=[echo], sandbox=False, timeout=60)
    code = """
import threading
wrong = []
def worker(n):
    for i in range(25):
        tag = f"{n}-{i}"
        got = echo(tag)
        if got != tag:
            wrong.append((tag, got))
threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
wrong
"""
    result = session.execute(code)
    assert result.value == []
    assert len(result.tool_calls) == 200


async def test_each_gathered_reply_reaches_its_awaiter() -> None:
    async def echo(tag: str) -> str:
        """Return the tag after a random pause, so replies come back out of order."""
        await asyncio.sleep(random.uniform(0, 0.003))
        return tag

    async with securepy.AsyncSession(tools=[echo], sandbox=False, timeout=60) as session:
        result = await session.execute(
            "import asyncio\n"
            "tags = [f't{i}' for i in range(30)]\n"
            "got = await asyncio.gather(*(echo.aio(t) for t in tags))\n"
            "got == tags")
    assert result.value is True


async def test_several_async_sessions_execute_at_once_on_one_loop() -> None:
    everyone = asyncio.Event()
    arrived: list[int] = []

    async def meet(n: int) -> int:
        """Wait until every session is inside its execute."""
        arrived.append(n)
        if len(arrived) == PARTIES:
            everyone.set()
        async with asyncio.timeout(10):
            await everyone.wait()
        return n

    async with securepy.AsyncSessionPool(PARTIES, tools=[meet], sandbox=False) as pool:
        results = await asyncio.gather(*(pool.execute(f"meet({n})") for n in range(PARTIES)))
    assert [r.value for r in results] == [0, 1, 2]


# -- cancellation -----------------------------------------------------------------------------


async def _cancel_once_ready(session: securepy.AsyncSession, code: str) -> None:
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_output(stream: str, text: str) -> None:
        if "ready" in text:
            loop.call_soon_threadsafe(ready.set)

    task = asyncio.ensure_future(session.execute(code, on_output=on_output, timeout=60))
    async with asyncio.timeout(20):
        await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
async def test_cancelling_execute_interrupts_the_code_and_keeps_state(sandbox: bool) -> None:
    async with securepy.AsyncSession(sandbox=sandbox, timeout=30) as session:
        await session.execute("kept = 'still here'")
        pid = (await session.execute("import os\nos.getpid()")).value
        started = time.monotonic()
        await _cancel_once_ready(
            session, "import time\nprint('ready')\nwhile True:\n    time.sleep(0.01)")
        assert time.monotonic() - started < 10
        assert (await session.execute("kept")).value == "still here"
        assert (await session.execute("os.getpid()")).value == pid


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
async def test_cancelling_code_that_ignores_interrupts_kills_it(sandbox: bool) -> None:
    # 'ready' is printed inside the try: an interrupt that lands during print is caught too.
    code = ("import time\n"
            "while True:\n"
            "    try:\n"
            "        print('ready')\n"
            "        while True:\n"
            "            time.sleep(0.01)\n"
            "    except KeyboardInterrupt:\n"
            "        pass\n")
    async with securepy.AsyncSession(sandbox=sandbox, timeout=30) as session:
        await session.execute("lost = 1")
        await _cancel_once_ready(session, code)
        assert (await session.execute("1 + 1")).value == 2
        with pytest.raises(errors.ExecutionError, match=r"^NameError"):
            await session.execute("lost")


async def test_cancelling_while_a_tool_is_awaited() -> None:
    started = asyncio.Event()
    released = asyncio.Event()

    async def wait_forever() -> None:
        """Never returns on its own."""
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            released.set()

    async with securepy.AsyncSession(tools=[wait_forever], sandbox=False,
                                     timeout=30) as session:
        task = asyncio.ensure_future(session.execute("wait_forever()"))
        async with asyncio.timeout(20):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            await released.wait()  # the host tool was cancelled too
        assert (await session.execute("'usable'")).value == "usable"


# -- the event loop stays free ----------------------------------------------------------------


async def _largest_gap_while(work: Any) -> float:
    """The longest the loop went without running a 1 ms ticker while ``work`` ran."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    try:
        await work
    finally:
        done.set()
        await ticker
    return max(gaps)


async def test_a_large_frame_is_parsed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 48 MB result takes the host tens of milliseconds to parse: in a thread, so the loop
    keeps serving. Control: with the off-loop threshold above the frame, the same parse holds
    the loop for longer than the off-loop run's worst gap."""
    from securepy import _async_turn, _channel

    code = "'x' * 48_000_000"
    async with securepy.AsyncSession(sandbox=False, timeout=60,
                                     limits=securepy.Limits(memory_bytes=None)) as session:
        await session.execute("1")
        off_loop = await _largest_gap_while(session.execute(code))
        monkeypatch.setattr(_channel, "OFF_LOOP_BYTES", 1 << 30)
        monkeypatch.setattr(_async_turn, "OFF_LOOP_BYTES", 1 << 30)
        on_loop = await _largest_gap_while(session.execute(code))
    assert on_loop > off_loop
    assert off_loop < 0.5  # generous: a loaded machine still schedules the ticker
