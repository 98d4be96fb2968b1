"""from_llamaindex: LlamaIndex tools of every kind, called from sandboxed code."""

# No `from __future__ import annotations` here: FunctionTool.from_defaults reads the live
# annotations (a string "Context" is not recognised as the workflow context).
from collections.abc import Callable
from typing import Any

import pytest
import securepy
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.tools import (
    AsyncBaseTool,
    BaseTool,
    FunctionTool,
    ToolMetadata,
    ToolOutput,
)
from llama_index.core.workflow import Context
from securepy_llamaindex import from_llamaindex

PRICES = {"apple": 1.5, "pear": 2.0}


class PriceArguments(BaseModel):
    item: str


METADATA = ToolMetadata(
    name="get_price", description="Price of an item in euros.", fn_schema=PriceArguments
)


def get_price(item: str) -> float:
    """Price of an item in euros."""
    return PRICES[item]


async def aget_price(item: str) -> float:
    """Price of an item in euros."""
    return PRICES[item]


def _output(item: str) -> ToolOutput:
    if item not in PRICES:
        return ToolOutput(
            tool_name="get_price",
            content=f"unknown item {item!r}",
            raw_input={"item": item},
            is_error=True,
        )
    return ToolOutput(
        tool_name="get_price",
        content=str(PRICES[item]),
        raw_input={"item": item},
        raw_output=PRICES[item],
    )


class AsyncPriceTool(AsyncBaseTool):
    """An AsyncBaseTool written by hand, as retriever and query-engine tools are."""

    @property
    def metadata(self) -> ToolMetadata:
        return METADATA

    def call(self, item: str) -> ToolOutput:  # type: ignore[override]
        raise AssertionError("the async path must be used")

    async def acall(self, item: str) -> ToolOutput:  # type: ignore[override]
        return _output(item)


class PlainPriceTool(BaseTool):
    """The oldest protocol: a BaseTool with only __call__."""

    @property
    def metadata(self) -> ToolMetadata:
        return METADATA

    def __call__(self, item: str) -> ToolOutput:  # type: ignore[override]
        return _output(item)


KEY_ERROR = "get_price() failed: KeyError: 'kiwi'"
ERROR_OUTPUT = "get_price() failed: ToolError: unknown item 'kiwi'"

KINDS: list[tuple[Callable[[], BaseTool], bool, str]] = [
    (lambda: FunctionTool.from_defaults(get_price), False, KEY_ERROR),
    (lambda: FunctionTool.from_defaults(async_fn=aget_price, name="get_price"), True, KEY_ERROR),
    (lambda: FunctionTool(fn=get_price, metadata=METADATA), False, KEY_ERROR),
    (AsyncPriceTool, True, ERROR_OUTPUT),
    (PlainPriceTool, False, ERROR_OUTPUT),
]
KIND_IDS = [
    "function-tool",
    "async-function-tool",
    "function-tool-metadata",
    "async-base-tool",
    "base-tool",
]


@pytest.mark.parametrize(("make_tool", "is_async", "error"), KINDS, ids=KIND_IDS)
def test_name_description_and_schema_come_from_metadata(
    make_tool: Callable[[], BaseTool], is_async: bool, error: str
) -> None:
    converted = from_llamaindex(make_tool())

    assert isinstance(converted, securepy.Tool)
    assert converted.name == "get_price"
    assert converted.description == "Price of an item in euros."
    assert converted.parameters == {
        "type": "object",
        "properties": {"item": {"title": "Item", "type": "string"}},
        "required": ["item"],
    }
    assert converted.signature() == "get_price(item: str)"
    assert converted.is_async is is_async


