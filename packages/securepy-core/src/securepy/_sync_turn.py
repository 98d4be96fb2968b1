"""The blocking loop around a :class:`~securepy._turn.Turn`: it reads, feeds, and does what the
turn says, with tools on a thread pool. All decisions are the turn's.

The relay fast path: code that cannot send anything else until a tool's reply (the child marks
such calls ``solo``) is blocked on that call, so the thread that ran the tool reads the next
message itself and runs the next such call at once. This saves a thread hand-off per call, and
is why a tool call costs less than a raw socket echo. Who reads the socket is a
:class:`RelayHolder`; exactly one party reads at a time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import inspect
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ._actions import Action, Finish, Interrupt, RunTool, Send, StopTool
from ._channel import DeadlineExceeded
from ._child import Child
from ._logging import log_tool_call
from ._tool_loop import ToolLoop
from ._tools import Tool
from ._tracing import end_tool_span, span_made_current, start_tool_span
from ._turn import Turn
from ._worker import protocol
from .errors import ProtocolError

__all__ = ["RelayHolder", "SyncTurnLoop", "call_tool"]


class SyncTurnLoop:
    """One execute's I/O: the caller's thread reads and acts; tool threads run the tools."""

    __slots__ = ("_channel", "_child", "_done", "_executor", "_relay_in_use",
                 "_session_id", "_tool_loop", "_turn", "finish")

    def __init__(self, child: Child, turn: Turn, session_id: str,
                 executor: Callable[[], concurrent.futures.ThreadPoolExecutor], *,
                 tool_loop: ToolLoop) -> None:
        self._tool_loop = tool_loop
        self._child = child
        self._channel = child.channel
        self._turn = turn
        self._session_id = session_id
        self._executor = executor
        self._relay_in_use: _Relay | None = None
        # Held until run() returns (a bare lock: an Event costs microseconds per execute).
        self._done = threading.Lock()
        self._done.acquire()
        self.finish: Finish | None = None  # the turn's outcome, once run() has returned

    def run(self, execute: dict[str, Any]) -> Finish:
        """Send ``execute`` and serve the turn until it finishes.

        Raises:
            securepy.errors.ProtocolError: the child broke the protocol or died.
        """
        turn = self._turn
        frame = protocol.encode_frame(execute)
        try:
            with self._child.send_lock:
                self._channel.send_frame(frame, turn.deadline)
            self.finish = self._serve()
        except DeadlineExceeded:  # a send could not finish: the child stopped reading
            self.finish = turn.send_timed_out()
        finally:
            if turn.made_calls:
                with self._child.send_lock:  # no reply of this turn is half-sent after this
                    turn.end()
            else:
                turn.end()
            self._done.release()
        return self.finish

    def _wait_done(self, timeout: float) -> bool:
        if not self._done.acquire(timeout=timeout):
            return False
        self._done.release()  # for any other waiter
        return True

    def interrupt(self) -> bool:
        """From another thread: stop the code as at a timeout, but told as ``interrupt()``;
        kill the child if it has not stopped by the end of the grace period. True when the
        turn ended with the child kept."""
        turn = self._turn
        for action in turn.interrupt(time.monotonic(), by_caller=True):
            if isinstance(action, Send | StopTool):
                # The reader reports a child that is gone or stopped reading.
                with contextlib.suppress(DeadlineExceeded, ProtocolError):
                    self.send(action.message, turn.send_deadline)
            elif isinstance(action, Interrupt):
                self._child.process.interrupt()
        relay = self._relay_in_use
        if relay is not None:  # the caller may be waiting on a tool thread: it reads now
            relay.wake()
        if not self._wait_done(turn.grace + 0.5):
            # The reader sleeps until the code's own deadline: the end of the stream wakes it.
            self._child.process.kill()
            self._wait_done(30)
        finish = self.finish
        return finish is not None and finish.restart is None

    def _serve(self) -> Finish:
        turn = self._turn
        channel = self._channel
        relay = _NO_RELAY
        while True:
            action: Action
            if relay.holder is not _CALLER:
                item = relay.wait(turn.next_deadline())
                if isinstance(item, Finish):
                    return item
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    relay.take_back_from_a_running_tool()
                    continue
                relay.took_back()
                action = item.action
            else:
                try:
                    message = channel.receive(turn.next_deadline())
                except DeadlineExceeded:
                    finish = self._act_all(turn.tick(time.monotonic()))
                    if finish is not None:
                        return finish
                    continue
                except ProtocolError as exc:
                    return turn.child_lost(exc)
                action = turn.feed(message, time.monotonic())
            if action is None:
                continue
            if isinstance(action, Finish):
                return action
            if isinstance(action, RunTool):
                if action.relay:
                    if relay is _NO_RELAY:
                        relay = self._relay_in_use = _Relay()
                    relay.holder = _TOOL_RUNNING
                    self._executor().submit(self._relay, action, relay)
                else:
                    self._executor().submit(self._run, action)
                continue
            finish = self._act(action)
            if finish is not None:
                return finish

    def _act(self, action: Action) -> Finish | None:
        if isinstance(action, Send | StopTool):  # a thread cannot be stopped: only answer
            self.send(action.message, self._turn.send_deadline)
        elif isinstance(action, Interrupt):
            self._child.process.interrupt()
        elif isinstance(action, Finish):
            return action
        return None

    def _act_all(self, actions: list[Action]) -> Finish | None:
        for action in actions:
            finish = self._act(action)
            if finish is not None:
                return finish
        return None

    def send(self, message: dict[str, Any], deadline: float | None) -> None:
        frame = protocol.encode_frame(message)
        with self._child.send_lock:
            self._channel.send_frame(frame, deadline)

    # -- tool threads -----------------------------------------------------------------------

    def _run(self, call: RunTool) -> bool:
        """Run a call's tool and send its answer; False if the answer could not be sent in
        time (the child stopped reading)."""
        turn = self._turn
        if not turn.start(call):
            return True  # answered already: its turn's time is up
        started = time.monotonic()
        span = start_tool_span(turn.span, call.tool, call_id=call.call_id,
                               arguments=call.raw_arguments, record_arguments=turn.trace_arguments)
        value: Any = None
        error: BaseException | None = None
        try:
            if span is None:
                value = call_tool(call.tool, call.arguments, self._tool_loop)
            else:
                with span_made_current(span):
                    value = call_tool(call.tool, call.arguments, self._tool_loop)
        except BaseException as exc:  # even SystemExit: the code must get an answer
            error = exc
        duration = time.monotonic() - started
        reply = turn.tool_finished(call, duration=duration, value=value, error=error)
        if span is not None:
            end_tool_span(span, error=error, timed_out=reply is None, duration=duration)
        log_tool_call(self._session_id, call.tool.name, duration, error, dropped=reply is None)
        if reply is None:
            return True  # dropped: answered by its timeout, or its turn ended
        frame = protocol.encode_frame(reply)
        try:
            with self._child.send_lock:
                if turn.ended:
                    return True
                self._channel.send_frame(frame, turn.send_deadline)
        except DeadlineExceeded:
            return False
        except ProtocolError:
            pass  # the child is gone; the reader reports it
        return True

    def _relay(self, call: RunTool, relay: _Relay) -> None:
        try:
            self._relay_calls(call, relay)
        except BaseException as exc:  # e.g. on_output raised: the caller re-raises it
            relay.deliver(exc)

    def _relay_calls(self, call: RunTool, relay: _Relay) -> None:
        """Run relayed calls and read between them until something else comes."""
        turn = self._turn
        channel = self._channel
        while True:
            if not self._run(call):
                relay.hand_back(None)  # the reply could not be sent in time
                return
            if not relay.start_reading():
                return  # the caller took the socket back (the deadline passed)
            try:
                while True:
                    # Spin: this thread has nothing else to do, and the code's next call
                    # usually comes within microseconds.
                    message = channel.receive(turn.next_deadline(), spin=True)
                    action = turn.feed(message, time.monotonic())
                    if action is not None:
                        break
            except DeadlineExceeded:
                relay.hand_back(None)
                return
            except ProtocolError as exc:
                relay.deliver(exc)
                return
            if isinstance(action, RunTool) and action.relay:
                relay.holder = _TOOL_RUNNING
                call = action
                continue
            if isinstance(action, Finish):
                relay.deliver(action)
            else:
                relay.hand_back(action)
            return


def call_tool(tool: Tool, arguments: dict[str, Any], loop: ToolLoop) -> Any:
    """Call a tool from a tool thread; an async tool runs on the session's ``loop``."""
    if not tool.is_async:
        result = tool.fn(**arguments)
        if not inspect.isawaitable(result):
            return result
        return loop.run(result)
    return loop.run(tool.fn(**arguments))


