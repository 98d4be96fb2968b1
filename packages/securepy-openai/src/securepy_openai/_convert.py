"""OpenAI tools inside the sandbox: a definition plus its host function, a pydantic arguments
model, or an Agents SDK ``FunctionTool`` -> securepy.Tool."""

from __future__ import annotations

import copy
import inspect
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import securepy
from securepy.adapters import host_tool, keyword_function

__all__ = [
    "convert",
    "from_openai_function",
    "from_openai_tool",
    "from_pydantic",
    "relax_strict_schema",
]


def from_openai_tool(
    native: Any,
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    **tool_options: Any,
) -> securepy.Tool:
    """A securepy Tool that calls an OpenAI tool on the host; the preferred conversion.

    Example:
        >>> import securepy_openai
        >>> weather = securepy_openai.from_openai_tool(
        ...     {"type": "function", "function": {"name": "get_weather",
        ...      "description": "Weather for a city.", "parameters": {"type": "object",
        ...      "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        ...     lambda city: f"sunny in {city}")
        >>> weather.signature()
        'get_weather(city: str)'

    Args:
        native: an Agents SDK ``FunctionTool`` (e.g. from ``@function_tool``); a function
            definition (Chat Completions, bare, or Responses; a dict, an SDK object or
            ``openai.pydantic_function_tool(...)``); or a pydantic arguments model class.
        fn: the host implementation of a definition or a model (sync or async); not given
            for a FunctionTool, which has its own.
        name: the function's name inside the sandbox; default: the tool's name.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see securepy.Tool).

    Returns:
        A :class:`securepy.Tool` with the tool's name, description and schema.

    Raises:
        TypeError: ``fn`` missing for a definition or model, or given for a FunctionTool.
        ValueError: as :func:`from_openai_function`, or a FunctionTool needing approval
            without an ``approve`` hook.
    """
    if _is_function_tool(native):
        if fn is not None:
            raise TypeError(
                f"from_openai_tool: {native.name!r} is a FunctionTool and brings "
                "its own function; do not pass fn"
            )
        return _from_function_tool(native, name=name, **tool_options)
    if fn is None:
        raise TypeError(
            f"from_openai_tool: pass fn, the host function that implements {native!r:.80}"
        )
    if isinstance(native, type) and issubclass(native, pydantic.BaseModel):
        return from_pydantic(native, fn, name=name, **tool_options)
    return from_openai_function(native, fn, name=name, **tool_options)


def convert(item: Any) -> securepy.Tool | None:
    """The converter ``securepy_tool(tools=...)`` applies: an Agents SDK FunctionTool, or a
    ``(definition, fn)`` pair, through :func:`from_openai_tool`; None for anything else."""
    if _is_function_tool(item):
        return from_openai_tool(item)
    if isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
        return from_openai_tool(item[0], item[1])
    return None


def from_openai_function(
    definition: Mapping[str, Any] | Any,
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    **tool_options: Any,
) -> securepy.Tool:
    """A securepy Tool from an OpenAI function definition and its host implementation.

    Accepts a Chat Completions tool (``{"type": "function", "function": {...}}``), a bare
    function definition (``{"name", "description", "parameters"}``) or a Responses function
    tool (``{"type": "function", "name", ...}``), as dicts or SDK objects. Under a strict schema
    a nullable property (``anyOf [T, null]``) or one with a default may be left out inside the
    sandbox: ``fn`` still receives every property (the omitted ones as None or their default),
    as the API would send them.

    Args:
        definition: the tool definition the model would see.
        fn: the host function, sync or async, called with the arguments as keywords.
        name: the function's name inside the sandbox; default: the definition's name (which
            must then be a Python identifier; OpenAI also allows ``-``).
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see securepy.Tool).

    Returns:
        A :class:`securepy.Tool` with the definition's name, description and schema.

    Raises:
        ValueError: the definition has no name, or the name is not a Python identifier.
    """
    if hasattr(definition, "model_dump"):
        definition = definition.model_dump(exclude_none=True)
    body = definition.get("function", definition)
    if not isinstance(body, Mapping) or not body.get("name"):
        raise ValueError(f"not an OpenAI function definition (no name): {definition!r:.200}")
    schema = body.get("parameters") or {"type": "object", "properties": {}}
    parameters, defaults = relax_strict_schema(schema)
    return host_tool(
        name or body["name"],
        body.get("description") or "",
        _fill_defaults(fn, defaults),
        parameters=parameters,
        returns_like=fn,
        **tool_options,
    )


