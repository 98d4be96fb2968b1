"""Host tools: the functions sandboxed code may call, their schemas and argument checks."""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, overload

import pydantic

from ._hash_flooding import refuse_hash_flooding
from ._schema import ArgumentChecker, short_repr
from ._tool_doc import return_type_text, schema_type_text, tool_doc

__all__ = ["Tool", "ToolCallRequest", "tool"]


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """One call the sandboxed code asked for, as given to a tool's ``approve`` hook.

    Attributes:
        tool: the tool's name.
        arguments: the validated arguments.
        call_index: 1 for the first call of this tool in the current execution, and so on.
    """

    tool: str
    arguments: Mapping[str, Any]
    call_index: int


Approval = bool | str | None | tuple[bool, str]


@typing.final
class Tool:
    """A host function that sandboxed code can call by name.

    The arguments' JSON Schema comes from ``parameters`` (a JSON Schema object), else from the
    ``args`` shorthand (``{"table": str, "limit": int}``), else from ``fn``'s signature and type
    hints. Arguments are validated on the host against it before ``fn`` runs: a ``parameters``
    schema in full (JSON Schema draft 2020-12, ``$ref``/``$defs`` included, through the
    ``jsonschema`` library), the others by pydantic.

    Args:
        name: a Python identifier, not a keyword; the function's name inside the sandbox.
        description: what the tool does; its docstring inside the sandbox.
        fn: the host function, sync or async. It is called with keyword arguments.
        parameters: a JSON Schema object for the arguments.
        args: shorthand: argument names mapped to Python types, all required.
        timeout: seconds this tool may run per call (None: only the execution's timeout).
        max_calls: calls allowed per execution (None: no per-tool limit).
        approve: called on the host with a :class:`ToolCallRequest` before each call; return
            True/None to allow, False or a reason string (or ``(False, reason)``) to deny. A
            denial raises ``PolicyError`` inside the sandbox.

    Raises:
        TypeError: ``fn`` is not callable, both ``parameters`` and ``args`` were given, or a
            type hint has no JSON Schema.
        ValueError: the name is not a valid identifier, or the schema is not an object schema
            or not a valid JSON Schema.
    """

    def __init__(
        self,
        name: str,
        description: str,
        fn: Callable[..., Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_calls: int | None = None,
        approve: Callable[[ToolCallRequest], Approval] | None = None,
    ) -> None:
        _check_name(name)
        if not callable(fn):
            raise TypeError(f"tool {name!r}: fn must be callable, got {type(fn).__name__}")
        if not isinstance(description, str):
            raise TypeError(f"tool {name!r}: description must be a str")
        if parameters is not None and args is not None:
            raise TypeError(f"tool {name!r}: pass parameters= or args=, not both")
        if timeout is not None and (
            not isinstance(timeout, int | float) or timeout <= 0 or not math.isfinite(timeout)
        ):
            raise ValueError(f"tool {name!r}: timeout must be a positive number of seconds")
        if max_calls is not None and (not isinstance(max_calls, int) or max_calls < 0):
            raise ValueError(f"tool {name!r}: max_calls must be a non-negative integer")
        self.name = name
        self.description = description
        self.fn = fn
        self.timeout = timeout
        self.max_calls = max_calls
        self.approve = approve
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._model: type[pydantic.BaseModel] | None = None
        self._plain: dict[str, tuple[frozenset[type] | None, Any]] | None = None
        self._checker: ArgumentChecker | None = None
        self._wire: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        if parameters is not None:
            self.parameters = _check_object_schema(name, dict(parameters))
            self._checker = ArgumentChecker(name, self.parameters)
        else:
            self._model = (
                _model_from_args(name, args)
                if args is not None
                else _model_from_signature(name, fn)
            )
            self.parameters = _schema_of(self._model)
            self._plain = _plain_fields(self._model)

    def __repr__(self) -> str:
        return f"<securepy.Tool {self.signature()}>"

    def signature(self) -> str:
        """The tool as the sandboxed code sees it: ``query_db(table: str, limit: int = 10)``."""
        properties = self.parameters.get("properties") or {}
        required = [n for n in self.parameters.get("required") or [] if n in properties]
        parts = []
        for prop_name in required + [n for n in properties if n not in required]:
            prop = properties[prop_name] if isinstance(properties[prop_name], dict) else {}
            text = prop_name
            type_name = schema_type_text(prop)
            if type_name:
                text += f": {type_name}"
            if prop_name not in required:
                text += f" = {prop.get('default')!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"

    def summary(self) -> str:
        """The signature and the description's first line, for a model's tool listing."""
        first_line = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return f"{self.signature()}: {first_line}" if first_line else self.signature()

    def validate_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``arguments`` against the schema and return the keyword arguments for ``fn``.

        Raises:
            ValueError: with a message naming the bad argument and what was expected.
        """
        if self._plain is not None:
            checked = _check_plain(self._plain, arguments)
            if checked is not None:
                return checked
        if self._model is not None:
            try:
                refuse_hash_flooding(arguments, self.name)
                model = self._model.model_validate(dict(arguments))
            except pydantic.ValidationError as exc:
                raise ValueError(_describe_validation_error(self.name, exc)) from None
            return {field: getattr(model, field) for field in type(model).model_fields}
        assert self._checker is not None
        return self._checker.check(arguments)

    def to_wire(self) -> dict[str, Any]:
        """Name, docstring, schema and return type, as the worker needs them to build the
        function (the docstring within its budget: ``securepy._tool_doc``)."""
        # Every session start sends it; building the docstring costs ~20 us a tool.
        key = (self.name, self.description, self.fn, id(self.parameters))
        if self._wire is None or self._wire[0] != key:
            wire = {
                "name": self.name,
                "description": tool_doc(self),
                "parameters": self.parameters,
                "returns": return_type_text(self.fn),
            }
            self._wire = (key, wire)
        return dict(self._wire[1])


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    **options: Any,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` from a function: ``@securepy.tool`` or ``@securepy.tool(name=...)``.

    The name defaults to the function's name, the description to its docstring, the schema to
    its signature. Other keyword options (``parameters``, ``args``, ``timeout``,
    ``max_calls``, ``approve``) go to :class:`Tool`.

    Example:
        >>> import securepy
        >>> @securepy.tool
        ... def add(a: int, b: int = 1) -> int:
        ...     "Add two numbers."
        ...     return a + b
        >>> add.signature()
        'add(a: int, b: int = 1)'
    """

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(
            name or str(getattr(function, "__name__", "")),
            description if description is not None else inspect.getdoc(function) or "",
            function,
            **options,
        )

    return make(fn) if fn is not None else make


def coerce_tool(item: Tool | Callable[..., Any]) -> Tool:
    """A Tool as is; a plain callable through :func:`tool`."""
    if isinstance(item, Tool):
        return item
    if callable(item):
        return tool(item)
    raise TypeError(f"tools= takes securepy.Tool objects or functions, not {type(item).__name__}")


def collect_tools(items: Any) -> dict[str, Tool]:
    """Tools by name, checking that names are unique."""
    if isinstance(items, Tool) or callable(items):
        items = [items]
    found: dict[str, Tool] = {}
    for item in items or ():
        converted = coerce_tool(item)
        if converted.name in found:
            raise ValueError(f"two tools are named {converted.name!r}; tool names must be unique")
        found[converted.name] = converted
    return found


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"tool name {name!r} is not a valid Python identifier; pick a name like "
            "'query_db' (letters, digits, underscores, not a keyword)"
        )
    if name.startswith("__"):
        raise ValueError(f"tool name {name!r} must not start with '__'")


