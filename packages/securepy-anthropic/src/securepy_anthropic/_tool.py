"""The sandbox as an Anthropic tool: a definition for ``tools=[...]`` and its handler."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import securepy
from anthropic.lib.tools import BetaAsyncFunctionTool, BetaFunctionTool, ToolError
from anthropic.types import ImageBlockParam, TextBlockParam, ToolParam, ToolResultBlockParam
from securepy.adapters import (
    DEFAULT_TEXT_CHARS,
    RunOutcome,
    SandboxRunner,
    SandboxToolMixin,
    code_schema,
    field_of,
)

from ._convert import convert

__all__ = ["SecurePyTool", "securepy_tool"]

# A tool_result's content: the text, or text and image blocks (the beta tool runner's result
# type, BetaFunctionToolResultType, takes the same shapes).
Content = str | list[TextBlockParam | ImageBlockParam]
_MediaType = typing.Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


def securepy_tool(
    *,
    tools: Iterable[Any] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    cache_control: Mapping[str, Any] | None = None,
    strict: bool | None = None,
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
            ``@beta_tool`` / ``@beta_async_tool`` objects and ``(definition, fn)`` pairs,
            mixed (the native ones converted with :func:`from_anthropic_tool`).
        session: a ``securepy.Session`` or ``AsyncSession`` to run in; it is left open.
        pool: a ``securepy.SessionPool`` or ``AsyncSessionPool`` to run in; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; by default it explains the sandbox and lists
            the host functions as Python signatures.
        timeout: seconds per call; None for none.
        max_output_chars: bound on the text the model reads back.
        cache_control: the definition's ``cache_control`` (e.g. ``{"type": "ephemeral"}``):
            the run_python description grows with every host tool, so it is the natural
            prompt-cache breakpoint.
        strict: the definition's ``strict`` flag (the schema is strict-ready).
        **session_options: options for the session the tool creates when given neither
            ``session`` nor ``pool`` (see ``securepy.Session``), e.g. ``sandbox=False``;
            ``sanitize_errors`` defaults to True here.

    Returns:
        A :class:`SecurePyTool`; close it (or use it as a context manager) to stop the
        session it created.

    Raises:
        TypeError: both ``session`` and ``pool``, ``tools`` together with either, or an
            unknown session option.
        ValueError: ``max_output_chars`` is not positive, or two tools share a name.
    """
    runner = SandboxRunner(
        tools=tools,
        session=session,
        pool=pool,
        name=name,
        description=description,
        timeout=timeout,
        max_output_chars=max_output_chars,
        convert=convert,
        framework="Anthropic",
        **session_options,
    )
    options: dict[str, Any] = {"cache_control": cache_control, "strict": strict}
    return SecurePyTool(runner, **{k: v for k, v in options.items() if v is not None})


