"""Dispatch: placing the node actors, choosing one per call, keeping batches in bounds.

Nothing here waits, so both twins share it: ``RayPool`` waits with ``ray.get``/``ray.wait``,
``AsyncRayPool`` by awaiting object refs. Placement is Ray's (node affinity, ``SPREAD`` or a
placement group's bundles) and so is back-pressure: each actor runs as many calls as its pool
has sessions and Ray queues the rest; a batch keeps at most twice the pool's sessions in
flight, so a million snippets never sit in Ray's queues at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import typing
from collections.abc import Callable, Iterable
from typing import Any

import ray
import securepy
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from ._actor import node_worker_class
from ._errors import NodeLostError
from ._outcome import unwrap
from ._session import first_line
from ._tools import DriverServer, split_tools, tool_spec

__all__ = ["Batch", "Member", "Nodes", "PoolCore", "RayNode"]

Nodes = None | int | PlacementGroup | Iterable[str]


@typing.final
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RayNode:
    """One node actor of a pool, as the pool last saw it.

    Attributes:
        node_id: the hex id of the Ray node it runs on.
        node_ip: that node's address.
        wall: the sandbox wall of its sessions (``"namespaces"``, ``"landlock"``, ``"none"``),
            or None where securepy does not report one.
        alive: False once a call found the actor dead; the pool sends it nothing more.
    """

    node_id: str
    node_ip: str
    wall: str | None
    alive: bool


@dataclasses.dataclass(eq=False)
class Member:
    """One node actor: its handle, where it runs, its calls in flight, whether it lives."""

    handle: Any
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    in_flight: int = 0
    alive: bool = True


class PoolCore:
    """Everything the twins share that does not wait."""

    def __init__(
        self,
        nodes: Nodes,
        sessions_per_node: int,
        tools: Any,
        *,
        actor_options: dict[str, Any] | None,
        audit: Callable[[dict[str, Any]], Any] | None,
        driver_threads: int,
        start_timeout: float,
        pool_options: dict[str, Any],
    ) -> None:
        if (
            isinstance(sessions_per_node, bool)
            or not isinstance(sessions_per_node, int)
            or sessions_per_node < 1
        ):
            raise ValueError(
                f"sessions_per_node must be a positive integer, got {sessions_per_node!r}"
            )
        if "on_output" in pool_options:
            raise TypeError(
                "on_output is not supported across Ray: output comes back in "
                "Execution.stdout and .stderr"
            )
        if audit is not None and not callable(audit):
            raise TypeError("audit must be a callable that takes one event dict")
        self.sessions_per_node = sessions_per_node
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.closed = False
        if not ray.is_initialized():
            ray.init()  # as any Ray call does: RAY_ADDRESS, else a local cluster
        node_tools, driver_tools = split_tools(tools)
        placements = _placements(nodes)
        if not placements:
            raise ValueError(f"nodes={nodes!r} leaves no place for a node actor")
        self.driver: DriverServer | None = None
        if driver_tools or audit is not None:
            self.driver = DriverServer(driver_tools, audit, workers=driver_threads)
        self.members: list[Member] = []
        try:
            self._start_actors(
                placements,
                pool_options,
                node_tools,
                driver_tools,
                actor_options,
                gather_audit=audit is not None,
            )
        except BaseException:
            self.close_quietly()  # the driver's relay and any actor already made
            raise
        self.start_refs = [m.handle.describe.remote() for m in self.members]

    def _start_actors(
        self,
        placements: list[Any],
        pool_options: dict[str, Any],
        node_tools: list[securepy.Tool],
        driver_tools: dict[str, securepy.Tool],
        actor_options: dict[str, Any] | None,
        *,
        gather_audit: bool,
    ) -> None:
        relay = self.driver.relay if self.driver is not None else None
        options = {"num_cpus": 0, "max_concurrency": 2, **(actor_options or {})}
        actor_class = node_worker_class(self.sessions_per_node)
        specs = [tool_spec(t) for t in driver_tools.values()]
        arguments = (
            self.sessions_per_node,
            {**pool_options, "tools": node_tools},
            specs,
            relay,
            gather_audit,
        )
        for strategy in placements:
            # Ray raises here for a bad actor option, or options that do not pickle.
            handle = actor_class.options(scheduling_strategy=strategy, **options).remote(*arguments)
            self.members.append(Member(handle))

    def finish_start(self, outcomes: list[Any]) -> None:
        """Record each actor's node, or close everything and raise the first start error."""
        try:
            for member, outcome in zip(self.members, outcomes, strict=True):
                member.info = unwrap(outcome)
        except BaseException:
            self.close_quietly()
            raise

    def start_failed(self, exc: BaseException) -> BaseException:
        """The error to raise when the actors did not start; closes what was made."""
        self.close_quietly()
        if isinstance(exc, TimeoutError):
            return TimeoutError(
                f"the pool's {len(self.members)} node actors were not all placed within "
                f"start_timeout={self.start_timeout:g} s: the cluster may lack the resources "
                "asked for in actor_options, a node named in nodes= may be gone, or the "
                "nodes are slow to start sessions"
            )
        return NodeLostError("", f"a node actor died while starting: {first_line(exc)}")

    def nodes(self) -> tuple[RayNode, ...]:
        with self._lock:
            return tuple(
                RayNode(
                    node_id=m.info.get("node_id", ""),
                    node_ip=m.info.get("node_ip", ""),
                    wall=m.info.get("wall"),
                    alive=m.alive,
                )
                for m in self.members
            )

    def pick(self) -> Member:
        """The live actor with the fewest calls in flight (ties in turn); counts the call."""
        with self._lock:
            if self.closed:
                raise securepy.SessionClosedError("this RayPool is closed")
            live = [m for m in self.members if m.alive]
            if not live:
                raise securepy.SessionClosedError(
                    f"every node of this RayPool was lost ({len(self.members)} of "
                    f"{len(self.members)}); make a new pool on the nodes that remain"
                )
            start = next(self._turn) % len(live)
            member = min(live[start:] + live[:start], key=lambda m: m.in_flight)
            member.in_flight += 1
            return member

    def done(self, member: Member) -> None:
        with self._lock:
            member.in_flight -= 1

    def lose(self, member: Member, exc: BaseException) -> NodeLostError:
        """Stop using a dead actor; the error to raise for the call it held."""
        with self._lock:
            member.alive = False
        return NodeLostError(member.info.get("node_id", ""), first_line(exc))

    def window(self) -> int:
        """How many calls a batch keeps in flight: twice the live sessions."""
        with self._lock:
            live = sum(1 for m in self.members if m.alive)
        return max(1, 2 * self.sessions_per_node * live)

    def begin_close(self) -> list[Any] | None:
        """Mark the pool closed and ask each live actor to close its sessions.

        Returns:
            The ``close`` refs to wait for, or None when the pool was closed already.
        """
        with self._lock:
            if self.closed:
                return None
            self.closed = True
            live = [m for m in self.members if m.alive]
        if not ray.is_initialized():
            return []  # Ray was shut down first, and took the actors and their sessions
        refs = []
        for member in live:
            try:
                refs.append(member.handle.close.remote())
            except Exception:  # Ray has forgotten the actor: nothing to close
                member.alive = False
        return refs

    def end_close(self) -> None:
        """Kill every actor (its sessions closed already) and stop the driver's server."""
        if ray.is_initialized():
            for member in self.members:
                with contextlib.suppress(Exception):  # already dead, or unknown to Ray
                    ray.kill(member.handle)
        if self.driver is not None:
            self.driver.close()

    def close_quietly(self) -> None:
        refs = self.begin_close()
        if refs is None:
            return
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=30)
        self.end_close()


