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
        if _has_flood(value):
            raise ValueError(
                f"{tool_name}(): argument {str(name)[:100]!r} holds many values "
                "that share one hash (hash flooding); the call was refused"
            )


def _has_flood(value: Any) -> bool:
    # Iterative, and only containers are stacked: each node is visited once whatever the
    # nesting (a recursion through generators cost microseconds per leaf).
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if _collides([_key_as_int(key) for key in node]):
                return True
            children: Any = node.values()
        elif kind in _CONTAINERS:
            if _collides(node):
                return True
            children = node
        else:
            continue
        if depth < _MAX_DEPTH:
            stack.extend((child, depth + 1) for child in children
                         if type(child) is dict or type(child) in _CONTAINERS)
    return False


_CONTAINERS = (list, tuple, set, frozenset)
_MAX_DEPTH = 100


def _key_as_int(key: Any) -> Any:
    if type(key) is str and 0 < len(key) <= 4300 and key.lstrip("-").isdigit():
        return int(key)
    return key


def _collides(items: Any) -> bool:
    if len(items) <= MAX_SHARED_HASH:
        return False
    hashes = []
    for item in items:
        if not _cheap_to_hash(item, 0):
            continue
        try:
            hashes.append(hash(item) ^ _SALT)
        except TypeError:
            continue
    return len(hashes) - len(set(hashes)) > MAX_SHARED_HASH


def _cheap_to_hash(item: Any, depth: int) -> bool:
    """Whether hashing ``item`` costs a bounded amount. A tuple's hash is not cached: hashing a
    large or deep one at every level it sits in would cost the subtree's size times its depth
    (a 52 MB frame kept a 2 s execute busy for 21 s). What floods a set is many small items;
    a large one is a single item at its level, counted where its own items are."""
    kind = type(item)
    if kind is tuple or kind is frozenset:
        return depth < 2 and len(item) <= 16 and all(_cheap_to_hash(x, depth + 1) for x in item)
    return kind is not list and kind is not dict and kind is not set
