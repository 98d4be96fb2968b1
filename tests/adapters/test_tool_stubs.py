"""Full stubs for the model: the run_python description and ``help()`` inside a real session show
each host tool's signature with its return type, its whole docstring and each argument's
description, whatever kind of tool it is, within the documented budget."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import pytest
import securepy
import securepy_langchain
from pydantic import Field
from securepy._tool_doc import tool_doc
from securepy.adapters import (
    DESCRIPTION_BUDGET_CHARS,
    TOOL_DESCRIPTION_CHARS,
    describe_sandbox,
    describe_tool,
)


def typed_function() -> Any:
    def lookup(
        sku: Annotated[str, Field(description="the product's stock-keeping unit")],
        warehouse: str = Field("main", description="which warehouse to count in"),
    ) -> dict[str, int]:
        """Stock of a product.

        Counts every bin of the warehouse, reserved stock included.
        """
        return {"stock": 7}

    return lookup


def json_schema_tool() -> Any:
    def stock(**arguments: Any) -> dict[str, int]:
        return {"stock": 7}

    return securepy.Tool(
        "lookup",
        "Stock of a product.\n\nCounts every bin of the warehouse, reserved stock included.",
        stock,
        parameters={
            "type": "object",
            "properties": {
                "sku": {"type": "string", "description": "the product's stock-keeping unit"},
                "warehouse": {
                    "type": "string",
                    "default": "main",
                    "description": "which warehouse to count in",
                },
            },
            "required": ["sku"],
        },
    )


def langchain_tool() -> Any:
    from langchain_core.tools import tool

    @tool(parse_docstring=True)
    def lookup(sku: str, warehouse: str = "main") -> dict[str, int]:
        """Stock of a product.

        Counts every bin of the warehouse, reserved stock included.

        Args:
            sku: the product's stock-keeping unit
            warehouse: which warehouse to count in
        """
        return {"stock": 7}

    return lookup


KINDS: dict[str, Callable[[], Any]] = {
    "typed function": typed_function,
    "Tool with a JSON schema": json_schema_tool,
    "LangChain tool": langchain_tool,
}


def _run(sandbox: Any, code: str) -> str:
    message = sandbox.invoke(
        {"type": "tool_call", "id": "c1", "name": "run_python", "args": {"code": code}}
    )
    assert message.status == "success", message.content
    return str(message.content)


@pytest.mark.sandbox
@pytest.mark.parametrize("make", KINDS.values(), ids=KINDS.keys())
def test_description_and_help_show_return_type_docstring_and_arguments(
    make: Callable[[], Any],
) -> None:
    with securepy_langchain.securepy_tool(tools=[make()]) as sandbox:
        shown = {"description": sandbox.description, "help()": _run(sandbox, "help(lookup)")}
        assert _run(sandbox, "lookup('X')['stock']") == "7"
    for where, text in shown.items():
        assert "-> dict[str, int]" in text, where
        assert "Counts every bin of the warehouse, reserved stock included." in text, where
        assert "sku: the product's stock-keeping unit" in text, where
        assert "warehouse: which warehouse to count in" in text, where
    assert (
        "def lookup(sku: str, warehouse: str = 'main') -> dict[str, int]:" in (shown["description"])
    )
    assert "lookup(sku: str, warehouse: str = 'main') -> dict[str, int]" in shown["help()"]


@pytest.mark.sandbox
def test_an_oversized_docstring_is_cut_at_the_budget_keeping_the_arguments() -> None:
    def report(
        day: Annotated[str, Field(description="the day, as YYYY-MM-DD")],
    ) -> str:
        return day

    long = "Sales of one day. " + "Every line of the ledger, explained. " * 300
    tool = securepy.Tool("report", long, report)
    with securepy_langchain.securepy_tool(tools=[tool]) as sandbox:
        kept = _run(sandbox, "len(report.__doc__.split('\\n[... cut')[0])")
        helped = _run(sandbox, "help(report)")
    stub = sandbox.description.split("def report(day: str) -> str:\n")[1]
    marker = re.compile(
        r"^\s*\[\.\.\. cut: this docstring has 11,\d{3} characters, over 2,000\]$", re.MULTILINE
    )
    for text in (stub, helped):
        assert marker.search(text)
        assert "Sales of one day. Every line" in text
        assert "day: the day, as YYYY-MM-DD" in text
    assert TOOL_DESCRIPTION_CHARS - 100 < int(kept) <= TOOL_DESCRIPTION_CHARS


def test_a_long_docstring_keeps_its_own_args_section_when_cut() -> None:
    def report(day: str) -> str:
        return day

    report.__doc__ = (
        "Sales of one day.\n\n"
        + "Every line of the ledger, explained.\n" * 100
        + "\nArgs:\n    day: the day, as YYYY-MM-DD\n\nReturns:\n    The report."
    )
    stub = describe_tool(securepy.tool(report))
    assert re.search(
        r"\n    \[\.\.\. cut: this docstring has 3,\d{3} characters, over 2,000\]\n", stub
    )
    assert stub.endswith(
        "\n\n    Args:\n        day: the day, as YYYY-MM-DD\n\n    Returns:\n        The report.\n"
        '    """'
    )
    doc = tool_doc(securepy.tool(report))
    marker_line = re.search(r"\n\[\.\.\. cut: .*\]\n", doc)
    assert marker_line is not None
    assert len(doc) - len(marker_line.group()) <= TOOL_DESCRIPTION_CHARS


def test_past_the_description_budget_tools_are_listed_by_signature_with_a_note() -> None:
    def make(index: int) -> securepy.Tool:
        def fn(x: int) -> int:
            return x

        return securepy.Tool(f"tool_{index}", "Does one thing.\n" + "More. " * 300, fn)

    tools = [make(i) for i in range(20)]
    description = describe_sandbox(tools)
    assert 'def tool_0(x: int) -> int:\n    """Does one thing.' in description
    assert "def tool_19(x: int) -> int: ..." in description
    assert description.endswith(
        "more host functions are listed by signature only: the description's budget of "
        f"{DESCRIPTION_BUDGET_CHARS:,} characters is spent; help(name) in the session shows "
        "a function's docstring.]"
    )
    assert len(description) < DESCRIPTION_BUDGET_CHARS + 2 * TOOL_DESCRIPTION_CHARS + 2000
