"""The sandbox as an Anthropic tool: a definition for ``tools=[...]`` and its handler."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import securepy
from anthropic.lib.tools import BetaAsyncFunctionTool, BetaFunctionTool, ToolError
from anthropic.types import ToolParam, ToolResultBlockParam
from securepy.adapters import DEFAULT_TEXT_CHARS, RunOutcome, SandboxRunner

from ._convert import from_anthropic_tool

__all__ = ["SecurePyTool", "securepy_tool"]

_CODE_DESCRIPTION = "Python source to run; the last expression's value is shown."


def securepy_tool(
    *,
    tools: Iterable[securepy.Tool | Callable[..., Any] | BetaFunctionTool[Any]
                    | BetaAsyncFunctionTool[Any]] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> SecurePyTool:
    """The sandbox as an Anthropic tool that runs one ``code`` string per call.

    Example:
        >>> import securepy_anthropic
        >>> run_python = securepy_anthropic.securepy_tool(sandbox=False)
        >>> run_python.definition["name"]
        'run_python'
        >>> run_python.handle({"type": "tool_use", "id": "toolu_1", "name": "run_python",
        ...                    "input": {"code": "6 * 7"}})["content"]
        '42'
        >>> run_python.close()

    Args:
        tools: host functions callable from the code: securepy Tools, plain typed functions,
            or ``@beta_tool`` / ``@beta_async_tool`` objects (converted with
            :func:`from_anthropic_tool`).
        session: a ``securepy.Session`` or ``AsyncSession`` to run in; it is left open.
        pool: a ``securepy.SessionPool`` or ``AsyncSessionPool`` to run in; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; by default it explains the sandbox and lists
            the host functions as Python signatures.
        timeout: seconds per call; None for none.
        max_output_chars: bound on the text the model reads back.
        **session_options: options for the session the tool creates when given neither
            ``session`` nor ``pool`` (see ``securepy.Session``), e.g. ``sandbox=False``.

    Returns:
        A :class:`SecurePyTool`; close it (or use it as a context manager) to stop the
        session it created.

    Raises:
        TypeError: both ``session`` and ``pool``, ``tools`` together with either, or an
            unknown session option.
        ValueError: ``max_output_chars`` is not positive, or two tools share a name.
    """
    converted = [
        from_anthropic_tool(item) if isinstance(item, BetaFunctionTool | BetaAsyncFunctionTool)
        else item
        for item in tools
    ]
    runner = SandboxRunner(tools=converted, session=session, pool=pool, name=name,
                           description=description, timeout=timeout,
                           max_output_chars=max_output_chars, **session_options)
    return SecurePyTool(runner)


@typing.final
class SecurePyTool:
    """A "run Python" tool for the Anthropic Messages API, made by :func:`securepy_tool`.

    Use :attr:`definition` in ``tools=[...]`` and :meth:`handle` (or :meth:`ahandle`) on each
    ``tool_use`` block in a manual loop, or hand :attr:`beta_tool` (:attr:`beta_async_tool`)
    to ``client.beta.messages.tool_runner(...)``. A failure of the code (an exception, a
    timeout, a refused host call) is a result with ``is_error`` set, never an exception.

    Args:
        runner: the shared ``securepy.adapters.SandboxRunner`` this tool wraps.
    """

    def __init__(self, runner: SandboxRunner) -> None:
        self._runner = runner

    def __repr__(self) -> str:
        return f"<securepy_anthropic.SecurePyTool name={self.name!r}>"

    def __enter__(self) -> SecurePyTool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""
        return self._runner.name

    @property
    def description(self) -> str:
        """The tool's description, listing the host functions available inside."""
        return self._runner.description

    @property
    def tools(self) -> dict[str, securepy.Tool]:
        """The host tools callable from the code, by name."""
        return dict(self._runner.tools)

    @property
    def definition(self) -> ToolParam:
        """The tool definition (``name``, ``description``, ``input_schema``) for ``tools=``."""
        return {"name": self.name, "description": self.description,
                "input_schema": _input_schema()}

    @functools.cached_property
    def beta_tool(self) -> BetaFunctionTool[Callable[[str], str]]:
        """The tool for the sync ``client.beta.messages.tool_runner(...)``.

        It returns the run's text, or raises ``anthropic.lib.tools.ToolError`` with the error
        text, which the runner sends back as a ``tool_result`` with ``is_error`` set.
        """
        return _with_close(BetaFunctionTool(
            _sync_beta_function(self._runner), name=self.name, description=self.description,
            input_schema=_input_schema()), self._runner)

    @functools.cached_property
    def beta_async_tool(self) -> BetaAsyncFunctionTool[Callable[[str], Coroutine[Any, Any, str]]]:
        """Async counterpart of :attr:`beta_tool`, for the ``AsyncAnthropic`` tool runner."""
        return _with_close(BetaAsyncFunctionTool(
            _async_beta_function(self._runner), name=self.name, description=self.description,
            input_schema=_input_schema()), self._runner)

    def handle(self, block: Any) -> ToolResultBlockParam:
        """Run the code of one ``tool_use`` block and return its ``tool_result`` block.

        Args:
            block: a ``tool_use`` content block, as the SDK object or as a dict.

        Returns:
            ``{"type": "tool_result", "tool_use_id", "content", "is_error"}``; ``is_error`` is
            True when the block is malformed or the code failed, with the reason as content.

        Raises:
            TypeError: the tool wraps an ``AsyncSession`` or ``AsyncSessionPool`` (use
                :meth:`ahandle`).
        """
        tool_use_id, code, problem = self._read_block(block)
        if problem is not None:
            return _tool_result(tool_use_id, problem, is_error=True)
        return _result_of(tool_use_id, self._runner.run(code))

    async def ahandle(self, block: Any) -> ToolResultBlockParam:
        """Async counterpart of :meth:`handle`; same arguments, never blocks the event loop."""
        tool_use_id, code, problem = self._read_block(block)
        if problem is not None:
            return _tool_result(tool_use_id, problem, is_error=True)
        return _result_of(tool_use_id, await self._runner.arun(code))

    def close(self) -> None:
        """Close the session this tool created; a session or pool passed in stays open."""
        self._runner.close()

    def _read_block(self, block: Any) -> tuple[str, str, str | None]:
        """The block's id and code, or a problem the model can read instead of the code."""
        kind, name, arguments = (_field(block, key) for key in ("type", "name", "input"))
        tool_use_id = _field(block, "id")
        tool_use_id = tool_use_id if isinstance(tool_use_id, str) else ""
        if kind != "tool_use" or not tool_use_id:
            return tool_use_id, "", (
                f"Error: expected a tool_use block with an id, got {_shorten(block)}")
        if name != self.name:
            return tool_use_id, "", f"Error: this handler runs {self.name!r}, not {name!r}."
        code = arguments.get("code") if isinstance(arguments, Mapping) else None
        if not isinstance(code, str):
            return tool_use_id, "", (
                f"Error: {self.name} takes an input object with a 'code' string, got "
                f"{_shorten(arguments)}.")
        return tool_use_id, code, None


