"""The result of one execute: value, output, tool calls, and an LLM-ready rendering."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ._child_text import well_formed
from ._outputs import Output

__all__ = ["Execution", "ToolCall", "ToolCallRecord", "render_for_model"]

TRUNCATION_MARKER = "\n...[output truncated: {dropped} more characters]...\n"
DEFAULT_TEXT_CHARS = 8000


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One host tool call made during an execution (refused ones included).

    Attributes:
        name: the tool's name.
        arguments: the arguments as the code sent them (for a refused call, only if small;
            for a call to an unknown tool, none: they are never decoded).
        duration: seconds the host spent on the call.
        ok: True if the tool returned a value.
        error: the error message sent back into the sandbox when ``ok`` is False.
    """

    name: str
    arguments: dict[str, Any]
    duration: float
    ok: bool
    error: str | None = None


# The old name, kept for code that imported it.
ToolCall = ToolCallRecord


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class Execution:
    """What one ``execute`` produced.

    Attributes:
        value: the value of the code's final expression statement (None if there is none).
        stdout: everything printed to stdout (capped by the output limit, with a marker).
        stderr: everything printed to stderr (capped likewise).
        tool_calls: the host tool calls made, in the order they finished (at most 10,000).
        duration: wall-clock seconds, measured on the host.
        truncated: True when output went past the output limit and was cut (display outputs
            included).
        outputs: the display outputs (``display(obj)``, matplotlib figures), in the order
            produced; each a :class:`securepy.Output` whose ``.data`` is a MIME bundle.
    """

    value: Any
    stdout: str
    stderr: str
    tool_calls: tuple[ToolCallRecord, ...]
    duration: float
    truncated: bool = False
    outputs: tuple[Output, ...] = ()

    @property
    def text(self) -> str:
        """Output and the value's repr as one bounded text, ready to show a model."""
        return self.render_text()

    def render_text(self, max_chars: int = DEFAULT_TEXT_CHARS) -> str:
        """Like :attr:`text`, bounded to ``max_chars`` characters with a visible note."""
        return render_for_model(self.stdout, self.stderr, self.value, max_chars=max_chars,
                                outputs=self.outputs)


def render_for_model(stdout: str, stderr: str, value: Any, *, max_chars: int,
                     outputs: tuple[Output, ...] = ()) -> str:
    """Output, error output, display outputs (as text, images as a note) and the value's
    repr, bounded to ``max_chars`` characters."""
    parts = []
    if stdout:
        parts.append(stdout.rstrip("\n"))
    if stderr:
        parts.append("[stderr]\n" + stderr.rstrip("\n"))
    for output in outputs:
        parts.append(_describe_output(output))
    if value is not None:
        try:
            shown = repr(value)
        except Exception as exc:
            shown = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
        parts.append(shown)
    text = "\n".join(parts) if parts else "(no output)"
    return truncate_middle(well_formed(text), max_chars)


def _describe_output(output: Output) -> str:
    images = [mime for mime in output.data if mime.startswith("image/")]
    note = f"[display: {', '.join(images)}]" if images else ""
    text = output.data.get("text/markdown") or output.text or ""
    if not isinstance(text, str):
        text = ""
    return "\n".join(part for part in (note, text.rstrip("\n")) if part) or "[display]"


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the head and tail of ``text`` within ``max_chars``, noting how many characters were
    dropped (the note counts itself out: the result is exactly ``max_chars`` long)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    keep = max_chars - len(TRUNCATION_MARKER.format(dropped=len(text) - max_chars))
    for _ in range(3):  # the note's length depends on the count's digits; settles at once
        marker = TRUNCATION_MARKER.format(dropped=len(text) - max(keep, 0))
        keep = max_chars - len(marker)
    keep = max(keep, 0)
    marker = TRUNCATION_MARKER.format(dropped=len(text) - keep)
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + marker + (text[len(text) - tail:] if tail else "")
