"""The code's view of the host tools: a real function per tool, built from its JSON Schema, and
the in-sandbox ToolError and PolicyError. Stdlib only: runs inside the sandbox."""

from __future__ import annotations

import keyword
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from collections.abc import Callable
    from typing import Any

__all__ = ["PolicyError", "ToolError", "build_namespace", "make_call_tool", "make_tool_function"]


class ToolError(Exception):
    """A host tool failed. ``tool`` is its name, ``type_name`` the host exception's type."""

    def __init__(self, message: str, *, tool: str = "", type_name: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.type_name = type_name


class PolicyError(Exception):
    """The host's policy refused this tool call (approval denied, or a call limit reached)."""

    def __init__(self, message: str, *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


# Tracebacks name an exception by its module: show the public one, not the worker's.
ToolError.__module__ = PolicyError.__module__ = "securepy_tools"


def build_namespace(specs: list[dict[str, Any]], call: Callable[..., Any]) -> dict[str, Any]:
    tools_module = types.ModuleType("securepy_tools", "The host tools available in this session.")
    tools_module.ToolError = ToolError  # type: ignore[attr-defined]
    tools_module.PolicyError = PolicyError  # type: ignore[attr-defined]
    main_module = types.ModuleType("__main__")
    namespace = main_module.__dict__
    namespace["ToolError"] = ToolError
    namespace["PolicyError"] = PolicyError
    namespace["call_tool"] = tools_module.call_tool = make_call_tool(call)  # type: ignore[attr-defined]
    names = []
    for spec in specs:
        stub = make_tool_function(spec, call)
        setattr(tools_module, stub.__name__, stub)
        namespace[stub.__name__] = stub
        names.append(stub.__name__)
    # A tool named call_tool replaces the generic one (it was set first).
    extras = ["ToolError", "PolicyError"] + ([] if "call_tool" in names else ["call_tool"])
    tools_module.__all__ = [*names, *extras]  # type: ignore[attr-defined]
    sys.modules["securepy_tools"] = tools_module
    sys.modules["__main__"] = main_module
    return namespace


def make_call_tool(call: Callable[..., Any]) -> Any:
    """``call_tool(name, **arguments)``: call a host tool by a name built at run time. The host
    checks the name and the arguments exactly as for the tool's own function."""

    def call_tool(name: str, /, **arguments: Any) -> Any:
        """Call the host tool ``name`` with keyword ``arguments``; returns its result.

        Raises ToolError for an unknown tool or a failed call, PolicyError for a denied one.
        """
        if not isinstance(name, str):
            raise TypeError(
                f"call_tool() needs the tool's name as a str, not {type(name).__name__}"
            )
        return call(name, arguments)

    async def call_tool_async(name: str, /, **arguments: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(call_tool, name, **arguments)

    call_tool.__module__ = "securepy_tools"
    call_tool.aio = call_tool_async  # type: ignore[attr-defined]
    return call_tool


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


class _Missing:
    """Default of an optional argument the schema gives no default for: not sent at all."""

    def __repr__(self) -> str:
        return "None"


_MISSING = _Missing()


def make_tool_function(spec: dict[str, Any], call: Callable[..., Any]) -> Any:
    """A real function for one host tool: its name, a signature from its JSON Schema (required
    parameters first) and the host function's return type, the docstring the host built (the
    description and each argument's), and an awaitable twin as ``.aio``.

    The function is compiled from a ``def`` so that its signature is native (``help()``,
    ``inspect.signature`` and argument errors behave as for any function) and so that the
    worker need not import ``inspect`` at start.
    """
    name = spec["name"]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"invalid tool name {name!r}")
    params, defaults, annotations, var_keyword = _parameters_from_schema(
        spec.get("parameters") or {}
    )
    arg_list = [f"{p}=_defaults[{p!r}]" if p in defaults else p for p in params]
    if var_keyword:
        arg_list.append("**kwargs")
    collected = ", ".join(f"{p!r}: {p}" for p in params)
    extra = ", **kwargs" if var_keyword else ""
    source = (
        f"def {name}({', '.join(arg_list)}):\n"
        f"    return _call({name!r}, {{k: v for k, v in {{{collected}{extra}}}.items()"
        " if v is not _missing})\n"
    )
    scope: dict[str, Any] = {"_defaults": defaults, "_call": call, "_missing": _MISSING}
    exec(compile(source, f"<securepy tool {name}>", "exec"), scope)
    function = scope[name]
    function.__doc__ = spec.get("description") or None
    function.__module__ = "securepy_tools"
    returns = spec.get("returns")
    if isinstance(returns, str) and returns:
        annotations["return"] = _TypeText(returns)
    function.__annotations__ = annotations

    async def call_tool_async(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(function, *args, **kwargs)

    call_tool_async.__name__ = call_tool_async.__qualname__ = name
    call_tool_async.__doc__ = function.__doc__
    function.aio = call_tool_async
    return function


class _TypeText:
    """A host type named by its source text: ``help()`` and ``inspect.signature`` show the
    text as written (``-> dict[str, int]``), where a plain string would show quoted. The type
    itself may not exist in the sandbox, so it is never evaluated."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _parameters_from_schema(
    schema: dict[str, Any],
) -> tuple[list[str], dict[str, Any], dict[str, Any], bool]:
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        properties = {}
    required = [n for n in schema.get("required") or [] if n in properties]
    ordered = required + [n for n in properties if n not in required]
    var_keyword = schema.get("additionalProperties") not in (None, False)
    params: list[str] = []
    defaults: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    for param in ordered:
        if (
            not isinstance(param, str)
            or not param.isidentifier()
            or keyword.iskeyword(param)
            or param.startswith("_")
            or param == "kwargs"
        ):
            var_keyword = True
            continue
        prop = properties[param] if isinstance(properties[param], dict) else {}
        params.append(param)
        if param not in required:
            defaults[param] = prop.get("default", _MISSING)
        annotation = _annotation(prop)
        if annotation is not None:
            annotations[param] = annotation
    return params, defaults, annotations, var_keyword


def _annotation(prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list):
        found = [_JSON_TYPES.get(str(o.get("type"))) for o in options if isinstance(o, dict)]
        if found and all(found):
            union: Any = found[0]
            for item in found[1:]:
                union = union | item
            return union
    return None
