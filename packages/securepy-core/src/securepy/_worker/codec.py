"""Python values to and from a JSON-safe tagged tree. Stdlib only: this runs inside the sandbox.

JSON scalars, strings and arrays stand for themselves (None, bool, str, int, finite float, list).
Every JSON object is a tag, ``{"$": name, ...}``, so nothing a user builds can pose as one:

    int beyond 2**53     {"$": "int", "v": "<hex>"}
    nan, inf, -inf       {"$": "float", "v": "nan"}
    tuple, set,          {"$": "tuple", "v": [...]}  (likewise "set", "frozenset")
      frozenset
    dict, str keys       {"$": "dict", "v": {...}}
    dict, other keys     {"$": "map", "v": [[k, v], ...]}
    bytes, bytearray     {"$": "bytes", "v": "<base64>"}  (likewise "bytearray")
    complex              {"$": "complex", "v": [re, im]}
    datetime, date, time {"$": "datetime", "v": "<ISO 8601>"}  (likewise "date", "time")
    timedelta            {"$": "timedelta", "v": [days, seconds, microseconds]}
    Decimal              {"$": "decimal", "v": "<str>"}
    UUID                 {"$": "uuid", "v": "<hex>"}
    numpy array, scalar  {"$": "ndarray", "dtype", "shape", "v": "<base64>"}  (object: "items")
    pandas Series        {"$": "series", "name", "index", "v"}
    pandas DataFrame     {"$": "dataframe", "columns", "index", "data": [column arrays]}
    anything else        {"$": "opaque", "type": "<module.Qualname>", "repr": "<bounded repr>"}

numpy and pandas values decode as such where that package is importable, otherwise as opaque
values. Decoding checks every tag and field and raises CodecError on anything malformed: the host
decodes what a hostile child sent.
"""

from __future__ import annotations

import binascii
import math
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["MAX_VALUE_DEPTH", "CodecError", "Opaque", "decode", "encode"]

MAX_VALUE_DEPTH = 100
_MAX_REPR = 2000
_SAFE_INT = 2**53


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CodecError("malformed base64 data") from None


class CodecError(ValueError):
    """A value cannot be encoded, or a tree is not a valid encoding."""


class Opaque:
    """A value with no faithful encoding: its type name and its repr, as text.

    Attributes:
        type_name: the value's type, as ``module.QualifiedName``.
        text: the value's repr, bounded to 2,000 characters.
    """

    __slots__ = ("text", "type_name")

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name = type_name
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Opaque)
            and other.type_name == self.type_name
            and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.text))


def encode(value: Any, depth: int = 0) -> Any:
    """Encode ``value`` as a JSON-safe tree.

    Raises:
        CodecError: the value nests deeper than MAX_VALUE_DEPTH.
    """
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is int:
        return value if -_SAFE_INT < value < _SAFE_INT else {"$": "int", "v": format(value, "x")}
    if kind is float:
        return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
    if depth >= MAX_VALUE_DEPTH:
        raise CodecError(f"value nests deeper than {MAX_VALUE_DEPTH} levels")
    depth += 1
    if kind is list:
        return [encode(item, depth) for item in value]
    if kind is dict:
        if all(type(k) is str for k in value):
            return {"$": "dict", "v": {k: encode(v, depth) for k, v in value.items()}}
        return {"$": "map", "v": [[encode(k, depth), encode(v, depth)] for k, v in value.items()]}
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value, depth)
    return _encode_other(value, depth)


def _encode_other(value: Any, depth: int) -> Any:
    # Subclasses and optional packages: checked after the exact-type fast path.
    _add_stdlib_encoders()
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value, depth)
    for base, encoder in _ENCODERS.items():
        if isinstance(value, base):
            return encoder(value, depth)
    if isinstance(value, int):
        return encode(int(value), depth)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return encode(float(value), depth)
    if isinstance(value, list):
        return encode(list(value), depth)
    if isinstance(value, dict):
        return encode(dict(value), depth)
    module = type(value).__module__
    if module.startswith("numpy") or type(value).__name__ in {"ndarray", "generic"}:
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
            return _encode_ndarray(numpy.asarray(value), depth, scalar=not isinstance(
                value, numpy.ndarray))
    if module.startswith("pandas"):
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(value, pandas.DataFrame):
            return _encode_dataframe(value, depth)
        if pandas is not None and isinstance(value, pandas.Series):
            return _encode_series(value, depth)
    return _opaque(value)


def _opaque(value: Any) -> dict[str, Any]:
    kind = type(value)
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the turn
        text = f"<{kind.__qualname__} object (repr failed: {type(exc).__name__})>"
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + "...[truncated]"
    return {"$": "opaque", "type": f"{kind.__module__}.{kind.__qualname__}", "repr": text}


def _encode_items(tag: str) -> Any:
    def encoder(value: Any, depth: int) -> dict[str, Any]:
        return {"$": tag, "v": [encode(item, depth) for item in value]}

    return encoder


