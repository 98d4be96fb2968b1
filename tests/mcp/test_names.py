"""MCP tool names become Python function names by one documented rule, without collisions."""

from __future__ import annotations

import pytest
from securepy_mcp import python_names


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["get-weather"], ["get_weather"]),
        (["db.query", "fs/read"], ["db_query", "fs_read"]),
        (["2fa", "_private", "__dunder"], ["tool_2fa", "tool_private", "tool_dunder"]),
        (["class", "match", "list", "print"], ["class_", "match_", "list_", "print_"]),
        (["a-b", "a.b", "a_b"], ["a_b", "a_b_2", "a_b_3"]),
        (["héllo"], ["h_llo"]),
        ([""], ["tool_"]),
    ],
    ids=["dash", "dot-slash", "leading", "keywords-builtins", "collisions", "non-ascii", "empty"],
)
def test_the_rule(names: list[str], expected: list[str]) -> None:
    assert python_names(names) == expected


def test_reserved_names_are_avoided() -> None:
    assert python_names(["search", "lookup"], reserved=["search"]) == ["search_2", "lookup"]


def test_every_result_is_a_usable_identifier() -> None:
    import keyword

    names = python_names(["x-1", "x_1", "x.1", "for", "None", "a b", "ü", "1", "id"])
    assert len(set(names)) == len(names)
    assert all(
        n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("__") for n in names
    )
