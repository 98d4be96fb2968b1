"""Tools: names, schemas from three sources, argument checks, the decorator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import hypothesis
import pydantic
import pytest
import securepy
from hypothesis import strategies as st
from pydantic import Field


def lookup(table: str, limit: int = 10, tags: list[str] | None = None) -> list[str]:
    """Look rows up.

    More text that is not the summary.
    """
    return [table] * limit


class Opaque:
    pass


def takes_opaque(thing: Opaque) -> None:
    """Takes something with no JSON form."""


def test_schema_from_signature() -> None:
    tool = securepy.tool(lookup)
    assert tool.name == "lookup"
    assert tool.description.startswith("Look rows up.")
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "table": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                               {"type": "null"}], "default": None},
        },
        "required": ["table"],
        "additionalProperties": False,
    }
    assert tool.signature() == "lookup(table: str, limit: int = 10, tags: list[str] | None = None)"
    assert tool.summary() == (
        "lookup(table: str, limit: int = 10, tags: list[str] | None = None): Look rows up.")


def test_schema_from_args_shorthand() -> None:
    tool = securepy.Tool("query_db", "Rows.", lambda table, limit: [], args={"table": str,
                                                                           "limit": int})
    assert tool.parameters["required"] == ["table", "limit"]
    assert tool.validate_arguments({"table": "t", "limit": 2}) == {"table": "t", "limit": 2}


def test_schema_given_as_json_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"},
                                               "mode": {"enum": ["a", "b"]}},
              "required": ["q"]}
    tool = securepy.Tool("search", "Search.", lambda **kw: kw, parameters=schema)
    assert tool.parameters == schema
    assert tool.signature() == "search(q: str, mode: Literal['a', 'b'] = None)"
    assert tool.validate_arguments({"q": "x", "mode": "a"}) == {"q": "x", "mode": "a"}


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "search(): missing required argument 'q'"),
    ({"q": 1}, "search(): argument 'q' must be str, got int 1"),
    ({"q": "x", "mode": "c"}, "search(): argument 'mode' must be one of ['a', 'b'], got 'c'"),
    ({"q": "x", "extra": 1}, "search(): unexpected argument 'extra'"),
], ids=["missing", "wrong-type", "not-in-enum", "undeclared"])
def test_json_schema_arguments_are_checked(arguments: dict[str, object], message: str) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"},
                                               "mode": {"enum": ["a", "b"]}},
              "required": ["q"]}
    tool = securepy.Tool("search", "Search.", lambda **kw: kw, parameters=schema)
    with pytest.raises(ValueError) as info:
        tool.validate_arguments(arguments)
    assert str(info.value) == message


@pytest.mark.parametrize(("arguments", "message"), [
    ({"table": "t", "limit": "x"}, "lookup(): argument 'limit': Input should be a valid integer"),
    ({"table": "t", "nope": 1}, "lookup(): unexpected argument 'nope'"),
    ({}, "lookup(): missing required argument 'table'"),
], ids=["wrong-type", "undeclared", "missing"])
def test_signature_arguments_are_checked(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        securepy.tool(lookup).validate_arguments(arguments)
    assert str(info.value).startswith(message)


def test_decorator_with_options() -> None:
    @securepy.tool(name="pick", description="Pick one.")
    def choose(option: Literal["x", "y"]) -> str:
        return option

    assert (choose.name, choose.description) == ("pick", "Pick one.")
    assert choose.parameters["properties"]["option"] == {"enum": ["x", "y"], "type": "string"}


@pytest.mark.parametrize("name", ["1abc", "with space", "class", "", "__dunder"],
                         ids=["digit", "space", "keyword", "empty", "dunder"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="tool name"):
        securepy.Tool(name, "x", lambda: None)


def test_other_bad_input_is_refused() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        securepy.Tool("t", "x", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pass parameters= or args=, not both"):
        securepy.Tool("t", "x", lambda: None, parameters={}, args={})
    with pytest.raises(ValueError, match="must be a JSON Schema of type 'object'"):
        securepy.Tool("t", "x", lambda: None, parameters={"type": "string"})
    with pytest.raises(TypeError, match="an argument's type has no JSON Schema"):
        securepy.tool(takes_opaque)


def test_async_functions_are_detected() -> None:
    async def fetch(url: str) -> str:
        return url

    assert securepy.tool(fetch).is_async
    assert not securepy.tool(lookup).is_async


def test_validate_code_is_advisory() -> None:
    findings = securepy.validate_code("import subprocess\nx = eval('1')\nwhile True:\n    pass")
    assert [(f.line, f.message) for f in findings] == [
        (1, "imports 'subprocess', which starts processes"),
        (2, "calls eval(), which evaluates a string as code"),
        (3, "an endless loop with no break: the execution will run until its timeout"),
    ]
    assert securepy.validate_code("x = 1") == []
    with pytest.raises(securepy.CodeValidationError) as info:
        securepy.validate_code("x = = 1")
    assert (info.value.lineno, info.value.offset) == (1, 5)


def plain(count: int, name: str, ratio: float, flag: bool, note: str | None = None,
          anything: Any = None, level: int | float = 1, mode: str = "x") -> None:
    """Only types pydantic passes through unchanged: checked without pydantic."""


def strict_default(count: int = Field(default="5", validate_default=True)) -> None:
    """A default pydantic converts: not plain."""


PLAIN_ARGUMENTS = [
    {"count": 1, "name": "n", "ratio": 0.5, "flag": True},
    {"count": 2**80, "name": "\ud800", "ratio": float("nan"), "flag": False, "note": None,
     "anything": [1, {"a": 2}], "level": 2.5, "mode": "y"},
    {"count": 1.0, "name": "n", "ratio": 0.5, "flag": True},
    {"count": "7", "name": "n", "ratio": 1, "flag": 1},
    {"count": True, "name": b"n", "ratio": "0.5", "flag": "yes"},
    {"count": 1, "name": "n", "ratio": 0.5, "flag": True, "extra": 1},
    {"name": "n", "ratio": 0.5, "flag": True},
    {"count": 1, "name": "n", "ratio": 0.5, "flag": True, "note": 3, "level": "2"},
    {},
]


@pytest.mark.parametrize("arguments", PLAIN_ARGUMENTS, ids=[
    "exact", "edge-values", "float-for-int", "coercible", "not-coercible", "undeclared",
    "missing", "optional-coerced", "empty"])
def test_plain_arguments_are_checked_exactly_as_pydantic_does(
        arguments: dict[str, Any]) -> None:
    assert securepy.tool(plain)._plain is not None  # the check without pydantic is in use
    assert_checked_as_pydantic_does(arguments)


VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3) | (
    st.lists(st.integers(), max_size=2)) | st.binary(max_size=2)


@hypothesis.given(st.dictionaries(
    st.sampled_from(["count", "name", "ratio", "flag", "note", "anything", "level", "mode",
                     "extra"]), VALUES))
def test_any_plain_arguments_are_checked_exactly_as_pydantic_does(
        arguments: dict[str, Any]) -> None:
    assert_checked_as_pydantic_does(arguments)


def assert_checked_as_pydantic_does(arguments: dict[str, Any]) -> None:
    tool = securepy.tool(plain)
    assert tool._model is not None
    try:
        model = tool._model.model_validate(dict(arguments))
    except pydantic.ValidationError:
        with pytest.raises(ValueError, match=r"^plain\(\): "):
            tool.validate_arguments(arguments)
        return
    expected = {field: getattr(model, field) for field in type(model).model_fields}
    got = tool.validate_arguments(arguments)
    assert repr(got) == repr(expected)  # repr: equal values of the same types, nan included
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("tool", [
    securepy.tool(lookup),
    securepy.tool(strict_default),
    securepy.Tool("bounded", "A constraint.", lambda count: count,
                  args={"count": Annotated[int, Field(gt=0)]}),
], ids=["list-annotation", "validate-default", "constraint"])
def test_other_arguments_are_left_to_pydantic(tool: securepy.Tool) -> None:
    assert tool._plain is None


def test_annotated_constraints_in_a_signature_are_enforced() -> None:
    def pick(count: Annotated[int, pydantic.Field(gt=0, le=10)], name: str = "x") -> int:
        """Pick ``count`` items."""
        return count

    tool = securepy.Tool("pick", "Pick items.", pick)
    assert tool.parameters["properties"]["count"]["exclusiveMinimum"] == 0
    assert tool.parameters["properties"]["count"]["maximum"] == 10
    with securepy.Session(tools=[tool], sandbox=False) as session:
        assert session.execute("pick(3)").value == 3  # control: a valid value passes
        outcome = session.execute(
            "try:\n    pick(0)\n    r = 'accepted'\nexcept ToolError as e:\n    r = str(e)\nr")
        assert "greater than 0" in outcome.value