def _placements(nodes: Nodes) -> list[Any]:
    """One Ray scheduling strategy per node actor."""
    if nodes is None:
        return [NodeAffinitySchedulingStrategy(n, soft=False) for n in _live_node_ids()]
    if isinstance(nodes, PlacementGroup):
        return [
            PlacementGroupSchedulingStrategy(nodes, placement_group_bundle_index=i)
            for i in range(nodes.bundle_count)
        ]
    if isinstance(nodes, int) and not isinstance(nodes, bool):
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {nodes}")
        return ["SPREAD"] * nodes
    if isinstance(nodes, str) or not isinstance(nodes, Iterable):
        raise TypeError(
            "nodes must be None (every live node), a number of actors, a PlacementGroup or a "
            "list of node ids"
        )
    wanted = list(nodes)
    alive = _live_node_ids()
    for node_id in wanted:
        if node_id not in alive:
            raise ValueError(
                f"nodes: {node_id!r} is not a live node of this Ray cluster (see ray.nodes())"
            )
    return [NodeAffinitySchedulingStrategy(node_id, soft=False) for node_id in wanted]


def _live_node_ids() -> list[str]:
    nodes = ray.nodes()  # type: ignore[no-untyped-call]
    return [n["NodeID"] for n in nodes if n["Alive"]]


class Batch:
    """One batch's bookkeeping, shared by the twins: what to send next, what is in flight."""

    def __init__(self, core: PoolCore, codes: Iterable[str], options: dict[str, Any]) -> None:
        self._core = core
        self._codes = enumerate(codes)
        self._options = options
        self.pending: dict[Any, tuple[int, Member]] = {}
        self._exhausted = False
        self._failure: BaseException | None = None

    def fill(self) -> None:
        """Send snippets until the window is full, the input ends, or the batch failed."""
        window = self._core.window()
        while not self._exhausted and self._failure is None and len(self.pending) < window:
            try:
                index, code = next(self._codes)
            except StopIteration:
                self._exhausted = True
                return
            try:
                member = self._core.pick()
            except securepy.SecurePyError as exc:  # closed, or every node lost
                self._failure = exc
                return
            self.pending[member.handle.execute.remote(code, self._options)] = (index, member)

    def settle(self, ref: Any, outcome: Any) -> tuple[int, Any]:
        """The index and result (an Execution or an exception) of a finished call."""
        index, member = self.pending.pop(ref)
        self._core.done(member)
        if isinstance(outcome, ray.exceptions.RayActorError):
            return index, self._core.lose(member, outcome)
        ok, payload = outcome
        return index, payload if ok else payload.rebuild()

    def fail(self, exc: BaseException) -> None:
        """Remember the first failure; no further snippet is sent."""
        if self._failure is None:
            self._failure = exc

    def abandon(self) -> None:
        """Stop counting calls nobody will wait for (the caller stopped iterating)."""
        self._exhausted = True
        for _, member in self.pending.values():
            self._core.done(member)
        self.pending.clear()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
