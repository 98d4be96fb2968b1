"""SessionPool and AsyncSessionPool: pre-started sessions handed out on demand.

Both twins share one thread-based core, :class:`PoolCore` (``_pool_core.py``), which owns a
fixed number of slots (``size``). Background threads start children and close retired
sessions, so handing a session out and taking it back cost a lock and a deque operation, never
a process start or a kill. The async twin waits for a slot with a future woken
from those threads, and runs the blocking close in a thread, so it never blocks the loop.

With ``reset_between_uses=True`` (the default) a session serves exactly one checkout: when it
comes back it is closed in the background and its slot starts a fresh one, so no state passes
from one checkout to the next. With ``False`` a live session goes back to the idle set as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._config import (
    USE_SESSION_DEFAULT,
    OnOutput,
    UseSessionDefault,
    make_config,
)
from ._execution import Execution
from ._pool_core import PoolCore, PoolStatus, returned_to
from ._session import AsyncSession, Session
from ._tools import Tool

__all__ = ["AsyncSessionPool", "PoolStatus", "SessionPool"]


@typing.final
class SessionPool:
    """Pre-started sessions, handed out one checkout at a time. Thread-safe.

    Sessions start in background threads as soon as the pool is created. ``execute`` runs one
    snippet on a session from the pool; ``with pool.session() as s:`` checks one out for
    several executes. By default each checkout gets a fresh session (no state passes from one
    checkout to the next) and a replacement starts in the background. A session whose child
    died is replaced and never handed out; a start that fails is retried with a growing delay.

    Args:
        size: how many sessions the pool holds (idle, busy and starting together).
        acquire_timeout: seconds to wait for a free session; None waits forever.
        reset_between_uses: give each checkout a fresh session (the default); ``False``
            returns a live session to the pool with its state and hands it out again.
        template: start sessions by forking them from a sandboxed template process the pool
            starts once (about 4 ms a session instead of about 30 ms for a bubblewrap start;
            ``preload`` modules are imported once, in the template). Each forked session has
            its own namespaces, workspace, limits and cgroup, exactly as a bubblewrap session,
            as root or not (for another host user the template runs in bubblewrap's user
            namespace and each session takes one of its own). Where no template can run (no
            pidfds, no seccomp binding), or with ``template=False``, every session starts its
            own bubblewrap. Ignored with ``sandbox=False``.
        **session_options: the options of :class:`securepy.Session` (``tools``, ``sandbox``,
            ``limits``, ``timeout``, ...), checked once, here, and shared by every session.

    Raises:
        TypeError: an unknown session option, or an option of the wrong type.
        ValueError: ``size`` is not between 1 and 100, or an option has a bad value.

    Example:
        >>> import securepy
        >>> with securepy.SessionPool(2, sandbox=False) as pool:
        ...     pool.execute("6 * 7").value
        42
    """

    def __init__(
        self,
        size: int = 4,
        *,
        acquire_timeout: float | None = 30,
        reset_between_uses: bool = True,
        template: bool = True,
        **session_options: Any,
    ) -> None:
        config = make_config(**session_options)
        self._core: PoolCore[Session] = PoolCore(
            config, size, acquire_timeout=acquire_timeout,
            reset_between_uses=reset_between_uses, template=template, wrap=Session._from_config,
            close_session=Session.close)
        self._finalizer = weakref.finalize(self, self._core.close)

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<securepy.SessionPool {self._core.describe()}>"

    @property
    def tools(self) -> dict[str, Tool]:
        """The tools every session of the pool has, by name (a copy)."""
        return dict(self._core.config.tools)

    def status(self) -> PoolStatus:
        """How many sessions are idle, busy, starting and dead right now."""
        return self._core.status()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Check a session out for several executes; it goes back when the block ends.

        Do not use the session after the block: with ``reset_between_uses=True`` it is closed.

        Yields:
            A started :class:`securepy.Session`.

        Raises:
            securepy.errors.PoolTimeout: no session became free within ``acquire_timeout``.
            securepy.errors.SessionClosedError: the pool is closed.
            securepy.errors.SandboxUnavailableError: no session can be started (every start
                failed and none is running); the message says why.
        """
        core = self._core
        session = core.acquire(core.deadline())
        with returned_to(core, session):
            yield session

    def execute(
        self,
        code: str,
        *,
        timeout: float | UseSessionDefault | None = USE_SESSION_DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | UseSessionDefault | None = USE_SESSION_DEFAULT,
        validate: bool = True,
    ) -> Execution:
        """Run ``code`` on a session from the pool; see :meth:`securepy.Session.execute`.

        Raises:
            securepy.errors.PoolTimeout: no session became free within ``acquire_timeout``.
            securepy.errors.SessionClosedError: the pool is closed.
            securepy.errors.SandboxUnavailableError: no session can be started.
            securepy.errors.SecurePyError: whatever :meth:`securepy.Session.execute` raises.
        """
        with self.session() as session:
            return session.execute(code, timeout=timeout, on_output=on_output,
                                   max_tool_calls=max_tool_calls, validate=validate)

    def close(self) -> None:
        """Close every session (checked-out ones too) and stop the pool's threads. Idempotent.

        Blocks until every child process is gone and every background thread has ended.
        """
        self._finalizer()


