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
_TRUNCATED = "...[truncated]"
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
            return _encode_ndarray(
                numpy.asarray(value), depth, scalar=not isinstance(value, numpy.ndarray)
            )
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
        text = text[:_MAX_REPR] + _TRUNCATED
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
        "data": [
            _encode_ndarray(frame.iloc[:, i].to_numpy(), depth) for i in range(frame.shape[1])
        ],
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
            "$": "timedelta",
            "v": [v.days, v.seconds, v.microseconds],
        }
    decimal = sys.modules.get("decimal")
    if decimal is not None and decimal.Decimal not in _ENCODERS:
        _ENCODERS[decimal.Decimal] = lambda v, d: {"$": "decimal", "v": str(v)}
    uuid = sys.modules.get("uuid")
    if uuid is not None and uuid.UUID not in _ENCODERS:
        _ENCODERS[uuid.UUID] = lambda v, d: {"$": "uuid", "v": v.hex}


# Hash flooding: at most this many items of one set, frozenset or map may collide. Items
# that share a hash but differ cost the host one equality test per pair when they are inserted,
# so a child could make the host build a set in O(n²) with its lock held. Distinct values that
# share a full hash are vanishingly rare in real data (ints, floats and Decimals hash by value
# modulo 2**61 - 1; strings and bytes by a per-process random key).
MAX_SHARED_HASH = 8
# Containers larger than this are built a slice at a time, with the thread's CPU time checked
# between slices: a last defence against probe sequences crafted from distinct hashes.
_GUARD_FROM = 4096
_HASH_SLICE = 4096
_GUARD_SLICE = 256
_GUARD_SECONDS = 0.005
_GUARD_SECONDS_PER_ITEM = 2e-6
MAX_NDIM = 32
# ndarray dtypes a child may send: numbers, bools, dates, fixed-size bytes and text. Never
# object (those travel as "items"), never a zero itemsize (an element count bytes cannot bound).
_DTYPE_KINDS = frozenset("biufcmMSUV")
_MAX_DECIMAL_EXPONENT = 100_000
_salt_value: list[int] = []


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


