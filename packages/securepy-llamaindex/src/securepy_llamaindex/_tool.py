"""The sandbox as a LlamaIndex tool: SecurePyTool (a FunctionTool), SecurePyToolSpec and
code_execute_fn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import securepy
from llama_index.core.base.llms.types import ContentBlock, ImageBlock, TextBlock
from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.tools import FunctionTool, ToolMetadata, ToolOutput
from llama_index.core.tools.tool_spec.base import SPEC_FUNCTION_TYPE, BaseToolSpec
from securepy.adapters import (
    CODE_DESCRIPTION,
    DEFAULT_TEXT_CHARS,
    RunOutcome,
    SandboxOwnerMixin,
    SandboxRunner,
    SandboxToolMixin,
)

from ._convert import convert

__all__ = ["SecurePyTool", "SecurePyToolSpec", "code_execute_fn", "securepy_tool"]

AnySession = securepy.Session | securepy.AsyncSession
AnyPool = securepy.SessionPool | securepy.AsyncSessionPool


class RunPythonArguments(BaseModel):
    """The one argument of the ``run_python`` tool (``securepy.adapters.code_schema()``)."""

    code: str = Field(description=CODE_DESCRIPTION)


def securepy_tool(
    *,
    tools: Iterable[Any] = (),
    session: AnySession | None = None,
    pool: AnyPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> SecurePyTool:
    """The sandbox as a LlamaIndex tool taking one ``code`` string.

    The tool is a ``FunctionTool`` with a sync and an async function, so it works with
    ``call`` and ``acall`` (as agents use it). Its description lists the host ``tools``
    available inside as Python stubs. An exception in the code, a timeout or a refused call
    comes back as a ``ToolOutput`` with ``is_error=True`` whose content the model reads, so the
    agent run continues. When the code displays images (a matplotlib figure, ``display()``),
    the output's ``blocks`` are a ``TextBlock`` then an ``ImageBlock`` per image (at most
    ``securepy.adapters.MAX_MODEL_IMAGES``), which the agents put into the tool message;
    ``content`` stays the text. Without ``session`` or ``pool`` the tool starts its own session on
    first use; ``close()`` it (or use it as a context manager) to stop that session, which is
    otherwise stopped when the tool is garbage-collected.

    Args:
        tools: host tools callable inside: securepy Tools, plain typed functions and LlamaIndex
            tools (converted with :func:`from_llamaindex_tool`), mixed.
        session: a ``securepy.Session`` or ``AsyncSession`` to use; it is left open.
        pool: a ``securepy.SessionPool`` or ``AsyncSessionPool`` to use; it is left open.
        name: the tool's name as the model sees it.
        description: the tool's description; default: securepy's, plus the host tools.
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text the model reads per run.
        **session_options: options for the session the tool creates (see
            ``securepy.Session``), e.g. ``sandbox=False`` or ``limits=``;
            ``sanitize_errors`` defaults to True here.

    Returns:
        A :class:`SecurePyTool` for ``FunctionAgent(tools=[...])``, ``ReActAgent`` and the like.

    Raises:
        TypeError: both ``session`` and ``pool``, ``tools`` or options with a session you
            pass, an unknown session option, or a tool of an unknown kind.
        ValueError: ``max_output_chars`` is not positive.
    """
    return SecurePyTool(
        SandboxRunner(
            tools=tools,
            session=session,
            pool=pool,
            name=name,
            description=description,
            timeout=timeout,
            max_output_chars=max_output_chars,
            convert=convert,
            framework="LlamaIndex",
            **session_options,
        )
    )


class SecurePyTool(SandboxToolMixin, FunctionTool):
    """The sandbox as a LlamaIndex ``FunctionTool``; made by :func:`securepy_tool`.

    Has ``name``, ``description``, ``tools``, ``close()``, and is usable as a context manager.

    Args:
        runner: the shared ``securepy.adapters.SandboxRunner`` this tool wraps.
        metadata: replaces the tool's metadata (name, description, schema).
    """

    def __init__(self, runner: SandboxRunner, metadata: ToolMetadata | None = None) -> None:
        self._runner = runner

        # Keyword arguments as the model sent them: malformed ones become an error output.
        def run_python(**arguments: Any) -> ToolOutput:
            return _tool_output(runner.name, arguments, runner.run_arguments(arguments))

        async def arun_python(**arguments: Any) -> ToolOutput:
            return _tool_output(runner.name, arguments, await runner.arun_arguments(arguments))

        if metadata is None:
            metadata = ToolMetadata(
                description=runner.description, name=runner.name, fn_schema=RunPythonArguments
            )
        # FunctionTool turns whatever the function returns into text content; a callback
        # that returns a ToolOutput replaces that result outright, keeping is_error.
        super().__init__(
            fn=run_python,
            async_fn=arun_python,
            metadata=metadata,
            callback=_keep_tool_output,
            async_callback=_akeep_tool_output,
        )


def _tool_output(name: str, arguments: dict[str, Any], outcome: RunOutcome) -> ToolOutput:
    blocks: list[ContentBlock] = [TextBlock(text=outcome.text)]
    blocks += [
        ImageBlock(image=image.data, image_mimetype=image.mime_type) for image in outcome.images
    ]
    ran = outcome.execution is not None or outcome.error is not None  # not malformed arguments
    return ToolOutput(
        tool_name=name,
        blocks=blocks,
        raw_input=arguments,
        raw_output=outcome if ran else None,
        is_error=outcome.is_error,
        exception=outcome.error,
    )


def _keep_tool_output(result: Any) -> ToolOutput | None:
    return result if isinstance(result, ToolOutput) else None


async def _akeep_tool_output(result: Any) -> ToolOutput | None:
    return _keep_tool_output(result)


class SecurePyToolSpec(SandboxOwnerMixin, BaseToolSpec):
    """The sandbox as a LlamaIndex tool spec, the convention of ``llama-index-tools-*``.

    ``to_tool_list()`` returns the same tool as :func:`securepy_tool`, also when it is asked
    for by name (``spec_functions=["run_python"]``) or given replacement metadata. The spec
    owns the session it creates: ``close()`` it, or use it as a context manager.

    Args:
        **options: the keyword arguments of :func:`securepy_tool`.

    Raises:
        TypeError, ValueError: as :func:`securepy_tool`.
    """

    spec_functions: list[SPEC_FUNCTION_TYPE] = ["run_python"]  # noqa: RUF012 - BaseToolSpec's class-level convention

    def __init__(self, **options: Any) -> None:
        self._tool = securepy_tool(**options)
        self._runner = self._tool._runner

    @property
    def tool(self) -> SecurePyTool:
        """The sandbox tool."""
        return self._tool

    def run_python(self, code: str) -> ToolOutput:
        """Run ``code`` in the sandbox; a failure comes back as an error ``ToolOutput``."""
        return self._tool.call(code=code)

    async def arun_python(self, code: str) -> ToolOutput:
        """Async counterpart of :meth:`run_python`."""
        return await self._tool.acall(code=code)

    def to_tool_list(
        self,
        spec_functions: list[SPEC_FUNCTION_TYPE] | None = None,
        func_to_metadata_mapping: dict[str, ToolMetadata] | None = None,
    ) -> list[FunctionTool]:
        """The sandbox tool for each of ``spec_functions`` naming ``run_python`` (or
        ``arun_python``), with the metadata ``func_to_metadata_mapping`` gives it, if any."""
        mapping = func_to_metadata_mapping or {}
        tools: list[FunctionTool] = []
        for spec in spec_functions or self.spec_functions:
            names = [spec] if isinstance(spec, str) else list(spec)
            if not set(names) & {"run_python", "arun_python"}:
                tools += super().to_tool_list([spec], mapping)
                continue
            metadata = next((mapping[n] for n in names if n in mapping), None)
            tools.append(
                self._tool if metadata is None else SecurePyTool(self._runner, metadata=metadata)
            )
        return tools


def code_execute_fn(
    session_or_pool: AnySession | AnyPool,
    *,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """An executor for ``CodeActAgent(code_execute_fn=...)`` that runs the agent's code in
    the sandbox.

    CodeActAgent lists its tools to the model as Python stubs but leaves running them to the
    executor. Give the session those same tools, converted, so the code calls them on the
    host::

        session = securepy.AsyncSession(tools=[from_llamaindex_tool(t) for t in tools])
        agent = CodeActAgent(code_execute_fn=code_execute_fn(session), tools=tools, llm=llm)

    The returned coroutine function gives a dict with ``success``, ``output`` (the bounded
    text, or the error) and ``return_value`` (the last expression's value); its ``str()``,
    which is what the agent shows the model, is ``output``. Errors and timeouts come back as
    ``success=False``, so the agent continues. The session or pool is left open.

    Args:
        session_or_pool: a securepy session or pool holding the agent's tools.
        timeout: seconds per run; None for none.
        max_output_chars: bound on the text the model reads per run.

    Returns:
        ``async def execute(code: str) -> dict[str, Any]``.

    Raises:
        TypeError: ``session_or_pool`` is not a securepy session or pool.
    """
    if isinstance(session_or_pool, securepy.SessionPool | securepy.AsyncSessionPool):
        runner = SandboxRunner(
            pool=session_or_pool, timeout=timeout, max_output_chars=max_output_chars
        )
    elif isinstance(session_or_pool, securepy.Session | securepy.AsyncSession):
        runner = SandboxRunner(
            session=session_or_pool, timeout=timeout, max_output_chars=max_output_chars
        )
    else:
        raise TypeError(
            f"code_execute_fn() takes a securepy session or pool, not "
            f"{type(session_or_pool).__name__}"
        )

    async def execute(code: str) -> dict[str, Any]:
        """Run Python code in the sandboxed session and return its output."""
        outcome = await runner.arun(code)
        value = outcome.execution.value if outcome.execution is not None else None
        return _CodeResult(success=not outcome.is_error, output=outcome.text, return_value=value)

    return execute


class _CodeResult(dict[str, Any]):
    # CodeActAgent shows the model str() of the result; a plain dict would read as a repr
    # with escaped newlines, so the text reads as the output itself.
    def __str__(self) -> str:
        return str(self["output"])
