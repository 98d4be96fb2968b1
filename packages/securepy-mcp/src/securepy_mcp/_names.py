"""MCP tool names as Python function names: one documented rule, no collisions."""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable

__all__ = ["python_names"]


def python_names(names: Iterable[str], reserved: Iterable[str] = ()) -> list[str]:
    """Python function names for MCP tool names, in order, with no two alike.

    The rule: every character that is not a letter, digit or underscore becomes ``_``; a name
    that then starts with a digit or ``_`` gets ``tool_`` in front; a keyword or a builtin
    name (``list``, ``print``) gets ``_`` appended, so it does not shadow Python's own; a name
    already taken (earlier in ``names``, or in ``reserved``) gets ``_2``, ``_3``, ... appended.

    Example:
        >>> python_names(["get-weather", "db.query", "list", "2fa", "get_weather"])
        ['get_weather', 'db_query', 'list_', 'tool_2fa', 'get_weather_2']
    """
    taken = set(reserved)
    result = []
    for name in names:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name)
        if not base or base[0].isdigit() or base[0] == "_":
            base = "tool_" + base.lstrip("_")
        if keyword.iskeyword(base) or keyword.issoftkeyword(base) or hasattr(builtins, base):
            base += "_"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        result.append(candidate)
    return result
