"""The in-sandbox tool broker: sends tool calls, routes each reply to its caller. Stdlib only."""

from __future__ import annotations

import threading

from . import codec
from .stubs import PolicyError, ToolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from collections.abc import Callable
    from typing import Any

    from .connection import Connection

__all__ = ["EXECUTE", "ToolBroker"]


EXECUTE = -1  # where the broker files an execute message for the main loop


class ToolBroker:
    """Sends tool calls and routes each reply to its caller.

    Several threads may call tools at once. Whichever waiting caller finds no reader reads the
    next frame and hands it to its owner (leader/followers), so no extra thread is needed.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # A plain lock (not the RLock a bare Condition makes): taken three times per call.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._replies: dict[int, dict[str, Any]] = {}
        self._reading = False
        self._waiting = 0  # threads in _cond.wait(): with none, no notify is needed
        self._next_id = 0
        self._in_flight = 0
        # True while a turn's end is being sent: a new call waits for it, and so belongs to the
        # next turn (the host refuses a turn's end while any of its calls is outstanding).
        self._closing = False
        # Threads the worker itself runs; more means the code runs threads of its own.
        self.own_threads = 1

    def reset(self) -> None:
        """Forget replies to calls abandoned by an earlier turn."""
        if not self._replies:
            return
        with self._lock:
            execute = self._replies.pop(EXECUTE, None)
            self._replies.clear()
            if execute is not None:
                self._replies[EXECUTE] = execute

    def call(self, name: str, args: dict[str, Any]) -> Any:
        with self._lock:
            while self._closing:
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
            self._next_id += 1
            call_id = self._next_id
            # "solo": nothing else can come from this process until the reply (no other call
            # in flight, no thread of the code's own), so the host may serve it inline.
            solo = self._in_flight == 0 and threading.active_count() <= self.own_threads
            self._in_flight += 1
        try:
            tree = {key: codec.encode(value) for key, value in args.items()}
            self._connection.send(
                {"kind": "tool_call", "call_id": call_id, "name": name, "args": tree, "solo": solo}
            )
            return _unpack_reply(name, self._wait_for(call_id))
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._closing and not self._in_flight and self._waiting:
                    self._cond.notify_all()

    def end_turn(self, send_end: Callable[[], None]) -> None:
        """Call ``send_end`` (which sends the turn's result or error) once no tool call of the
        turn is in flight: a thread the code left running may still wait for a reply, and
        the host answers every call (by the tool, or with a timeout)."""
        with self._lock:
            self._closing = True
        try:
            if self._in_flight:
                self._wait_until_idle()
            send_end()
        finally:
            with self._lock:
                self._closing = False
                if self._waiting:
                    self._cond.notify_all()

    def _wait_until_idle(self) -> None:
        # Each caller reads its own reply when no one else reads (see _wait_for), so this
        # thread only waits: were it to read, it could block on a socket with nothing to come.
        with self._lock:
            while self._in_flight:
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1

    def next_execute(self) -> dict[str, Any]:
        """The next ``execute`` message (the main loop's read, in turn with tool callers)."""
        return self._wait_for(EXECUTE)

    def _wait_for(self, key: int) -> dict[str, Any]:
        replies = self._replies
        while True:
            with self._lock:
                while key not in replies and self._reading:
                    self._waiting += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._waiting -= 1
                if key in replies:
                    return replies.pop(key)
                self._reading = True
            message: dict[str, Any] | None = None
            try:
                message = self._connection.receive()
            finally:
                with self._lock:
                    self._reading = False
                    if self._waiting:
                        self._cond.notify_all()
                    if message is not None:
                        filed_under = _key_of(message)
                        if filed_under != key:
                            # Another caller's reply (or the next execute): file it for them.
                            if filed_under is not None:
                                replies[filed_under] = message
                            message = None
            if message is not None:
                return message


def _key_of(message: dict[str, Any]) -> int | None:
    """Where a message is filed: its call id, EXECUTE (an execute or a files request), or
    nowhere (None)."""
    kind = message["kind"]
    if kind == "tool_result":
        return message["call_id"]  # type: ignore[no-any-return]
    if kind == "execute" or kind == "files":  # the main loop's: between executes
        return EXECUTE
    return None


def _unpack_reply(name: str, reply: dict[str, Any]) -> Any:
    if reply["ok"]:
        return codec.decode(reply.get("value"))
    error = reply.get("error") or {}
    message = str(error.get("message", "the tool failed"))
    if error.get("kind") == "policy":
        raise PolicyError(message, tool=name)
    raise ToolError(message, tool=name, type_name=str(error.get("type", "")))
