"""Tool arguments declared with ``parameters=`` are held to their whole JSON Schema.

Attack: sandboxed code passes arguments the schema forbids, keyword by keyword (bounds,
lengths, patterns, uniqueness, oneOf/anyOf, ``$ref``/``$defs`` such as a pydantic Enum), or
arguments built to make the check itself costly. Control: the same tool takes arguments that
satisfy each rule. The error names the argument and the rule it broke.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import pydantic
import pytest
import securepy
from securepy._tools import Tool


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Order(pydantic.BaseModel):
    colour: Colour
    quantity: int = pydantic.Field(ge=1, le=10)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 3},
        "id": {
            "oneOf": [{"type": "integer", "multipleOf": 5}, {"type": "integer", "multipleOf": 3}]
        },
        "key": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
        "mode": {"$ref": "#/$defs/Mode"},
        "point": {
            "type": "object",
            "properties": {"x": {"type": "number"}},
            "required": ["x"],
            "additionalProperties": False,
        },
    },
    "required": ["limit"],
    "$defs": {"Mode": {"enum": ["fast", "safe"]}},
}

ATTACKS = {
    "minimum": ({"limit": 0}, "argument 'limit' breaks 'minimum': 1 (got 0)"),
    "maximum": ({"limit": 101}, "argument 'limit' breaks 'maximum': 100 (got 101)"),
    "huge-int": (
        {"limit": 10**5000},
        "argument 'limit' breaks 'maximum': 100 (got <int of 16610 bits>)",
    ),
    "exclusive": (
        {"limit": 1, "ratio": 1},
        "argument 'ratio' breaks 'exclusiveMaximum': 1 (got 1)",
    ),
    "min-length": ({"limit": 1, "name": "a"}, "argument 'name' breaks 'minLength': 2 (got 'a')"),
    "max-length": (
        {"limit": 1, "name": "abcdefghi"},
        "argument 'name' breaks 'maxLength': 8 (got 'abcdefghi')",
    ),
    "pattern": (
        {"limit": 1, "name": "ab1"},
        "argument 'name' breaks 'pattern': '^[a-z]+$' (got 'ab1')",
    ),
    "unique-items": (
        {"limit": 1, "tags": ["a", "a"]},
        "argument 'tags' breaks 'uniqueItems': True (got ['a', 'a'])",
    ),
    "max-items": (
        {"limit": 1, "tags": ["a", "b", "c", "d"]},
        "argument 'tags' breaks 'maxItems': 3 (got ['a', 'b', 'c', 'd'])",
    ),
    "item-type": ({"limit": 1, "tags": ["a", 2]}, "argument 'tags[1]' must be str, got int 2"),
    "one-of-none": (
        {"limit": 1, "id": 7},
        "argument 'id' matches none of the allowed forms (oneOf)",
    ),
    "one-of-both": (
        {"limit": 1, "id": 15},
        "argument 'id' matches more than one of the allowed forms (oneOf)",
    ),
    "any-of": ({"limit": 1, "key": 5}, "argument 'key' matches none of the allowed forms (anyOf)"),
    "ref-defs": (
        {"limit": 1, "mode": "reckless"},
        "argument 'mode' must be one of ['fast', 'safe'], got 'reckless'",
    ),
    "nested-extra": (
        {"limit": 1, "point": {"x": 1, "y": 2}},
        "argument 'point' has an unexpected key 'y'",
    ),
    "nested-required": ({"limit": 1, "point": {}}, "argument 'point' is missing 'x'"),
    "missing": ({}, "missing required argument 'limit'"),
    "unexpected": ({"limit": 1, "sudo": True}, "unexpected argument 'sudo'"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_arguments_the_schema_forbids_are_refused(attack: str) -> None:
    tool = Tool("search", "Search.", lambda **kw: kw, parameters=SCHEMA)
    arguments, message = ATTACKS[attack]
    with pytest.raises(ValueError) as info:
        tool.validate_arguments(arguments)
    assert str(info.value) == f"search(): {message}"


def test_control_arguments_that_satisfy_every_rule_pass() -> None:
    tool = Tool("search", "Search.", lambda **kw: kw, parameters=SCHEMA)
    arguments = {
        "limit": 100,
        "ratio": 0.5,
        "name": "abc",
        "tags": ["a", "b"],
        "id": 10,
        "key": None,
        "mode": "safe",
        "point": {"x": 1.5},
    }
    assert tool.validate_arguments(arguments) == arguments
    assert tool.validate_arguments({"limit": 1, "tags": ("x", "y")}) == {
        "limit": 1,
        "tags": ("x", "y"),
    }  # a tuple from the sandbox is an array


def test_a_pydantic_schema_with_an_enum_in_defs_is_enforced() -> None:
    tool = Tool("order", "Order.", lambda **kw: kw, parameters=Order.model_json_schema())
    assert tool.validate_arguments({"colour": "red", "quantity": 2}) == {
        "colour": "red",
        "quantity": 2,
    }  # control
    with pytest.raises(
        ValueError,
        match=r"^order\(\): argument 'colour' must be one of "
        r"\['red', 'blue'\], got 'green'$",
    ):
        tool.validate_arguments({"colour": "green", "quantity": 2})
    with pytest.raises(ValueError, match=r"^order\(\): argument 'quantity' breaks 'maximum'"):
        tool.validate_arguments({"colour": "red", "quantity": 11})


def test_an_invalid_schema_is_refused_at_construction() -> None:
    with pytest.raises(
        ValueError,
        match=r"^tool 't': parameters is not a valid JSON Schema: "
        r"at properties/x/minimum",
    ):
        Tool(
            "t",
            "x",
            lambda **kw: kw,
            parameters={"type": "object", "properties": {"x": {"minimum": "zero"}}},
        )


def test_an_external_ref_is_never_fetched() -> None:
    tool = Tool(
        "t",
        "x",
        lambda **kw: kw,
        parameters={
            "type": "object",
            "properties": {"x": {"$ref": "https://example.invalid/schema.json"}},
        },
    )
    with pytest.raises(ValueError, match="a reference that cannot be resolved"):
        tool.validate_arguments({"x": 1})


COSTLY = {
    # The library's uniqueItems falls back to comparing every pair for unsortable items.
    "unique-dicts": [{"k": i} for i in range(30_000)],
    # Ints that all share one hash: a naive set of them would be quadratic.
    "unique-colliding-ints": [1 + i * (2**61 - 1) for i in range(30_000)],
    "unique-mixed": [[i] for i in range(15_000)] + [str(i) for i in range(15_000)],
}


@pytest.mark.parametrize("name", list(COSTLY))
def test_unique_items_is_checked_in_linear_time(name: str) -> None:
    tool = Tool(
        "t",
        "x",
        lambda **kw: kw,
        parameters={
            "type": "object",
            "properties": {"items": {"type": "array", "uniqueItems": True}},
        },
    )
    items = COSTLY[name]
    started = time.perf_counter()
    assert tool.validate_arguments({"items": items}) == {"items": items}  # all distinct
    with pytest.raises(ValueError, match="breaks 'uniqueItems'"):
        tool.validate_arguments({"items": [*items, items[0]]})
    assert time.perf_counter() - started < 5


def test_a_failing_value_is_described_briefly() -> None:
    tool = Tool(
        "t",
        "x",
        lambda **kw: kw,
        parameters={"type": "object", "properties": {"text": {"type": "integer"}}},
    )
    with pytest.raises(ValueError) as info:
        tool.validate_arguments({"text": "x" * 10_000_000})
    assert len(str(info.value)) < 200


@pytest.mark.sandbox
def test_schema_rules_hold_for_calls_from_the_sandbox() -> None:
    calls: list[Any] = []
    tool = Tool("search", "Search.", lambda **kw: calls.append(kw) or "ran", parameters=SCHEMA)
    code = """
