"""Checking tool arguments against a JSON Schema given as ``parameters=``.

Full JSON Schema (draft 2020-12 by default, or the draft a schema's ``$schema`` names),
``$ref``/``$defs`` included, through the ``jsonschema`` library. Arguments arrive from the
sandbox, so the check's cost is bounded: ``uniqueItems`` is checked in linear time (the
library's fallback compares every pair), the keywords that fail most often (``type``, ``enum``,
``const``) do not build a repr of the whole failing value, only the first failure is built,
and a ``$ref`` to anything outside the schema is never fetched. Regular expressions
(``pattern``) are the tool author's: securepy cannot make an author's pathological pattern
fast.

The ``minimum``/``maximum`` keywords are rewritten the same way, so an int past Python's
int-to-str digit limit is refused with a message instead of breaking the check.

The error the sandboxed code (and so the model) sees names the argument and the rule it broke:
``search(): argument 'limit' breaks 'maximum': 100 (got 500)``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # jsonschema ships no type information (nor does the workspace pin types-jsonschema).
    import jsonschema  # type: ignore[import-untyped]
    import jsonschema.exceptions  # type: ignore[import-untyped]
    import jsonschema.validators  # type: ignore[import-untyped]
    import referencing.exceptions

__all__ = ["JSON_TYPE_NAMES", "ArgumentChecker", "SchemaProblem", "short_repr"]

JSON_TYPE_NAMES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}
_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlong = 40


class SchemaProblem(ValueError):
    """The ``parameters`` schema itself is invalid."""


class ArgumentChecker:
    """Checks one tool's arguments against its ``parameters`` JSON Schema."""

    def __init__(self, tool_name: str, schema: dict[str, Any]) -> None:
        """Raises:
        SchemaProblem: the schema is not a valid JSON Schema.
        """
        self._name = tool_name
        draft = _load_library()
        base = jsonschema.validators.validator_for(schema, default=draft)
        if base is not draft:
            base = _extend(base)
        try:
            base.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            where = "/".join(str(part) for part in exc.absolute_path) or "the top level"
            raise SchemaProblem(
                f"tool {tool_name!r}: parameters is not a valid JSON Schema: at {where}, "
                f"{exc.message[:200]}"
            ) from None
        self._validator = base(schema)
        # Most tool schemas use a small subset of JSON Schema: for those, a compiled check
        # that can only say "valid" spares the library's machinery on every call (it is
        # about five times slower). Anything it does not accept goes to the library.
        self._fast = _compile(schema, 0) if base is draft else None
        properties = schema.get("properties") or {}
        # Tools are called with keyword arguments: at the top level a name the schema does
        # not declare is refused unless the schema itself allows extra properties.
        self._known = (
            set(properties)
            if (
                "additionalProperties" not in schema
                and "patternProperties" not in schema
                and "unevaluatedProperties" not in schema
            )
            else None
        )

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as keyword arguments for the tool, if they satisfy the schema.

        Raises:
            ValueError: naming the first argument at fault and the rule it broke.
        """
        values = dict(arguments)
        if self._known is not None:
            for key in values:
                if key not in self._known:
                    raise ValueError(f"{self._name}(): unexpected argument {str(key)[:100]!r}")
        if self._fast is not None and self._fast(values):
            return values
        try:
            error = next(self._validator.iter_errors(values), None)
        except referencing.exceptions.Unresolvable as exc:
            raise ValueError(
                f"{self._name}(): the tool's schema has a reference that cannot "
                f"be resolved ({str(exc)[:100]}); the call was refused"
            ) from None
        except (ValueError, RecursionError, OverflowError) as exc:
            # An argument too large to describe (an int past the digit limit) or to check.
            raise ValueError(
                f"{self._name}(): the arguments could not be checked against "
                f"the tool's schema ({type(exc).__name__}); the call was "
                "refused"
            ) from None
        if error is not None:
            raise ValueError(f"{self._name}(): {_describe(error)}")
        return values


def _describe(error: jsonschema.exceptions.ValidationError) -> str:
    if error.validator in ("anyOf", "oneOf"):
        if not error.context:  # oneOf with every sub-schema satisfied by more than one
            return f"{_where(error)} matches more than one of the allowed forms (oneOf)"
        best = jsonschema.exceptions.best_match(iter(error.context))
        if best is not None and len(best.absolute_path) > len(error.absolute_path):
            return _describe(best)
        return f"{_where(error)} matches none of the allowed forms ({error.validator})"
    keyword = str(error.validator)
    instance = error.instance
    if keyword == "required":
        missing = [n for n in error.validator_value if n not in instance]
        name = missing[0] if missing else "?"
        if not error.absolute_path:
            return f"missing required argument {name!r}"
        return f"{_where(error)} is missing {name!r}"
    if keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        extra = _extra_keys(error)
        if not error.absolute_path:
            return f"unexpected argument {extra!r}"
        return f"{_where(error)} has an unexpected key {extra!r}"
    if keyword == "type":
        kinds = (
            error.validator_value
            if isinstance(error.validator_value, list)
            else [error.validator_value]
        )
        expected = " or ".join(JSON_TYPE_NAMES.get(str(k), str(k)) for k in kinds)
        got = f"{type(instance).__name__} {short_repr(instance)}"
        return f"{_where(error)} must be {expected}, got {got}"
    if keyword == "enum":
        return (
            f"{_where(error)} must be one of {short_repr(error.validator_value)}, got "
            f"{short_repr(instance)}"
        )
    if keyword == "const":
        const = short_repr(error.validator_value)
        return f"{_where(error)} must be {const}, got {short_repr(instance)}"
    rule = short_repr(error.validator_value)
    return f"{_where(error)} breaks {keyword!r}: {rule} (got {short_repr(instance)})"


def _where(error: jsonschema.exceptions.ValidationError) -> str:
    path = list(error.absolute_path)
    if not path:
        return "the arguments"
    text = str(path[0])[:100]
    for part in path[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{str(part)[:100]}"
    return f"argument {text!r}"


def _extra_keys(error: jsonschema.exceptions.ValidationError) -> str:
    declared = error.schema.get("properties") or {} if isinstance(error.schema, dict) else {}
    for key in error.instance:
        if key not in declared:
            return str(key)[:100]
    return "?"


def short_repr(value: Any) -> str:
    """A repr of at most about 60 characters, whatever ``value`` is (never raises)."""
    if type(value) is int and value.bit_length() > 128:
        return f"<int of {value.bit_length()} bits>"
    try:
        return _SHORT.repr(value)
    except Exception:  # an int past the digit limit inside a container, a broken repr
        return f"<{type(value).__name__}>"


# -- the fast path: a subset of JSON Schema compiled to plain checks ---------------------------

_Check = Any  # Callable[[Any], bool]: True only if the library would find the value valid
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "$schema",
    }
)
_TYPES: dict[str, _Check] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list or type(v) is tuple,
    "object": lambda v: type(v) is dict,
}
_SCALARS = (str, int, float, bool, type(None))


def _compile(schema: Any, depth: int) -> _Check | None:
    """A check for ``schema`` if it uses only keywords compiled here, else None."""
    if schema is True:
        return lambda value: True
    if type(schema) is not dict or depth > 20:
        return None
    checks: list[_Check] = []
    for keyword, argument in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _compile_keyword(keyword, argument, schema, depth)
        if check is None:
            return None
        checks.append(check)
    return lambda value: all(check(value) for check in checks)


def _compile_keyword(
    keyword: str, argument: Any, schema: dict[str, Any], depth: int
) -> _Check | None:
    if keyword == "type":
        kinds = argument if type(argument) is list else [argument]
        found = [_TYPES.get(kind) for kind in kinds if type(kind) is str]
        tests = [test for test in found if test is not None]
        if len(tests) != len(kinds):
            return None
        return lambda value: any(test(value) for test in tests)
    if (
        keyword == "enum"
        and type(argument) is list
        and all(type(item) in _SCALARS for item in argument)
    ):
        allowed = {
            (type(item) is bool, item)
            for item in argument
            if type(item) is not float or item == item
        }
        return lambda value: type(value) in _SCALARS and (type(value) is bool, value) in allowed
    if keyword == "anyOf" and type(argument) is list and argument:
        compiled = [_compile(option, depth + 1) for option in argument]
        options = [option for option in compiled if option is not None]
        if len(options) != len(argument):
            return None
        return lambda value: any(option(value) for option in options)
    if keyword == "properties" and type(argument) is dict:
        found_checks = {name: _compile(sub, depth + 1) for name, sub in argument.items()}
        properties = {name: check for name, check in found_checks.items() if check is not None}
        if len(properties) != len(found_checks):
            return None
        return lambda value: (
            type(value) is not dict
            or all(check(value[name]) for name, check in properties.items() if name in value)
        )
    if keyword == "required" and type(argument) is list:
        return lambda value: type(value) is not dict or all(name in value for name in argument)
    if keyword == "additionalProperties":
        declared = schema.get("properties") or {}
        if "patternProperties" in schema or type(declared) is not dict:
            return None
        if argument is True:
            return lambda value: True
        extra = _compile(argument, depth + 1) if argument is not False else None
        if argument is not False and extra is None:
            return None
        return lambda value: (
            type(value) is not dict
            or all(
                name in declared or (extra is not None and extra(item))
                for name, item in value.items()
            )
        )
    if keyword == "items" and type(argument) is dict:
        item_check = _compile(argument, depth + 1)
        if item_check is None:
            return None
        return lambda value: (
            not (type(value) is list or type(value) is tuple)
            or all(item_check(item) for item in value)
        )
    return None


# -- keywords whose library versions are too costly on hostile arguments ----------------------


def _type(validator: Any, types: Any, instance: Any, schema: Any) -> Iterator[Any]:
    kinds = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, kind) for kind in kinds):
        yield jsonschema.exceptions.ValidationError(
            f"{type(instance).__name__} is not of type {', '.join(map(repr, kinds))}"
        )


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not any(_canonical(instance) == _canonical(item) for item in enums):
        yield jsonschema.exceptions.ValidationError("is not one of the allowed values")


def _const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if _canonical(instance) != _canonical(const):
        yield jsonschema.exceptions.ValidationError("is not the required value")


def _bound(compare: Any) -> Any:
    def keyword(validator: Any, limit: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "number") and not compare(instance, limit):
            yield jsonschema.exceptions.ValidationError("is out of range")

    return keyword


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for index, item in enumerate(instance):
        key = _canonical(item)
        if key in seen:
            yield jsonschema.exceptions.ValidationError(
                f"has non-unique elements (item {index} repeats an earlier one)"
            )
            return
        seen.add(key)


def _canonical(value: Any, depth: int = 0) -> Any:
    """A hashable key equal for JSON-equal values (1 == 1.0, True != 1, key order ignored).

    Leaves are strings, hashed with the process's random key: a child cannot choose items
    whose keys collide (ints and floats hash by value, so they are written out in hex)."""
    kind = type(value)
    if kind is bool or value is None:
        return repr(value)
    if kind is int:
        return "n" + hex(value)
    if kind is float:
        return "n" + (hex(int(value)) if value.is_integer() else value.hex())
    if kind is str:
        return "s" + value
    if depth > 200:
        return "deep"
    if isinstance(value, list | tuple):
        return ("l", *(_canonical(item, depth + 1) for item in value))
    if isinstance(value, dict):
        return (
            "d",
            frozenset(
                (_canonical(k, depth + 1), _canonical(v, depth + 1)) for k, v in value.items()
            ),
        )
    return ("o", type(value).__qualname__, id(value))


def _extend(base: Any) -> Any:
    # Tuples from the codec count as arrays (sandboxed code passes them for list arguments).
    checker = base.TYPE_CHECKER.redefine(
        "array", lambda checker, instance: isinstance(instance, list | tuple)
    )
    return jsonschema.validators.extend(
        base,
        validators={
            "type": _type,
            "enum": _enum,
            "const": _const,
            "uniqueItems": _unique_items,
            "minimum": _bound(lambda value, limit: value >= limit),
            "maximum": _bound(lambda value, limit: value <= limit),
            "exclusiveMinimum": _bound(lambda value, limit: value > limit),
            "exclusiveMaximum": _bound(lambda value, limit: value < limit),
        },
        type_checker=checker,
    )


_Draft: Any = None


def _load_library() -> Any:
    """The draft 2020-12 validator class, importing jsonschema on first use.

    The library is about a third of ``import securepy`` and only tools declared with
    ``parameters=`` need it. Every other function here that names it runs only after an
    :class:`ArgumentChecker` was built, so the module-level names are bound by then."""
    global _Draft
    if _Draft is None:
        import jsonschema.exceptions
        import jsonschema.validators
        import referencing.exceptions

        globals().update(jsonschema=jsonschema, referencing=referencing)
        _Draft = _extend(jsonschema.Draft202012Validator)
    return _Draft
