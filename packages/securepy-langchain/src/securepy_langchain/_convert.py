"""LangChain tools inside the sandbox: ``from_langchain`` turns a BaseTool into a securepy Tool."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import securepy
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tools.base import get_all_basemodel_annotations
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["convert_tools", "from_langchain"]


def from_langchain(tool: BaseTool, *, name: str | None = None) -> securepy.Tool:
    """Make a LangChain tool callable from sandboxed code; it still runs on the host.

    The securepy Tool keeps the tool's name, description and argument schema exactly as a
    model sees them (``convert_to_openai_tool``). Each call runs ``tool.invoke`` on the host
    (``tool.ainvoke`` for a tool that has only a coroutine). A ``ToolException``, like any
    other failure of the tool, is raised inside the sandbox as ``ToolError``.

    Args:
        tool: a BaseTool subclass instance, a StructuredTool or an ``@tool`` function.
        name: the function's name inside the sandbox, for a tool whose own name is not a
            Python identifier (e.g. ``"search-orders"``); default: the tool's name.

    Returns:
        A :class:`securepy.Tool`.

    Raises:
        TypeError: ``tool`` is not a LangChain BaseTool.
        ValueError: the tool needs an argument LangChain injects at run time
            (``InjectedToolArg``, ``InjectedToolCallId``, ``ToolRuntime``), which sandboxed
            code cannot supply; or the name is not a Python identifier.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(f"from_langchain() takes a LangChain BaseTool, not "
                        f"{type(tool).__name__}")
    parameters = convert_to_openai_tool(tool)["function"]["parameters"]
    _refuse_injected_arguments(tool, parameters)
    return securepy.Tool(name or tool.name, tool.description, _host_function(tool),
                         parameters=parameters)


def convert_tools(
    tools: Iterable[BaseTool | securepy.Tool | Callable[..., Any]],
) -> list[securepy.Tool | Callable[..., Any]]:
    """LangChain tools converted with :func:`from_langchain`; securepy Tools and plain
    callables passed through as they are."""
    return [from_langchain(item) if isinstance(item, BaseTool) else item for item in tools]


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
            "sandboxed code cannot supply; wrap the tool in a function without it")


def _host_function(tool: BaseTool) -> Callable[..., Any]:
    # invoke() cannot run a StructuredTool built from a coroutine alone, so that one is
    # awaited; every other tool is called synchronously (an AsyncSession runs it in a thread).
    if isinstance(tool, StructuredTool) and tool.func is None:

        async def call_async(**arguments: Any) -> Any:
            return await tool.ainvoke(arguments)

        return call_async

    def call(**arguments: Any) -> Any:
        return tool.invoke(arguments)

    return call
