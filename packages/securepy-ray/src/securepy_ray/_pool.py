"""RayPool and AsyncRayPool: securepy session pools on the nodes of a Ray cluster."""

from __future__ import annotations

import asyncio
import typing
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import ray
import securepy

from ._dispatch import Batch, Nodes, PoolCore, RayNode
from ._outcome import unwrap
from ._session import UNSET, AsyncRaySession, RaySession, execute_options

__all__ = ["AsyncRayPool", "RayPool"]


@typing.final
class RayPool:
    """Sandboxed securepy sessions on the nodes of a Ray cluster, one pool per node actor.

    Each node actor holds a :class:`securepy.SessionPool` of ``sessions_per_node`` sessions,
    started from the same options, so every node applies the same ``Limits``, wall and
    guards. Calls go to the live actor with the fewest calls in flight; Ray queues what an
    actor cannot start yet. Connect to the cluster first (``ray.init(address=...)``); without
    that, the pool calls ``ray.init()`` as any Ray API does.

    Tools run on the nodes by default: each is pickled with Ray's serialization (the right
    choice for pure functions, and clients each node can build). Wrap a tool in
    :func:`securepy_ray.on_driver` to run it back in this process instead (a database
    connection, credentials only the driver holds).

    If a node is lost, each call its actor held raises :class:`securepy_ray.NodeLostError`
    and the pool goes on with the other actors; nothing is retried for you.

    Args:
        nodes: where to place actors: None for one on every live node; a number of actors
            that Ray spreads over the nodes; a ``PlacementGroup`` for one per bundle; or a
            list of node ids.
        sessions_per_node: the size of each node's pool, and how many calls an actor runs
            at once.
        tools: host tools (``securepy.Tool``, plain functions, or ``on_driver(...)``).
        actor_options: Ray options for the node actors, merged over ``{"num_cpus": 0}``
            (e.g. ``{"num_cpus": 4}`` to reserve cores for the sandboxes, or
            ``{"runtime_env": ...}``).
        audit: a callable that receives every audit record of every node, here in the
            driver, each with ``node_id`` and ``node_ip`` added.
        driver_threads: threads that run ``on_driver`` tools at once.
        start_timeout: seconds to wait for every actor to be placed and start a session.
        **pool_options: the options of :class:`securepy.SessionPool` and
            :class:`securepy.Session` (``limits``, ``timeout``, ``sandbox``, ``template``,
            ``reset_between_uses``, ``audit_log`` (a file on each node), ...).

    Raises:
        TypeError: an unknown option, or a node tool that cannot be pickled (the message
            suggests ``on_driver``).
        ValueError: a bad option value, or a node id that is not a live node.
        TimeoutError: the actors were not all placed within ``start_timeout``.
        securepy.errors.SandboxUnavailableError: a node cannot start a sandbox.

    Example:
        >>> import securepy_ray
        >>> with securepy_ray.RayPool(sessions_per_node=2) as pool:  # doctest: +SKIP
        ...     [e.value for e in pool.map(["1 + 1", "2 * 3"])]
        [2, 6]
    """

    def __init__(
        self,
        nodes: Nodes = None,
        sessions_per_node: int = 4,
        tools: Any = (),
        *,
        actor_options: dict[str, Any] | None = None,
        audit: Callable[[dict[str, Any]], Any] | None = None,
        driver_threads: int = 8,
        start_timeout: float = 120,
        **pool_options: Any,
    ) -> None:
        self._core = PoolCore(
            nodes,
            sessions_per_node,
            tools,
            actor_options=actor_options,
            audit=audit,
            driver_threads=driver_threads,
            start_timeout=start_timeout,
            pool_options=pool_options,
        )
        core = self._core
        try:
            outcomes = ray.get(core.start_refs, timeout=start_timeout)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise core.start_failed(exc) from exc
        core.finish_start(outcomes)
        self._finalizer = weakref.finalize(self, core.close_quietly)

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        nodes = self._core.nodes()
        live = sum(n.alive for n in nodes)
        return (
            f"<securepy_ray.RayPool {live}/{len(nodes)} nodes x "
            f"{self._core.sessions_per_node} sessions>"
        )

    @property
    def nodes(self) -> tuple[RayNode, ...]:
        """The pool's node actors: where each runs and whether it is still alive."""
        return self._core.nodes()

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> securepy.Execution:
        """Run ``code`` on a fresh session of some node; see :meth:`securepy.Session.execute`.

        Raises:
            securepy_ray.NodeLostError: the node running the call was lost.
            securepy.errors.SessionClosedError: the pool is closed, or every node is lost.
            securepy.errors.SecurePyError: whatever :meth:`securepy.Session.execute` raises.
        """
        options = execute_options(timeout, max_tool_calls, validate)
        member = self._core.pick()
        try:
            outcome = ray.get(member.handle.execute.remote(code, options))
        except ray.exceptions.RayActorError as exc:
            raise self._core.lose(member, exc) from exc
        finally:
            self._core.done(member)
        return typing.cast(securepy.Execution, unwrap(outcome))

    def map(
        self,
        codes: Iterable[str],
        *,
        return_exceptions: bool = False,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> list[Any]:
        """Run each snippet on a fresh session, spread over the nodes; results in order.

        Args:
            codes: the snippets.
            return_exceptions: put each failure (``ExecutionError``, ``NodeLostError``, ...)
                in the list in its snippet's place instead of raising the first one.
            timeout, max_tool_calls, validate: as for :meth:`execute`, per snippet.

        Returns:
            One :class:`securepy.Execution` (or exception) per snippet, in input order.

        Raises:
            securepy.errors.SecurePyError: without ``return_exceptions``, the first failure:
                no further snippet is sent, those in flight finish, then it is raised.
        """
        results: dict[int, Any] = {}
        for index, result in self.imap_unordered(
            codes,
            return_exceptions=return_exceptions,
            timeout=timeout,
            max_tool_calls=max_tool_calls,
            validate=validate,
        ):
            results[index] = result
        return [results[i] for i in range(len(results))]

    def imap_unordered(
        self,
        codes: Iterable[str],
        *,
        return_exceptions: bool = False,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> Iterator[tuple[int, Any]]:
        """Like :meth:`map`, lazily, in completion order: yields ``(index, result)`` pairs.

        ``codes`` is consumed as calls are sent, so it may be a long generator.
        """
        options = execute_options(timeout, max_tool_calls, validate)
        batch = Batch(self._core, codes, options)
        try:
            yield from self._run_batch(batch, return_exceptions)
        finally:
            batch.abandon()
        batch.raise_failure()

    def _run_batch(self, batch: Batch, return_exceptions: bool) -> Iterator[tuple[int, Any]]:
        while True:
            batch.fill()
            if not batch.pending:
                break
            ready, _ = ray.wait(list(batch.pending), num_returns=1)
            rest = [r for r in batch.pending if r not in ready]
            if rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref in ready:
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    outcome = exc
                index, result = batch.settle(ref, outcome)
                if return_exceptions or not isinstance(result, BaseException):
                    yield index, result
                else:
                    batch.fail(result)

    def session(self) -> RaySession:
        """Open a persistent session pinned to one node actor; close it when done.

        Use it as ``with pool.session() as session:``. It holds one of that node's sessions
        until closed.

        Raises:
            securepy_ray.NodeLostError: the chosen node was lost while opening.
            securepy.errors.SessionClosedError: the pool is closed, or that node had no free
                session within the pool's ``acquire_timeout``.
        """
        member = self._core.pick()
        try:
            session_id = unwrap(ray.get(member.handle.open_session.remote()))
        except ray.exceptions.RayActorError as exc:
            raise self._core.lose(member, exc) from exc
        finally:
            self._core.done(member)
        return RaySession(member.handle, session_id, member.info["node_id"])

    def status(self) -> dict[str, Any]:
        """Each live node's ``SessionPool.status()``, by node id; a node found lost is left
        out (and marked so in :attr:`nodes`)."""
        statuses = {}
        for member in [m for m in self._core.members if m.alive]:
            try:
                statuses[member.info["node_id"]] = unwrap(ray.get(member.handle.status.remote()))
            except ray.exceptions.RayActorError as exc:
                self._core.lose(member, exc)
        return statuses

    def close(self) -> None:
        """Close every node's sessions, end the actors and the driver's relay. Idempotent."""
        self._finalizer()


@typing.final
class AsyncRayPool:
    """Async counterpart of :class:`RayPool`; same arguments.

    Creating it places the actors without waiting; ``async with`` (or ``await pool.start()``,
    or the first call) waits until they are ready. Nothing blocks the event loop.
    """

    def __init__(
        self,
        nodes: Nodes = None,
        sessions_per_node: int = 4,
        tools: Any = (),
        *,
        actor_options: dict[str, Any] | None = None,
        audit: Callable[[dict[str, Any]], Any] | None = None,
        driver_threads: int = 8,
        start_timeout: float = 120,
        **pool_options: Any,
    ) -> None:
        self._core = PoolCore(
            nodes,
            sessions_per_node,
            tools,
            actor_options=actor_options,
            audit=audit,
            driver_threads=driver_threads,
            start_timeout=start_timeout,
            pool_options=pool_options,
        )
        self._started = False
        self._finalizer = weakref.finalize(self, self._core.close_quietly)

    async def __aenter__(self) -> AsyncRayPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        nodes = self._core.nodes()
        live = sum(n.alive for n in nodes)
        return (
            f"<securepy_ray.AsyncRayPool {live}/{len(nodes)} nodes x "
            f"{self._core.sessions_per_node} sessions>"
        )

    @property
    def nodes(self) -> tuple[RayNode, ...]:
        """Same as :attr:`RayPool.nodes` (empty details until started)."""
        return self._core.nodes()

    async def start(self) -> None:
        """Wait until every actor is placed and has started a session. Idempotent.

        Raises:
            TimeoutError, securepy.errors.SecurePyError: as :class:`RayPool` does.
        """
        if self._started:
            return
        core = self._core
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*core.start_refs), core.start_timeout)
        except (TimeoutError, ray.exceptions.RayActorError) as exc:
            raise core.start_failed(exc) from exc
        if not self._started:
            core.finish_start(list(outcomes))
            self._started = True

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> securepy.Execution:
        """Async counterpart of :meth:`RayPool.execute`; same arguments."""
        options = execute_options(timeout, max_tool_calls, validate)
        await self.start()
        member = self._core.pick()
        try:
            outcome = await member.handle.execute.remote(code, options)
        except ray.exceptions.RayActorError as exc:
            raise self._core.lose(member, exc) from exc
        finally:
            self._core.done(member)
        return typing.cast(securepy.Execution, unwrap(outcome))

    async def map(
        self,
        codes: Iterable[str],
        *,
        return_exceptions: bool = False,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> list[Any]:
        """Async counterpart of :meth:`RayPool.map`; same arguments."""
        results: dict[int, Any] = {}
        async for index, result in self.imap_unordered(
            codes,
            return_exceptions=return_exceptions,
            timeout=timeout,
            max_tool_calls=max_tool_calls,
            validate=validate,
        ):
            results[index] = result
        return [results[i] for i in range(len(results))]

    async def imap_unordered(
        self,
        codes: Iterable[str],
        *,
        return_exceptions: bool = False,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Async counterpart of :meth:`RayPool.imap_unordered`; same arguments."""
        options = execute_options(timeout, max_tool_calls, validate)
        await self.start()
        batch = Batch(self._core, codes, options)
        waiting: dict[asyncio.Future[Any], Any] = {}
        watched: set[Any] = set()  # refs already in waiting
        try:
            while True:
                batch.fill()
                for ref in batch.pending:
                    if ref not in watched:
                        watched.add(ref)
                        waiting[asyncio.wrap_future(ref.future())] = ref
                if not waiting:
                    break
                ready, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for future in ready:
                    ref = waiting.pop(future)
                    watched.discard(ref)
                    exc = future.exception()
                    outcome = (
                        exc if isinstance(exc, ray.exceptions.RayActorError) else (future.result())
                    )
                    index, result = batch.settle(ref, outcome)
                    if return_exceptions or not isinstance(result, BaseException):
                        yield index, result
                    else:
                        batch.fail(result)
        finally:
            batch.abandon()
        batch.raise_failure()

    def session(self) -> _AsyncSessionOpener:
        """Open a persistent session: ``async with pool.session() as s`` or ``await``.

        Same as :meth:`RayPool.session`, with an :class:`AsyncRaySession`.
        """
        return _AsyncSessionOpener(self)

    async def close(self) -> None:
        """Async counterpart of :meth:`RayPool.close`; never blocks the event loop."""
        core = self._core
        refs = core.begin_close()
        if refs is None:
            return
        if refs:
            await asyncio.wait([asyncio.wrap_future(ref.future()) for ref in refs], timeout=30)
        await asyncio.to_thread(core.end_close)
        self._finalizer.detach()

    async def _open_session(self) -> AsyncRaySession:
        await self.start()
        member = self._core.pick()
        try:
            session_id = unwrap(await member.handle.open_session.remote())
        except ray.exceptions.RayActorError as exc:
            raise self._core.lose(member, exc) from exc
        finally:
            self._core.done(member)
        return AsyncRaySession(member.handle, session_id, member.info["node_id"])


class _AsyncSessionOpener:
    """``await`` it for an open session, or use it in ``async with`` (closed at the end)."""

    def __init__(self, pool: AsyncRayPool) -> None:
        self._pool = pool
        self._session: AsyncRaySession | None = None

    def __await__(self) -> typing.Generator[Any, None, AsyncRaySession]:
        return self._pool._open_session().__await__()

    async def __aenter__(self) -> AsyncRaySession:
        self._session = await self._pool._open_session()
        return self._session

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
