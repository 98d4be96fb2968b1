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
values (``arrays.py``). Decoding checks every tag and field and raises CodecError on anything
malformed: the host decodes what a hostile child sent. Sets, frozensets and maps are built under
the hash-flooding guard of ``hash_guard.py``.
"""

from __future__ import annotations

import math
import sys

from .codec_base import CodecError, Opaque, b64decode, b64encode, field

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = ["MAX_VALUE_DEPTH", "CodecError", "Opaque", "decode", "encode"]

MAX_VALUE_DEPTH = 100
_MAX_REPR = 2000
_TRUNCATED = "...[truncated]"
_SAFE_INT = 2**53
_MAX_INT_HEX_DIGITS = 1_000_000  # an int crosses as hex: 4,000,000 bits at most


def encode(value: Any, depth: int = 0) -> Any:
    """Encode ``value`` as a JSON-safe tree.

    Raises:
        CodecError: the value nests deeper than MAX_VALUE_DEPTH.
    """
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is int:
        return value if -_SAFE_INT < value < _SAFE_INT else _encode_big_int(value)
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


def _encode_big_int(value: int) -> dict[str, Any]:
    # Refused here, as an error the code sees, rather than sent for the host to refuse (which
    # would end the session).
    if value.bit_length() > 4 * _MAX_INT_HEX_DIGITS:
        raise CodecError(f"an int of {value.bit_length()} bits is over the "
                         f"{4 * _MAX_INT_HEX_DIGITS}-bit limit of what crosses the sandbox")
    return {"$": "int", "v": format(value, "x")}


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
            scalar = not isinstance(value, numpy.ndarray)
            return _arrays().encode_ndarray(numpy.asarray(value), depth, encode, scalar=scalar)
    if module.startswith("pandas"):
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(value, pandas.DataFrame):
            return _arrays().encode_dataframe(value, depth, encode)
        if pandas is not None and isinstance(value, pandas.Series):
            return _arrays().encode_series(value, depth, encode)
    return _opaque(value)


def _opaque(value: Any) -> dict[str, Any]:
    kind = type(value)
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the turn
        text = f"<{kind.__qualname__} object (repr failed: {type(exc).__name__})>"
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + _TRUNCATED
    return {"$": "opaque", "type": f"{kind.__module__}.{kind.__qualname__}", "repr": text}


def _encode_items(tag: str) -> Any:
    def encoder(value: Any, depth: int) -> dict[str, Any]:
        return {"$": tag, "v": [encode(item, depth) for item in value]}

    return encoder


_ENCODERS: dict[type, Any] = {
    tuple: _encode_items("tuple"),
    set: _encode_items("set"),
    frozenset: _encode_items("frozenset"),
    bytes: lambda v, d: {"$": "bytes", "v": b64encode(v)},
    bytearray: lambda v, d: {"$": "bytearray", "v": b64encode(v)},
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
            "$": "timedelta",
            "v": [v.days, v.seconds, v.microseconds],
        }
    decimal = sys.modules.get("decimal")
    if decimal is not None and decimal.Decimal not in _ENCODERS:
        _ENCODERS[decimal.Decimal] = lambda v, d: {"$": "decimal", "v": str(v)}
    uuid = sys.modules.get("uuid")
    if uuid is not None and uuid.UUID not in _ENCODERS:
        _ENCODERS[uuid.UUID] = lambda v, d: {"$": "uuid", "v": v.hex}


_MAX_DECIMAL_EXPONENT = 100_000


def decode(tree: Any, depth: int = 0) -> Any:
    """Rebuild a value from a tree made by ``encode``. The tree is consumed: its lists and
    mappings are reused for the value, so decoding a list copies nothing.

    Cost: time and memory linear in the tree's size. Sets, frozensets and maps whose items
    share hashes are refused (hash flooding), as are arrays whose data does not match the shape
    and dtype they declare.

    Raises:
        CodecError: the tree is not a valid encoding, or rebuilding it would cost the host more
            than the bounds above (including running out of memory).
    """
    try:
        return _decode(tree, depth)
    except MemoryError:
        raise CodecError("the value is too large to rebuild in the host's memory") from None
    except RecursionError:
        raise CodecError("encoded value nests too deeply") from None


def _decode(tree: Any, depth: int) -> Any:
    kind = type(tree)
    if tree is None or kind is str or kind is bool or kind is int or kind is float:
        return tree
    if depth >= MAX_VALUE_DEPTH + 2:
        raise CodecError("encoded value nests too deeply")
    depth += 1
    if kind is list:
        return _decode_list(tree, depth)
    if kind is not dict:
        raise CodecError(f"unexpected JSON type {kind.__name__} in an encoded value")
    tag = tree.get("$")
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise CodecError(f"unknown value tag {str(tag)[:50]!r}")
    try:
        return decoder(tree, depth)
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, ArithmeticError) as exc:
        raise CodecError(f"malformed {tag!r} value: {str(exc)[:200]}") from None


def _decode_list(items: list[Any], depth: int) -> list[Any]:
    for index, item in enumerate(items):
        kind = type(item)
        if kind is list or kind is dict:
            items[index] = _decode(item, depth)
    return items


def _decode_int(tree: dict[str, Any], depth: int) -> int:
    text = field(tree, "v", str)
    if len(text) > _MAX_INT_HEX_DIGITS + 1:  # a minus sign
        raise CodecError("encoded int is too long")
    return int(text, 16)  # base 16: linear in the digits, unlike base 10


def _decode_float(tree: dict[str, Any], depth: int) -> float:
    text = field(tree, "v", str)
    if text not in ("nan", "inf", "-inf"):
        raise CodecError(f"malformed float {text[:20]!r}")
    return float(text)


def _decode_dict(tree: dict[str, Any], depth: int) -> dict[str, Any]:
    # String keys: the JSON parser built this dict already, with the process's random string
    # hashing, so there is nothing to flood here.
    mapping: dict[str, Any] = field(tree, "v", dict)
    for key, item in mapping.items():
        kind = type(item)
        if kind is list or kind is dict:
            mapping[key] = _decode(item, depth)
    return mapping


def _decode_map(tree: dict[str, Any], depth: int) -> dict[Any, Any]:
    pairs = field(tree, "v", list)
    keys: list[Any] = []
    values: list[Any] = []
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise CodecError("malformed 'map' entry")
        keys.append(pair[0])
        values.append(pair[1])
    pairs.clear()
    guard = _hash_guard()
    guard.decode_hashed(keys, depth, "map", _decode)
    _decode_list(values, depth)
    if len(keys) <= guard.GUARD_FROM:
        return dict(zip(keys, values, strict=True))
    result: dict[Any, Any] = {}
    guard.fill_guarded(result.update, keys, values, "map")
    return result


def _decode_items(build: Any) -> Any:
    def decoder(tree: dict[str, Any], depth: int) -> Any:
        items = field(tree, "v", list)
        if build is tuple:
            return tuple(_decode_list(items, depth))
        guard = _hash_guard()
        guard.decode_hashed(items, depth, tree["$"], _decode)
        if len(items) <= guard.GUARD_FROM:
            return build(items)
        result: set[Any] = set()
        guard.fill_guarded(result.update, items, None, tree["$"])
        return result if build is set else frozenset(result)

    return decoder


def _decode_b64(tree: dict[str, Any]) -> bytes:
    return b64decode(field(tree, "v", str))


def _decode_complex(tree: dict[str, Any], depth: int) -> complex:
    parts = field(tree, "v", list)
    if len(parts) != 2:
        raise CodecError("malformed 'complex' value")
    real, imag = (_decode(p, depth) for p in parts)
    if not all(isinstance(p, float | int) and not isinstance(p, bool) for p in (real, imag)):
        raise CodecError("malformed 'complex' value")
    return complex(real, imag)


def _decode_timedelta(tree: dict[str, Any], depth: int) -> Any:
    import datetime

    parts = field(tree, "v", list)
    if len(parts) != 3 or not all(type(p) is int for p in parts):
        raise CodecError("malformed 'timedelta' value")
    return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])


def _decode_decimal(tree: dict[str, Any], depth: int) -> Any:
    import decimal

    text = field(tree, "v", str)
    if len(text) > 100_000:
        raise CodecError("encoded Decimal is too long")
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise CodecError(f"malformed Decimal {text[:20]!r}") from None
    exponent = value.as_tuple().exponent
    # A huge exponent is a few bytes here but a gigantic int wherever the host converts it.
    if type(exponent) is int and abs(exponent) > _MAX_DECIMAL_EXPONENT:
        raise CodecError(f"a Decimal's exponent is beyond ±{_MAX_DECIMAL_EXPONENT}")
    return value


def _decode_uuid(tree: dict[str, Any], depth: int) -> Any:
    import uuid

    return uuid.UUID(hex=field(tree, "v", str)[:40])


def _decode_opaque(tree: dict[str, Any], depth: int) -> Opaque:
    text = field(tree, "repr", str)
    if len(text) > _MAX_REPR + len(_TRUNCATED):
        text = text[:_MAX_REPR] + _TRUNCATED
    return Opaque(field(tree, "type", str)[:200], text)


def _iso(kind: str) -> Any:
    def decoder(tree: dict[str, Any], depth: int) -> Any:
        import datetime

        text = field(tree, "v", str)
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
    "ndarray": lambda tree, depth: _arrays().decode_ndarray(tree, depth, _decode),
    "series": lambda tree, depth: _arrays().decode_series(tree, depth, _decode),
    "dataframe": lambda tree, depth: _arrays().decode_dataframe(tree, depth, _decode),
}


# Imported on first use: most sessions never send an array or a set, and every module imported
# at start is paid by every sandboxed start.
def _arrays() -> Any:
    from . import arrays

    return arrays


def _hash_guard() -> Any:
    from . import hash_guard

    return hash_guard
