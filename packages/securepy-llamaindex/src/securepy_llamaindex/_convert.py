"""LlamaIndex tools inside the sandbox: a native tool as a :class:`securepy.Tool`."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import securepy
from llama_index.core.tools import AsyncBaseTool, BaseTool, FunctionTool, ToolOutput
from securepy.adapters import host_tool, keyword_function

__all__ = ["convert", "from_llamaindex", "from_llamaindex_tool"]


def from_llamaindex_tool(
    tool: BaseTool, *, name: str | None = None, **tool_options: Any
) -> securepy.Tool:
    """Make a LlamaIndex tool callable from sandboxed code.

    Name, description and argument schema come from the tool's metadata
    (``metadata.get_parameters_dict()``). The tool runs on the host: a natively async tool
    (an async ``FunctionTool``, or any other ``AsyncBaseTool``) through ``acall``, a sync
    ``FunctionTool`` through ``call``, a plain ``BaseTool`` through ``__call__``. The sandboxed
    code receives the tool's ``raw_output`` (the function's own return value), or its text
    content when the tool set no raw output. A ``ToolOutput`` marked ``is_error`` raises
    :class:`securepy.ToolError` inside the sandbox, with the tool's error text.

    Args:
        tool: a ``FunctionTool``, ``AsyncBaseTool`` or ``BaseTool``.
        name: the function's name inside the sandbox; default: the tool's metadata name
            (which must then be a Python identifier).
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see :class:`securepy.Tool`).

    Returns:
        A :class:`securepy.Tool` to pass to a session, a pool or ``securepy_tool(tools=...)``.

    Raises:
        TypeError: ``tool`` is not a LlamaIndex tool, or it needs a workflow ``Context``
            (which sandboxed code cannot supply).
        ValueError: the tool has no name, or its name is not a valid Python identifier.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(
            f"from_llamaindex_tool() takes a LlamaIndex BaseTool, not {type(tool).__name__}"
        )
    metadata = tool.metadata
    tool_name = name if name is not None else metadata.name
    if not tool_name:
        raise ValueError("the LlamaIndex tool has no name; pass name=")
    if isinstance(tool, FunctionTool) and tool.requires_context:
        raise TypeError(
            f"tool {tool_name!r} takes a workflow Context, which code in the "
            "sandbox cannot supply; wrap a function without it"
        )
    returns_like = tool.real_fn if isinstance(tool, FunctionTool) else None
    return host_tool(
        tool_name,
        _description_of(metadata.description, metadata.name),
        _host_function(tool),
        parameters=metadata.get_parameters_dict(),
        returns_like=returns_like,
        **tool_options,
    )


def convert(item: Any) -> securepy.Tool | None:
    """The converter ``securepy_tool(tools=...)`` applies: a LlamaIndex tool through
    :func:`from_llamaindex_tool`; None for anything else."""
    return from_llamaindex_tool(item) if isinstance(item, BaseTool) else None


#: The earlier name of :func:`from_llamaindex_tool`; prefer the new one.
from_llamaindex = from_llamaindex_tool


def _description_of(description: str, native_name: str | None) -> str:
    # FunctionTool.from_defaults prefixes the docstring with "name(signature) -> ret"; the
    # sandbox listing already shows the signature, so keep the docstring as the summary.
    first, _, rest = description.partition("\n")
    if native_name and first.startswith(f"{native_name}(") and rest.strip():
        return inspect.cleandoc(rest)
    return description


def _host_function(tool: BaseTool) -> Any:
    result = functools.partial(_result_of, tool)
    if _is_natively_async(tool):
        async_tool: AsyncBaseTool = tool  # type: ignore[assignment]
        return keyword_function(lambda kw: async_tool.acall(**kw), is_async=True, result=result)
    run = tool.call if isinstance(tool, AsyncBaseTool) else tool
    return keyword_function(lambda kw: run(**kw), is_async=False, result=result)


def _is_natively_async(tool: BaseTool) -> bool:
    if isinstance(tool, FunctionTool):
        return inspect.iscoroutinefunction(tool.real_fn)
    return isinstance(tool, AsyncBaseTool)


def _result_of(tool: BaseTool, output: Any) -> Any:
    if not isinstance(output, ToolOutput):
        return output
    if output.is_error:
        name = tool.metadata.name or ""
        raise securepy.ToolError(
            output.content or "the tool reported an error", tool=name, type_name="ToolOutput"
        ) from output.exception
    # A FunctionTool's raw_output is exactly what its function returned, None included.
    if output.raw_output is not None or isinstance(tool, FunctionTool):
        return output.raw_output
    return output.content