def _encode_ndarray(array: Any, depth: int, *, scalar: bool = False) -> dict[str, Any]:
    tree: dict[str, Any] = {"$": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape)}
    if scalar:
        tree["scalar"] = True
    if array.dtype.hasobject:
        tree["dtype"] = "object"
        tree["items"] = [encode(item, depth) for item in array.ravel().tolist()]
    else:
        tree["dtype"] = array.dtype.descr if array.dtype.fields else array.dtype.str
        tree["v"] = _b64encode(array.tobytes(order="C"))
    return tree


def _encode_series(series: Any, depth: int) -> dict[str, Any]:
    return {
        "$": "series",
        "name": encode(series.name, depth),
        "index": _encode_ndarray(series.index.to_numpy(), depth),
        "v": _encode_ndarray(series.to_numpy(), depth),
    }


def _encode_dataframe(frame: Any, depth: int) -> dict[str, Any]:
    return {
        "$": "dataframe",
        "columns": [encode(c, depth) for c in frame.columns.tolist()],
        "index": _encode_ndarray(frame.index.to_numpy(), depth),
        "data": [_encode_ndarray(frame.iloc[:, i].to_numpy(), depth) for i in
                 range(frame.shape[1])],
    }


_ENCODERS: dict[type, Any] = {
    tuple: _encode_items("tuple"),
    set: _encode_items("set"),
    frozenset: _encode_items("frozenset"),
    bytes: lambda v, d: {"$": "bytes", "v": _b64encode(v)},
    bytearray: lambda v, d: {"$": "bytearray", "v": _b64encode(v)},
    complex: lambda v, d: {"$": "complex", "v": [encode(v.real, d), encode(v.imag, d)]},
}


def _add_stdlib_encoders() -> None:
    """Encoders for datetime, Decimal and UUID, added once those modules are loaded (a value of
    their types cannot exist before): importing them up front would slow every start."""
    datetime = sys.modules.get("datetime")
    if datetime is not None and datetime.datetime not in _ENCODERS:
        # datetime before date: a datetime is a date, and subclasses match in this order.
        _ENCODERS[datetime.datetime] = lambda v, d: {"$": "datetime", "v": v.isoformat()}
        _ENCODERS[datetime.date] = lambda v, d: {"$": "date", "v": v.isoformat()}
        _ENCODERS[datetime.time] = lambda v, d: {"$": "time", "v": v.isoformat()}
        _ENCODERS[datetime.timedelta] = lambda v, d: {
            "$": "timedelta", "v": [v.days, v.seconds, v.microseconds]}
    decimal = sys.modules.get("decimal")
    if decimal is not None and decimal.Decimal not in _ENCODERS:
        _ENCODERS[decimal.Decimal] = lambda v, d: {"$": "decimal", "v": str(v)}
    uuid = sys.modules.get("uuid")
    if uuid is not None and uuid.UUID not in _ENCODERS:
        _ENCODERS[uuid.UUID] = lambda v, d: {"$": "uuid", "v": v.hex}


def decode(tree: Any, depth: int = 0) -> Any:
    """Rebuild a value from a tree made by ``encode``.

    Raises:
        CodecError: the tree is not a valid encoding.
    """
    kind = type(tree)
    if tree is None or kind is str or kind is bool or kind is int or kind is float:
        return tree
    if depth >= MAX_VALUE_DEPTH + 2:
        raise CodecError("encoded value nests too deeply")
    depth += 1
    if kind is list:
        return [decode(item, depth) for item in tree]
    if kind is not dict:
        raise CodecError(f"unexpected JSON type {kind.__name__} in an encoded value")
    tag = tree.get("$")
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise CodecError(f"unknown value tag {str(tag)[:50]!r}")
    try:
        return decoder(tree, depth)
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, ArithmeticError) as exc:
        raise CodecError(f"malformed {tag!r} value: {str(exc)[:200]}") from None


def _field(tree: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = tree.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise CodecError(f"malformed {tree.get('$')!r} value: field {name!r}")
    return value


def _decode_int(tree: dict[str, Any], depth: int) -> int:
    text = _field(tree, "v", str)
    if len(text) > 1_000_000:
        raise CodecError("encoded int is too long")
    return int(text, 16)


def _decode_float(tree: dict[str, Any], depth: int) -> float:
    text = _field(tree, "v", str)
    if text not in ("nan", "inf", "-inf"):
        raise CodecError(f"malformed float {text[:20]!r}")
    return float(text)


def _decode_dict(tree: dict[str, Any], depth: int) -> dict[str, Any]:
    return {k: decode(v, depth) for k, v in _field(tree, "v", dict).items()}


def _decode_map(tree: dict[str, Any], depth: int) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for pair in _field(tree, "v", list):
        if not isinstance(pair, list) or len(pair) != 2:
            raise CodecError("malformed 'map' entry")
        result[_hashable(decode(pair[0], depth))] = decode(pair[1], depth)
    return result


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise CodecError(f"unhashable {type(value).__name__} used as a key") from None
    return value


def _decode_items(build: Any) -> Any:
    def decoder(tree: dict[str, Any], depth: int) -> Any:
        items = [decode(item, depth) for item in _field(tree, "v", list)]
        if build is not tuple:
            items = [_hashable(item) for item in items]
        return build(items)

    return decoder


def _decode_b64(tree: dict[str, Any]) -> bytes:
    return _b64decode(_field(tree, "v", str))


def _decode_complex(tree: dict[str, Any], depth: int) -> complex:
    parts = _field(tree, "v", list)
    if len(parts) != 2:
        raise CodecError("malformed 'complex' value")
    real, imag = (decode(p, depth) for p in parts)
    if not all(isinstance(p, float | int) and not isinstance(p, bool) for p in (real, imag)):
        raise CodecError("malformed 'complex' value")
    return complex(real, imag)


def _decode_timedelta(tree: dict[str, Any], depth: int) -> Any:
    import datetime

    parts = _field(tree, "v", list)
    if len(parts) != 3 or not all(type(p) is int for p in parts):
        raise CodecError("malformed 'timedelta' value")
    return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])


