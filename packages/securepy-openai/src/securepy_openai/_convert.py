"""OpenAI tool definitions inside the sandbox: definition plus host function -> securepy.Tool."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import securepy

__all__ = ["from_openai_function", "from_pydantic", "relax_strict_schema"]


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
    return securepy.Tool(name or body["name"], body.get("description") or "",
                         _fill_defaults(fn, defaults), parameters=parameters, **tool_options)


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
        description: default: the model's docstring.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see securepy.Tool).

    Returns:
        A :class:`securepy.Tool`.
    """
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("additionalProperties", False)
    if inspect.iscoroutinefunction(fn):
        async def call_async(**arguments: Any) -> Any:
            return await fn(model.model_validate(arguments))
        host: Callable[..., Any] = call_async
    else:
        def call(**arguments: Any) -> Any:
            return fn(model.model_validate(arguments))
        host = call
    return securepy.Tool(name or model.__name__,
                         description if description is not None else inspect.getdoc(model) or "",
                         host, parameters=schema, **tool_options)


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
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def call_async(**arguments: Any) -> Any:
            return await fn(**{**copy.deepcopy(defaults), **arguments})
        return call_async

    @functools.wraps(fn)
    def call(**arguments: Any) -> Any:
        return fn(**{**copy.deepcopy(defaults), **arguments})
    return call
