"""Arguments a validator could turn into a hash-flooded set or dict, refused before it runs.

pydantic builds a ``set[int]`` from a list and a ``dict[int, ...]`` from string keys: fed ints
that all share one hash (the child picks them), that build is quadratic with the interpreter
held. The codec bounds what it decodes itself (``_worker/hash_guard.py``); this bounds what a
tool's validator builds from the decoded arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_SHARED_HASH", "refuse_hash_flooding"]

MAX_SHARED_HASH = 8
_SCALARS = (str, int, float, bool, type(None))
# Salts the hashes counted for collisions: bare, the child's chosen ints could flood that count.
_SALT = int.from_bytes(os.urandom(8), "little")


def refuse_hash_flooding(arguments: Mapping[str, Any], tool_name: str) -> None:
    """Refuse arguments a validator could turn into a hash-flooded set or dict.

    pydantic builds a ``set[int]`` from a list and a ``dict[int, ...]`` from string keys: fed
    ints that all share one hash, that build is quadratic with the interpreter held. Every list,
    tuple and set in the arguments, and every dict's keys (read as ints where they are
    decimal), may hold at most ``MAX_SHARED_HASH`` colliding items.

    Raises:
        ValueError: naming the argument that holds them.
    """
    for name, value in arguments.items():
        if _has_flood(value, 0):
            raise ValueError(
                f"{tool_name}(): argument {str(name)[:100]!r} holds many values "
                "that share one hash (hash flooding); the call was refused"
            )


def _has_flood(value: Any, depth: int) -> bool:
    kind = type(value)
    if depth > 100 or kind in _SCALARS:
        return False
    if kind is dict:
        keys = [_key_as_int(key) for key in value]
        return _collides(keys) or any(_has_flood(item, depth + 1) for item in value.values())
    if kind in (list, tuple, set, frozenset):
        return _collides(value) or any(_has_flood(item, depth + 1) for item in value)
    return False


def _key_as_int(key: Any) -> Any:
    if type(key) is str and 0 < len(key) <= 4300 and key.lstrip("-").isdigit():
        return int(key)
    return key


def _collides(items: Any) -> bool:
    if len(items) <= MAX_SHARED_HASH:
        return False
    hashes = []
    for item in items:
        try:
            hashes.append(hash(item) ^ _SALT)
        except TypeError:
            continue
    return len(hashes) - len(set(hashes)) > MAX_SHARED_HASH
