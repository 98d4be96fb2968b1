"""The child's text, bounded before it becomes a host object: error messages and tracebacks,
refused calls' arguments, and the tool replies the host sends back in. Everything here costs
time linear in what it keeps, never in what the child sent beyond that."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ExecutionError, ResourceLimitError, SecurePyError

__all__ = [
    "MAX_ERROR_TEXT",
    "MAX_REFUSED_ARGUMENTS",
    "approximate_size",
    "bounded_arguments",
    "capped",
    "error_from",
    "error_reply",
    "well_formed",
]

# Characters of the child's error message and of its traceback kept on the host (each).
MAX_ERROR_TEXT = 20_000
# Characters of a refused call's arguments (roughly, as decoded) kept in its record.
MAX_REFUSED_ARGUMENTS = 1_000

_LIMIT_NAMES = {"memory", "cpu_seconds", "file_size", "processes", "open_files", "workspace",
                "output"}


def well_formed(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD.

    JSON lets the child send lone surrogates (``"\\ud800"``, or ``print('\\ud800')``), which a
    Python str holds but no UTF-8 encoder takes: kept as they are, they would raise
    UnicodeEncodeError in whatever the host hands the text to next (an LLM client, a log file,
    a database), far from here.
    """
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def error_from(message: dict[str, Any], sanitize: Callable[[str], str], stdout: str,
               stderr: str) -> SecurePyError:
    """The host error for the child's ``error`` message, its text capped and made well-formed
    before it is sanitized or kept."""
    type_name = well_formed(message["type"][:200])
    text = sanitize(well_formed(capped(message["message"])))
    limit = message.get("limit")
    if limit in _LIMIT_NAMES:
        return ResourceLimitError(
            f"the code hit the {limit} limit: {type_name}: {text}"[:2000],
            limit=limit, state_kept=True,
        )
    traceback = sanitize(well_formed(capped(message["traceback"])))
    return ExecutionError(type_name, text, traceback=traceback, stdout=stdout, stderr=stderr)


def error_reply(call_id: int, type_name: str, text: str, *, kind: str = "tool") -> dict[str, Any]:
    """A ``tool_result`` frame that raises ToolError (or PolicyError) inside the sandbox."""
    return {"kind": "tool_result", "call_id": call_id, "ok": False,
            "error": {"type": type_name, "message": text, "kind": kind}}


def capped(text: str) -> str:
    """The child's text within MAX_ERROR_TEXT characters, with a marker where it was cut."""
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return text[:MAX_ERROR_TEXT] + f"\n...[truncated: {len(text) - MAX_ERROR_TEXT} more characters]"


def bounded_arguments(raw: dict[str, Any]) -> dict[str, Any]:
    """A refused call's arguments for its record: as sent if small, else only their size."""
    size = approximate_size(raw)
    if size <= MAX_REFUSED_ARGUMENTS:
        return raw
    return {"[arguments not kept]": f"about {size} characters"}


def approximate_size(tree: Any) -> int:
    """Characters of strings plus 8 per other leaf, iteratively (no recursion limit)."""
    size = 0
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str | bytes):
            size += len(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
        else:
            size += 8
    return size
