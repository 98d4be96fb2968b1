"""securepy and the OpenAI Agents SDK (``pip install "securepy-openai[agents]"``).

    from agents import Agent
    from securepy_openai.agents import securepy_function_tool

    agent = Agent(name="analyst", tools=[securepy_function_tool(tools=[lookup_order])])
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from typing import Any

import securepy
from securepy.adapters import DEFAULT_TEXT_CHARS

from ._convert import relax_strict_schema
from ._tool import CODE_PARAMETERS, securepy_tool

try:
    from agents import FunctionTool
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('securepy_openai.agents needs the OpenAI Agents SDK: '
                      'pip install "securepy-openai[agents]"') from exc

__all__ = ["from_agents_tool", "securepy_function_tool"]


def securepy_function_tool(
    *,
    tools: Iterable[securepy.Tool | Callable[..., Any]] = (),
    session: securepy.Session | securepy.AsyncSession | None = None,
    pool: securepy.SessionPool | securepy.AsyncSessionPool | None = None,
    name: str = "run_python",
    description: str | None = None,
    timeout: float | None = 30,
    max_output_chars: int = DEFAULT_TEXT_CHARS,
    **session_options: Any,
) -> FunctionTool:
    """The sandbox as an Agents SDK ``FunctionTool``; arguments as for ``securepy_tool``.

    Errors in the code, timeouts, denied tool calls and malformed arguments come back to the
    model as text; they never fail the run. A session the tool creates is closed when the
    FunctionTool is garbage-collected; pass ``session=`` or ``pool=`` to control its lifetime.

    Returns:
        An ``agents.FunctionTool`` taking one ``code`` string.

    Raises:
        ValueError: ``name`` is not a valid OpenAI tool name.
        TypeError: both ``session`` and ``pool`` given, or an unknown session option.
    """
    sandbox = securepy_tool(tools=tools, session=session, pool=pool, name=name,
                            description=description, timeout=timeout,
                            max_output_chars=max_output_chars, **session_options)

    async def run_code(context: ToolContext[Any], arguments: str) -> str:
        reply = await sandbox.ahandle({"type": "function_call", "call_id": context.tool_call_id,
                                       "name": sandbox.name, "arguments": arguments})
        return str(reply["output"])

    return FunctionTool(name=sandbox.name, description=sandbox.description,
                        params_json_schema=copy.deepcopy(CODE_PARAMETERS),
                        on_invoke_tool=run_code)


def from_agents_tool(function_tool: FunctionTool, *, name: str | None = None,
                     **tool_options: Any) -> securepy.Tool:
    """A securepy Tool that calls an Agents SDK ``FunctionTool`` on the host.

    The tool keeps the name, description and schema. A strict schema lists every parameter as
    required; inside the sandbox a nullable one (``anyOf [T, null]``) or one with a default
    may be left out, and is sent to the FunctionTool as null or its default.
    ``on_invoke_tool`` receives a ``ToolContext`` without an agent or run context; the
    Runner's guardrails do not run.

    Args:
        function_tool: the FunctionTool (e.g. from ``@function_tool``).
        name: the name inside the sandbox; default: the FunctionTool's name.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see securepy.Tool).

    Returns:
        A :class:`securepy.Tool`.

    Raises:
        ValueError: the FunctionTool needs approval and no ``approve`` hook was given (its
            approval would otherwise be skipped), or the name is not a Python identifier.
    """
    if function_tool.needs_approval is not False and "approve" not in tool_options:
        raise ValueError(f"FunctionTool {function_tool.name!r} needs approval; pass approve= "
                         "to decide on each call from the sandbox")
    parameters, defaults = relax_strict_schema(function_tool.params_json_schema)
    counter = iter(range(1, 1 << 62))

    async def invoke(**arguments: Any) -> Any:
        payload = json.dumps({**defaults, **arguments})
        context = ToolContext(context=None, tool_name=function_tool.name,
                              tool_call_id=f"securepy-{next(counter)}", tool_arguments=payload)
        return await function_tool.on_invoke_tool(context, payload)

    return securepy.Tool(name or function_tool.name, function_tool.description, invoke,
                         parameters=parameters, **tool_options)
