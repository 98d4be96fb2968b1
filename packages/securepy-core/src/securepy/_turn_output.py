"""What one execute printed and displayed, as the host keeps it: bounded by the output cap.

The child's ``output`` and ``display`` frames are hostile data: each is counted against the
execute's ``max_output_bytes`` (text in UTF-8 bytes, a display by its decoded size) before it
is kept, and what is over the cap is dropped, with ``truncated`` set and a marker at the end of
stdout. The turn (``_turn.py``) feeds it; the execution's result reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._child_text import well_formed
from ._outputs import MAX_OUTPUTS, Output, decode_bundle
from .errors import ProtocolError

__all__ = ["OUTPUT_MARKER", "CapturedOutput"]

OUTPUT_MARKER = "\n[output truncated: over the {limit}-byte output limit]\n"


class CapturedOutput:
    """stdout, stderr and rich outputs of one execute, within ``max_output_bytes`` together.

    ``on_output`` is called with each kept piece of text as it arrives (``(stream, text)``).
    """

    __slots__ = ("_max_output", "_on_output", "_out", "_size", "outputs", "truncated")

    def __init__(self, max_output_bytes: int | None,
                 on_output: Callable[[str, str], Any] | None = None) -> None:
        self._max_output = max_output_bytes
        self._on_output = on_output
        self._out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._size = 0
        self.outputs: list[Output] = []
        self.truncated = False

    def take_text(self, stream: str, text: str) -> None:
        """Keep what of ``text`` fits.

        Raises:
            securepy.errors.ProtocolError: ``stream`` is neither stdout nor stderr.
        """
        if stream not in self._out:
            raise ProtocolError(f"the child sent output for an unknown stream {stream[:20]!r}")
        text = well_formed(text)  # no lone surrogate reaches a strict UTF-8 encoder later
        if self._max_output is not None:
            room = self._max_output - self._size
            if room <= 0:
                self.truncated = True
                return
            encoded_size = len(text.encode("utf-8"))
            if encoded_size > room:
                text = text.encode("utf-8")[:room].decode("utf-8", "ignore")
                self.truncated = True
                encoded_size = room
            self._size += encoded_size
        self._out[stream].append(text)
        if self._on_output is not None and text:
            self._on_output(stream, text)

    def take_display(self, data: dict[str, Any]) -> None:
        """Keep a displayed object (a chart, a table) if it is valid and fits (what does not
        fit is not even decoded)."""
        if len(self.outputs) >= MAX_OUTPUTS:
            self.truncated = True
            return
        room = None if self._max_output is None else self._max_output - self._size
        output, size = decode_bundle(data, room)
        if output is None:
            self.truncated = self.truncated or size > 0
            return
        self._size += size
        self.outputs.append(output)

    @property
    def stdout(self) -> str:
        text = "".join(self._out["stdout"])
        return text + OUTPUT_MARKER.format(limit=self._max_output) if self.truncated else text

    @property
    def stderr(self) -> str:
        return "".join(self._out["stderr"])
