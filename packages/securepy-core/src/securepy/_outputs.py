"""Rich outputs of an execution: MIME bundles from ``display()`` and matplotlib figures.

The child sends each bundle as a ``display`` frame (``_worker/display.py``). The child is
hostile, so each bundle is checked here before it becomes an :class:`Output`: only the
allowlisted MIME types are kept, images must be valid base64 of at most ``MAX_OUTPUT_BYTES``,
JSON must parse, and an execute keeps at most ``MAX_OUTPUTS`` outputs whose size counts against
the same output limit as stdout and stderr.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Any

from ._frame_cost import check_frame_cost
from ._worker.display import BINARY_TYPES, MIME_TYPES
from .errors import ProtocolError

__all__ = ["MAX_OUTPUTS", "MAX_OUTPUT_BYTES", "MIME_TYPES", "Output", "decode_bundle"]

# Per execute: more display outputs than this are dropped (and the execution marked truncated).
MAX_OUTPUTS = 64
# Per output: larger bundles are dropped, whatever the output limit.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


@typing.final
@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Output:
    """One display output of an execution, as Jupyter's display data has it.

    Attributes:
        data: the MIME bundle: MIME type -> content. ``image/png``, ``image/jpeg`` and
            ``image/gif`` are ``bytes``; ``application/json`` is the parsed value; the text
            types (``text/plain``, ``text/html``, ``text/markdown``, ``text/latex``,
            ``image/svg+xml``) are ``str``. Richest type first.
    """

    data: Mapping[str, Any]

    @property
    def text(self) -> str | None:
        """The ``text/plain`` rendering, if the bundle has one."""
        value = self.data.get("text/plain")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        parts = []
        for mime, value in self.data.items():
            size = len(value) if isinstance(value, bytes | str) else None
            parts.append(
                f"{mime} ({size} {'bytes' if isinstance(value, bytes) else 'chars'})"
                if size is not None
                else mime
            )
        return f"Output({', '.join(parts)})"


def decode_bundle(data: dict[str, Any], room: int | None = None) -> tuple[Output | None, int]:
    """The Output for one ``display`` frame's bundle and its size in bytes (as sent).

    Unknown MIME types are dropped, and JSON that would cost the host more memory than a frame
    of its size may (``_frame_cost.py``); None when nothing is left or the bundle is over
    ``MAX_OUTPUT_BYTES`` or ``room`` bytes (then nothing of it is decoded).

    Raises:
        ProtocolError: a value is not text, or an image is not valid base64.
    """
    size = 0
    for mime, value in data.items():
        if not isinstance(value, str):
            raise ProtocolError(f"the child sent a {mime[:50]!r} display output that is not text")
        size += len(value)
    if size > MAX_OUTPUT_BYTES or (room is not None and size > room):
        return None, size
    bundle: dict[str, Any] = {}
    for mime in MIME_TYPES:
        value = data.get(mime)
        if value is None:
            continue
        if mime in BINARY_TYPES:
            try:
                bundle[mime] = binascii.a2b_base64(value, strict_mode=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(
                    f"the child sent a {mime} display output that is not valid base64"
                ) from None
        elif mime == "application/json":
            try:
                # The frame's cost check saw this JSON as one string: parsing it builds more.
                check_frame_cost(value.encode("utf-8", "surrogatepass"))
                bundle[mime] = json.loads(value)
            except (ValueError, RecursionError):  # FrameError is a ValueError
                continue
        else:
            bundle[mime] = value
    return (Output(bundle) if bundle else None), size
