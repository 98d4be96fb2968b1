"""RaySession and AsyncRaySession: a persistent session pinned to one node actor.

A session is an actor handle plus a session id, nothing else, so it pickles: hand it to a
Ray task or actor and it runs code in the same sandbox from there.
"""

from __future__ import annotations

import contextlib
import math
import typing
from typing import Any

import ray
import securepy

from ._errors import NodeLostError
from ._outcome import unwrap

__all__ = ["UNSET", "AsyncRaySession", "RaySession", "execute_options", "first_line"]


class _Unset:
    def __repr__(self) -> str:
        return "<pool default>"


UNSET: Any = _Unset()


def execute_options(timeout: Any, max_tool_calls: Any, validate: bool) -> dict[str, Any]:
    """The keyword arguments for ``Session.execute`` that the caller set, checked here.

    Options left out take the node pool's defaults (its ``timeout=`` and ``max_tool_calls=``).
    """
    options: dict[str, Any] = {"validate": bool(validate)}
    if timeout is not UNSET:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                f"timeout must be a positive number of seconds or None, got {timeout!r}"
            )
        options["timeout"] = timeout
    if max_tool_calls is not UNSET:
        if max_tool_calls is not None and (
            isinstance(max_tool_calls, bool)
            or not isinstance(max_tool_calls, int)
            or max_tool_calls < 0
        ):
            raise ValueError(
                f"max_tool_calls must be a non-negative integer or None, got {max_tool_calls!r}"
            )
        options["max_tool_calls"] = max_tool_calls
    return options


class _SessionBase:
    def __init__(self, actor: Any, session_id: str, node_id: str) -> None:
        self._actor = actor
        self._session_id = session_id
        self._node_id = node_id
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<securepy_ray.{type(self).__name__} {self._session_id[:12]} on node "
            f"{self._node_id[:12]} ({state})>"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, str, str]]:
        return (type(self), (self._actor, self._session_id, self._node_id))

    @property
    def actor(self) -> Any:
        """The Ray actor handle of the node actor that holds the session."""
        return self._actor

    @property
    def session_id(self) -> str:
        """The session's id on its actor."""
        return self._session_id

    @property
    def node_id(self) -> str:
        """The hex id of the Ray node the session runs on."""
        return self._node_id

    def _submit(self, code: str, timeout: Any, max_tool_calls: Any, validate: bool) -> Any:
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        if self._closed:
            raise securepy.SessionClosedError(
                "this RaySession is closed; open a new one with pool.session()"
            )
        options = execute_options(timeout, max_tool_calls, validate)
        return self._actor.session_execute.remote(self._session_id, code, options)

    def _lost(self, exc: ray.exceptions.RayActorError) -> NodeLostError:
        self._closed = True
        return NodeLostError(self._node_id, first_line(exc))


@typing.final
class RaySession(_SessionBase):
    """A persistent sandboxed session on one node of a :class:`securepy_ray.RayPool`.

    Made by ``pool.session()``. State (variables, imports) persists between executes, exactly
    as a :class:`securepy.Session`; the session holds one of its node's pool sessions until
    it is closed. Use it as a context manager, or call :meth:`close`. It pickles (an actor
    handle and an id), so a Ray task can run code in the same session.
    """

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> securepy.Execution:
        """Run ``code`` in this session; see :meth:`securepy.Session.execute`.

        Raises:
            securepy_ray.NodeLostError: the session's node was lost (its state with it); the
                session is closed.
            securepy.errors.SessionClosedError: the session (or its pool) is closed.
            securepy.errors.SecurePyError: whatever :meth:`securepy.Session.execute` raises.
        """
        ref = self._submit(code, timeout, max_tool_calls, validate)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise self._lost(exc) from exc
        return typing.cast(securepy.Execution, unwrap(outcome))

    def close(self) -> None:
        """Give the session back to its node's pool, which closes it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ray.exceptions.RayActorError):  # the node is gone, and
            ray.get(self._actor.close_session.remote(self._session_id))  # the session with it


@typing.final
class AsyncRaySession(_SessionBase):
    """Async counterpart of :class:`RaySession`; same surface, coroutines.

    Made by ``await pool.session()`` or ``async with pool.session() as session:`` on an
    :class:`securepy_ray.AsyncRayPool`.
    """

    async def __aenter__(self) -> AsyncRaySession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = UNSET,
        max_tool_calls: int | None = UNSET,
        validate: bool = True,
    ) -> securepy.Execution:
        """Async counterpart of :meth:`RaySession.execute`; same arguments."""
        ref = self._submit(code, timeout, max_tool_calls, validate)
        try:
            outcome = await ref
        except ray.exceptions.RayActorError as exc:
            raise self._lost(exc) from exc
        return typing.cast(securepy.Execution, unwrap(outcome))

    async def close(self) -> None:
        """Async counterpart of :meth:`RaySession.close`."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ray.exceptions.RayActorError):  # the node is gone, and
            await self._actor.close_session.remote(self._session_id)  # the session with it


def first_line(exc: BaseException) -> str:
    """Ray's death notices run to many lines; the first says what happened."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