def _check_object_schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type", "object") != "object":
        raise ValueError(
            f"tool {name!r}: parameters must be a JSON Schema of type 'object', got "
            f"type {schema.get('type')!r}"
        )
    if not isinstance(schema.get("properties", {}), dict):
        raise ValueError(f"tool {name!r}: parameters['properties'] must be an object")
    return {"type": "object", **schema}


def _model_from_signature(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # keep Annotated constraints
    except (TypeError, ValueError, NameError) as exc:
        raise TypeError(f"tool {name!r}: cannot read the signature of {fn!r}: {exc}") from None
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(
                f"tool {name!r}: parameter {param.name!r} is positional-only; tools are "
                "called with keyword arguments"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    return _build_model(name, fields)


def _model_from_args(name: str, args: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    if not isinstance(args, Mapping):
        raise TypeError(f"tool {name!r}: args must map argument names to types")
    return _build_model(name, {key: (kind, ...) for key, kind in args.items()})


def _build_model(name: str, fields: dict[str, Any]) -> type[pydantic.BaseModel]:
    for field in fields:
        if not field.isidentifier() or field.startswith("_"):
            raise ValueError(f"tool {name!r}: argument name {field!r} is not allowed")
    try:
        model = pydantic.create_model(
            f"{name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as e:
        raise TypeError(
            f"tool {name!r}: an argument's type has no JSON Schema ({e}); use JSON-like types "
            "(str, int, float, bool, list, dict, Literal, pydantic models) or pass parameters="
        ) from None
    return typing.cast(type[pydantic.BaseModel], model)


_REQUIRED = object()
# Types whose values pydantic passes through unchanged when the field takes exactly that type
# (and that are immutable, so a default of such a type needs no copy).
_PLAIN_TYPES = frozenset({int, str, float, bool, type(None)})


def _plain_fields(
    model: type[pydantic.BaseModel],
) -> dict[str, tuple[frozenset[type] | None, Any]] | None:
    """Per field, the exact types pydantic would pass through unchanged (None: any value, for
    ``Any``) and the default (or _REQUIRED), when every field is that simple: an annotation
    of ``Any``, a plain type of _PLAIN_TYPES or a union of them, no constraints, aliases or
    default factory, and a default of a plain type. Otherwise None: pydantic checks it all."""
    fields: dict[str, tuple[frozenset[type] | None, Any]] = {}
    for name, info in model.model_fields.items():
        if (
            info.metadata
            or info.alias is not None
            or info.validation_alias is not None
            or info.default_factory is not None
            or info.discriminator is not None
            or info.validate_default
        ):
            return None
        annotation = info.annotation
        accepted: frozenset[type] | None
        if annotation is Any:
            accepted = None
        else:
            members = (
                typing.get_args(annotation)
                if typing.get_origin(annotation) in (typing.Union, types.UnionType)
                else (annotation,)
            )
            if not members or not all(member in _PLAIN_TYPES for member in members):
                return None
            accepted = frozenset(members)
        if info.is_required():
            default = _REQUIRED
        elif type(info.default) in _PLAIN_TYPES:
            default = info.default
        else:
            return None
        fields[name] = (accepted, default)
    return fields


def _check_plain(
    fields: dict[str, tuple[frozenset[type] | None, Any]], arguments: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The keyword arguments exactly as pydantic would return them, when each value is of
    one of its field's exact types (the usual case); else None, and pydantic decides."""
    if not arguments.keys() <= fields.keys():
        return None
    result: dict[str, Any] = {}
    for name, (accepted, default) in fields.items():
        if name in arguments:
            value = arguments[name]
            if accepted is not None and type(value) not in accepted:
                return None
            result[name] = value
        elif default is _REQUIRED:
            return None
        else:
            result[name] = default
    return result


def _schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema["additionalProperties"] = False
    return schema


def _describe_validation_error(name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unexpected argument {where!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required argument {where!r}")
        else:
            # A bounded repr: the whole input's repr could be as large as the frame.
            got = short_repr(error["input"])[:60]
            problems.append(f"argument {where!r}: {error['msg']} (got {got})")
    return f"{name}(): " + "; ".join(problems)
