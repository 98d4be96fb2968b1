"""What the model reads of the run_python tool: its description (with a stub of each host tool),
its one ``code`` argument, and the text of a failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._child_text import well_formed
from ._execution import DEFAULT_TEXT_CHARS, truncate_middle
from ._tool_doc import TOOL_DOC_CHARS, stub_header, tool_stub
from ._tools import Tool
from .errors import ExecutionError, ExecutionTimeout, SecurePyError

__all__ = [
    "CODE_DESCRIPTION",
    "DEFAULT_DESCRIPTION",
    "DESCRIPTION_BUDGET_CHARS",
    "TOOL_DESCRIPTION_CHARS",
    "code_problem",
    "code_schema",
    "describe_error",
    "describe_sandbox",
    "describe_tool",
    "shorten",
]

DEFAULT_DESCRIPTION = (
    "Run Python code in a persistent, sandboxed CPython session: variables and imports are "
    "kept between calls, like a notebook. The sandbox has no network access and cannot read "
    "host files. Anything printed is returned, followed by the value of the last expression."
)
CODE_DESCRIPTION = (
    "Python source to run in the persistent sandboxed session; what it prints is returned, "
    "then the value of its last expression."
)
#: Most characters of one host tool's docstring, in the run_python description and in
#: ``help()`` inside the session (a marker line says when it was cut).
TOOL_DESCRIPTION_CHARS = TOOL_DOC_CHARS
#: Past this many characters of stubs, further host tools are listed by signature only.
DESCRIPTION_BUDGET_CHARS = 16000


def code_schema() -> dict[str, Any]:
    """The run_python argument schema every adapter sends: one required ``code`` string.

    A fresh dict each call (callers and SDKs may mutate what they are given); strict-mode
    ready (no optional properties, ``additionalProperties: false``).
    """
    return {
        "type": "object",
        "properties": {"code": {"type": "string", "description": CODE_DESCRIPTION}},
        "required": ["code"],
        "additionalProperties": False,
    }


def code_problem(name: str, arguments: Any) -> str | None:
    """None when ``arguments`` is ``{"code": <str>}``; else the text telling the model why not.

    Args:
        name: the tool's name as the model sees it.
        arguments: the decoded arguments the model sent.
    """
    if isinstance(arguments, Mapping) and isinstance(arguments.get("code"), str):
        return None
    return (
        f'Error: {name} takes one argument, a "code" string, e.g. '
        f'{{"code": "print(1 + 1)"}}; got {shorten(arguments)}.'
    )


def describe_sandbox(tools: Iterable[Tool]) -> str:
    """:data:`DEFAULT_DESCRIPTION`, plus a Python stub of each host tool (:func:`describe_tool`).

    Budget: each stub's docstring is at most :data:`TOOL_DESCRIPTION_CHARS` characters (then
    cut, with a marker line); once the stubs pass :data:`DESCRIPTION_BUDGET_CHARS`, the
    remaining tools are listed by their ``def`` line only, and a last line says so (their
    docstrings stay readable inside the session through ``help(name)``).
    """
    listed: list[str] = []
    used = signature_only = 0
    for tool in tools:
        if used < DESCRIPTION_BUDGET_CHARS:
            stub = describe_tool(tool)
        else:
            stub = stub_header(tool) + " ..."
            signature_only += 1
        used += len(stub)
        listed.append(stub)
    if not listed:
        return DEFAULT_DESCRIPTION
    if signature_only:
        listed.append(
            f"[{signature_only} more host functions are listed by signature only: the "
            f"description's budget of {DESCRIPTION_BUDGET_CHARS:,} characters is spent; "
            "help(name) in the session shows a function's docstring.]"
        )
    return (
        DEFAULT_DESCRIPTION
        + "\nThese host functions are defined inside the session; call them like normal "
        "Python functions (they block until the host answers; a failure raises ToolError):\n\n"
        + "\n\n".join(listed)
    )


def describe_tool(tool: Tool, max_chars: int = TOOL_DESCRIPTION_CHARS) -> str:
    """One host tool as the model reads it: a ``def`` line with the return type, then a
    docstring with the whole description and each argument's description (from the
    description's own ``Args:`` section, else from the schema), cut to ``max_chars`` with a
    marker line. ``help(name)`` inside the session shows the same docstring."""
    return tool_stub(tool, max_chars)


def describe_error(error: SecurePyError, max_chars: int = DEFAULT_TEXT_CHARS) -> str:
    """A failure as text for a model: the output so far, then what went wrong."""
    parts = []
    stdout, stderr = getattr(error, "stdout", ""), getattr(error, "stderr", "")
    if stdout:
        parts.append(stdout.rstrip("\n"))
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    if isinstance(error, ExecutionError):
        parts.append(error.traceback.rstrip("\n") or str(error))
    elif isinstance(error, ExecutionTimeout):
        parts.append(f"Error: {error}")
    else:
        parts.append(f"Error ({type(error).__name__}): {error}")
    return truncate_middle(well_formed("\n".join(parts)), max_chars)


def shorten(value: Any, limit: int = 200) -> str:
    """At most ``limit`` characters of ``value``'s repr; never raises (a model's arguments may
    nest past the recursion limit or hold an int past the digit limit)."""
    try:
        text = repr(value)
    except Exception:  # RecursionError, ValueError, a broken __repr__
        return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[:limit] + "..."

