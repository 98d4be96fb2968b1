"""The event loop a sync Session runs its async tools on: one per session, started on first use.

A fresh loop per call (``asyncio.run``) breaks every async client bound to the loop it was
first used on (an MCP client session, an HTTP connection pool): the second call hangs or fails.
One long-lived loop, on a thread of its own, keeps such clients working across calls; it is
never the caller's loop, which a blocking ``Session.execute`` is holding up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any

__all__ = ["ToolLoop"]


class ToolLoop:
    """Runs awaitables to completion on one private event loop thread. Thread-safe."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` on the loop and return its result (or raise its exception).

        Raises:
            RuntimeError: the loop was closed (the session is closing).
        """
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), self._started())
        return future.result()

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread. Idempotent."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            # A tool that ignores cancellation must not hang close(): the thread is a daemon.
            thread.join(5)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the session is closed: its tool loop has stopped")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve,
                    args=(loop,),
                    daemon=True,
                    name=f"securepy-async-tools-{self._name}",
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        # Stopped by close(): calls still running are cancelled, so their callers get an answer.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
