"""Framework tools as securepy Tools: the plumbing every ``from_<fw>_tool`` and every
``securepy_tool(tools=...)`` shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._model_text import shorten
from ._tool_doc import return_type_text
from ._tools import Tool

__all__ = ["Convert", "convert_tools", "field_of", "host_tool", "keyword_function"]

#: An adapter's converter: a securepy Tool for one of its framework's native tools, else None.
Convert = Callable[[Any], "Tool | None"]


def convert_tools(
    items: Iterable[Any], convert: Convert | None, framework: str | None = None
) -> list[Tool | Callable[..., Any]]:
    """``items`` with each native tool converted; securepy Tools and functions as they are.

    Raises:
        TypeError: an item is neither a securepy Tool, a function with a name that is a
            Python identifier, nor a native tool ``convert`` accepts.
    """
    if isinstance(items, Tool) or callable(items):
        items = [items]
    result: list[Tool | Callable[..., Any]] = []
    for item in items:
        converted = convert(item) if convert is not None and not isinstance(item, Tool) else None
        if converted is not None:
            result.append(converted)
        elif isinstance(item, Tool) or (
            callable(item) and str(getattr(item, "__name__", "")).isidentifier()
        ):
            result.append(item)
        else:
            native = f", {framework} tools" if framework else ""
            raise TypeError(
                f"tools= takes securepy Tools, typed functions{native}; got "
                f"{type(item).__module__}.{type(item).__qualname__} "
                f"{shorten(item, 80)}"
            )
    return result


def host_tool(
    name: str,
    description: str,
    fn: Callable[..., Any],
    *,
    parameters: Mapping[str, Any],
    returns_like: Callable[..., Any] | None = None,
    **tool_options: Any,
) -> Tool:
    """A securepy Tool calling a native tool on the host, as every ``from_<fw>_tool`` builds it.

    Args:
        name: the function's name inside the sandbox.
        description: the native tool's description, kept as it is.
        fn: the host function (sync or async) taking the arguments as keywords.
        parameters: the native tool's argument schema, as the model would see it.
        returns_like: the native tool's own function, whose return annotation the stub in
            the run_python description shows.
        **tool_options: ``timeout``, ``max_calls``, ``approve`` (see :class:`securepy.Tool`).
    """
    returns = return_type_text(returns_like) if returns_like is not None else ""
    if returns_like is not fn:  # never rewrite the caller's own function
        annotations = dict(getattr(fn, "__annotations__", {}))
        annotations.pop("return", None)
        if returns:
            annotations["return"] = returns
        with contextlib.suppress(AttributeError, TypeError):
            fn.__annotations__ = annotations
    return Tool(name, description, fn, parameters=dict(parameters), **tool_options)


def field_of(item: Any, key: str) -> Any:
    """``item[key]`` for a mapping, else ``item.key``; None when absent (SDK objects and the
    dicts users write for them read alike)."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def keyword_function(
    call: Callable[[dict[str, Any]], Any],
    *,
    is_async: bool,
    result: Callable[[Any], Any] | None = None,
) -> Callable[..., Any]:
    """The host function :func:`host_tool` wants (arguments as keywords) around a native call
    that takes them as one dict: ``result(call(arguments))``, awaiting ``call``'s result when
    ``is_async`` (then the function is a coroutine function, so securepy awaits it).

    Args:
        call: runs the native tool on the arguments dict.
        is_async: ``call`` returns an awaitable.
        result: turns what the native tool returned into the value the code receives.
    """
    if is_async:

        async def call_async(**arguments: Any) -> Any:
            value = await call(arguments)
            return value if result is None else result(value)

        return call_async

    def call_sync(**arguments: Any) -> Any:
        value = call(arguments)
        return value if result is None else result(value)

    return call_sync
