"""from_anthropic_tool: definition dicts and beta tool objects as securepy tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import securepy
from anthropic.lib.tools import ToolError, beta_async_tool, beta_tool
from securepy_anthropic import from_anthropic_tool, securepy_tool

WEATHER_DEFINITION = {
    "name": "get_weather",
    "description": "Weather for a city.\n\nReturns a short sentence.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "C"}},
        "required": ["city"],
    },
}


def weather(city: str, unit: str = "C") -> str:
    return f"18 {unit} in {city}"


async def aweather(city: str, unit: str = "C") -> str:
    return f"18 {unit} in {city}"


@beta_tool
def get_weather(city: str, unit: str = "C") -> str:
    """Weather for a city.

    Returns a short sentence.

    Args:
        city: the city's name.
        unit: C or F.
    """
    return f"18 {unit} in {city}"


@beta_async_tool
async def get_weather_async(city: str, unit: str = "C") -> str:
    """Weather for a city.

    Returns a short sentence.
    """
    return f"18 {unit} in {city}"


KINDS: dict[str, Callable[[], securepy.Tool]] = {
    "dict-sync-fn": lambda: from_anthropic_tool(WEATHER_DEFINITION, weather),
    "dict-async-fn": lambda: from_anthropic_tool(WEATHER_DEFINITION, aweather),
    "beta_tool": lambda: from_anthropic_tool(get_weather),
    "beta_async_tool": lambda: from_anthropic_tool(get_weather_async, name="get_weather"),
}


@pytest.mark.parametrize("make", list(KINDS.values()), ids=list(KINDS))
def test_each_kind_keeps_name_description_schema_and_runs(
    make: Callable[[], securepy.Tool],
) -> None:
    converted = make()
    assert converted.name == "get_weather"
    assert converted.description == "Weather for a city.\n\nReturns a short sentence."
    assert converted.signature() == "get_weather(city: str, unit: str = 'C')"
    assert converted.parameters["required"] == ["city"]
    with securepy.Session([converted], sandbox=False) as session:
        assert session.execute("get_weather('Oslo')").value == "18 C in Oslo"
        assert session.execute("get_weather(city='Rome', unit='F')").value == "18 F in Rome"
        refused = session.execute(
            "try:\n    get_weather(3)\nexcept Exception as e:\n    print(type(e).__name__)"
        )
        assert refused.stdout == "ToolError\n"


def test_beta_tool_schema_is_the_sdk_objects() -> None:
    converted = from_anthropic_tool(get_weather)
    assert converted.parameters == {"type": "object", **get_weather.input_schema}
    assert converted.parameters["properties"]["city"]["description"] == "the city's name."


def test_a_beta_tool_error_is_catchable_inside() -> None:
    @beta_tool
    def refuse(reason: str) -> str:
        """Always refuses."""
        raise ToolError(f"no: {reason}")

    with securepy.Session([from_anthropic_tool(refuse)], sandbox=False) as session:
        result = session.execute("try:\n    refuse('quota')\nexcept ToolError as e:\n    print(e)")
        assert result.stdout.endswith("no: quota\n")


def test_content_blocks_from_a_beta_tool_arrive_as_a_list() -> None:
    @beta_tool
    def blocks() -> Any:
        """Content blocks."""
        return ({"type": "text", "text": t} for t in ("a", "b"))

    with securepy.Session([from_anthropic_tool(blocks)], sandbox=False) as session:
        assert session.execute("blocks()").value == [
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b"},
        ]


def test_tool_options_are_passed_on() -> None:
    converted = from_anthropic_tool(
        WEATHER_DEFINITION,
        weather,
        max_calls=3,
        timeout=5,
        approve=lambda call: call.arguments["city"] != "Paris",
    )
    assert (converted.max_calls, converted.timeout) == (3, 5)
    with securepy.Session([converted], sandbox=False) as session:
        result = session.execute(
            "out = []\n"
            "for city in ('Paris', 'Oslo'):\n"
            "    try:\n        out.append(get_weather(city))\n"
            "    except Exception as e:\n        out.append(type(e).__name__)\n"
            "out"
        )
        assert result.value == ["PolicyError", "18 C in Oslo"]


def test_a_name_that_is_not_an_identifier_can_be_renamed() -> None:
    definition = {**WEATHER_DEFINITION, "name": "get-weather"}
    with pytest.raises(ValueError, match=r"^tool name 'get-weather' is not a valid Python"):
        from_anthropic_tool(definition, weather)
    assert from_anthropic_tool(definition, weather, name="get_weather").name == "get_weather"


def test_securepy_tool_converts_beta_tools_it_is_given() -> None:
    with securepy_tool(tools=[get_weather], sandbox=False) as tool:
        assert tool.description.endswith(
            "\n\ndef get_weather(city: str, unit: str = 'C') -> str:\n"
            '    """Weather for a city.\n\n    Returns a short sentence.\n\n    Args:\n'
            '        city: the city\'s name.\n        unit: C or F.\n    """'
        )
        result = tool.handle(
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "run_python",
                "input": {"code": "get_weather('Lima', unit='F')"},
            }
        )
        assert result["content"] == "'18 F in Lima'"


@pytest.mark.parametrize(
    ("definition", "fn", "error", "message"),
    [
        (
            WEATHER_DEFINITION,
            None,
            TypeError,
            r"^from_anthropic_tool: pass fn, the host function that implements 'get_weather'$",
        ),
        (
            get_weather,
            weather,
            TypeError,
            r"^from_anthropic_tool: 'get_weather' is a beta tool object and brings its own "
            r"function; do not pass fn$",
        ),
        (
            {"type": "web_search_20250305", "name": "web_search"},
            weather,
            ValueError,
            r"^from_anthropic_tool: 'web_search' is a 'web_search_20250305' server tool, run by "
            r"Anthropic; only custom tools run on the host$",
        ),
        (
            {"name": "x"},
            weather,
            ValueError,
            r"^from_anthropic_tool: the definition needs a 'name' string and an 'input_schema' "
            r"object$",
        ),
        (
            "get_weather",
            weather,
            TypeError,
            r"^from_anthropic_tool takes a tool definition dict or a @beta_tool object, not str$",
        ),
        (
            {**WEATHER_DEFINITION, "input_schema": {"type": "array"}},
            weather,
            ValueError,
            r"^tool 'get_weather': parameters must be a JSON Schema of type 'object'",
        ),
    ],
    ids=[
        "fn-missing",
        "fn-with-beta-tool",
        "server-tool",
        "no-schema",
        "not-a-definition",
        "schema-not-object",
    ],
)
def test_misuse_is_refused(definition: Any, fn: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        from_anthropic_tool(definition, fn)
