"""Where tools run: on the node (shipped by Ray) or back on the driver (relayed).

A tool given to :class:`securepy_ray.RayPool` as is is pickled with Ray's serialization and
runs on every node, next to the sandboxes that call it. A tool wrapped in :func:`on_driver`
stays in the driver process: each node gets a stand-in tool with the same name, description
and schema, whose function sends the call to a small relay actor placed on the driver's node;
a thread in the driver takes calls from the relay, runs the real tool and answers. The relay
is also how audit records reach the driver.

The relay is an async actor, so a node waiting for an answer holds no relay thread; the
driver polls it with a long wait, so an idle pool costs one pending call, not a busy loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import typing
from collections.abc import Callable
from typing import Any

import ray
import securepy

from ._outcome import Outcome, exception_named

__all__ = [
    "DriverRelay",
    "DriverServer",
    "DriverTool",
    "on_driver",
    "split_tools",
    "stand_in_tool",
    "tool_spec",
]

logger = logging.getLogger("securepy.ray")

# How many calls or audit records the driver takes from the relay per round trip, and how
# long one poll waits for the first before it returns empty (so close is noticed).
_TAKE_BATCH = 256
_POLL_SECONDS = 5.0


@typing.final
class DriverTool:
    """A tool that runs in the driver process; made by :func:`on_driver`.

    Attributes:
        tool: the :class:`securepy.Tool` that runs on the driver.
    """

    __slots__ = ("tool",)

    def __init__(self, tool: securepy.Tool) -> None:
        self.tool = tool

    def __repr__(self) -> str:
        return f"<securepy_ray.on_driver({self.tool!r})>"

    def __reduce__(self) -> typing.NoReturn:
        # The whole point is that this object never leaves the driver.
        raise TypeError(
            f"on_driver({self.tool.name}) stays on the driver and cannot be "
            "pickled; give it to a RayPool's tools="
        )


def on_driver(tool: securepy.Tool | Callable[..., Any]) -> DriverTool:
    """Mark a tool to run back on the driver rather than on the nodes.

    Use it for a tool that holds what only the driver has: a database connection, credentials,
    an in-memory cache, a client that cannot be pickled. Each call then travels from the
    sandbox to its node, to a relay actor on the driver's node and into the driver process,
    and the result travels back (a few milliseconds over a local pool). Arguments are checked
    against the tool's schema on the node and again by the tool itself on the driver. The
    driver runs these calls in a thread pool, async functions each on its own event loop.

    Args:
        tool: a :class:`securepy.Tool` or a plain typed function (as ``@securepy.tool`` takes).

    Returns:
        A marker to put in ``RayPool(tools=[...])``.

    Raises:
        TypeError: ``tool`` is neither a Tool nor a callable.
    """
    if isinstance(tool, DriverTool):
        return tool
    if isinstance(tool, securepy.Tool):
        return DriverTool(tool)
    if callable(tool):
        return DriverTool(securepy.tool(tool))
    raise TypeError(f"on_driver() takes a securepy.Tool or a function, not {type(tool).__name__}")


def split_tools(tools: Any) -> tuple[list[securepy.Tool], dict[str, securepy.Tool]]:
    """Node tools (checked to pickle) and driver tools by name; names must be unique."""
    items = (
        [tools] if isinstance(tools, securepy.Tool | DriverTool) or callable(tools) else list(tools)
    )
    node: list[securepy.Tool] = []
    driver: dict[str, securepy.Tool] = {}
    seen: set[str] = set()
    for item in items:
        on_driver = isinstance(item, DriverTool)
        tool = (
            item.tool
            if isinstance(item, DriverTool)
            else (item if isinstance(item, securepy.Tool) else securepy.tool(item))
        )
        if tool.name in seen:
            raise ValueError(f"two tools are named {tool.name!r}; tool names must be unique")
        seen.add(tool.name)
        if on_driver:
            driver[tool.name] = tool
            continue
        try:
            ray.cloudpickle.dumps(tool)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise TypeError(
                f"tool {tool.name!r} cannot be shipped to the nodes ({exc}); if it holds "
                "something only this process has (a connection, credentials, a lock), run it "
                f"on the driver: tools=[securepy_ray.on_driver({tool.name})]"
            ) from exc
        node.append(tool)
    return node, driver


def stand_in_tool(spec: dict[str, Any], relay: Any) -> securepy.Tool:
    """The node's copy of a driver tool: same name, description and schema; calls the relay.

    Args:
        spec: ``name``, ``description``, ``parameters``, ``timeout`` and ``max_calls``.
        relay: the :class:`DriverRelay` actor handle.
    """
    name = spec["name"]

    def call_driver(**arguments: Any) -> Any:
        ok, payload = ray.get(relay.call.remote(name, arguments))
        if ok:
            return payload
        type_name, args = payload
        raise exception_named(type_name, args)

    return securepy.Tool(
        name,
        spec["description"],
        call_driver,
        parameters=spec["parameters"],
        timeout=spec["timeout"],
        max_calls=spec["max_calls"],
    )


def tool_spec(tool: securepy.Tool) -> dict[str, Any]:
    """What a node needs to build the stand-in of a driver tool (plain data only)."""
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "timeout": tool.timeout,
        "max_calls": tool.max_calls,
    }


class DriverRelay:
    """The actor on the driver's node that queues node calls and audit records for the driver.

    Made a Ray actor by :class:`DriverServer` (``ray.remote`` with node affinity to the
    driver's node); nodes call :meth:`call` and :meth:`audit`, the driver :meth:`take` and
    :meth:`answer`.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._ids = itertools.count()
        self._stopped = False

    async def call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        """Queue one tool call for the driver and wait for its answer."""
        if self._stopped:
            return (False, ("SessionClosedError", ("the RayPool that owns this tool is closed",)))
        call_id = next(self._ids)
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        self._queue.put_nowait(("call", call_id, name, arguments))
        return await answer

    async def audit(self, record: dict[str, Any]) -> None:
        """Queue one audit record for the driver's sink."""
        self._queue.put_nowait(("audit", record))

    async def take(self, max_items: int, wait: float) -> list[tuple[Any, ...]]:
        """Up to ``max_items`` queued items; waits up to ``wait`` seconds for the first."""
        try:
            first = await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return []
        items = [first]
        while len(items) < max_items and not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def answer(self, call_id: int, outcome: Outcome) -> None:
        """Deliver the driver's answer to the node waiting in :meth:`call`."""
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(outcome)

    async def stop(self) -> None:
        """Fail every waiting call and wake the driver's poll, which then sees it is stopped."""
        self._stopped = True
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_result(
                    (False, ("SessionClosedError", ("the RayPool that owns this tool closed",)))
                )
        self._waiting.clear()
        self._queue.put_nowait(("stop",))


class DriverServer:
    """The driver's side: the relay actor, and a thread that serves it.

    Args:
        tools: the driver tools, by name.
        audit: the driver's audit sink, or None.
        workers: threads that run driver tools at once.
    """

    def __init__(
        self,
        tools: dict[str, securepy.Tool],
        audit: Callable[[dict[str, Any]], Any] | None,
        *,
        workers: int,
    ) -> None:
        self._tools = tools
        self._audit = audit
        here = ray.get_runtime_context().get_node_id()
        relay_class = ray.remote(DriverRelay)
        self.relay: Any = relay_class.options(
            num_cpus=0,
            max_concurrency=1000,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                here, soft=False
            ),
        ).remote()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="securepy-ray-tool"
        )
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="securepy-ray-driver", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving: waiting nodes get an error, the thread and the relay end. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        # Any Ray call would start a new local Ray if Ray was shut down first; then the relay
        # went with it, and so did the thread's poll.
        if ray.is_initialized():
            with contextlib.suppress(Exception):  # the relay is gone: the poll fails, too
                ray.get(self.relay.stop.remote(), timeout=10)
        self._thread.join(timeout=30)
        self._executor.shutdown(wait=True, cancel_futures=True)
        if ray.is_initialized():
            with contextlib.suppress(Exception):  # already dead with its node
                ray.kill(self.relay)

    def _serve(self) -> None:
        # ray.is_initialized(): a call after ray.shutdown() would start a new local Ray.
        while not self._closed.is_set() and ray.is_initialized():
            try:
                items = ray.get(self.relay.take.remote(_TAKE_BATCH, _POLL_SECONDS))
            except Exception:  # the relay, or Ray itself, is gone
                if not self._closed.is_set():
                    logger.error(
                        "the driver-tool relay actor died; driver tools now fail", exc_info=True
                    )
                return
            for item in items:
                if item[0] == "call":
                    self._executor.submit(self._run_call, *item[1:])
                elif item[0] == "audit":
                    self._deliver_audit(item[1])

    def _deliver_audit(self, record: dict[str, Any]) -> None:
        if self._audit is None:
            return
        try:
            self._audit(record)
        except Exception:  # a user's sink must not stop the relay, as in core's auditor
            logger.warning(
                "the audit callback failed on a %s event", record.get("event"), exc_info=True
            )

    def _run_call(self, call_id: int, name: str, arguments: dict[str, Any]) -> None:
        outcome: Outcome
        try:
            outcome = (True, self._call_tool(name, arguments))
        except Exception as exc:  # the tool's failure goes back to the sandbox as data
            plain = all(isinstance(a, str | int | float | bool | None) for a in exc.args)
            outcome = (False, (type(exc).__name__, exc.args if plain else (str(exc),)))
        try:
            self.relay.answer.remote(call_id, outcome)
        except Exception as exc:
            self.relay.answer.remote(
                call_id,
                (
                    False,
                    (
                        "TypeError",
                        (f"the result of {name}() could not be sent back to the node: {exc}",),
                    ),
                ),
            )

    def _call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        tool = self._tools[name]
        checked = tool.validate_arguments(arguments)
        if tool.is_async:
            # Each call gets its own short-lived loop in its tool thread: never the caller's.
            return asyncio.run(tool.fn(**checked))
        return tool.fn(**checked)