@pytest.mark.parametrize(("make_tool", "is_async", "error"), KINDS, ids=KIND_IDS)
async def test_sandboxed_code_calls_the_tool_on_the_host(
    make_tool: Callable[[], BaseTool],
    is_async: bool,
    error: str,
    make_session: Callable[..., Any],
) -> None:
    session = make_session([from_llamaindex(make_tool())])
    code = (
        "prices = [get_price('apple'), get_price(item='pear')]\n"
        "try:\n    get_price('kiwi')\nexcept ToolError as exc:\n    caught = str(exc)\n"
        "(prices, caught)"
    )

    execution = session.execute(code)
    if isinstance(session, securepy.AsyncSession):
        execution = await execution

    assert execution.value == ([1.5, 2.0], error)
    assert [(call.name, call.arguments, call.ok) for call in execution.tool_calls] == [
        ("get_price", {"item": "apple"}, True),
        ("get_price", {"item": "pear"}, True),
        ("get_price", {"item": "kiwi"}, False),
    ]


def test_an_error_output_from_a_callback_raises_tool_error_inside() -> None:
    def refuse_negative(result: Any) -> ToolOutput | None:
        if result < 0:
            return ToolOutput(
                tool_name="balance", content="account is overdrawn", raw_input={}, is_error=True
            )
        return None

    def balance(account: str) -> int:
        """Balance of an account."""
        return {"main": 10, "loan": -5}[account]

    tool = FunctionTool.from_defaults(balance, callback=refuse_negative)
    with securepy.Session([from_llamaindex(tool)], sandbox=False) as s:
        assert s.execute("balance('main')").value == 10
        with pytest.raises(securepy.ExecutionError) as info:
            s.execute("balance('loan')")
    assert info.value.type_name == "ToolError"
    assert info.value.message == "balance() failed: ToolError: account is overdrawn"


def test_a_function_tool_returning_none_gives_none_not_its_text() -> None:
    def forget(key: str) -> None:
        """Forget a key."""

    converted = from_llamaindex(FunctionTool.from_defaults(forget))
    with securepy.Session([converted], sandbox=False) as s:
        assert s.execute("forget('a') is None").value is True


def test_a_tool_without_raw_output_gives_its_text() -> None:
    class Echo(BaseTool):
        @property
        def metadata(self) -> ToolMetadata:
            return ToolMetadata(name="echo", description="Echo the input.")

        def __call__(self, input: str) -> ToolOutput:  # type: ignore[override]
            return ToolOutput(tool_name="echo", content=f"echo: {input}", raw_input={})

    converted = from_llamaindex(Echo())
    assert converted.signature() == "echo(input: str)"
    with securepy.Session([converted], sandbox=False) as s:
        assert s.execute("echo('hi')").value == "echo: hi"


def test_name_overrides_a_name_that_is_not_an_identifier() -> None:
    tool = FunctionTool.from_defaults(get_price, name="get-price")
    with pytest.raises(ValueError, match=r"^tool name 'get-price' is not a valid Python "):
        from_llamaindex(tool)
    assert from_llamaindex(tool, name="get_price").name == "get_price"


def bare(x: int) -> int:
    return x


def test_a_description_that_is_only_the_signature_is_kept() -> None:
    tool = FunctionTool.from_defaults(bare)
    assert tool.metadata.description == "bare(x: int) -> int"
    assert from_llamaindex(tool).description == "bare(x: int) -> int"


async def remember(ctx: Context, key: str) -> str:
    """Store a key in the workflow context."""
    return key


def test_a_tool_needing_a_workflow_context_is_refused() -> None:
    tool = FunctionTool.from_defaults(remember)
    with pytest.raises(
        TypeError,
        match=r"^tool 'remember' takes a workflow Context, which "
        r"code in the sandbox cannot supply; wrap a function "
        r"without it$",
    ):
        from_llamaindex(tool)


def test_something_else_is_refused() -> None:
    with pytest.raises(
        TypeError,
        match=r"^from_llamaindex_tool\(\) takes a LlamaIndex "
        r"BaseTool, not function$",
    ):
        from_llamaindex(get_price)  # type: ignore[arg-type]
