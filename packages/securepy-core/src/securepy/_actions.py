"""What a turn asks its loop to do: the vocabulary between ``_turn.Turn`` (which decides) and
``_sync_turn`` / ``_async_turn`` (which do the I/O), and the turn's phases."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ._tools import Tool
from .errors import SecurePyError

__all__ = ["Action", "Finish", "Interrupt", "Phase", "RunTool", "Send", "StopTool"]


class Phase(enum.Enum):
    """Where a turn is."""

    RUNNING = "running"  # the code runs; tool calls are served
    INTERRUPTING = "interrupting"  # time is up: SIGINT sent, the grace period runs
    ENDED = "ended"  # execute is returning: nothing starts, nothing more is sent


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class RunTool:
    """Run ``tool`` with ``arguments``: first ask :meth:`Turn.start`, then answer with
    :meth:`Turn.tool_finished`. ``relay``: the child can send nothing else until the reply and
    the tool has no timeout of its own, so the thread that runs it may go on reading."""

    call_id: int
    tool: Tool
    arguments: dict[str, Any]
    raw_arguments: dict[str, Any]
    started: float
    tool_deadline: float | None
    relay: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Send this message to the child."""

    message: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StopTool:
    """The call ran past its own timeout: stop its tool if the loop can (a task can be
    cancelled, a thread cannot), and send ``message``, its answer."""

    call_id: int
    message: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Interrupt:
    """Interrupt the code (SIGINT); keep feeding messages and clock readings."""


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """The turn is over: the code's ``value``, or the ``error`` to raise. ``restart``: the
    child must be replaced (it is stuck or out of step), for this reason."""

    value: Any = None
    error: SecurePyError | None = None
    restart: str | None = None


Action = RunTool | Send | StopTool | Interrupt | Finish | None