try:
    search(limit=500)
except ToolError as e:
    refused = str(e)
(refused, search(limit=5, mode="fast"))
"""
    with securepy.Session([tool]) as session:
        refused, ran = session.execute(code).value
    assert refused == "search(): argument 'limit' breaks 'maximum': 100 (got 500)"
    assert ran == "ran" and calls == [{"limit": 5, "mode": "fast"}]


SIMPLE = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "where"},
        "unit": {"anyOf": [{"enum": ["C", "F", 1]}, {"type": "null"}]},
        "days": {"type": "array", "items": {"type": "integer"}},
        "extra": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "required": ["city"],
    "additionalProperties": False,
}
SAMPLES = [
    {"city": "Oslo"},
    {"city": 1},
    {},
    {"city": "x", "unit": "C"},
    {"city": "x", "unit": "K"},
    {"city": "x", "unit": None},
    {"city": "x", "unit": 1.0},
    {"city": "x", "unit": True},
    {"city": "x", "days": [1, 2.0]},
    {"city": "x", "days": [1.5]},
    {"city": "x", "days": (1,)},
    {"city": "x", "days": [True]},
    {"city": "x", "extra": {"a": 1, "b": 2.5}},
    {"city": "x", "extra": {"a": "no"}},
    {"city": "x", "extra": []},
    {"city": None},
]


@pytest.mark.parametrize("arguments", SAMPLES, ids=[str(i) for i in range(len(SAMPLES))])
def test_the_fast_path_agrees_with_the_library(arguments: dict[str, Any]) -> None:
    from securepy._schema import ArgumentChecker

    checker = ArgumentChecker("t", SIMPLE)
    assert checker._fast is not None
    library = next(checker._validator.iter_errors(arguments), None) is None
    assert checker._fast(arguments) == library
