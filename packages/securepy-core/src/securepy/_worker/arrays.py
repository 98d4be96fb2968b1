"""numpy arrays and pandas Series and DataFrames in the codec's tagged tree. Stdlib only:
numpy and pandas are used only where the values already exist (encoding) or where the package
is importable (decoding; elsewhere they decode as opaque values).

Decoding is strict: an array's data must match the shape and dtype it declares (a few bytes must
not stand for a huge array), dtypes are plain numbers, dates or fixed-size text, never object
(object arrays travel as encoded items), and a Series' or DataFrame's parts must be arrays of the
index's length (anything else would make pandas broadcast it).
"""

from __future__ import annotations

import sys

from .codec_base import CodecError, Opaque, b64decode, b64encode, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Coder = Callable[[Any, int], Any]

__all__ = [
    "decode_dataframe",
    "decode_ndarray",
    "decode_series",
    "encode_dataframe",
    "encode_ndarray",
    "encode_series",
]

MAX_NDIM = 32
# ndarray dtypes a child may send: numbers, bools, dates, fixed-size bytes and text. Never
# object (those travel as "items"), never a zero itemsize (an element count bytes cannot bound).
_DTYPE_KINDS = frozenset("biufcmMSUV")


def encode_ndarray(
    array: Any, depth: int, encode: Coder, *, scalar: bool = False
) -> dict[str, Any]:
    """An array (or, with ``scalar``, a numpy scalar as a 0-d array); ``encode``: the codec's
    own, for the items of an object array."""
    tree: dict[str, Any] = {"$": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape)}
    if scalar:
        tree["scalar"] = True
    if array.dtype.hasobject:
        tree["dtype"] = "object"
        tree["items"] = [encode(item, depth) for item in array.ravel().tolist()]
    else:
        tree["dtype"] = array.dtype.descr if array.dtype.fields else array.dtype.str
        tree["v"] = b64encode(array.tobytes(order="C"))
    return tree


def encode_series(series: Any, depth: int, encode: Coder) -> dict[str, Any]:
    return {
        "$": "series",
        "name": encode(series.name, depth),
        "index": encode_ndarray(series.index.to_numpy(), depth, encode),
        "v": encode_ndarray(series.to_numpy(), depth, encode),
    }


def encode_dataframe(frame: Any, depth: int, encode: Coder) -> dict[str, Any]:
    return {
        "$": "dataframe",
        "columns": [encode(c, depth) for c in frame.columns.tolist()],
        "index": encode_ndarray(frame.index.to_numpy(), depth, encode),
        "data": [
            encode_ndarray(frame.iloc[:, i].to_numpy(), depth, encode)
            for i in range(frame.shape[1])
        ],
    }


def decode_ndarray(tree: dict[str, Any], depth: int, decode: Coder) -> Any:
    numpy = _optional("numpy")
    shape = field(tree, "shape", list)
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
        items = _decode_all(field(tree, "items", list), depth, decode)
        if len(items) != count:
            raise CodecError(f"'ndarray' declares {count} elements but carries {len(items)}")
        array = numpy.empty(count, dtype=object)
        for index, item in enumerate(items):  # one by one: a list item must not broadcast
            array[index] = item
        result = array.reshape(shape)
    else:
        dtype = _allowed_dtype(numpy, tree.get("dtype"))
        data = b64decode(field(tree, "v", str))
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


def decode_series(tree: dict[str, Any], depth: int, decode: Coder) -> Any:
    pandas = _optional("pandas")
    values = _array_part(tree, "v", depth, decode)
    index = _array_part(tree, "index", depth, decode)
    name = decode(tree.get("name"), depth)
    if pandas is None or isinstance(values, Opaque) or isinstance(index, Opaque):
        return Opaque("pandas.Series", "<pandas Series; pandas is not installed here>")
    _check_column(values, len(index), "'series'")
    return pandas.Series(values, index=index, name=name, copy=False)


def decode_dataframe(tree: dict[str, Any], depth: int, decode: Coder) -> Any:
    pandas = _optional("pandas")
    columns = _decode_all(field(tree, "columns", list), depth, decode)
    data = field(tree, "data", list)
    if len(columns) != len(data):
        raise CodecError("malformed 'dataframe': columns and data differ in length")
    index = _array_part(tree, "index", depth, decode)
    for position in range(len(data)):
        data[position] = _array_part(data, position, depth, decode)
    if pandas is None or isinstance(index, Opaque):
        return Opaque("pandas.DataFrame", "<pandas DataFrame; pandas is not installed here>")
    for column in data:
        _check_column(column, len(index), "'dataframe' column")
    frame = pandas.DataFrame(dict(enumerate(data)), index=index, copy=False)
    frame.columns = pandas.Index(columns, dtype=object if not columns else None)
    return frame


def _array_part(tree: Any, key: Any, depth: int, decode: Coder) -> Any:
    # Series and data frame parts must be arrays: any other tag (a scalar, a list) would make
    # pandas broadcast it to the length of the index.
    node = tree[key]
    if type(node) is not dict or node.get("$") != "ndarray" or node.get("scalar", False):
        raise CodecError("malformed pandas value: its parts must be arrays")
    return decode(node, depth)


def _check_column(array: Any, length: int, what: str) -> None:
    if isinstance(array, Opaque):
        return
    if array.ndim != 1 or len(array) != length:
        raise CodecError(f"{what} of shape {array.shape} does not match an index of {length}")


def _decode_all(items: list[Any], depth: int, decode: Coder) -> list[Any]:
    for index, item in enumerate(items):
        items[index] = decode(item, depth)
    return items


def _optional(name: str) -> Any:
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return __import__(name)
    except ImportError:
        return None
