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
import contextvars
import inspect
import time
from collections.abc import Callable
from typing import Any

from ._actions import Action, Finish, Interrupt, RunTool, Send, StopTool
from ._channel import OFF_LOOP_BYTES, DeadlineExceeded
from ._child import Child
from ._logging import log_tool_call
from ._tools import Tool
from ._tracing import end_tool_span, span_made_current, start_tool_span
from ._turn import Turn
from .errors import ProtocolError

__all__ = ["AsyncTurnLoop"]


class AsyncTurnLoop:
    """One execute's I/O on the caller's event loop."""

    __slots__ = ("_channel", "_child", "_done", "_ended", "_executor", "_session_id", "_tasks",
                 "_turn", "after_cancel", "finish")

    def __init__(self, child: Child, turn: Turn, session_id: str,
                 executor: Callable[[], concurrent.futures.ThreadPoolExecutor]) -> None:
        self._child = child
        self._channel = child.async_channel
        self._turn = turn
        self._session_id = session_id
        self._executor = executor
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._done: asyncio.Event | None = None  # made by interrupt() only (hot path)
        self._ended = False
        self.after_cancel: Finish | None = None
        self.finish: Finish | None = None  # the turn's outcome, once run() has returned

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
                self.finish = await self._serve()
            except DeadlineExceeded:  # a send could not finish: the child stopped reading
                self.finish = turn.send_timed_out()
            except asyncio.CancelledError:
                self.after_cancel = await asyncio.shield(self._stop_after_cancel())
                raise
        finally:
            turn.end()
            for task in self._tasks.values():
                task.cancel()
            self._ended = True
            if self._done is not None:
                self._done.set()
        return self.finish

    async def interrupt(self) -> bool:
        """From another task: stop the code as at a timeout, but told as ``interrupt()``;
        kill the child if it has not stopped by the end of the grace period. True when the
        turn ended with the child kept."""
        turn = self._turn
        for action in turn.interrupt(time.monotonic(), by_caller=True):
            # The reader reports a child that is gone or stopped reading.
            with contextlib.suppress(DeadlineExceeded, ProtocolError):
                await self._act(action)
        done = self._done = asyncio.Event()
        if self._ended:
            done.set()
        try:
            await asyncio.wait_for(done.wait(), turn.grace + 0.5)
        except TimeoutError:
            # The reader sleeps until the code's own deadline: the end of the stream wakes it.
            self._child.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 30)
        finish = self.finish
        return finish is not None and finish.restart is None

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
        span = start_tool_span(turn.span, call.tool, call_id=call.call_id,
                               arguments=call.raw_arguments, record_arguments=turn.trace_arguments)
        value: Any = None
        error: BaseException | None = None
        try:
            with span_made_current(span):
                value = await self._call(call.tool, call.arguments)
        except asyncio.CancelledError:
            # Its own timeout (answered by the loop), or the turn ended.
            duration = time.monotonic() - started
            end_tool_span(span, timed_out=True, duration=duration)
            log_tool_call(self._session_id, call.tool.name, duration, None, dropped=True)
            raise
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        duration = time.monotonic() - started
        reply = turn.tool_finished(call, duration=duration, value=value, error=error)
        if span is not None:
            end_tool_span(span, error=error, timed_out=reply is None, duration=duration)
        log_tool_call(self._session_id, call.tool.name, duration, error, dropped=reply is None)
        if reply is None or turn.ended:
            return  # dropped: answered by its timeout, or its turn ended
        # The child is gone (the reader reports it) or stopped reading (the deadline does).
        with contextlib.suppress(ProtocolError, DeadlineExceeded):
            await self._channel.send(reply, turn.send_deadline)

    async def _call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        if tool.is_async:
            return await tool.fn(**arguments)
        loop = asyncio.get_running_loop()
        # In a copy of this task's context: a tool's own spans nest under its call's span.
        context = contextvars.copy_context()
        result = await loop.run_in_executor(
            self._executor(), lambda: context.run(tool.fn, **arguments))
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
