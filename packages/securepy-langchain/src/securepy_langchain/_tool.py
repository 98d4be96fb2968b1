"""The sandbox as a LangChain tool: ``securepy_tool`` returns a BaseTool taking one ``code``."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any

import securepy
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field, PrivateAttr
from securepy.adapters import DEFAULT_TEXT_CHARS, RunOutcome, SandboxRunner

from ._convert import convert_tools

__all__ = ["RunPythonInput", "SecurePyTool", "securepy_tool"]

_SessionOrPool = (securepy.Session | securepy.AsyncSession | securepy.SessionPool
                  | securepy.AsyncSessionPool)


def securepy_tool(
    *,
    tools: Iterable[BaseTool | securepy.Tool | Callable[..., Any]] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> SecurePyTool:
    """The sandbox as a LangChain tool: a persistent Python session the model writes code for.

    The tool takes one argument, ``code``. Its description lists every host tool available
    inside as a Python signature, so the model can call them without another round trip.
    It returns the code's output and the value of its last expression; an exception in the
    code, a timeout, a denied tool call or a dead session is raised as a ``ToolException``
    that LangChain turns into the tool's result (a ``ToolMessage`` with ``status="error"``
    when invoked with a tool call), so the agent loop carries on.

    Example:
        >>> from securepy_langchain import securepy_tool
        >>> def order_total(order_id: str) -> float:
        ...     "The total of an order, in euros."
        ...     return 42.5
        >>> sandbox = securepy_tool(tools=[order_total], sandbox=False)
        >>> sandbox.invoke({"code": "order_total('A1') * 2"})
        '85.0'
        >>> sandbox.close()

    Args:
        tools: host functions callable from the code: LangChain tools (converted with
            :func:`from_langchain`), securepy Tools and plain typed functions, mixed.
        session: a Session or AsyncSession to run the code in; it is left open.
        pool: a SessionPool or AsyncSessionPool instead; it is left open.
        name: the tool's name as the model sees it.
        description: replaces the generated description.
        timeout: seconds each run may take; None for no limit.
        max_output_chars: bound on the text the model sees; longer output is cut in the
            middle, with a visible note.
        **session_options: options for the session the tool creates when given neither
            ``session`` nor ``pool`` (see :class:`securepy.Session`, e.g. ``sandbox=``,
            ``limits=``).

    Returns:
        A :class:`SecurePyTool`. Close it (``tool.close()``) to stop a session it created;
        it is also stopped when the tool is garbage collected.

    Raises:
        TypeError: both ``session`` and ``pool`` given, ``tools=`` or session options given
            with a session or pool, or an unknown session option.
        ValueError: a tool cannot be converted, or ``max_output_chars`` is not positive.
    """
    runner = SandboxRunner(tools=convert_tools(tools), session=session, pool=pool, name=name,
                           description=description, timeout=timeout,
                           max_output_chars=max_output_chars, **session_options)
    sandbox = SecurePyTool(name=runner.name, description=runner.description)
    sandbox._runner = runner
    return sandbox


@typing.final
class RunPythonInput(BaseModel):
    """The one argument of the sandbox tool."""

    code: str = Field(description="Python source to run in the persistent sandboxed session.")


@typing.final
class SecurePyTool(BaseTool):
    """A LangChain tool that runs Python code in a securepy session; make it with
    :func:`securepy_tool`."""

    args_schema: type[BaseModel] = RunPythonInput
    # Turns the ToolException every failed run raises into the tool's result.
    handle_tool_error: bool = True
    _runner: SandboxRunner = PrivateAttr()

    @property
    def session(self) -> _SessionOrPool | None:
        """The session or pool in use (None until an owned session is first needed)."""
        return self._runner.session

    def close(self) -> None:
        """Stop the session this tool created; a session or pool passed in stays open."""
        self._runner.close()

    def _run(self, code: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        return _text_or_raise(self._runner.run(code))

    async def _arun(
        self, code: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> str:
        return _text_or_raise(await self._runner.arun(code))


def _text_or_raise(outcome: RunOutcome) -> str:
    if outcome.is_error:
        raise ToolException(outcome.text)
    return outcome.text
