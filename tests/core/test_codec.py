"""Values to and from the tagged JSON tree, without any process."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from securepy._worker import codec


def round_trip(value: Any) -> Any:
    return codec.decode(json.loads(json.dumps(codec.encode(value), allow_nan=False)))


VALUES = {
    "none": None,
    "true": True,
    "int": 42,
    "huge-int": 2**300 + 1,
    "negative-huge-int": -(2**70),
    "float": 1.5,
    "negative-zero": -0.0,
    "inf": math.inf,
    "minus-inf": -math.inf,
    "str": "héllo\n\x00",
    "bytes": b"\x00\xff" * 10,
    "bytearray": bytearray(b"abc"),
    "list": [1, "a", None],
    "tuple": (1, (2, 3)),
    "dict": {"a": 1, "$": 2},
    "dict-non-str-keys": {1: "a", (2, 3): "b", None: "c"},
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
    "aware-datetime": datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC),
    "date": datetime.date(2024, 1, 2),
    "time": datetime.time(3, 4, 5),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": decimal.Decimal("3.14159265358979323846"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "complex": complex(1.5, -2),
    "nested": {"rows": [{"id": 1, "tags": ("a", "b")}]},
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_values_round_trip_exactly(value: Any) -> None:
    result = round_trip(value)
    assert result == value
    assert type(result) is type(value)


def test_nan_round_trips() -> None:
    assert math.isnan(round_trip(math.nan))


def test_tuple_and_list_stay_distinct() -> None:
    assert round_trip([(1, 2), [1, 2]]) == [(1, 2), [1, 2]]
    assert type(round_trip([(1, 2)])[0]) is tuple


def test_unknown_objects_arrive_opaque_with_type_and_repr() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    result = round_trip(Thing())
    assert isinstance(result, codec.Opaque)
    assert result.type_name.endswith("Thing")
    assert repr(result) == "<Thing 7>"


def test_too_deep_values_are_refused() -> None:
    value: list[Any] = []
    for _ in range(codec.MAX_VALUE_DEPTH + 5):
        value = [value]
    with pytest.raises(codec.CodecError, match="deeper than 100 levels"):
        codec.encode(value)


def test_numpy_arrays_round_trip() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = round_trip(array)
    assert result.dtype == np.float32 and result.shape == (3, 4)
    assert np.array_equal(result, array)
    assert round_trip(np.int64(7)) == np.int64(7)
    assert type(round_trip(np.int64(7))) is np.int64


def test_pandas_frames_and_series_round_trip() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[10, 20])
    pd.testing.assert_frame_equal(round_trip(frame), frame)
    series = pd.Series([1.5, 2.5], name="s")
    pd.testing.assert_series_equal(round_trip(series), series)


MALFORMED_TREES = {
    "unknown-tag": {"$": "pickle", "v": "x"},
    "no-tag": {"a": 1},
    "bad-int": {"$": "int", "v": "zz"},
    "bad-float": {"$": "float", "v": "1e400"},
    "bad-b64": {"$": "bytes", "v": "!!"},
    "unhashable-key": {"$": "map", "v": [[[1], 2]]},
    "unhashable-set-item": {"$": "set", "v": [[1]]},
    "bad-timedelta": {"$": "timedelta", "v": [1, 2]},
    "bad-decimal": {"$": "decimal", "v": "abc"},
    "bad-complex": {"$": "complex", "v": ["a", 1]},
    "bad-date": {"$": "date", "v": "never"},
    "bad-shape": {"$": "ndarray", "dtype": "<f8", "shape": [-1], "v": ""},
    "object-dtype-bytes": {"$": "ndarray", "dtype": "|O", "shape": [1], "v": "AAAAAAAAAAA="},
}


@pytest.mark.parametrize("tree", MALFORMED_TREES.values(), ids=MALFORMED_TREES.keys())
def test_malformed_trees_raise_codec_error(tree: Any) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(tree)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary() | st.decimals(allow_nan=False) | st.datetimes() | st.uuids(),
    lambda children: st.lists(children) | st.tuples(children, children)
    | st.dictionaries(st.text() | st.integers(), children)
    | st.frozensets(st.integers() | st.text()),
    max_leaves=30,
)


@given(json_like)
def test_round_trip_property(value: Any) -> None:
    assert round_trip(value) == value


def test_ints_up_to_the_limit_cross_and_larger_are_refused_before_sending() -> None:
    for value in (1 << 3_999_999, -(1 << 3_999_999)):  # control: the largest that cross
        assert codec.decode(json.loads(json.dumps(codec.encode(value)))) == value
    for value in (1 << 4_000_000, -(1 << 4_000_000)):
        with pytest.raises(codec.CodecError, match="over the 4000000-bit limit"):
            codec.encode(value)


@pytest.mark.sandbox
def test_returning_a_too_large_int_keeps_the_session() -> None:
    import securepy

    with securepy.Session() as session:
        session.execute("kept = 5")
        result = session.execute("1 << 4_000_000")  # was: ProtocolError, and the state lost
        assert isinstance(result.value, codec.Opaque)
        assert session.execute("kept").value == 5
