"""One audit record: any event's fields made JSON-safe and bounded, whatever the values.

Every value is recorded, whatever its type: ints past 64 bits (in hex), bytes, NaN, sets, any
object, non-JSON values as tagged text ``{"$type": "bytes", "length": 9, "text": "b'...'"}``.
Every node of a field spends from the field's character budget, so neither one huge value nor
millions of tiny ones can blow up a line; long text and long lists keep their head and their
tail around a marker, and long code or arguments also carry their full length and SHA-256, so
a payload placed past the cut is visible as such. A line that escaping still makes too long has
its largest fields replaced by their size and hash: no line exceeds ``MAX_LINE_BYTES``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from typing import Any

__all__ = [
    "ARGUMENTS_BUDGET",
    "CODE_LIMIT",
    "GENESIS_HASH",
    "HASH_SUFFIX",
    "MAX_LINE_BYTES",
    "TEXT_LIMIT",
    "build_record",
    "serialize",
    "utc_timestamp",
]

CODE_LIMIT = 10_000
TEXT_LIMIT = 4_000
ARGUMENTS_BUDGET = 4_000
MAX_LINE_BYTES = 32 * 1024
# The chain: the first line's prev_hash, and each line's end, ``, "hash": "<sha256>"}``.
GENESIS_HASH = "0" * 64
HASH_SUFFIX = re.compile(r', "hash": "([0-9a-f]{64})"\}\Z')
_MAX_DEPTH = 6
_MAX_ITEMS = 50
_HEAD_ITEMS = 40
_SAFE_INT = 2**63
_RESERVED = ("timestamp", "event", "session_id", "seq", "prev_hash", "hash")


def build_record(
    event: str, session_id: str, sequence: int, fields: dict[str, Any]
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timestamp": utc_timestamp(),
        "event": event,
        "session_id": session_id,
        "seq": sequence,
    }
    for key, value in fields.items():
        name = key if type(key) is str else _safe_repr(key)
        if name in _RESERVED:
            continue
        if name == "code" and isinstance(value, str):
            record.update(_bound_code(value, fields))
        elif name == "arguments":
            record.update(_bound_arguments(value))
        else:
            record[name[:200]] = _json_safe(value, [TEXT_LIMIT], 0)
    return _fit_line(record)


def _bound_code(code: str, fields: dict[str, Any]) -> dict[str, Any]:
    if len(code) <= CODE_LIMIT:
        return {"code": code}
    return {
        "code": _truncate(code, CODE_LIMIT),
        "code_length": len(code),
        "code_sha256": _sha256_text(code),
    }


def _bound_arguments(value: Any) -> dict[str, Any]:
    budget = [ARGUMENTS_BUDGET]
    bounded = _json_safe(value, budget, 0)
    if budget[0] >= 0 and not _was_cut(budget):
        return {"arguments": bounded}
    digest = hashlib.sha256()
    size = _digest_value(value, digest, 0)
    return {"arguments": bounded, "arguments_size": size, "arguments_sha256": digest.hexdigest()}


def _was_cut(budget: list[int]) -> bool:
    """Whether :func:`_json_safe` cut something while spending ``budget``."""
    return len(budget) > 1


def utc_timestamp() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_safe(value: Any, budget: list[int], depth: int) -> Any:
    """``value`` as JSON types within ``budget`` characters; non-JSON values as tagged text.

    ``budget[0]`` is what is left for the whole field; every node spends from it, so neither
    a huge value nor millions of tiny ones can blow up a line. A cut appends to ``budget``.
    """
    kind = type(value)
    if value is None or kind is bool:
        budget[0] -= 5
        return value
    if kind is int:
        budget[0] -= 20
        if -_SAFE_INT < value < _SAFE_INT:
            return value
        return _tagged("int", _truncate(hex(value), 200, budget), length=value.bit_length())
    if kind is float:
        budget[0] -= 24
        return value if math.isfinite(value) else _tagged("float", repr(value))
    if kind is str:
        # Half of what is left at most: the fields after a long text stay visible too.
        text = _truncate(value, max(budget[0] // 2, 40), budget)
        budget[0] -= len(text) + 2
        return text
    if depth >= _MAX_DEPTH or budget[0] <= 0:
        budget.append(1)
        return "...[cut: nested too deep or too large]"
    if kind is dict or isinstance(value, dict):
        result: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= _MAX_ITEMS or budget[0] <= 0:
                result["..."] = f"[cut: {len(value) - index} more items]"
                budget.append(1)
                break
            name = key if type(key) is str else _safe_repr(key)
            name = _truncate(name, 200, budget)
            budget[0] -= len(name) + 4
            result[name] = _json_safe(item, budget, depth + 1)
        return result
    if kind is list or kind is tuple:
        return _json_safe_items(value, budget, depth)
    if kind is set or kind is frozenset:
        return _tagged(
            kind.__name__,
            _json_safe_items(list(value), budget, depth),
            length=len(value),
            key="items",
        )
    if kind is bytes or kind is bytearray:
        budget[0] -= 200
        return _tagged(
            kind.__name__, _truncate(repr(bytes(value[:400])), 200, budget), length=len(value)
        )
    text = _truncate(_safe_repr(value), max(min(budget[0], TEXT_LIMIT), 40), budget)
    budget[0] -= len(text) + 40
    return _tagged(f"{kind.__module__}.{kind.__qualname__}"[:200], text)


def _json_safe_items(value: Any, budget: list[int], depth: int) -> list[Any]:
    items: list[Any] = []
    count = len(value)
    for index, item in enumerate(value):
        if budget[0] <= 0 or (count > _MAX_ITEMS and index == _HEAD_ITEMS):
            # Head and tail: what follows the cut stays visible.
            tail_start = max(index, count - (_MAX_ITEMS - _HEAD_ITEMS))
            items.append(f"...[cut: {tail_start - index} items]...")
            budget.append(1)
            if budget[0] > 0:
                items += [_json_safe(value[i], budget, depth + 1) for i in range(tail_start, count)]
            break
        items.append(_json_safe(item, budget, depth + 1))
    return items


def _tagged(
    type_name: str, text: Any, *, length: int | None = None, key: str = "text"
) -> dict[str, Any]:
    tag: dict[str, Any] = {"$type": type_name}
    if length is not None:
        tag["length"] = length
    tag[key] = text
    return tag


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ (or an int past the digit limit)
        return f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return text if type(text) is str else f"<{type(value).__name__}>"


def _truncate(text: str, limit: int, budget: list[int] | None = None) -> str:
    """``text`` if within ``limit``, else its head and tail around a marker saying how much
    was cut (the tail stays: a payload hidden past the cut is still seen)."""
    if len(text) <= limit:
        return text
    if budget is not None:
        budget.append(1)
    head = max(limit * 3 // 4, 1)
    tail = max(limit - head, 1)
    return f"{text[:head]}...[truncated: {len(text) - head - tail} characters]...{text[-tail:]}"


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _digest_value(value: Any, digest: Any, depth: int) -> int:
    """Feed a canonical form of ``value`` to ``digest``; return its size in bytes. Linear in
    the value's size (ints in hex, never through int-to-str)."""
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
    elif kind is bytes or kind is bytearray:
        data = bytes(value)
    elif kind is int:
        data = hex(value).encode()
    elif value is None or kind is bool or kind is float:
        data = repr(value).encode()
    elif depth < 200 and isinstance(value, dict):
        size = 0
        digest.update(b"{")
        for key, item in value.items():
            size += _digest_value(key, digest, depth + 1) + _digest_value(item, digest, depth + 1)
        digest.update(b"}")
        return size + 2
    elif depth < 200 and isinstance(value, list | tuple | set | frozenset):
        size = 0
        digest.update(b"[")
        for item in value:
            size += _digest_value(item, digest, depth + 1)
        digest.update(b"]")
        return size + 2
    else:
        data = _safe_repr(value).encode("utf-8", "surrogatepass")
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
    return len(data)


def _fit_line(record: dict[str, Any]) -> dict[str, Any]:
    """The record itself if its line fits ``MAX_LINE_BYTES``; else the same record with its
    largest fields replaced by their size and hash (escaping can grow text sixfold)."""
    size = len(serialize(record))
    if size <= MAX_LINE_BYTES - 300:  # room for prev_hash and hash
        return record
    fitted = dict(record)
    for key in sorted(
        (k for k in record if k not in _RESERVED), key=lambda k: -len(serialize({k: record[k]}))
    ):
        text = serialize(fitted[key])
        fitted[key] = {"$type": "cut", "length": len(text), "sha256": _sha256_text(text)}
        if len(serialize(fitted)) <= MAX_LINE_BYTES - 300:
            break
    return fitted


def serialize(record: dict[str, Any]) -> str:
    # ensure_ascii: every line is pure ASCII, so no value can carry a raw newline or an
    # invalid byte into the file; allow_nan=False because NaN is not JSON (values are safe).
    return json.dumps(record, ensure_ascii=True, allow_nan=False, default=_safe_repr)
