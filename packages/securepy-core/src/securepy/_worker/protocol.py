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
    host -> child   execute     (code, filename, turn)
    child -> host   output*     (stream, text)                 streamed while the code runs
    child -> host   display*    (data: MIME bundle)            display() and figures, in order
    child -> host   tool_call   (call_id, name, args, solo)    each answered by the host with
    host -> child   tool_result (call_id, ok, value | error)   a tool_result for that call_id;
                                                               several may be in flight at once
    child -> host   result (value, turn) | error (type, message,    exactly one
                    traceback, limit, turn)
    between executes, for session.files (one request at a time):
    host -> child   files       (op, path, data?, offset?, max?)
    child -> host   file_chunk* (data: base64)                 a read's content
    child -> host   file_reply  (ok, error?, detail?, size?, entries?)   exactly one

The host interrupts a running turn with SIGINT from outside, never with a frame: the worker
runs user code on its only reading thread.
"""

from __future__ import annotations

import _socket
import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from collections.abc import Callable
    from typing import Any

    _Schema = dict[str, tuple[Any, bool]]  # key -> (type(s) or _ANY, required)

__all__ = [
    "CHILD_MESSAGES",
    "HEADER",
    "HOST_MESSAGES",
    "MAX_DEPTH",
    "MAX_FILE_ENTRIES",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "SPIN_BACKOFF_MAX",
    "SPIN_SECONDS",
    "FrameError",
    "FrameReader",
    "FrameTooLarge",
    "Spinner",
    "check_depth",
    "encode_frame",
    "encode_frame_with_data",
    "parse_body",
]

PROTOCOL_VERSION = 1
# Large enough that a 10 MB tool result (base64 or escaped text) crosses intact.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# JSON nesting allowed in one frame: the codec's value depth plus the envelope.
MAX_DEPTH = 256
HEADER = struct.Struct(">I")
# Entries a files "list" reply holds at most (the worker stops there; the host refuses more).
MAX_FILE_ENTRIES = 10_000

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
    "display": {"data": (dict, True)},
    "file_chunk": {"data": (str, True)},
    "file_reply": {
        "ok": (bool, True),
        "error": (str, False),
        "detail": (str, False),
        "size": (int, False),
        "entries": (list, False),
    },
    # "turn": the execute's, echoed (absent only in an error before the first turn).
    "result": {"value": (_ANY, True), "turn": (int, False)},
    "error": {
        "type": (str, True),
        "message": (str, True),
        "traceback": (str, True),
        "limit": ((str, type(None)), False),
        "turn": (int, False),
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
        "font_cache": (str, False),
        "address_space": ((int, type(None)), False),
        "thread_stack": (int, False),
    },
    "execute": {"code": (str, True), "filename": (str, True), "turn": (int, False)},
    "files": {
        "op": (str, True),
        "path": (str, True),
        "data": (str, False),
        "offset": (int, False),
        "max": (int, False),
    },
    "tool_result": {
        "call_id": (int, True),
        "ok": (bool, True),
        "value": (_ANY, False),
        "error": (dict, False),
    },
}


class FrameError(ValueError):
    """A frame broke the protocol: too large, not JSON, too deep, or not a known message."""


class FrameTooLarge(FrameError):
    """A frame's declared length is over the receiver's cap (refused before its body)."""


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


def encode_frame_with_data(message: dict[str, Any], data: bytes) -> bytes:
    """``message`` plus ``"data"``: ``data`` as base64, as one frame. The base64 text needs no
    JSON escaping, so it is spliced in rather than run through the encoder (for the megabytes
    a file carries, that halves the cost)."""
    import binascii

    head = _dumps(message).encode("utf-8", "surrogatepass")
    body = b"".join((head[:-1], b',"data":"', binascii.b2a_base64(data, newline=False), b'"}'))
    return HEADER.pack(len(body)) + body


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
    except MemoryError:
        raise FrameError("frame is too large to parse in this process's memory") from None
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
    """Raise FrameError if ``tree`` nests lists/dicts deeper than ``limit``; iterative.

    The stack holds one iterator per open container, so its memory is bounded by ``limit``,
    not by the number of items (a frame of a million empty lists must not cost a million
    stack entries)."""
    stack: list[Any] = [iter((tree,))]
    while stack:
        for node in stack[-1]:
            kind = type(node)
            if kind is dict:
                node = node.values()
            elif kind is not list:
                continue
            if len(stack) > limit:
                raise FrameError(f"frame nests deeper than {limit} levels")
            stack.append(iter(node))
            break
        else:
            stack.pop()


class FrameReader:
    """Bytes received so far, cut into validated messages; the one framer of both ends.

    The length cap is checked as soon as a header is in, before the body is read. A frame is
    taken off the buffer only once it is whole, so an interrupted read never leaves the stream
    out of step. ``data`` is public: the caller appends what its socket returned.
    """

    __slots__ = ("_check_cost", "_schemas", "data", "max_frame_bytes")

    def __init__(self, schemas: dict[str, _Schema], max_frame_bytes: int,
                 check_cost: Any = None) -> None:
        self._schemas = schemas
        self.max_frame_bytes = max_frame_bytes
        self.data = bytearray()
        # The host's check that a body's parse and decode fit its memory budget (raises
        # FrameError); the worker trusts the host's frames and passes none.
        self._check_cost = check_cost

    def next_message(self) -> dict[str, Any] | None:
        """The next whole message in the buffer, or None until more bytes arrive.

        Raises:
            FrameTooLarge: the next frame declares a length over the cap.
            FrameError: the frame is whole but not a valid message.
        """
        body = self.next_body()
        return None if body is None else self.parse(body)

    def next_body(self) -> bytes | None:
        """The next whole frame's body, unparsed (for a caller that parses large ones
        elsewhere, with :meth:`parse`), or None until more bytes arrive.

        Raises:
            FrameTooLarge: the next frame declares a length over the cap.
        """
        data = self.data
        if len(data) < _HEADER_SIZE:
            return None
        (length,) = HEADER.unpack_from(data)
        if length > self.max_frame_bytes:
            raise FrameTooLarge(
                f"a frame of {length} bytes, over the {self.max_frame_bytes}-byte cap "
                "(max_frame_bytes)"
            )
        end = _HEADER_SIZE + length
        if len(data) < end:
            return None
        body = bytes(data[_HEADER_SIZE:end])
        del data[:end]
        return body

    def parse(self, body: bytes) -> dict[str, Any]:
        """A frame body, its cost checked, as a validated message (see :func:`parse_body`)."""
        if self._check_cost is not None:
            self._check_cost(body)
        return parse_body(body, self._schemas)

    def receive(self, recv: Callable[[int], bytes]) -> dict[str, Any]:
        """The next message, reading with ``recv(size)`` as long as none is whole. ``recv``
        returns at least one byte, or raises (end of stream, deadline): each end supplies its
        own socket policy (the host's deadline and spin, the worker's exit on hang-up).

        Raises:
            FrameError: as :meth:`next_message`.
        """
        while True:
            if self.data:
                message = self.next_message()
                if message is not None:
                    return message
            chunk = recv(self.wanted())
            message = self.parse_whole(chunk)
            if message is not None:
                return message
            self.data += chunk

    def parse_whole(self, chunk: bytes) -> dict[str, Any] | None:
        """``chunk`` parsed, if it is exactly one whole frame within the cap and nothing is
        buffered (the usual case, which then skips the buffer); else None, and the caller
        appends ``chunk`` to ``data``."""
        if self.data or len(chunk) < _HEADER_SIZE:
            return None
        (length,) = HEADER.unpack_from(chunk)
        if length != len(chunk) - _HEADER_SIZE or length > self.max_frame_bytes:
            return None
        body = chunk[_HEADER_SIZE:]
        if self._check_cost is not None:
            self._check_cost(body)
        return parse_body(body, self._schemas)

    def wanted(self) -> int:
        """How many bytes to ask the socket for next: the rest of the frame, at least 64 KiB."""
        data = self.data
        if len(data) >= _HEADER_SIZE:
            length: int = HEADER.unpack_from(data)[0]
            return max(_HEADER_SIZE + min(length, self.max_frame_bytes) - len(data), 65536)
        return 65536


_HEADER_SIZE = HEADER.size

# How long a receive polls before it sleeps. The peer's answer usually comes within tens of
# microseconds, and waking a thread or process that slept costs as much again (on a virtual
# machine, several times that when the peer ran on another CPU).
SPIN_SECONDS = 100e-6
SPIN_BACKOFF_MAX = 64
# Windows has neither: there a receive never spins, it sleeps on the socket at once.
_DONTWAIT: int | None = getattr(_socket, "MSG_DONTWAIT", None)
_yield = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


class Spinner:
    """Polls a socket briefly before the caller sleeps on it; after a spin in vain (an idle
    peer, or CPUs too busy to answer in time) the next receives skip spinning, longer each
    time, so an idle session does not burn CPU."""

    __slots__ = ("_backoff", "_skips")

    def __init__(self) -> None:
        self._backoff = 0
        self._skips = 0

    def recv(self, sock: Any, size: int) -> bytes | None:
        """Up to ``size`` bytes from ``sock`` if some arrive within SPIN_SECONDS, else None
        (and the caller waits as it would have without spinning)."""
        if self._skips:
            self._skips -= 1
            return None
        if _DONTWAIT is None:
            return None
        give_up = time.monotonic() + SPIN_SECONDS
        while True:
            try:
                chunk: bytes = sock.recv(size, _DONTWAIT)
            except BlockingIOError:
                if time.monotonic() <= give_up:
                    _yield()  # a runnable thread on this CPU goes first
                    continue
                self._backoff = min(self._backoff * 2 or 1, SPIN_BACKOFF_MAX)
                self._skips = self._backoff
                return None
            self._backoff //= 2
            return chunk
