"""Async tools: a sync Session runs them on one long-lived private loop, never a fresh one."""

from __future__ import annotations

import asyncio
import threading

import securepy


class LoopBoundClient:
    """Stands in for an MCP client session or an HTTP pool: bound to the loop it starts on."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[int] | None = None

    async def ask(self, n: int) -> int:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop, self.queue = loop, asyncio.Queue()
        if loop is not self.loop:
            raise RuntimeError("used from another event loop")
        assert self.queue is not None
        # A background task on the bound loop answers: a fresh loop per call would orphan it.
        loop.call_later(0.01, self.queue.put_nowait, n * 2)
        return await self.queue.get()


def test_a_loop_bound_async_client_works_across_calls_of_a_sync_session() -> None:
    client = LoopBoundClient()

    @securepy.tool
    async def ask(n: int) -> int:
        """Ask the loop-bound client."""
        return await client.ask(n)

    with securepy.Session(tools=[ask], sandbox=False, timeout=10) as session:
        assert session.execute("[ask(n) for n in range(5)]").value == [0, 2, 4, 6, 8]
        assert session.execute("ask(21)").value == 42
        assert client.loop is not None and client.loop.is_running()
    assert client.loop.is_closed()  # closed with the session, not left behind


def test_the_loop_is_private_not_the_callers() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    @securepy.tool
    async def where() -> str:
        """The loop this runs on."""
        seen.append(asyncio.get_running_loop())
        return threading.current_thread().name

    async def main() -> str:
        with securepy.Session(tools=[where], sandbox=False, timeout=10) as session:
            # The caller's loop is blocked by execute; the tool must not need it.
            return str(session.execute("where()").value)

    name = asyncio.run(main())
    assert name.startswith("securepy-async-tools-")
    assert seen[0].is_closed()


def test_an_async_tool_still_running_at_close_is_cancelled_not_left() -> None:
    started = threading.Event()

    @securepy.tool(timeout=0.5)
    async def hang() -> None:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()

    session = securepy.Session(tools=[hang], sandbox=False, timeout=10)
    try:
        value = session.execute("try:\n    hang()\nexcept ToolError as e:\n    r = str(e)\nr").value
        assert value == "hang() failed: TimeoutError: the tool did not finish within 0.5 s"
        assert started.is_set()
    finally:
        session.close()
    assert not any(
        t.name.startswith("securepy-async-tools-") and t.is_alive() for t in threading.enumerate()
    )


def test_a_sync_tool_returning_an_awaitable_is_awaited_on_the_same_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def record() -> int:
        loops.append(asyncio.get_running_loop())
        return len(loops)

    def deferred() -> object:
        """A sync function handing back a coroutine."""
        return record()

    with securepy.Session(
        tools=[securepy.Tool("deferred", "d", deferred)], sandbox=False, timeout=10
    ) as session:
        assert session.execute("deferred() + deferred()").value == 3
    assert loops[0] is loops[1]
