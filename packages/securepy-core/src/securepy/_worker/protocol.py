"""The wire protocol between the host and the worker. Stdlib only: this runs inside the sandbox.

Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object with
a ``kind``. The receiver rejects a length over its cap before reading the body, parses the JSON,
checks its nesting depth, then checks the kind, the keys and their types against the tables
below. Values (tool arguments, results, the final value) travel as codec trees (codec.py).

A session's life:

    host -> child   configure   (tools, limits, sys.path,      once, right after the start
                                 modules to preload)
    child -> host   ready       (version, pid)                 once
    then, per execute (one turn at a time):
    host -> child   execute     (code, filename)
    child -> host   output*     (stream, text)                 streamed while the code runs
    child -> host   tool_call   (call_id, name, args, solo)    each answered by the host with
    host -> child   tool_result (call_id, ok, value | error)   a tool_result for that call_id;
                                                               several may be in flight at once
    child -> host   result (value) | error (type, message, traceback, limit)   exactly one

The host interrupts a running turn with SIGINT from outside, never with a frame: the worker
runs user code on its only reading thread.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

    _Schema = dict[str, tuple[Any, bool]]  # key -> (type(s) or _ANY, required)

__all__ = [
    "CHILD_MESSAGES",
    "HEADER",
    "HOST_MESSAGES",
    "MAX_DEPTH",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "FrameError",
    "check_depth",
    "encode_frame",
    "parse_body",
]

PROTOCOL_VERSION = 1
# Large enough that a 10 MB tool result (base64 or escaped text) crosses intact.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# JSON nesting allowed in one frame: the codec's value depth plus the envelope.
MAX_DEPTH = 256
HEADER = struct.Struct(">I")

_ANY = object()

CHILD_MESSAGES: dict[str, _Schema] = {
    "ready": {"version": (int, True), "pid": (int, True)},
    "output": {"stream": (str, True), "text": (str, True)},
    "tool_call": {
        "call_id": (int, True),
        "name": (str, True),
        "args": (dict, True),
        "solo": (bool, False),
    },
    "result": {"value": (_ANY, True)},
    "error": {
        "type": (str, True),
        "message": (str, True),
        "traceback": (str, True),
        "limit": ((str, type(None)), False),
    },
}

HOST_MESSAGES: dict[str, _Schema] = {
    "configure": {
        "version": (int, True),
        "tools": (list, True),
        "limits": (dict, True),
        "path": (list, True),
        "nproc": (bool, True),
        "preload": (list, False),
        "max_frame_bytes": (int, False),
    },
    "execute": {"code": (str, True), "filename": (str, True)},
    "tool_result": {
        "call_id": (int, True),
        "ok": (bool, True),
        "value": (_ANY, False),
        "error": (dict, False),
    },
}


class FrameError(ValueError):
    """A frame broke the protocol: too large, not JSON, too deep, or not a known message."""


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a frame")


try:
    # The json package's C core, used directly: the json package itself imports re (and enum),
    # which costs milliseconds at every start of the worker.
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    import json

    def _dumps(message: dict[str, Any]) -> str:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def _loads(text: str) -> Any:
        return json.loads(text, parse_constant=_refuse_constant)

else:

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(_refuse_constant)

    def _not_serializable(value: object) -> None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    _scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
    _encode = _json.make_encoder(
        None, _not_serializable, _json.encode_basestring, None, ":", ",", False, False, False
    )

    def _dumps(message: dict[str, Any]) -> str:
        return "".join(_encode(message, 0))

    def _loads(text: str) -> Any:
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            raise ValueError("expected a JSON value at the start") from None
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise ValueError(f"extra data after the JSON value at {end}")
        return value


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialize one message as a length-prefixed frame."""
    data = _dumps(message).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(data)) + data


def parse_body(body: bytes, schemas: dict[str, _Schema]) -> dict[str, Any]:
    """Parse and validate one frame body against ``schemas``.

    Raises:
        FrameError: the body is not valid UTF-8 JSON, too deep, or not a known message.
    """
    try:
        message = _loads(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not valid JSON: {str(exc)[:200]}") from None
    if len(body) > 2 * MAX_DEPTH:  # shorter bodies cannot nest that deep
        check_depth(message, MAX_DEPTH)
    if not isinstance(message, dict):
        raise FrameError(f"frame must hold a JSON object, got {type(message).__name__}")
    kind = message.get("kind")
    schema = schemas.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise FrameError(f"unknown message kind {str(kind)[:50]!r}")
    for key in message:
        if key != "kind" and key not in schema:
            raise FrameError(f"unexpected key {key[:50]!r} in a {kind!r} message")
    for key, (expected, required) in schema.items():
        if key not in message:
            if required:
                raise FrameError(f"missing key {key!r} in a {kind!r} message")
            continue
        value = message[key]
        if expected is _ANY:
            continue
        if isinstance(value, bool) and expected is int:
            raise FrameError(f"key {key!r} of a {kind!r} message must be an integer")
        if not isinstance(value, expected):
            raise FrameError(f"key {key!r} of a {kind!r} message has the wrong type")
    return message


def check_depth(tree: Any, limit: int) -> None:
    """Raise FrameError if ``tree`` nests lists/dicts deeper than ``limit``; iterative."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise FrameError(f"frame nests deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
