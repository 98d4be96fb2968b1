"""The node actor: one securepy SessionPool on one Ray node (or in one resource bundle).

Its methods fall in three Ray concurrency groups, so a kind of call never waits behind
another: ``execute`` (one thread per session of the pool, so calls beyond that queue in
Ray, which is the back-pressure), ``sessions`` (persistent sessions: open, execute, close)
and the default group (describe, status, close). Every method returns an
:data:`~securepy_ray._outcome.Outcome`, never raises, so the driver re-raises securepy's own
error rather than Ray's wrapper.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from typing import Any

import ray
import securepy

from ._outcome import Outcome, capture
from ._tools import stand_in_tool

__all__ = ["NodeWorker", "node_worker_class"]


def node_worker_class(sessions_per_node: int) -> Any:
    """The Ray actor class for pools of this size (concurrency groups are fixed per class)."""
    return ray.remote(  # type: ignore[call-overload]
        concurrency_groups={"execute": sessions_per_node, "sessions": sessions_per_node}
    )(NodeWorker)


class NodeWorker:
    """Holds a :class:`securepy.SessionPool` on its node and runs calls from the driver.

    Args:
        sessions_per_node: the pool's size.
        pool_options: ``SessionPool`` options (node tools included), forwarded untouched.
        driver_tools: specs of the tools that run on the driver (see ``_tools.tool_spec``).
        relay: the driver's relay actor, or None when nothing goes back to the driver.
        gather_audit: send each audit record, tagged with this node, to the driver.
    """

    def __init__(
        self,
        sessions_per_node: int,
        pool_options: dict[str, Any],
        driver_tools: list[dict[str, Any]],
        relay: Any,
        gather_audit: bool,
    ) -> None:
        context = ray.get_runtime_context()
        self._node = {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        self._held: dict[str, tuple[contextlib.AbstractContextManager[Any], Any]] = {}
        self._lock = threading.Lock()
        self._pool: securepy.SessionPool | None = None
        self._start_error: BaseException | None = None
        options = dict(pool_options)
        tools = list(options.pop("tools", ()))
        tools += [stand_in_tool(spec, relay) for spec in driver_tools]
        if gather_audit:
            options["audit"] = _AuditForwarder(relay, self._node)
        try:
            self._pool = securepy.SessionPool(sessions_per_node, tools=tools, **options)
        except Exception as exc:  # reported by describe(), raised on the driver as is
            self._start_error = exc

    def describe(self) -> Outcome:
        """This node's identity and wall, after one session started (so start errors show)."""
        try:
            pool = self._checked_pool()
            with pool.session() as session:
                wall = getattr(session, "wall", None)
            return (True, {**self._node, "wall": wall})
        except Exception as exc:
            return (False, capture(exc))

    @ray.method(concurrency_group="execute")
    def execute(self, code: str, options: dict[str, Any]) -> Outcome:
        """Run ``code`` on a session from the pool."""
        try:
            return (True, self._checked_pool().execute(code, **options))
        except Exception as exc:
            return (False, capture(exc))

    @ray.method(concurrency_group="sessions")
    def open_session(self) -> Outcome:
        """Check a session out and keep it for :meth:`session_execute`; returns its id."""
        try:
            checkout = self._checked_pool().session()
            session = checkout.__enter__()
        except Exception as exc:
            return (False, capture(exc))
        session_id = uuid.uuid4().hex
        with self._lock:
            self._held[session_id] = (checkout, session)
        return (True, session_id)

    @ray.method(concurrency_group="sessions")
    def session_execute(self, session_id: str, code: str, options: dict[str, Any]) -> Outcome:
        """Run ``code`` on a held session; its state persists between calls."""
        with self._lock:
            held = self._held.get(session_id)
        if held is None:
            return (
                False,
                capture(
                    securepy.SessionClosedError(
                        "this RaySession is closed (or its pool was); open a new one with "
                        "pool.session()"
                    )
                ),
            )
        try:
            return (True, held[1].execute(code, **options))
        except Exception as exc:
            return (False, capture(exc))

    @ray.method(concurrency_group="sessions")
    def close_session(self, session_id: str) -> Outcome:
        """Give a held session back to the pool (which closes it). Idempotent."""
        with self._lock:
            held = self._held.pop(session_id, None)
        if held is not None:
            held[0].__exit__(None, None, None)
        return (True, None)

    def status(self) -> Outcome:
        """The node pool's :class:`securepy` pool status."""
        try:
            return (True, self._checked_pool().status())
        except Exception as exc:
            return (False, capture(exc))

    def close(self) -> Outcome:
        """Close the pool: every session of this node, held ones too, and their children."""
        with self._lock:
            self._held.clear()
        if self._pool is not None:
            self._pool.close()
        return (True, None)

    def _checked_pool(self) -> securepy.SessionPool:
        if self._start_error is not None:
            raise self._start_error
        if self._pool is None:
            raise securepy.SessionClosedError("this node's pool is closed")
        return self._pool


class _AuditForwarder:
    """The node pool's audit sink: each record, tagged with the node, goes to the driver.

    The record is a copy with ``node_id`` and ``node_ip`` added; the hash chain of an audit
    file (``audit_log=``, written on the node) covers the record without them.
    """

    def __init__(self, relay: Any, node: dict[str, Any]) -> None:
        self._relay = relay
        self._tags = {"node_id": node["node_id"], "node_ip": node["node_ip"]}

    def __call__(self, record: dict[str, Any]) -> None:
        self._relay.audit.remote({**record, **self._tags})
