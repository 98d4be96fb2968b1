"""Sets, frozensets and maps built from a hostile child's items in bounded time. Stdlib only:
the worker decodes tool results with it too.

Items that share a hash but differ cost one equality test per pair when they are inserted, so
a child could make the host build a set in O(n²) with its lock held. Two defences: at most a few
items may share a hash (checked a slice at a time, before anything is built), and large
containers are built a slice at a time against a CPU-time budget linear in their size.
"""

from __future__ import annotations

from .codec_base import CodecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["GUARD_FROM", "HASH_SLICE", "MAX_SHARED_HASH", "decode_hashed", "fill_guarded"]

# Hash flooding: at most this many items of one set, frozenset or map may collide. Items
# that share a hash but differ cost the host one equality test per pair when they are inserted,
# so a child could make the host build a set in O(n²) with its lock held. Distinct values that
# share a full hash are vanishingly rare in real data (ints, floats and Decimals hash by value
# modulo 2**61 - 1; strings and bytes by a per-process random key).
MAX_SHARED_HASH = 8
# Containers larger than this are built a slice at a time, with the thread's CPU time checked
# between slices: a last defence against probe sequences crafted from distinct hashes.
GUARD_FROM = 4096
HASH_SLICE = 4096
_GUARD_SLICE = 256
_GUARD_SECONDS = 0.005
_GUARD_SECONDS_PER_ITEM = 2e-6
_salt_value: list[int] = []


def decode_hashed(
    items: list[Any], depth: int, what: str, decode: Callable[[Any, int], Any]
) -> None:
    """Decode set items or map keys in place, refusing them as soon as more than
    MAX_SHARED_HASH share a hash with another (or one is unhashable). ``decode``: the codec's
    node decoder (this module sits below the codec).

    A slice at a time: a colliding set is refused after its first slice, not after decoding
    all of it, and no single step holds the interpreter for long. The hashes are kept XOR a
    secret random salt: kept bare (the child chooses them), this set could itself be given
    crafted probe sequences."""
    salted = _salt().__xor__
    seen: set[int] = set()
    collisions = 0
    for start in range(0, len(items), HASH_SLICE):
        end = min(start + HASH_SLICE, len(items))
        chunk = items[start:end]
        kinds = set(map(type, chunk))
        if list in kinds or dict in kinds:  # tags to decode (scalars stand for themselves)
            for index in range(start, end):
                kind = type(items[index])
                if kind is list or kind is dict:
                    items[index] = decode(items[index], depth)
            chunk = items[start:end]
        before = len(seen)
        try:
            seen.update(map(salted, map(hash, chunk)))
        except TypeError:
            for item in chunk:
                _hash(item)
            raise
        collisions += end - start - (len(seen) - before)
        if collisions > MAX_SHARED_HASH:
            raise CodecError(
                f"a {what!r} value has more than {MAX_SHARED_HASH} items whose hashes collide "
                "(hash flooding); the host refuses to build it"
            )


def _hash(item: Any) -> int:
    try:
        return hash(item)
    except TypeError:
        raise CodecError(
            f"unhashable {type(item).__name__} used as a set item or map key"
        ) from None


def _salt() -> int:
    if not _salt_value:
        import os

        _salt_value.append(int.from_bytes(os.urandom(8), "little"))
    return _salt_value[0]


def fill_guarded(update: Any, items: list[Any], values: list[Any] | None, what: str) -> None:
    """Insert items a slice at a time, refusing once the thread's CPU time outgrows a budget
    linear in the item count (a slow insert means a crafted probe sequence)."""
    import time

    started = time.thread_time()
    allowance = _GUARD_SECONDS + _GUARD_SECONDS_PER_ITEM * len(items)
    for start in range(0, len(items), _GUARD_SLICE):
        end = start + _GUARD_SLICE
        if values is None:
            update(items[start:end])
        else:
            update(zip(items[start:end], values[start:end], strict=True))
        if time.thread_time() - started > allowance:
            raise CodecError(
                f"building a {what!r} value of {len(items)} items took too long"
                " (crafted hash collisions); the host refuses to build it"
            )
