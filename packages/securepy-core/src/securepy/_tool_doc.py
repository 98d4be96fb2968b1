"""How a host tool reads, to the model and to ``help()`` inside the sandbox: a ``def`` line with
its return type, and a docstring holding its whole description and each argument's description.

The argument descriptions come from the description itself when it documents its arguments (a
Google ``Args:`` section, or ``:param x:`` lines), else from the ``description`` of each property
of the tool's JSON Schema (``Annotated[str, Field(description=...)]`` on a typed function, or a
native framework tool's schema), written as an ``Args:`` section.

Budget: one tool's docstring is at most :data:`TOOL_DOC_CHARS` characters plus a one-line marker
where it was cut (``[... cut: this docstring has 5,210 characters, over 2,000]``). Over the
budget the description is cut first, so the arguments' section (the description's own ``Args:``
and what follows it, or the generated one) survives unless it alone is more than half the
budget. The same docstring is the run_python description's stub of the tool
(``securepy.adapters``) and the function's ``__doc__`` inside the sandbox; the worker receives
it already bounded.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Mapping
from typing import Any, Protocol

from ._schema import JSON_TYPE_NAMES

__all__ = [
    "TOOL_DOC_CHARS",
    "return_type_text",
    "schema_type_text",
    "stub_header",
    "tool_doc",
    "tool_stub",
]

#: Most characters of one host tool's docstring (the marker of a cut comes on top).
TOOL_DOC_CHARS = 2000
#: Most characters of its return type (a long ``Literal[...]``, say), cut with "...".
RETURN_TYPE_CHARS = 200



class Tool(Protocol):
    """What a stub is made from (a :class:`securepy.Tool`; a protocol here, as ``_tools``
    builds on this module)."""

    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def fn(self) -> Any: ...
    def signature(self) -> str: ...


_DOCUMENTS_ARGS = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params)\s*:?\s*$|:param\s", re.MULTILINE
)


def tool_stub(tool: Tool, max_chars: int = TOOL_DOC_CHARS) -> str:
    """``tool`` as a Python stub: ``def name(sig) -> T:`` and its docstring (:func:`tool_doc`)."""
    doc = tool_doc(tool, max_chars)
    if not doc:
        return stub_header(tool) + " ..."
    quotes = '"' * 3
    first, *rest = doc.replace(quotes, "'" * 3).splitlines()
    body = "".join("\n" + ("    " + line).rstrip() for line in rest)
    closing = f"\n    {quotes}" if rest else quotes
    return f"{stub_header(tool)}\n    {quotes}{first}{body}{closing}"


def stub_header(tool: Tool) -> str:
    """The stub's ``def`` line: ``def name(a: int, b: str = 'x') -> float:``."""
    returns = return_type_text(tool.fn)
    return f"def {tool.signature()}" + (f" -> {returns}:" if returns else ":")


def tool_doc(tool: Tool, max_chars: int = TOOL_DOC_CHARS) -> str:
    """The tool's docstring: its description, then an ``Args:`` section from the schema's
    argument descriptions (unless the description documents its arguments), within
    ``max_chars`` (plus a marker line when cut)."""
    description = inspect.cleandoc(tool.description) if tool.description.strip() else ""
    documented = _DOCUMENTS_ARGS.search(description)
    args = [] if documented else _argument_lines(tool.parameters)
    section = "Args:\n" + "\n".join(args) if args else ""
    whole = "\n\n".join(part for part in (description, section) if part)
    if len(whole) <= max_chars:
        return whole
    marker = f"[... cut: this docstring has {len(whole):,} characters, over {max_chars:,}]"
    if documented:  # the description's own Args: section (and what follows it)
        start = description.rfind("\n", 0, documented.start()) + 1
        description, section = description[:start].rstrip(), description[start:].strip()
    if section and len(section) <= max_chars // 2:
        # The arguments matter more to a caller than the description's tail: cut that first.
        kept = _cut(description, max_chars - len(section) - 2)
        return f"{kept}\n{marker}\n\n{section}" if kept else f"{marker}\n\n{section}"
    return f"{_cut(whole, max_chars)}\n{marker}"


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, at a space when one is near the end."""
    kept = text[: max(max_chars, 0)]
    head, space, _ = kept.rpartition(" ")
    return (head if space and len(head) > len(kept) - 80 else kept).rstrip()


def return_type_text(fn: Any) -> str:
    """``fn``'s return annotation as Python source (``"dict[str, int]"``), "" when it has none
    or it is ``Any`` (which tells a caller nothing); at most :data:`RETURN_TYPE_CHARS`."""
    text = _return_type_text(fn)
    return text if len(text) <= RETURN_TYPE_CHARS else text[: RETURN_TYPE_CHARS - 3] + "..."


def _return_type_text(fn: Any) -> str:
    try:
        returns = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return ""
    if returns is inspect.Signature.empty or returns is Any or returns in ("Any", "typing.Any"):
        return ""
    if isinstance(returns, str):
        return returns
    if returns is None or returns is type(None):
        return "None"
    if isinstance(returns, type) and not typing.get_args(returns):
        return returns.__qualname__
    return re.sub(r"\btyping\.|\bcollections\.abc\.", "", repr(returns))


def _argument_lines(parameters: Mapping[str, Any]) -> list[str]:
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return []
    lines = []
    for name, prop in properties.items():
        text = prop.get("description") if isinstance(prop, Mapping) else None
        if isinstance(text, str) and text.strip():
            lines.append(f"    {name}: {' '.join(text.split())}")
    return lines


def schema_type_text(prop: Mapping[str, Any]) -> str:
    """A JSON Schema property's type as Python source: ``list[str]``, ``int | None``, ... ("" when
    it names none)."""
    if "enum" in prop and isinstance(prop["enum"], list):
        return "Literal[" + ", ".join(repr(v) for v in prop["enum"]) + "]"
    for key in ("anyOf", "oneOf"):
        options = prop.get(key)
        if isinstance(options, list):
            texts = [t for t in (schema_type_text(o) for o in options if isinstance(o, dict)) if t]
            return " | ".join(dict.fromkeys(texts))
    kind = prop.get("type")
    if isinstance(kind, list):
        return " | ".join(JSON_TYPE_NAMES.get(k, "Any") for k in kind if isinstance(k, str))
    if kind == "array" and isinstance(prop.get("items"), dict):
        inner = schema_type_text(prop["items"])
        return f"list[{inner}]" if inner else "list"
    return JSON_TYPE_NAMES.get(kind, "") if isinstance(kind, str) else ""
