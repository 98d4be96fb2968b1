"""What one frame from the child may cost the host: refused before it is parsed if too much.

Parsing JSON and rebuilding values cost host memory out of proportion to some frames' bytes: a
frame of empty lists ``[[],[],...]`` is three bytes per list, and each list is over 60 bytes of
host memory. Before a frame is parsed, :func:`check_frame_cost` estimates from byte counts alone
(no parse, no Python object per token) an upper bound on what parsing and decoding it builds:

- every ``[`` a list, every ``{`` a dict, every ``"`` half a string, every ``,`` or ``:`` one
  more item (a pointer or a dict entry, and a number object if that item is a number);
- the text itself: once for the parsed strings, four times when the frame is not ASCII
  (CPython then stores text at up to four bytes per character);
- what decoding adds: a set or map table per item when such tags occur, the array bytes
  again for arrays, and a fixed charge per pandas object.

Characters inside strings are counted as if they were structure, so the first estimate can
only be too high; when it is over the budget and the strings are few and long, their contents
are removed (one linear regular-expression pass) and the structure counted exactly. A frame
still over budget is a ProtocolError: the child is stopped, the host never builds it.

The budget is ``COST_PER_BYTE`` bytes of host memory per frame byte plus ``FREE_BYTES``:
24 bytes per byte, since CPython's own objects for ordinary data already need 12 to 20 (a list
of two-letter strings, of small records, a set of ints), and the estimate errs high. Frames that
cost the host 25 to 700 times their size (empty containers, empty sets, one-element lists,
pandas objects) are refused; measured peaks are in docs/threat-model.md.
"""

from __future__ import annotations

import re

from ._worker.protocol import FrameError

__all__ = ["COST_PER_BYTE", "FREE_BYTES", "check_frame_cost", "estimate_frame_cost"]

COST_PER_BYTE = 24
FREE_BYTES = 4 * 1024 * 1024
# Frames this small cannot cost more than a few MiB whatever their shape: not even counted.
_UNCHECKED_BYTES = 64 * 1024

# Host bytes per token (CPython 3.11-3.13, 64-bit; measured with tracemalloc, rounded up).
_LIST = 64
_DICT = 184  # a dict with a few keys; an empty one is 64
_ENTRY = 24  # one more dict entry, with the table's growth
_ITEM = 9  # a list slot, with over-allocation
_STRING = 56
_NUMBER = 32
_SET_ITEM = 48  # a set or dict table slot per item (a map counts three values per entry)
_SET = 216
_ARRAY = 1024
_PANDAS = 64 * 1024

_LONG_STRINGS = 32
# The quotes of a message's own keys and kind: a frame with no more has no strings to remove.
_ENVELOPE_QUOTES = 16
# A JSON string: the unrolled form has no nested quantifier over the same characters, so the
# match is linear in the text (no backtracking to speak of).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def check_frame_cost(body: bytes) -> None:
    """Refuse a frame body that would cost the host more than its budget to parse and decode.

    Raises:
        FrameError: the estimate is over ``COST_PER_BYTE`` per byte plus ``FREE_BYTES``
            (the channel makes it a ProtocolError).
    """
    size = len(body)
    if size <= _UNCHECKED_BYTES:
        return
    budget = COST_PER_BYTE * size + FREE_BYTES
    cost = estimate_frame_cost(body)
    # Strings full of brackets (JSON or code as text) overstate the first estimate; count
    # again without them, but only when strings are few and long: removing many short ones
    # would cost as much memory as the frame could, and change the estimate little.
    quotes = body.count(b'"')
    if cost > budget and quotes > _ENVELOPE_QUOTES and quotes * _LONG_STRINGS <= size:
        cost = estimate_frame_cost(body, exact=True)
    if cost > budget:
        raise FrameError(
            f"a frame of {size} bytes whose values would take about {cost} "
            f"bytes of host memory, over its budget of {COST_PER_BYTE} bytes per byte "
            f"(+{FREE_BYTES}); the host refuses to build it"
        )


def estimate_frame_cost(body: bytes, *, exact: bool = False) -> int:
    """An upper bound, in bytes, on the host memory parsing and decoding ``body`` builds.

    Args:
        body: a frame's JSON bytes.
        exact: count structure outside strings only (slower: one pass that removes strings).
    """
    structure = _JSON_STRING.sub(b'""', body) if exact else body
    lists = structure.count(b"[")
    dicts = structure.count(b"{")
    # Each key is followed by ":" and the parser keeps one copy of each distinct key.
    keys = structure.count(b":")
    strings = max(structure.count(b'"') // 2 - keys, 0)
    values = structure.count(b",") + lists + dicts + 1
    numbers = max(values - strings - lists - dicts, 0)
    text_factor = 2 if body.isascii() else 8  # the frame's text, then its strings
    cost = (
        lists * _LIST
        + dicts * _DICT
        + keys * _ENTRY
        + values * _ITEM
        + strings * _STRING
        + numbers * _NUMBER
        + text_factor * len(body)
    )
    # What decoding adds on top of the parsed tree (tag names are found in the whole body, so
    # a tag-like word inside a string only makes the estimate higher).
    hashed = body.count(b'"set"') + body.count(b'"frozenset"') + body.count(b'"map"')
    if hashed:
        cost += hashed * _SET + values * _SET_ITEM
    arrays = body.count(b'"ndarray"')
    if arrays:
        cost += arrays * _ARRAY + 2 * len(body)
    cost += (body.count(b'"series"') + body.count(b'"dataframe"')) * _PANDAS
    return cost
