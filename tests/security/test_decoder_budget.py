"""Bounded decoding: what the child sends costs the host memory and time in proportion to its
bytes, and nothing it sends makes the host build a container in quadratic time.

Each attack is tried twice: fed to the host's decoder directly (no process), and forged from
inside the sandbox on the worker's socket, as user code can. Each has its control: the same
shape, legitimately sized or legitimately built, is accepted.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import securepy
from securepy import _channel, _frame_cost
from securepy._worker import codec, hash_guard, protocol

from .test_ipc import RAW

P = 2**61 - 1  # CPython hashes ints, floats, Decimals modulo this prime
N = 20_000


def _parse(body: bytes) -> Any:
    """The host's own path for a frame: the channel's reader, its cost check, its errors."""
    reader = _channel._reader(protocol.MAX_FRAME_BYTES)
    reader.data += protocol.HEADER.pack(len(body)) + body
    try:
        return reader.next_message()
    except protocol.FrameError as exc:
        raise _channel._protocol_error(exc) from None


def _int(value: int) -> Any:
    return codec.encode(value)


def colliding(kind: str, n: int = N) -> Any:
    """Items of one hashable tag that all share one hash but differ."""
    if kind == "int":
        return [_int(1 + i * P) for i in range(1, n)]
    if kind == "decimal":
        return [{"$": "decimal", "v": str(Decimal(1 + i * P))} for i in range(1, n)]
    if kind == "float":  # floats of 2**k * m all hash as m * 2**(k mod 61)
        return [float(2 ** (61 * i)) for i in range(1, 17)]
    if kind == "complex":
        return [{"$": "complex", "v": [0.5, float(2 ** (61 * i))]} for i in range(1, 17)]
    if kind == "tuple":
        return [{"$": "tuple", "v": [_int(1 + i * P), 5]} for i in range(1, n)]
    if kind == "frozenset":
        return [{"$": "frozenset", "v": [_int(1 + i * P)]} for i in range(1, n)]
    if kind == "uuid":
        return [{"$": "uuid", "v": format(1 + i * P, "032x")} for i in range(1, min(n, 60))]
    raise AssertionError(kind)


HASHABLE = ["int", "decimal", "float", "complex", "tuple", "frozenset", "uuid"]
CONTAINERS = ["set", "frozenset", "map"]


def wrap(container: str, items: list[Any]) -> Any:
    if container == "map":
        return {"$": "map", "v": [[item, 1] for item in items]}
    return {"$": container, "v": items}


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("kind", HASHABLE)
def test_hash_flooded_containers_are_refused_fast(kind: str, container: str) -> None:
    tree = json.loads(json.dumps(wrap(container, colliding(kind))))
    started = time.perf_counter()
    with pytest.raises(codec.CodecError, match=r"hash flooding"):
        codec.decode(tree)
    assert time.perf_counter() - started < 2  # the old decoder took ~20 s on such sets


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("kind", HASHABLE)
def test_control_distinct_hashes_of_each_tag_build(kind: str, container: str) -> None:
    items = colliding(kind, 20)[: hash_guard.MAX_SHARED_HASH]
    tree = json.loads(json.dumps(wrap(container, items)))
    value = codec.decode(tree)
    assert len(value) == len(items)  # a few honest collisions are fine


def test_hash_flooding_is_refused_in_tool_arguments_too() -> None:
    message = {
        "kind": "tool_call",
        "call_id": 1,
        "name": "t",
        "args": {"keys": wrap("set", colliding("int"))},
    }
    body = protocol.encode_frame(message)[4:]
    parsed = _parse(body)
    with pytest.raises(codec.CodecError, match="hash flooding"):
        codec.decode(parsed["args"]["keys"])


def test_a_colliding_set_of_the_largest_frame_freezes_the_host_briefly() -> None:
    # The largest colliding set a 64 MiB frame can hold: ints that all hash alike.
    item = json.dumps(_int(1 + P)).encode()
    count = protocol.MAX_FRAME_BYTES // (len(item) + 1) // 4  # a quarter: keep the test quick
    tree = {"$": "set", "v": [_int(1 + i * P) for i in range(1, count)]}
    started = time.perf_counter()
    with pytest.raises(codec.CodecError, match="hash flooding"):
        codec.decode(tree)
    assert time.perf_counter() - started < 5


# -- memory ------------------------------------------------------------------------------------


def body_of(value_json: bytes) -> bytes:
    return b'{"kind":"result","value":' + value_json + b"}"


SHAPES = {
    "empty-lists": b"[" + b"[]," * 400_000 + b"[]]",
    "empty-objects": b"[" + b"{}," * 400_000 + b"{}]",
    "one-item-lists": b"[" + b"[0]," * 400_000 + b"[0]]",
    "empty-sets": b"[" + b'{"$":"set","v":[]},' * 100_000 + b"1]",
    "tiny-series": b"["
    + json.dumps(codec.encode(pd.Series([1]))).encode() * 0
    + b",".join([json.dumps(codec.encode(pd.Series([1]))).encode()] * 400)
    + b"]",
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_frames_that_would_cost_far_more_than_their_bytes_are_refused(shape: str) -> None:
    body = body_of(SHAPES[shape])
    tracemalloc.start()
    try:
        with pytest.raises(securepy.ProtocolError, match="over its budget"):
            _parse(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(body) + 1_000_000  # refused before anything was built


LEGIT = {
    "records": [{"id": i, "name": f"n{i % 100}"} for i in range(60_000)],
    "two-letter-words": [f"{i % 100:02d}" for i in range(300_000)],
    "ints": list(range(300_000)),
    "floats": [i / 7 for i in range(200_000)],
    "set-of-ints": set(range(100_000, 300_000)),
    "map": {i: str(i) for i in range(100_000)},
    "text": "x" * 3_000_000 + "é",
    "json-text": json.dumps([{"a": [1, 2], "b": {"c": None}}] * 50_000),
    "array": np.arange(500_000, dtype=np.float64),
    "data-frame": pd.DataFrame({"a": np.arange(100_000), "b": np.arange(100_000) * 0.5}),
}


@pytest.mark.parametrize("name", list(LEGIT))
def test_control_ordinary_large_values_decode_within_the_budget(name: str) -> None:
    value = LEGIT[name]
    body = protocol.encode_frame({"kind": "result", "value": codec.encode(value)})[4:]
    tracemalloc.start()
    try:
        decoded = codec.decode(_parse(body)["value"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(decoded, value)
    elif isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(decoded, value)
    else:
        assert decoded == value
    assert peak <= _frame_cost.COST_PER_BYTE * len(body) + _frame_cost.FREE_BYTES


def test_the_estimate_bounds_what_parsing_and_decoding_really_cost() -> None:
    for value in LEGIT.values():
        body = protocol.encode_frame({"kind": "result", "value": codec.encode(value)})[4:]
        tracemalloc.start()
        try:
            codec.decode(protocol.parse_body(body, protocol.CHILD_MESSAGES)["value"])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak <= _frame_cost.estimate_frame_cost(body) * 1.5 + 1_000_000


# -- arrays and data frames carry exactly what they declare -------------------------------------


def array_tree(**fields: Any) -> dict[str, Any]:
    return {"$": "ndarray", "dtype": "<f8", "shape": [2], "v": "AAAAAAAA8D8AAAAAAAAAQA==", **fields}


ARRAYS = {
    "broadcast-shape": array_tree(shape=[10**9]),
    "short-data": array_tree(shape=[3]),
    "too-many-dims": array_tree(shape=[1] * 40),
    "negative-dim": array_tree(shape=[-2]),
    "object-dtype-in-v": array_tree(dtype="|O"),
    "zero-itemsize": array_tree(dtype="|S0", shape=[10**12], v=""),
    "void-zero": array_tree(dtype="|V0", shape=[10**12], v=""),
    "structured-string": array_tree(dtype="f8,f8", shape=[1]),
    "subarray-string": array_tree(dtype="(1000000000,)f8", shape=[1]),
    "object-items-short": {"$": "ndarray", "dtype": "object", "shape": [10**9], "items": [1]},
    "scalar-with-shape": array_tree(scalar=True),
    "series-from-scalar": {
        "$": "series",
        "name": None,
        "index": codec.encode(np.arange(10**6)) and array_tree(),
        "v": array_tree(shape=[], v="AAAAAAAA8D8=", scalar=True),
    },
    "series-length-mismatch": {
        "$": "series",
        "name": None,
        "index": codec.encode(np.arange(5)),
        "v": array_tree(),
    },
    "frame-broadcast-column": {
        "$": "dataframe",
        "columns": ["a"],
        "index": codec.encode(np.arange(10**5)),
        "data": [array_tree(shape=[1], v="AAAAAAAA8D8=")],
    },
    "frame-columns-mismatch": {
        "$": "dataframe",
        "columns": ["a", "b"],
        "index": codec.encode(np.arange(2)),
        "data": [array_tree()],
    },
    "frame-list-column": {
        "$": "dataframe",
        "columns": ["a"],
        "index": codec.encode(np.arange(2)),
        "data": [[1, 2]],
    },
}


@pytest.mark.parametrize("attack", list(ARRAYS))
def test_arrays_and_frames_must_carry_exactly_their_declared_data(attack: str) -> None:
    tree = json.loads(json.dumps(ARRAYS[attack]))
    with pytest.raises(codec.CodecError):
        codec.decode(tree)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=np.int16).reshape(2, 3),
        np.array([1 + 2j], dtype=np.complex64),
        np.array(["ab", "c"]),
        np.array([b"x"]),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        np.float32(1.5),
        np.array([{"a": 1}, [1, 2]], dtype=object),
        pd.Series([1.0, 2.0], name="s"),
        pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}),
    ],
    ids=[
        "int16-2d",
        "complex64",
        "unicode",
        "bytes",
        "datetime",
        "structured",
        "scalar",
        "object",
        "series",
        "frame",
    ],
)
def test_control_real_arrays_and_frames_round_trip(value: Any) -> None:
    decoded = codec.decode(json.loads(json.dumps(codec.encode(value))))
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(decoded, value)
    elif isinstance(value, pd.Series):
        pd.testing.assert_series_equal(decoded, value)
    else:
        assert decoded.dtype == value.dtype and decoded.shape == value.shape
        assert decoded.tolist() == value.tolist()


def test_memory_errors_become_codec_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(tree: Any, depth: int) -> Any:
        raise MemoryError

    monkeypatch.setitem(codec._DECODERS, "bytes", exhausted)
    with pytest.raises(codec.CodecError, match="too large to rebuild in the host's memory"):
        codec.decode([{"$": "bytes", "v": ""}])


def test_opaque_text_is_capped_with_a_marker() -> None:
    value = codec.decode({"$": "opaque", "type": "x.Y", "repr": "r" * 10_000_000})
    assert len(value.text) == 2000 + len("...[truncated]")
    assert value.text.endswith("...[truncated]")
    assert codec.decode({"$": "opaque", "type": "x.Y", "repr": "short"}).text == "short"


# -- forged from inside the sandbox -------------------------------------------------------------

FORGED = {
    "colliding-set-result": 'body = b\'{"kind":"result","value":{"$":"set","v":[\' + '
    'b\',\'.join(b\'{"$":"int","v":"%x"}\' % (1 + i * (2**61 - 1)) for i in range(1, 50000))'
    " + b']}}'",
    "colliding-tool-args": 'body = b\'{"kind":"tool_call","call_id":1,"name":"echo",'
    '"args":{"x":{"$":"frozenset","v":[\' + b\',\'.join(b\'{"$":"decimal","v":"%d"}\''
    " % (1 + i * (2**61 - 1)) for i in range(1, 50000)) + b']}}}'",
    "tiny-containers": "body = b'{\"kind\":\"result\",\"value\":[' + b'[],' * 5000000 + b'1]}'",
    "broadcast-frame": 'body = b\'{"kind":"result","value":{"$":"ndarray","dtype":'
    '"<f8","shape":[100000000],"v":"AAAAAAAA8D8="}}\'',
}


@pytest.mark.parametrize("attack", list(FORGED))
def test_forged_hostile_frames_end_the_child_not_the_host(
    attack: str, sandboxes: Any, host: Any
) -> None:
    def echo(x: Any = None) -> str:
        """Echo."""
        return "ran"

    session = sandboxes(tools=[echo])
    assert host.value(session, "echo(frozenset({1, 2}))") == "ran"  # control
    started = time.monotonic()
    outcome = host.run(session, RAW + FORGED[attack] + "\nsend(body)\ntime.sleep(60)", timeout=30)
    assert outcome.error_type == "ProtocolError", outcome
    assert time.monotonic() - started < 15
    assert host.value(session, "{1 + i * (2**61 - 1) for i in range(8)} and 42") == 42


# -- validators must not rebuild what the decoder refused ---------------------------------------


def test_a_typed_tool_refuses_lists_and_keys_it_would_hash_into_a_flood() -> None:
    from securepy._tools import Tool

    def take(ids: set[int], names: dict[int, str] | None = None) -> int:
        """Take."""
        return len(ids)

    tool = Tool("take", "Take.", take)
    colliding = [1 + i * P for i in range(1, 20_000)]
    started = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"^take\(\): argument 'ids' holds many values that "
        r"share one hash \(hash flooding\); the call was refused$",
    ):
        tool.validate_arguments({"ids": colliding})
    with pytest.raises(ValueError, match="argument 'names' holds many values"):
        tool.validate_arguments({"ids": [1], "names": {str(n): "x" for n in colliding}})
    assert time.perf_counter() - started < 2
    # Control: the same sizes of distinct values validate.
    distinct = list(range(20_000))
    assert len(tool.validate_arguments({"ids": distinct})["ids"]) == 20_000
    names = tool.validate_arguments({"ids": [1], "names": {str(n): "x" for n in distinct}})
    assert len(names["names"]) == 20_000