def _decode_decimal(tree: dict[str, Any], depth: int) -> Any:
    import decimal

    text = _field(tree, "v", str)
    if len(text) > 100_000:
        raise CodecError("encoded Decimal is too long")
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise CodecError(f"malformed Decimal {text[:20]!r}") from None


def _decode_uuid(tree: dict[str, Any], depth: int) -> Any:
    import uuid

    return uuid.UUID(hex=_field(tree, "v", str)[:40])


def _decode_opaque(tree: dict[str, Any], depth: int) -> Opaque:
    return Opaque(_field(tree, "type", str)[:200], _field(tree, "repr", str)[: _MAX_REPR + 20])


def _decode_ndarray(tree: dict[str, Any], depth: int) -> Any:
    numpy = _optional("numpy")
    shape = _field(tree, "shape", list)
    if not all(type(n) is int and n >= 0 for n in shape):
        raise CodecError("malformed 'ndarray' shape")
    if numpy is None:
        return Opaque("numpy.ndarray", f"<numpy array of shape {tuple(shape)}; numpy is not "
                      "installed here>")
    if tree.get("dtype") == "object":
        items = [decode(item, depth) for item in _field(tree, "items", list)]
        array = numpy.empty(len(items), dtype=object)
        array[:] = items
        result = array.reshape(shape)
    else:
        dtype_spec = tree.get("dtype")
        if isinstance(dtype_spec, list):
            dtype_spec = [tuple(field) for field in dtype_spec]
        dtype = numpy.dtype(dtype_spec)
        if dtype.hasobject:
            raise CodecError("an object dtype must use 'items'")
        result = numpy.frombuffer(_decode_b64(tree), dtype=dtype).reshape(shape).copy()
    return result[()] if tree.get("scalar") is True else result


def _decode_series(tree: dict[str, Any], depth: int) -> Any:
    pandas = _optional("pandas")
    values = decode(_field(tree, "v", dict), depth)
    index = decode(_field(tree, "index", dict), depth)
    if pandas is None or isinstance(values, Opaque):
        return Opaque("pandas.Series", "<pandas Series; pandas is not installed here>")
    return pandas.Series(values, index=index, name=decode(tree.get("name"), depth))


def _decode_dataframe(tree: dict[str, Any], depth: int) -> Any:
    pandas = _optional("pandas")
    columns = [decode(c, depth) for c in _field(tree, "columns", list)]
    data = [decode(col, depth) for col in _field(tree, "data", list)]
    index = decode(_field(tree, "index", dict), depth)
    if pandas is None or isinstance(index, Opaque):
        return Opaque("pandas.DataFrame", "<pandas DataFrame; pandas is not installed here>")
    if len(columns) != len(data):
        raise CodecError("malformed 'dataframe': columns and data differ in length")
    frame = pandas.DataFrame(
        {i: pandas.Series(col, index=index) for i, col in enumerate(data)}, index=index
    )
    frame.columns = pandas.Index(columns, dtype=object if not columns else None)
    return frame


def _optional(name: str) -> Any:
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return __import__(name)
    except ImportError:
        return None


def _iso(kind: str) -> Any:
    def decoder(tree: dict[str, Any], depth: int) -> Any:
        import datetime

        text = _field(tree, "v", str)
        if len(text) > 64:
            raise CodecError("malformed date/time value")
        return getattr(datetime, kind).fromisoformat(text)

    return decoder


_DECODERS: dict[str, Any] = {
    "int": _decode_int,
    "float": _decode_float,
    "dict": _decode_dict,
    "map": _decode_map,
    "tuple": _decode_items(tuple),
    "set": _decode_items(set),
    "frozenset": _decode_items(frozenset),
    "bytes": lambda t, d: _decode_b64(t),
    "bytearray": lambda t, d: bytearray(_decode_b64(t)),
    "complex": _decode_complex,
    "datetime": _iso("datetime"),
    "date": _iso("date"),
    "time": _iso("time"),
    "timedelta": _decode_timedelta,
    "decimal": _decode_decimal,
    "uuid": _decode_uuid,
    "opaque": _decode_opaque,
    "ndarray": _decode_ndarray,
    "series": _decode_series,
    "dataframe": _decode_dataframe,
}
