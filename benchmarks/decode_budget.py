"""What a child's frame costs the host to receive: decode time and peak memory per shape.

For frames of 1, 16 and 64 MiB of each hostile or ordinary shape, runs the host's own path for
one frame (the channel's cost check, the JSON parse, the codec's decode) and reports the time,
the peak of host memory traced by tracemalloc (as a multiple of the frame), and whether the
host built the value or refused the frame. Then the longest the host is busy on the largest
colliding set a frame may carry, and the cost of decoding a small result and small tool
arguments (the hot path) with this checkout's codec against another git revision's.

    uv run python benchmarks/decode_budget.py                  # every shape at 1, 16, 64 MiB
    uv run python benchmarks/decode_budget.py --sizes 1 16     # fewer sizes
    uv run python benchmarks/decode_budget.py --old-ref d6d51a8~3   # hot path, old vs new
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securepy import _channel
from securepy._worker import codec, hash_guard, protocol
from securepy.errors import ProtocolError

MIB = 1024 * 1024
P = 2**61 - 1


def _repeat(item: bytes, size: int) -> bytes:
    """A result frame body of about ``size`` bytes: ``[item,item,...,1]``."""
    count = max((size - 40) // (len(item) + 1), 1)
    return b'{"kind":"result","value":[' + (item + b",") * count + b"1]}"


def _value(value: Any) -> bytes:
    return protocol.encode_frame({"kind": "result", "value": codec.encode(value)})[4:]


def _ints(size: int) -> bytes:
    count = size // 8
    return _value(list(range(10**6, 10**6 + count)))


def _colliding_set(size: int) -> bytes:
    item = b'{"$":"int","v":"%x"}'
    count = size // (len(item % (1 + 10**6 * P)) + 1)
    items = b",".join(item % (1 + i * P) for i in range(1, count))
    return b'{"kind":"result","value":{"$":"set","v":[' + items + b"]}}"


def _big_ints(size: int) -> bytes:
    digits = 1_000_000  # the codec's largest int: a million hex digits
    count = max(size // (digits + 20), 1)
    return _repeat(b'{"$":"int","v":"' + b"f" * digits + b'"}', count * (digits + 21))


def _array(size: int) -> bytes:
    import numpy as np

    return _value(np.arange((size - 4096) * 3 // 4 // 8, dtype=np.float64))


def _records(size: int) -> bytes:
    count = size // 47
    return _value([{"id": i, "name": f"n{i % 1000}"} for i in range(count)])


SHAPES: dict[str, Callable[[int], bytes]] = {
    "empty lists [[],...]": lambda size: _repeat(b"[]", size),
    "one-item lists [[0],...]": lambda size: _repeat(b"[0]", size),
    "empty sets": lambda size: _repeat(b'{"$":"set","v":[]}', size),
    "broadcast ndarray": lambda size: _repeat(
        b'{"$":"ndarray","dtype":"<f8","shape":[1000000],"v":"AAAAAAAA8D8="}', size
    ),
    "colliding int set": _colliding_set,
    "long string": lambda size: b'{"kind":"result","value":"' + b"x" * (size - 30) + b'"}',
    "long string, one emoji": lambda size: _value("x" * (size - 40) + "\U0001f600"),
    "big ints (1M hex digits)": _big_ints,
    "two-letter strings": lambda size: _repeat(b'"ab"', size),
    "ints": _ints,
    "records": _records,
    "float64 ndarray": _array,
}


def measure(body: bytes) -> tuple[str, float, float]:
    """(outcome, seconds, peak bytes / frame bytes) for the host's path over one frame."""
    frame = protocol.HEADER.pack(len(body)) + body

    def receive() -> str:
        reader = _channel._reader(protocol.MAX_FRAME_BYTES)
        reader.data += frame
        try:
            message = reader.next_message()
        except protocol.FrameError as exc:
            return f"refused: {str(_channel._protocol_error(exc))[:60]}"
        assert message is not None
        try:
            codec.decode(message["value"])
        except codec.CodecError as exc:
            return f"refused: {str(exc)[:60]}"
        return "built"

    gc.collect()
    started = time.perf_counter()
    outcome = receive()
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    try:
        receive()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, seconds, peak / len(body)


def largest_freeze() -> None:
    body = _colliding_set(protocol.MAX_FRAME_BYTES - 64)
    count = body.count(b'"$":"int"')
    message = protocol.parse_body(body, protocol.CHILD_MESSAGES)
    started = time.perf_counter()
    with contextlib.suppress(codec.CodecError):
        codec.decode(message["value"])
    refused = time.perf_counter() - started
    print(
        f"\nlargest colliding set ({count} ints sharing one hash, a {len(body) / MIB:.0f} MiB"
        f" frame): the decoder refuses it after {refused * 1000:.1f} ms (its first slice of "
        f"{hash_guard.HASH_SLICE} items); built unchecked it would take hours:"
    )
    for n in (1_000, 2_000, 4_000):
        few = [1 + i * P for i in range(n)]
        started = time.perf_counter()
        set(few)
        print(
            f"  set() of {n} such ints, unchecked: {(time.perf_counter() - started) * 1000:.0f} ms"
        )


SMALL_RESULT = {
    "rows": [{"id": 1, "name": "a", "tags": ("x", "y")}],
    "count": 1,
    "ok": True,
    "ratio": 0.5,
}
SMALL_ARGS = {"table": "users", "limit": 10, "filters": {"active": True}}


def hot_path(old_ref: str | None) -> None:
    modules = {"new": codec}
    if old_ref is not None:
        modules["old"] = _codec_at(old_ref)
    trees = {
        name: json.dumps(codec.encode(value))
        for name, value in (("small result", SMALL_RESULT), ("small tool args", SMALL_ARGS))
    }
    print("\nhot path: decode one small value, median of 7 rounds of 20,000 (µs)")
    for label, text in trees.items():
        cells = []
        for name, module in modules.items():
            rounds = []
            for _ in range(7):
                batch = [json.loads(text) for _ in range(20_000)]
                started = time.perf_counter()
                for tree in batch:
                    module.decode(tree)
                rounds.append((time.perf_counter() - started) / 20_000 * 1e6)
            cells.append(f"{name} {statistics.median(rounds):.2f}")
        print(f"  {label:18} " + "   ".join(cells))


def _codec_at(ref: str) -> Any:
    source = subprocess.run(
        ["git", "show", f"{ref}:packages/securepy-core/src/securepy/_worker/codec.py"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_codec.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_codec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 16, 64], help="frame sizes in MiB"
    )
    parser.add_argument("--old-ref", default=None, help="git revision for the hot-path row")
    parser.add_argument("--shapes", nargs="*", default=None, help="only these shapes")
    args = parser.parse_args()
    print(f"{'shape':28} {'MiB':>4} {'time':>8} {'peak':>7}  outcome")
    for name, make in SHAPES.items():
        if args.shapes and name not in args.shapes:
            continue
        for size in args.sizes:
            body = make(min(size * MIB, protocol.MAX_FRAME_BYTES - 64))
            try:
                outcome, seconds, peak = measure(body)
            except ProtocolError as exc:  # pragma: no cover - reported, not raised
                outcome, seconds, peak = f"error {exc}", 0.0, 0.0
            print(f"{name:28} {len(body) / MIB:4.0f} {seconds:7.2f}s {peak:6.1f}x  {outcome}")
            del body
    largest_freeze()
    hot_path(args.old_ref)


if __name__ == "__main__":
    sys.exit(main())
