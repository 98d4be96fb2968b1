"""from_langchain and tools=: LangChain tools keep their model-facing schema and run on the host."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import pytest
import securepy
from langchain.tools import ToolRuntime
from langchain_core.messages import ToolMessage
from langchain_core.tools import (
    BaseTool,
    InjectedToolArg,
    InjectedToolCallId,
    StructuredTool,
    ToolException,
    tool,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field
from securepy_langchain import from_langchain, from_langchain_tool, securepy_tool


class OrderQuery(BaseModel):
    order_id: str = Field(description="The order's id, like 'A1'.")
    include_lines: bool = Field(default=False, description="Also return the order lines.")


class OrderLookup(BaseTool):
    name: str = "lookup_order"
    description: str = "Look up one order by id."
    args_schema: type[BaseModel] = OrderQuery

    def _run(self, order_id: str, include_lines: bool = False) -> dict[str, Any]:
        order: dict[str, Any] = {"id": order_id, "total": 12.5}
        if include_lines:
            order["lines"] = ["pen", "ink"]
        return order


def _multiply(a: int, b: int = 2) -> int:
    return a * b


@tool
def search_orders(customer: str, limit: int = 3) -> list[str]:
    """Find a customer's orders, newest first."""
    return [f"{customer}-{n}" for n in range(limit)]


@tool
async def fetch_status(order_id: str) -> str:
    """An order's shipping status (async only)."""
    return f"{order_id}: shipped"


def _raw_schema_tool() -> BaseTool:
    return StructuredTool(
        name="echo_tags",
        description="Echo the tags back.",
        args_schema={
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["tags"],
        },
        func=lambda **kwargs: sorted(kwargs["tags"]),
    )


KINDS: list[tuple[Callable[[], BaseTool], str, Any]] = [
    (
        OrderLookup,
        "lookup_order('A1', include_lines=True)",
        {"id": "A1", "total": 12.5, "lines": ["pen", "ink"]},
    ),
    (
        lambda: StructuredTool.from_function(
            _multiply, name="multiply", description="Multiply a by b."
        ),
        "multiply(21)",
        42,
    ),
    (lambda: search_orders, "search_orders('ann', limit=2)", ["ann-0", "ann-1"]),
    (lambda: fetch_status, "fetch_status('A1')", "A1: shipped"),
    (_raw_schema_tool, "echo_tags(['b', 'a'])", ["a", "b"]),
]
KIND_IDS = [
    "basetool-subclass",
    "structuredtool",
    "tool-decorator",
    "async-tool-decorator",
    "raw-json-schema",
]


@pytest.mark.parametrize(("make", "code", "expected"), KINDS, ids=KIND_IDS)
def test_keeps_what_the_model_sees(make: Callable[[], BaseTool], code: str, expected: Any) -> None:
    native = make()
    converted = from_langchain(native)
    seen = convert_to_openai_tool(native)["function"]
    assert (converted.name, converted.description) == (seen["name"], seen["description"])
    assert converted.parameters == {"type": "object", **seen["parameters"]}


@pytest.mark.parametrize(("make", "code", "expected"), KINDS, ids=KIND_IDS)
def test_runs_on_the_host_sync(make: Callable[[], BaseTool], code: str, expected: Any) -> None:
    with securepy.Session([from_langchain(make())], sandbox=False) as session:
        assert session.execute(code).value == expected


@pytest.mark.parametrize(("make", "code", "expected"), KINDS, ids=KIND_IDS)
async def test_runs_on_the_host_async(
    make: Callable[[], BaseTool], code: str, expected: Any
) -> None:
    async with securepy.AsyncSession([from_langchain(make())], sandbox=False) as session:
        assert (await session.execute(code)).value == expected


def test_signature_inside_follows_the_schema() -> None:
    assert from_langchain(OrderLookup()).signature() == (
        "lookup_order(order_id: str, include_lines: bool = False)"
    )


def test_tool_exception_is_a_tool_error_inside_the_sandbox() -> None:
    @tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        raise ToolException(f"order {order_id} was already refunded")

    code = "try:\n    refund('A1')\nexcept ToolError as exc:\n    caught = str(exc)\ncaught"
    with securepy.Session([from_langchain(refund)], sandbox=False) as session:
        assert session.execute(code).value == (
            "refund() failed: ToolException: order A1 was already refunded"
        )


def test_arguments_are_checked_on_the_host_before_the_tool_runs() -> None:
    calls: list[str] = []

    @tool
    def count(word: str) -> int:
        """Count a word."""
        calls.append(word)
        return len(word)

    with securepy.Session([from_langchain(count)], sandbox=False) as session:
        value = session.execute(
            "try:\n    count(3)\nexcept ToolError as e:\n    m = str(e)\nm"
        ).value
    assert value == "count(): argument 'word' must be str, got int 3"
    assert calls == []