def from_pydantic(
    model: type[pydantic.BaseModel],
    fn: Callable[[Any], Any],
    *,
    name: str | None = None,
    description: str | None = None,
    **tool_options: Any,
) -> securepy.Tool:
    """A securepy Tool whose arguments are a pydantic model, as in ``pydantic_function_tool``.

    Inside the sandbox the tool takes the model's fields as arguments (with their defaults);
    on the host ``fn`` receives one validated model instance, as ``parsed_arguments`` would be.

    Args:
        model: the arguments model.
        fn: the host function, sync or async, taking the model instance.
        name: default: the model's class name.
        description: default: the model's own docstring (none when it has none; never
            pydantic's ``BaseModel`` docstring).
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see securepy.Tool).

    Returns:
        A :class:`securepy.Tool`.
    """
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("additionalProperties", False)
    host = keyword_function(
        lambda arguments: fn(model.model_validate(arguments)),
        is_async=inspect.iscoroutinefunction(fn),
    )
    if description is None:
        # inspect.getdoc inherits: a model without a docstring would get BaseModel's.
        own = model.__dict__.get("__doc__")
        description = inspect.cleandoc(own) if isinstance(own, str) else ""
    return host_tool(
        name or model.__name__,
        description,
        host,
        parameters=schema,
        returns_like=fn,
        **tool_options,
    )


def relax_strict_schema(schema: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Make a strict schema's required properties that have a default, or accept null, optional.

    Strict mode lists every property as required, spelling "optional" as ``anyOf [T, null]``
    (the Agents SDK also keeps a ``default``); code in the sandbox should still be able to leave
    such an argument out.

    Returns:
        The relaxed schema, and the default (None for a nullable one) of each name relaxed.
    """
    relaxed = copy.deepcopy(dict(schema))
    properties = relaxed.get("properties") or {}
    required = list(relaxed.get("required") or [])
    defaults = {}
    for key in required:
        prop = properties.get(key)
        if isinstance(prop, dict) and ("default" in prop or _accepts_null(prop)):
            defaults[key] = prop.setdefault("default", None)
    if defaults:
        relaxed["required"] = [key for key in required if key not in defaults]
    return relaxed, defaults


def _accepts_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    options = schema.get("anyOf") or schema.get("oneOf") or []
    return any(isinstance(o, Mapping) and _accepts_null(o) for o in options)


def _fill_defaults(fn: Callable[..., Any], defaults: dict[str, Any]) -> Callable[..., Any]:
    """``fn``, called with every relaxed argument the code left out set to its default."""
    if not defaults:
        return fn
    return keyword_function(
        lambda arguments: fn(**{**copy.deepcopy(defaults), **arguments}),
        is_async=inspect.iscoroutinefunction(fn),
    )


_call_ids = itertools.count(1)


def _is_function_tool(item: Any) -> bool:
    # The Agents SDK is an optional extra: recognised without importing it.
    return any(
        cls.__module__.startswith("agents.") and cls.__name__ == "FunctionTool"
        for cls in type(item).__mro__
    )


def _from_function_tool(native: Any, *, name: str | None, **tool_options: Any) -> securepy.Tool:
    if native.needs_approval is not False and "approve" not in tool_options:
        raise ValueError(
            f"FunctionTool {native.name!r} needs approval; pass approve= to decide "
            "on each call from the sandbox"
        )
    from agents.tool_context import ToolContext

    parameters, defaults = relax_strict_schema(native.params_json_schema)

    async def invoke(**arguments: Any) -> Any:
        payload = json.dumps({**defaults, **arguments})
        context = ToolContext(
            context=None,
            tool_name=native.name,
            tool_call_id=f"securepy-{next(_call_ids)}",
            tool_arguments=payload,
        )
        return await native.on_invoke_tool(context, payload)

    return host_tool(
        name or native.name, native.description, invoke, parameters=parameters, **tool_options
    )