def _field(tree: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = tree.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise CodecError(f"malformed {tree.get('$')!r} value: field {name!r}")
    return value


def _decode_int(tree: dict[str, Any], depth: int) -> int:
    text = _field(tree, "v", str)
    if len(text) > 1_000_000:
        raise CodecError("encoded int is too long")
    return int(text, 16)  # base 16: linear in the digits, unlike base 10


def _decode_float(tree: dict[str, Any], depth: int) -> float:
    text = _field(tree, "v", str)
    if text not in ("nan", "inf", "-inf"):
        raise CodecError(f"malformed float {text[:20]!r}")
    return float(text)


def _decode_dict(tree: dict[str, Any], depth: int) -> dict[str, Any]:
    # String keys: the JSON parser built this dict already, with the process's random string
    # hashing, so there is nothing to flood here.
    mapping: dict[str, Any] = _field(tree, "v", dict)
    for key, item in mapping.items():
        kind = type(item)
        if kind is list or kind is dict:
            mapping[key] = _decode(item, depth)
    return mapping


def _decode_map(tree: dict[str, Any], depth: int) -> dict[Any, Any]:
    pairs = _field(tree, "v", list)
    keys: list[Any] = []
    values: list[Any] = []
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise CodecError("malformed 'map' entry")
        keys.append(pair[0])
        values.append(pair[1])
    pairs.clear()
    _decode_hashed(keys, depth, "map")
    _decode_list(values, depth)
    if len(keys) <= _GUARD_FROM:
        return dict(zip(keys, values, strict=True))
    result: dict[Any, Any] = {}
    _fill_guarded(result.update, keys, values, "map")
    return result


def _decode_items(build: Any) -> Any:
    def decoder(tree: dict[str, Any], depth: int) -> Any:
        items = _field(tree, "v", list)
        if build is tuple:
            return tuple(_decode_list(items, depth))
        _decode_hashed(items, depth, tree["$"])
        if len(items) <= _GUARD_FROM:
            return build(items)
        result: set[Any] = set()
        _fill_guarded(result.update, items, None, tree["$"])
        return result if build is set else frozenset(result)

    return decoder


def _decode_hashed(items: list[Any], depth: int, what: str) -> None:
    """Decode set items or map keys in place, refusing them as soon as more than
    MAX_SHARED_HASH share a hash with another (or one is unhashable).

    A slice at a time: a colliding set is refused after its first slice, not after decoding
    all of it, and no single step holds the interpreter for long. The hashes are kept XOR a
    secret random salt: kept bare (the child chooses them), this set could itself be given
    crafted probe sequences."""
    salted = _salt().__xor__
    seen: set[int] = set()
    collisions = 0
    for start in range(0, len(items), _HASH_SLICE):
        end = min(start + _HASH_SLICE, len(items))
        chunk = items[start:end]
        kinds = set(map(type, chunk))
        if list in kinds or dict in kinds:  # tags to decode (scalars stand for themselves)
            for index in range(start, end):
                kind = type(items[index])
                if kind is list or kind is dict:
                    items[index] = _decode(items[index], depth)
            chunk = items[start:end]
        before = len(seen)
        try:
            seen.update(map(salted, map(hash, chunk)))
        except TypeError:
            for item in chunk:
                _hash(item)
            raise
        collisions += end - start - (len(seen) - before)
        if collisions > MAX_SHARED_HASH:
            raise CodecError(
                f"a {what!r} value has more than {MAX_SHARED_HASH} items whose hashes collide "
                "(hash flooding); the host refuses to build it"
            )


def _hash(item: Any) -> int:
    try:
        return hash(item)
    except TypeError:
        raise CodecError(
            f"unhashable {type(item).__name__} used as a set item or map key"
        ) from None


def _salt() -> int:
    if not _salt_value:
        import os

        _salt_value.append(int.from_bytes(os.urandom(8), "little"))
    return _salt_value[0]


def _fill_guarded(update: Any, items: list[Any], values: list[Any] | None, what: str) -> None:
    """Insert items a slice at a time, refusing once the thread's CPU time outgrows a budget
    linear in the item count (a slow insert means a crafted probe sequence)."""
    import time

    started = time.thread_time()
    allowance = _GUARD_SECONDS + _GUARD_SECONDS_PER_ITEM * len(items)
    for start in range(0, len(items), _GUARD_SLICE):
        end = start + _GUARD_SLICE
        if values is None:
            update(items[start:end])
        else:
            update(zip(items[start:end], values[start:end], strict=True))
        if time.thread_time() - started > allowance:
            raise CodecError(
                f"building a {what!r} value of {len(items)} items took too long"
                " (crafted hash collisions); the host refuses to build it"
            )


def _decode_b64(tree: dict[str, Any]) -> bytes:
    return _b64decode(_field(tree, "v", str))


def _decode_complex(tree: dict[str, Any], depth: int) -> complex:
    parts = _field(tree, "v", list)
    if len(parts) != 2:
        raise CodecError("malformed 'complex' value")
    real, imag = (_decode(p, depth) for p in parts)
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

    return uuid.UUID(hex=_field(tree, "v", str)[:40])


def _decode_opaque(tree: dict[str, Any], depth: int) -> Opaque:
    text = _field(tree, "repr", str)
    if len(text) > _MAX_REPR + len(_TRUNCATED):
        text = text[:_MAX_REPR] + _TRUNCATED
    return Opaque(_field(tree, "type", str)[:200], text)


def _decode_ndarray(tree: dict[str, Any], depth: int) -> Any:
    numpy = _optional("numpy")
    shape = _field(tree, "shape", list)
    if len(shape) > MAX_NDIM or not all(type(n) is int and n >= 0 for n in shape):
        raise CodecError("malformed 'ndarray' shape")
    count = 1
    for n in shape:
        count *= n
    scalar = tree.get("scalar", False)
    if scalar is not False and (scalar is not True or shape):
        raise CodecError("malformed 'ndarray': only a shape of [] may be a scalar")
    if numpy is None:
        return Opaque(
            "numpy.ndarray", f"<numpy array of shape {tuple(shape)}; numpy is not installed here>"
        )
    if tree.get("dtype") == "object":
        items = _decode_list(_field(tree, "items", list), depth)
        if len(items) != count:
            raise CodecError(f"'ndarray' declares {count} elements but carries {len(items)}")
        array = numpy.empty(count, dtype=object)
        for index, item in enumerate(items):  # one by one: a list item must not broadcast
            array[index] = item
        result = array.reshape(shape)
    else:
        dtype = _allowed_dtype(numpy, tree.get("dtype"))
        data = _decode_b64(tree)
        if len(data) != count * dtype.itemsize:
            raise CodecError(
                f"'ndarray' declares shape {tuple(shape)[:MAX_NDIM]} of {dtype.str} "
                f"({count * dtype.itemsize} bytes) but carries {len(data)} bytes"
            )
        result = numpy.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return result[()] if scalar else result


def _allowed_dtype(numpy: Any, spec: Any) -> Any:
    if type(spec) is str and len(spec) <= 32:
        dtype = numpy.dtype(spec)
        if dtype.fields is not None or dtype.subdtype is not None:
            raise CodecError(f"'ndarray' dtype {spec!r} is not a plain dtype")
    elif type(spec) is list and 0 < len(spec) <= 256:
        fields: list[tuple[Any, ...]] = []
        for field in spec:
            if (
                type(field) is not list
                or len(field) not in (2, 3)
                or type(field[0]) is not str
                or len(field[0]) > 100
            ):
                raise CodecError("malformed 'ndarray' structured dtype")
            part = _allowed_dtype(numpy, field[1])
            if len(field) == 3:
                sub = field[2]
                if (
                    type(sub) is not list
                    or len(sub) > MAX_NDIM
                    or not all(type(n) is int and 0 < n <= 2**20 for n in sub)
                ):
                    raise CodecError("malformed 'ndarray' structured dtype shape")
                fields.append((field[0], part, tuple(sub)))
            else:
                fields.append((field[0], part))
        dtype = numpy.dtype(fields)
    else:
        raise CodecError("malformed 'ndarray' dtype")
    if dtype.hasobject or dtype.kind not in _DTYPE_KINDS or dtype.itemsize == 0:
        raise CodecError(f"'ndarray' dtype {dtype.str!r} is not allowed (object or empty)")
    return dtype


def _decode_series(tree: dict[str, Any], depth: int) -> Any:
    pandas = _optional("pandas")
    values = _decode_ndarray_field(tree, "v", depth)
    index = _decode_ndarray_field(tree, "index", depth)
    name = _decode(tree.get("name"), depth)
    if pandas is None or isinstance(values, Opaque) or isinstance(index, Opaque):
        return Opaque("pandas.Series", "<pandas Series; pandas is not installed here>")
    _check_column(values, len(index), "'series'")
    return pandas.Series(values, index=index, name=name, copy=False)


def _decode_dataframe(tree: dict[str, Any], depth: int) -> Any:
    pandas = _optional("pandas")
    columns = _decode_list(_field(tree, "columns", list), depth)
    data = _field(tree, "data", list)
    if len(columns) != len(data):
        raise CodecError("malformed 'dataframe': columns and data differ in length")
    index = _decode_ndarray_field(tree, "index", depth)
    for position in range(len(data)):
        data[position] = _decode_ndarray_field(data, position, depth)
    if pandas is None or isinstance(index, Opaque):
        return Opaque("pandas.DataFrame", "<pandas DataFrame; pandas is not installed here>")
    for column in data:
        _check_column(column, len(index), "'dataframe' column")
    frame = pandas.DataFrame(dict(enumerate(data)), index=index, copy=False)
    frame.columns = pandas.Index(columns, dtype=object if not columns else None)
    return frame


def _decode_ndarray_field(tree: Any, key: Any, depth: int) -> Any:
    # Series and data frame parts must be arrays: any other tag (a scalar, a list) would make
    # pandas broadcast it to the length of the index.
    node = tree[key]
    if type(node) is not dict or node.get("$") != "ndarray" or node.get("scalar", False):
        raise CodecError("malformed pandas value: its parts must be arrays")
    return _decode(node, depth)


def _check_column(array: Any, length: int, what: str) -> None:
    if isinstance(array, Opaque):
        return
    if array.ndim != 1 or len(array) != length:
        raise CodecError(f"{what} of shape {array.shape} does not match an index of {length}")


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