class RuntimeInRun(BaseTool):
    name: str = "whoami"
    description: str = "Who is asking."

    def _run(self, question: str, runtime: ToolRuntime) -> str:
        return "nobody"


@tool
def _with_injected_arg(query: str, user_id: Annotated[str, InjectedToolArg]) -> str:
    """Search as a user."""
    return query


@tool
def _with_call_id(query: str, call_id: Annotated[str, InjectedToolCallId]) -> str:
    """Search, knowing the call id."""
    return query


@tool
def _with_runtime(query: str, runtime: ToolRuntime) -> str:
    """Search with the agent's runtime."""
    return query


@pytest.mark.parametrize(
    ("native", "argument"),
    [
        (_with_injected_arg, "user_id"),
        (_with_call_id, "call_id"),
        (_with_runtime, "runtime"),
        (RuntimeInRun(), "runtime"),
    ],
    ids=["InjectedToolArg", "InjectedToolCallId", "ToolRuntime", "ToolRuntime-in-_run"],
)
def test_injected_arguments_are_refused(native: BaseTool, argument: str) -> None:
    message = (
        f"LangChain tool {native.name!r} needs the injected argument {argument!r} "
        "(InjectedToolArg / ToolRuntime), which sandboxed code cannot supply; wrap the "
        "tool in a function without it"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        from_langchain(native)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        securepy_tool(tools=[native], sandbox=False)


def test_refuses_what_is_not_a_langchain_tool() -> None:
    with pytest.raises(
        TypeError,
        match=r"^from_langchain_tool\(\) takes a LangChain BaseTool, "
        r"not function$",
    ):
        from_langchain(_multiply)  # type: ignore[arg-type]


def test_a_name_that_is_not_an_identifier_can_be_replaced() -> None:
    hyphenated = StructuredTool.from_function(
        _multiply, name="multiply-numbers", description="Multiply a by b."
    )
    with pytest.raises(ValueError, match=r"^tool name 'multiply-numbers' is not a valid Python"):
        from_langchain(hyphenated)
    renamed = from_langchain(hyphenated, name="multiply_numbers")
    with securepy.Session([renamed], sandbox=False) as session:
        assert session.execute("multiply_numbers(a=5, b=3)").value == 15


def _shipping_days(country: str) -> int:
    """Days to ship to a country."""
    return {"NL": 1, "JP": 6}[country]


def test_tools_mix_langchain_securepy_and_plain_callables() -> None:
    vat = securepy.Tool(
        "vat_rate", "The VAT rate of a country.", lambda country: 0.21, args={"country": str}
    )
    sandbox = securepy_tool(tools=[search_orders, vat, _shipping_days], sandbox=False)
    try:
        assert sandbox.description.endswith(
            "\n\ndef search_orders(customer: str, limit: int = 3) -> list[str]:\n"
            '    """Find a customer\'s orders, newest first."""\n\n'
            'def vat_rate(country: str):\n    """The VAT rate of a country."""\n\n'
            'def _shipping_days(country: str) -> int:\n    """Days to ship to a country."""'
        )
        assert (
            sandbox.invoke(
                {"code": "(search_orders('bo', 1), vat_rate('NL'), _shipping_days('JP'))"}
            )
            == "(['bo-0'], 0.21, 6)"
        )
    finally:
        sandbox.close()


@tool(response_format="content_and_artifact")
def _chart(points: int) -> tuple[str, dict[str, Any]]:
    """Draw a chart of some points."""
    return f"chart of {points} points", {"png": b"\x89PNG", "points": points}


@tool
def _always_fails(x: int) -> int:
    """Fail, with LangChain's ToolException."""
    raise ToolException("the backend is down")


def test_a_failing_tool_is_an_error_inside_whatever_its_handle_tool_error() -> None:
    _always_fails.handle_tool_error = True  # LangChain would hand back the text as a value
    with securepy.Session([from_langchain_tool(_always_fails)], sandbox=False) as session:
        value = session.execute(
            "try:\n    _always_fails(1)\nexcept ToolError as e:\n    r = str(e)\nr"
        ).value
    assert value == "_always_fails() failed: ToolException: the backend is down"


def test_artifacts_stay_on_the_host_and_the_code_gets_the_content() -> None:
    messages: list[ToolMessage] = []
    chart = from_langchain_tool(_chart, on_artifact=messages.append)
    with securepy.Session([chart], sandbox=False) as session:
        assert session.execute("_chart(points=3)").value == "chart of 3 points"
    [message] = messages
    assert message.artifact == {"png": b"\x89PNG", "points": 3}
    assert message.name == "_chart"