class RelayHolder(enum.Enum):
    """Who reads the socket during a turn."""

    CALLER = "caller"  # the execute's own thread (always, when no call is relayed)
    TOOL_RUNNING = "tool running"  # a tool thread runs a relayed call; nobody reads
    TOOL_READING = "tool reading"  # that thread reads the next message itself


# As module globals: in Python 3.11 reading an Enum member costs five times a global's lookup.
_CALLER, _TOOL_RUNNING, _TOOL_READING = (
    RelayHolder.CALLER, RelayHolder.TOOL_RUNNING, RelayHolder.TOOL_READING)


class _HandBack:
    """A tool thread stops reading; the caller reads again and acts on ``action``."""

    __slots__ = ("action",)

    def __init__(self, action: Action) -> None:
        self.action = action


class _Relay:
    """The hand-off of the socket between the caller and one tool thread."""

    def __init__(self) -> None:
        self.holder = _CALLER
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[Finish | BaseException | _HandBack | _Wake] = (
            queue.SimpleQueue())

    def start_reading(self) -> bool:
        """Called by the tool thread: False if the caller has taken the socket back."""
        with self._lock:
            if self.holder is not _TOOL_RUNNING:
                return False
            self.holder = _TOOL_READING
            return True

    def hand_back(self, action: Action) -> None:
        """Called by the tool thread as it stops reading. The socket is the caller's only once
        the caller has taken this from the inbox (``took_back``): were ``holder`` set here, a
        caller that had not yet looked would read the socket and leave ``action`` unanswered."""
        self._inbox.put(_HandBack(action))

    def took_back(self) -> None:
        with self._lock:
            self.holder = _CALLER

    def deliver(self, item: Finish | BaseException) -> None:
        self._inbox.put(item)

    def wait(self, deadline: float | None) -> Finish | BaseException | _HandBack | None:
        """The tool thread's news, or None at the deadline (or when woken)."""
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if isinstance(item, _Wake) else item

    def wake(self) -> None:
        """Make the caller's wait return None now, as at a deadline (see ``interrupt``)."""
        self._inbox.put(_WAKE)

    def take_back_from_a_running_tool(self) -> None:
        """At a deadline: a thread stuck in a tool cannot be stopped, so the caller reads (and
        interrupts) without it. A thread that is reading hands back by itself."""
        with self._lock:
            if self.holder is _TOOL_RUNNING:
                self.holder = _CALLER


class _Wake:
    """Put in a relay's inbox to wake the caller (see ``SyncTurnLoop.interrupt``)."""


_WAKE = _Wake()

# Most turns call no tool: they share this one, which never leaves the caller.
_NO_RELAY = _Relay()
