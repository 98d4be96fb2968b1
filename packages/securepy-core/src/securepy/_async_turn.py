"""The asyncio loop around a :class:`~securepy._turn.Turn`: it reads, feeds, and does what the
turn says, with each tool call a task. All decisions are the turn's.

Async tools are awaited on the caller's loop; sync tools run on a bounded thread pool, off the
loop. Large frames are parsed (by the channel) and decoded (here) in a thread, so a child's
megabytes never hold the loop for more than a few milliseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from ._channel import OFF_LOOP_BYTES, DeadlineExceeded
from ._child import Child
from ._tools import Tool
from ._turn import Action, Finish, Interrupt, RunTool, Send, StopTool, Turn
from .errors import ProtocolError

__all__ = ["AsyncTurnLoop"]


class AsyncTurnLoop:
    """One execute's I/O on the caller's event loop."""

    __slots__ = ("_channel", "_child", "_executor", "_tasks", "_turn", "after_cancel")

    def __init__(self, child: Child, turn: Turn,
                 executor: Callable[[], concurrent.futures.ThreadPoolExecutor]) -> None:
        self._child = child
        self._channel = child.async_channel
        self._turn = turn
        self._executor = executor
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.after_cancel: Finish | None = None

    async def run(self, execute: dict[str, Any]) -> Finish:
        """Send ``execute`` and serve the turn until it finishes. Cancelled, it interrupts the
        code and waits out the grace period (shielded) before the cancellation goes on; then
        ``turn.cancelled`` is set and the outcome is in :attr:`after_cancel`.

        Raises:
            securepy.errors.ProtocolError: the child broke the protocol or died.
        """
        turn = self._turn
        try:
            try:
                await self._channel.send(execute, turn.deadline)
                return await self._serve()
            except DeadlineExceeded:  # a send could not finish: the child stopped reading
                return turn.send_timed_out()
            except asyncio.CancelledError:
                self.after_cancel = await asyncio.shield(self._stop_after_cancel())
                raise
        finally:
            turn.end()
            for task in self._tasks.values():
                task.cancel()

    async def _serve(self) -> Finish:
        turn = self._turn
        channel = self._channel
        while True:
            try:
                message = await channel.receive(turn.next_deadline())
            except DeadlineExceeded:
                for action in turn.tick(time.monotonic()):
                    finish = await self._act(action)
                    if finish is not None:
                        return finish
                continue
            except ProtocolError as exc:
                return turn.child_lost(exc)
            if channel.last_frame_bytes > OFF_LOOP_BYTES and message["kind"] != "output":
                action = await asyncio.to_thread(turn.feed, message, time.monotonic())
            else:
                action = turn.feed(message, time.monotonic())
            finish = await self._act(action)
            if finish is not None:
                return finish

    async def _act(self, action: Action) -> Finish | None:
        if action is None:
            return None
        if isinstance(action, RunTool):
            call_id = action.call_id
            task = asyncio.ensure_future(self._run(action))
            self._tasks[call_id] = task
            task.add_done_callback(lambda _: self._forget(call_id))
        elif isinstance(action, Send):
            await self._channel.send(action.message, self._turn.send_deadline)
        elif isinstance(action, StopTool):
            stopped = self._tasks.pop(action.call_id, None)
            if stopped is not None:
                stopped.cancel()
            await self._channel.send(action.message, self._turn.send_deadline)
        elif isinstance(action, Interrupt):
            self._child.process.interrupt()
        elif isinstance(action, Finish):
            return action
        return None

    @property
    def broken(self) -> bool:
        """True once a frame to the child was cut off part-way."""
        return self._channel.broken

    def _forget(self, call_id: int) -> None:
        self._tasks.pop(call_id, None)

    async def _run(self, call: RunTool) -> None:
        turn = self._turn
        if not turn.start(call):
            return  # answered already: its turn's time is up
        started = time.monotonic()
        value: Any = None
        error: BaseException | None = None
        try:
            value = await self._call(call.tool, call.arguments)
        except asyncio.CancelledError:
            raise  # its own timeout (answered by the loop), or the turn ended
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        reply = turn.tool_finished(call, duration=time.monotonic() - started, value=value,
                                   error=error)
        if reply is None or turn.ended:
            return  # dropped: answered by its timeout, or its turn ended
        # The child is gone (the reader reports it) or stopped reading (the deadline does).
        with contextlib.suppress(ProtocolError, DeadlineExceeded):
            await self._channel.send(reply, turn.send_deadline)

    async def _call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        if tool.is_async:
            return await tool.fn(**arguments)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor(), lambda: tool.fn(**arguments))
        return await result if inspect.isawaitable(result) else result

    async def _stop_after_cancel(self) -> Finish:
        turn = self._turn
        if turn.ended:
            return Finish()  # the turn was over already: nothing runs
        try:
            for action in turn.interrupt(time.monotonic(), cancelled=True):
                await self._act(action)
            return await self._serve()
        except DeadlineExceeded:
            return turn.send_timed_out()
        except ProtocolError:
            return Finish(restart="the child broke the protocol after its execute was cancelled")