@typing.final
class AsyncSessionPool:
    """Async counterpart of :class:`SessionPool`; same arguments.

    Hands out :class:`securepy.AsyncSession` objects. Waiting for a free session, and closing
    the pool, never block the event loop. Create it anywhere; it needs no running loop until
    it is used.
    """

    def __init__(
        self,
        size: int = 4,
        *,
        acquire_timeout: float | None = 30,
        reset_between_uses: bool = True,
        template: bool = True,
        **session_options: Any,
    ) -> None:
        config = make_config(**session_options)
        self._core: PoolCore[AsyncSession] = PoolCore(
            config, size, acquire_timeout=acquire_timeout,
            reset_between_uses=reset_between_uses, template=template,
            wrap=AsyncSession._from_config,
            close_session=_close_async_session)
        self._finalizer = weakref.finalize(self, self._core.close)

    async def __aenter__(self) -> AsyncSessionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<securepy.AsyncSessionPool {self._core.describe()}>"

    @property
    def tools(self) -> dict[str, Tool]:
        """The tools every session of the pool has, by name (a copy)."""
        return dict(self._core.config.tools)

    def status(self) -> PoolStatus:
        """How many sessions are idle, busy, starting and dead right now (never blocks)."""
        return self._core.status()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Async counterpart of :meth:`SessionPool.session`: ``async with pool.session() as s``.

        Yields:
            A started :class:`securepy.AsyncSession`.

        Raises:
            securepy.errors.PoolTimeout: no session became free within ``acquire_timeout``.
            securepy.errors.SessionClosedError: the pool is closed.
            securepy.errors.SandboxUnavailableError: no session can be started.
        """
        session = await self._acquire()
        with returned_to(self._core, session):
            yield session

    async def execute(
        self,
        code: str,
        *,
        timeout: float | UseSessionDefault | None = USE_SESSION_DEFAULT,
        on_output: OnOutput | None = None,
        max_tool_calls: int | UseSessionDefault | None = USE_SESSION_DEFAULT,
        validate: bool = True,
    ) -> Execution:
        """Async counterpart of :meth:`SessionPool.execute`; same arguments."""
        async with self.session() as session:
            return await session.execute(code, timeout=timeout, on_output=on_output,
                                         max_tool_calls=max_tool_calls, validate=validate)

    async def close(self) -> None:
        """Async counterpart of :meth:`SessionPool.close`; the waiting happens off the loop."""
        if self._finalizer.alive:
            await asyncio.to_thread(self._finalizer)

    async def _acquire(self) -> AsyncSession:
        core = self._core
        deadline = core.deadline()
        loop = asyncio.get_running_loop()
        while True:
            woken: asyncio.Future[None] = loop.create_future()

            def wake(woken: asyncio.Future[None] = woken) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(_resolve, woken)

            session = core.take_or_listen(wake)
            if session is not None:
                return session
            try:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                async with asyncio.timeout(remaining):
                    await woken
            except TimeoutError:
                raise core.timeout_error() from None
            finally:
                core.forget_listener(wake)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_async_session(session: AsyncSession) -> None:
    # Pool threads have no event loop; a private one closes the session (its close() only
    # kills the child and releases resources, it waits on nothing loop-bound).
    asyncio.run(session.close())


