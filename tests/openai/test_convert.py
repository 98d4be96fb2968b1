"""from_openai_function and from_pydantic: OpenAI tool definitions as host tools in the sandbox."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
import securepy
import securepy_openai
from openai import pydantic_function_tool
from openai.types.chat import ChatCompletionFunctionTool, ChatCompletionFunctionToolParam

PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"anyOf": [{"type": "string", "enum": ["C", "F"]}, {"type": "null"}]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
FUNCTION = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": PARAMETERS,
    "strict": True,
}
CHAT: ChatCompletionFunctionToolParam = {"type": "function", "function": FUNCTION}  # type: ignore[typeddict-item]
DEFINITIONS = {
    "chat": CHAT,
    "bare-function": FUNCTION,
    "responses": {"type": "function", **FUNCTION},
    "chat-sdk-object": ChatCompletionFunctionTool.model_validate(CHAT),
}


def weather(city: str, unit: str | None) -> str:
    return f"{city}: 21 {unit or 'C'}"


async def aweather(city: str, unit: str | None) -> str:
    return weather(city, unit)


@pytest.mark.parametrize("definition", list(DEFINITIONS.values()), ids=list(DEFINITIONS))
@pytest.mark.parametrize("fn", [weather, aweather], ids=["sync", "async"])
def test_from_openai_function(definition: Any, fn: Any) -> None:
    tool = securepy_openai.from_openai_function(definition, fn)
    assert (tool.name, tool.description) == ("get_weather", "Weather for a city.")
    assert tool.signature() == "get_weather(city: str, unit: Literal['C', 'F'] | None = None)"
    with securepy.Session(tools=[tool], sandbox=False) as session:
        # An optional argument of the strict schema may be left out, or given.
        result = session.execute("[get_weather('Oslo'), get_weather('Rome', unit='F')]")
    assert result.value == ["Oslo: 21 C", "Rome: 21 F"]


def test_the_host_function_receives_every_strict_property() -> None:
    seen: list[dict[str, Any]] = []
    tool = securepy_openai.from_openai_function(CHAT, lambda **kw: seen.append(kw))
    with securepy.Session(tools=[tool], sandbox=False) as session:
        session.execute("get_weather(city='Oslo')")
    assert seen == [{"city": "Oslo", "unit": None}]


def test_arguments_are_checked_against_the_schema() -> None:
    tool = securepy_openai.from_openai_function(CHAT, weather)
    with securepy.Session(tools=[tool], sandbox=False) as session:
        result = session.execute(
            "try:\n    get_weather('Oslo', unit='K')\nexcept ToolError as e:\n    m = str(e)\nm"
        )
    assert result.value == (
        "get_weather(): argument 'unit' matches none of the allowed forms (anyOf)"
    )


def test_a_name_that_is_no_identifier_needs_name() -> None:
    definition = {"type": "function", "name": "get-weather", "parameters": PARAMETERS}
    with pytest.raises(ValueError, match=r"^tool name 'get-weather' is not a valid Python"):
        securepy_openai.from_openai_function(definition, weather)
    assert (
        securepy_openai.from_openai_function(definition, weather, name="get_weather").name
        == "get_weather"
    )


def test_tool_options_pass_through() -> None:
    tool = securepy_openai.from_openai_function(CHAT, weather, timeout=2, max_calls=1)
    assert (tool.timeout, tool.max_calls) == (2, 1)


def test_a_definition_without_parameters_takes_none() -> None:
    tool = securepy_openai.from_openai_function({"name": "ping"}, lambda: "pong")
    assert (tool.signature(), tool.description) == ("ping()", "")


def test_something_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not an OpenAI function definition \(no name\)"):
        securepy_openai.from_openai_function({"type": "function"}, weather)


class LookupOrder(pydantic.BaseModel):
    """Look up an order."""

    order_id: int
    include_items: bool = False


def test_from_pydantic_passes_a_model_instance() -> None:
    seen: list[LookupOrder] = []

    def lookup(arguments: LookupOrder) -> int:
        seen.append(arguments)
        return arguments.order_id * 10

    tool = securepy_openai.from_pydantic(LookupOrder, lookup)
    assert (tool.name, tool.description) == ("LookupOrder", "Look up an order.")
    assert tool.signature() == "LookupOrder(order_id: int, include_items: bool = False)"
    # The same model also makes the SDK's own strict definition, so both sides agree.
    assert pydantic_function_tool(LookupOrder)["function"]["name"] == tool.name
    with securepy.Session(tools=[tool], sandbox=False) as session:
        assert session.execute("LookupOrder(4)").value == 40
    assert seen == [LookupOrder(order_id=4)]


async def test_from_pydantic_with_an_async_function() -> None:
    async def lookup(arguments: LookupOrder) -> bool:
        return arguments.include_items

    tool = securepy_openai.from_pydantic(LookupOrder, lookup, name="lookup", description="L.")
    async with securepy.AsyncSession(tools=[tool], sandbox=False) as session:
        assert (await session.execute("lookup(1, include_items=True)")).value is True


def test_a_model_without_a_docstring_has_no_description() -> None:
    class Quiet(pydantic.BaseModel):
        x: int

    assert securepy_openai.from_pydantic(Quiet, lambda model: model.x).description == ""
