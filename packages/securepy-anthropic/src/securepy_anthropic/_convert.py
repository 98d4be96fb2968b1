"""Anthropic tool definitions as securepy tools, callable from the sandboxed code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import securepy
from anthropic.lib.tools import BetaAsyncFunctionTool, BetaFunctionTool
from securepy.adapters import host_tool, keyword_function

__all__ = ["convert", "from_anthropic_tool"]


def from_anthropic_tool(
    definition: Mapping[str, Any] | BetaFunctionTool[Any] | BetaAsyncFunctionTool[Any],
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    **tool_options: Any,
) -> securepy.Tool:
    """A securepy Tool from an Anthropic tool definition and its host implementation.

    Name, description and ``input_schema`` are kept; the sandboxed code calls the tool as a
    Python function with that signature, and the arguments are checked against the schema on
    the host before the implementation runs.

    Example:
        >>> import securepy_anthropic
        >>> weather = securepy_anthropic.from_anthropic_tool(
        ...     {"name": "get_weather", "description": "Weather for a city.",
        ...      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
        ...                       "required": ["city"]}},
        ...     lambda city: f"sunny in {city}")
        >>> weather.signature()
        'get_weather(city: str)'

    Args:
        definition: a tool definition dict (``name``, ``description``, ``input_schema``), or a
            ``@beta_tool`` / ``@beta_async_tool`` object (``BetaFunctionTool``,
            ``BetaAsyncFunctionTool``), which is called through its ``.call(input)``.
        fn: the host implementation of a definition dict, sync or async, called with the
            arguments as keywords. Not given for a beta tool object, which has its own.
        name: the function's name inside the sandbox, when the Anthropic name is not a
            Python identifier (e.g. ``"get-weather"``).
        **tool_options: ``timeout``, ``max_calls`` or ``approve``, passed to ``securepy.Tool``.

    Returns:
        The ``securepy.Tool`` to pass in ``tools=``.

    Raises:
        TypeError: ``fn`` missing for a definition dict, given for a beta tool object, or not
            callable; or ``definition`` is neither kind.
        ValueError: the definition lacks a name or an object ``input_schema``, is a server
            tool, or the name is not a Python identifier.
    """
    if isinstance(definition, BetaFunctionTool | BetaAsyncFunctionTool):
        if fn is not None:
            raise TypeError(
                f"from_anthropic_tool: {definition.name!r} is a beta tool object "
                "and brings its own function; do not pass fn"
            )
        return host_tool(
            name or definition.name,
            definition.description,
            keyword_function(
                definition.call,
                is_async=isinstance(definition, BetaAsyncFunctionTool),
                result=_plain_result,
            ),
            parameters=dict(definition.input_schema),
            returns_like=definition.func,
            **tool_options,
        )
    if not isinstance(definition, Mapping):
        raise TypeError(
            "from_anthropic_tool takes a tool definition dict or a @beta_tool "
            f"object, not {type(definition).__name__}"
        )
    tool_name, schema = definition.get("name"), definition.get("input_schema")
    if definition.get("type", "custom") not in ("custom", None):
        raise ValueError(
            f"from_anthropic_tool: {tool_name!r} is a {definition['type']!r} "
            "server tool, run by Anthropic; only custom tools run on the host"
        )
    if not isinstance(tool_name, str) or not isinstance(schema, Mapping):
        raise ValueError(
            "from_anthropic_tool: the definition needs a 'name' string and an 'input_schema' object"
        )
    if fn is None:
        raise TypeError(
            f"from_anthropic_tool: pass fn, the host function that implements {tool_name!r}"
        )
    return host_tool(
        name or tool_name,
        definition.get("description") or "",
        fn,
        parameters=dict(schema),
        returns_like=fn,
        **tool_options,
    )


def convert(item: Any) -> securepy.Tool | None:
    """The converter ``securepy_tool(tools=...)`` applies: a ``@beta_tool`` object, or a
    ``(definition, fn)`` pair, through :func:`from_anthropic_tool`; None for anything else."""
    if isinstance(item, BetaFunctionTool | BetaAsyncFunctionTool):
        return from_anthropic_tool(item)
    if isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
        return from_anthropic_tool(item[0], item[1])
    return None


def _plain_result(result: Any) -> Any:
    # A beta tool may return content blocks as any iterable; the sandbox receives a list.
    # A mapping (a tool that returns a dict) is a value, not blocks: it stays whole.
    if isinstance(result, str | Mapping) or not isinstance(result, Iterable):
        return result
    return list(result)
