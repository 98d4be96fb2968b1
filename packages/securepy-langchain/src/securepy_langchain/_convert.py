"""LangChain tools inside the sandbox: ``from_langchain_tool`` turns a BaseTool into a securepy
Tool that calls it on the host."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import securepy
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tools.base import get_all_basemodel_annotations
from langchain_core.utils.function_calling import convert_to_openai_tool
from securepy.adapters import host_tool, keyword_function

__all__ = ["convert", "from_langchain", "from_langchain_tool"]

_call_ids = itertools.count(1)


def from_langchain_tool(
    native: BaseTool,
    *,
    name: str | None = None,
    on_artifact: Callable[[ToolMessage], Any] | None = None,
    **tool_options: Any,
) -> securepy.Tool:
    """Make a LangChain tool callable from sandboxed code; it still runs on the host.

    The securepy Tool keeps the tool's name, description and argument schema exactly as a
    model sees them (``convert_to_openai_tool``). Each call runs the tool on the host
    (``ainvoke`` for a tool that has only a coroutine, else ``invoke``) and gives the code its
    return value. A failing tool raises ``ToolError`` inside the sandbox whatever its
    ``handle_tool_error`` says, so the code (and the model) can tell a failure from a value.
    A tool with ``response_format="content_and_artifact"`` gives the code its content; the
    artifact stays on the host, delivered to ``on_artifact``.

    Args:
        native: a BaseTool subclass instance, a StructuredTool or an ``@tool`` function.
        name: the function's name inside the sandbox, for a tool whose own name is not a
            Python identifier (e.g. ``"search-orders"``); default: the tool's name.
        on_artifact: called on the host with the tool's ``ToolMessage`` (``.artifact``,
            ``.tool_call_id``, ``.name``) for each call of a content-and-artifact tool.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see :class:`securepy.Tool`).

    Returns:
        A :class:`securepy.Tool`.

    Raises:
        TypeError: ``native`` is not a LangChain BaseTool.
        ValueError: the tool needs an argument LangChain injects at run time
            (``InjectedToolArg``, ``InjectedToolCallId``, ``ToolRuntime``), which sandboxed
            code cannot supply; or the name is not a Python identifier.
    """
    if not isinstance(native, BaseTool):
        raise TypeError(
            f"from_langchain_tool() takes a LangChain BaseTool, not {type(native).__name__}"
        )
    parameters = convert_to_openai_tool(native)["function"]["parameters"]
    _refuse_injected_arguments(native, parameters)
    # A failure must reach the code as an error, not as a handled result that reads like a
    # value: the copy raises whatever the original's handle_tool_error says.
    strict = native.model_copy(
        update={"handle_tool_error": False, "handle_validation_error": False}
    )
    return host_tool(
        name or native.name,
        native.description,
        _host_function(strict, on_artifact),
        parameters=parameters,
        returns_like=_function_of(native),
        **tool_options,
    )


def convert(item: Any) -> securepy.Tool | None:
    """The converter ``securepy_tool(tools=...)`` applies: a BaseTool through
    :func:`from_langchain_tool`; None for anything else."""
    return from_langchain_tool(item) if isinstance(item, BaseTool) else None


#: The earlier name of :func:`from_langchain_tool`; prefer the new one.
from_langchain = from_langchain_tool


def _refuse_injected_arguments(tool: BaseTool, parameters: dict[str, Any]) -> None:
    # LangChain leaves injected arguments out of the schema a model sees and fills them in at
    # call time from the agent's state; sandboxed code has no such state to give.
    if isinstance(tool.args_schema, dict):
        return  # a raw JSON Schema cannot mark an argument as injected
    accepted = set(get_all_basemodel_annotations(tool.get_input_schema()))
    injected = sorted(accepted - set(parameters.get("properties") or {}))
    if injected:
        raise ValueError(
            f"LangChain tool {tool.name!r} needs the injected argument "
            f"{', '.join(map(repr, injected))} (InjectedToolArg / ToolRuntime), which "
            "sandboxed code cannot supply; wrap the tool in a function without it"
        )


def _function_of(tool: BaseTool) -> Callable[..., Any]:
    if isinstance(tool, StructuredTool):
        return tool.func or tool.coroutine or type(tool)._run
    return type(tool)._run


def _host_function(
    tool: BaseTool, on_artifact: Callable[[ToolMessage], Any] | None
) -> Callable[..., Any]:
    with_artifact = tool.response_format == "content_and_artifact"

    def tool_input(arguments: dict[str, Any]) -> dict[str, Any]:
        if not with_artifact:
            return arguments
        return {
            "type": "tool_call",
            "id": f"securepy-{next(_call_ids)}",
            "name": tool.name,
            "args": arguments,
        }

    def result(output: Any) -> Any:
        if not (with_artifact and isinstance(output, ToolMessage)):
            return output
        if on_artifact is not None:
            on_artifact(output)
        return output.content

    # invoke() cannot run a StructuredTool built from a coroutine alone, so that one is
    # awaited; every other tool is called synchronously (an AsyncSession runs it in a thread).
    coroutine_only = isinstance(tool, StructuredTool) and tool.func is None
    invoke = tool.ainvoke if coroutine_only else tool.invoke
    return keyword_function(
        lambda arguments: invoke(tool_input(arguments)), is_async=coroutine_only, result=result
    )