@typing.final
class SecurePyTool(SandboxToolMixin):
    """A "run Python" tool for the Anthropic Messages API, made by :func:`securepy_tool`.

    Use :attr:`definition` in ``tools=[...]`` and :meth:`handle` (or :meth:`ahandle`) on each
    ``tool_use`` block in a manual loop, or hand :attr:`beta_tool` (:attr:`beta_async_tool`)
    to ``client.beta.messages.tool_runner(...)``. A run that displays images (a matplotlib
    figure, ``display()``) answers with a list of content blocks: the text, then an ``image``
    block (base64 source) per image, at most ``securepy.adapters.MAX_MODEL_IMAGES``; other runs
    answer with the text as a string. A failure of the code (an exception, a
    timeout, a refused host call) is a result with ``is_error`` set, never an exception.

    Args:
        runner: the shared ``securepy.adapters.SandboxRunner`` this tool wraps.
        **definition_options: extra definition fields (``cache_control``, ``strict``), also
            given to the beta tools.
    """

    def __init__(self, runner: SandboxRunner, **definition_options: Any) -> None:
        self._runner = runner
        self._options = definition_options

    @property
    def definition(self) -> ToolParam:
        """The tool definition (``name``, ``description``, ``input_schema``) for ``tools=``."""
        definition: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": code_schema(),
            **self._options,
        }
        return typing.cast(ToolParam, definition)

    @functools.cached_property
    def beta_tool(self) -> BetaFunctionTool[Callable[[str], Content]]:
        """The tool for the sync ``client.beta.messages.tool_runner(...)``.

        It returns the run's content (text, or blocks with images), or raises
        ``anthropic.lib.tools.ToolError`` with the error text, which the runner sends back as a
        ``tool_result`` with ``is_error`` set.
        """
        runner = self._runner

        def run_python(code: str) -> Content:
            return _content_or_raise(runner.run(code))

        return self._beta(BetaFunctionTool, run_python)

    @functools.cached_property
    def beta_async_tool(
        self,
    ) -> BetaAsyncFunctionTool[Callable[[str], Coroutine[Any, Any, Content]]]:
        """Async counterpart of :attr:`beta_tool`, for the ``AsyncAnthropic`` tool runner."""
        runner = self._runner

        async def run_python(code: str) -> Content:
            return _content_or_raise(await runner.arun(code))

        return self._beta(BetaAsyncFunctionTool, run_python)

    def _beta(self, kind: Callable[..., _BetaToolT], function: Callable[..., Any]) -> _BetaToolT:
        beta = kind(
            function,
            name=self.name,
            description=self.description,
            input_schema=code_schema(),
            **self._options,
        )
        # The SDK's session runners call a tool's ``close``; the Messages runner does not.
        # The beta tool holds the runner, not this object: pydantic's validate_call keeps a
        # reference cycle through the beta tool, which must not keep this object alive.
        beta.close = self._runner.close
        return beta

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
        tool_use_id, problem = self._check_block(block)
        return _result_of(
            tool_use_id, problem or self._runner.run_arguments(field_of(block, "input"))
        )

    async def ahandle(self, block: Any) -> ToolResultBlockParam:
        """Async counterpart of :meth:`handle`; same arguments, never blocks the event loop."""
        tool_use_id, problem = self._check_block(block)
        outcome = problem or await self._runner.arun_arguments(field_of(block, "input"))
        return _result_of(tool_use_id, outcome)

    def _check_block(self, block: Any) -> tuple[str, RunOutcome | None]:
        """The block's id, and a problem the model can read when it is no call of this tool."""
        tool_use_id = field_of(block, "id")
        tool_use_id = tool_use_id if isinstance(tool_use_id, str) else ""
        if field_of(block, "type") != "tool_use" or not tool_use_id:
            text = f"Error: expected a tool_use block with an id, got {_shorten(block)}"
            return tool_use_id, RunOutcome(text, True)
        if field_of(block, "name") != self.name:
            text = f"Error: this handler runs {self.name!r}, not {field_of(block, 'name')!r}."
            return tool_use_id, RunOutcome(text, True)
        return tool_use_id, None


_BetaToolT = typing.TypeVar("_BetaToolT", bound=BetaFunctionTool[Any] | BetaAsyncFunctionTool[Any])


def _result_of(tool_use_id: str, outcome: RunOutcome) -> ToolResultBlockParam:
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": _content(outcome),
        "is_error": outcome.is_error,
    }


def _content(outcome: RunOutcome) -> Content:
    """The text, or (when the run displayed images) a text block then an image block each."""
    if not outcome.images:
        return outcome.text
    blocks: list[TextBlockParam | ImageBlockParam] = [{"type": "text", "text": outcome.text}]
    for image in outcome.images:
        media_type = typing.cast(_MediaType, image.mime_type)
        blocks.append(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": image.base64},
            }
        )
    return blocks


def _content_or_raise(outcome: RunOutcome) -> Content:
    # The tool runner turns ToolError into a tool_result with is_error set and this text.
    if outcome.is_error:
        raise ToolError(outcome.text)
    return _content(outcome)


def _shorten(value: Any, limit: int = 200) -> str:
    try:  # a block the model sent may nest past the recursion limit
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[:limit] + "..."