_BetaToolT = typing.TypeVar("_BetaToolT", bound=BetaFunctionTool[Any] | BetaAsyncFunctionTool[Any])


def _with_close(beta: _BetaToolT, runner: SandboxRunner) -> _BetaToolT:
    # The SDK's session runners call a tool's ``close``; the Messages runner does not. The
    # beta tools hold the runner, not the SecurePyTool: pydantic's validate_call keeps a
    # reference cycle through the beta tool, which must not keep the SecurePyTool alive.
    beta.close = runner.close
    return beta


def _sync_beta_function(runner: SandboxRunner) -> Callable[[str], str]:
    def run_python(code: str) -> str:
        return _text_or_raise(runner.run(code))

    return run_python


def _async_beta_function(runner: SandboxRunner) -> Callable[[str], Coroutine[Any, Any, str]]:
    async def run_python(code: str) -> str:
        return _text_or_raise(await runner.arun(code))

    return run_python


def _field(block: Any, key: str) -> Any:
    return block.get(key) if isinstance(block, Mapping) else getattr(block, key, None)


def _input_schema() -> dict[str, Any]:
    # A fresh dict each time: callers and the SDK may mutate what they are given.
    return {"type": "object",
            "properties": {"code": {"type": "string", "description": _CODE_DESCRIPTION}},
            "required": ["code"], "additionalProperties": False}


def _result_of(tool_use_id: str, outcome: RunOutcome) -> ToolResultBlockParam:
    return _tool_result(tool_use_id, outcome.text, is_error=outcome.is_error)


def _tool_result(tool_use_id: str, content: str, *, is_error: bool) -> ToolResultBlockParam:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": content,
            "is_error": is_error}


def _text_or_raise(outcome: RunOutcome) -> str:
    # The tool runner turns ToolError into a tool_result with is_error set and this text.
    if outcome.is_error:
        raise ToolError(outcome.text)
    return outcome.text


def _shorten(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
