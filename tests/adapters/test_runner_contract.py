"""One contract over the four adapters: the same shape, each through its own framework.

Each adapter takes its framework's native tools in ``tools=`` (mixed with securepy Tools and
typed functions), exports ``securepy_tool``, ``SecurePyTool`` and ``from_<fw>_tool``, shows the
model the same ``code`` argument and a full stub of every host tool, gives code errors and
malformed arguments back as text flagged as errors, sanitizes tool errors by default, and
closes the session it created.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy
from securepy.adapters import CODE_DESCRIPTION, code_schema


def order_total(order_id: str) -> float:
    """The total of an order, in euros.

    Args:
        order_id: the order's id, like "A1".
    """
    if order_id == "boom":
        raise RuntimeError("database at /home/alice/orders.db is locked")
    return 42.5


@dataclasses.dataclass
class Adapter:
    """How one framework makes, calls and reads its run_python tool."""

    module: Any
    convert_name: str
    native: Callable[[], Any]  # a native tool named "lookup", taking "sku" (described)
    schema: Callable[[Any], dict[str, Any]]  # the argument schema the model is sent
    call: Callable[[Any, Any], tuple[str, bool]]  # (tool, raw arguments) -> (text, is_error)


def _langchain() -> Adapter:
    import securepy_langchain
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    @tool(parse_docstring=True)
    def lookup(sku: str) -> dict[str, int]:
        """Stock of a product.

        Args:
            sku: the product's stock-keeping unit.
        """
        return {"stock": 7}

    def call(sandbox: Any, arguments: Any) -> tuple[str, bool]:
        message = sandbox.invoke(
            {"type": "tool_call", "id": "c1", "name": sandbox.name, "args": arguments}
        )
        return message.content, message.status == "error"

    return Adapter(
        securepy_langchain,
        "from_langchain_tool",
        lambda: lookup,
        lambda t: convert_to_openai_tool(t)["function"]["parameters"],
        call,
    )


def _openai() -> Adapter:
    import securepy_openai

    definition = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Stock of a product.",
            "parameters": {
                "type": "object",
                "required": ["sku"],
                "properties": {
                    "sku": {"type": "string", "description": "the product's stock-keeping unit."}
                },
            },
        },
    }

    def lookup(sku: str) -> dict[str, int]:
        return {"stock": 7}

    def call(sandbox: Any, arguments: Any) -> tuple[str, bool]:
        reply = sandbox.handle(
            {
                "id": "c1",
                "type": "function",
                "function": {"name": sandbox.name, "arguments": json.dumps(arguments)},
            }
        )
        return reply["content"], reply["content"].startswith(("Error", "Traceback"))

    return Adapter(
        securepy_openai,
        "from_openai_tool",
        lambda: (definition, lookup),
        lambda t: t.chat_tool["function"]["parameters"],
        call,
    )


def _anthropic() -> Adapter:
    import securepy_anthropic
    from anthropic.lib.tools import beta_tool

    @beta_tool
    def lookup(sku: str) -> dict[str, int]:
        """Stock of a product.

        Args:
            sku: the product's stock-keeping unit.
        """
        return {"stock": 7}

    def call(sandbox: Any, arguments: Any) -> tuple[str, bool]:
        result = sandbox.handle(
            {"type": "tool_use", "id": "t1", "name": sandbox.name, "input": arguments}
        )
        return result["content"], result["is_error"]

    return Adapter(
        securepy_anthropic,
        "from_anthropic_tool",
        lambda: lookup,
        lambda t: t.definition["input_schema"],
        call,
    )


def _llamaindex() -> Adapter:
    import securepy_llamaindex
    from llama_index.core.tools import FunctionTool

    def lookup(sku: str) -> dict[str, int]:
        """Stock of a product.

        :param sku: the product's stock-keeping unit.
        """
        return {"stock": 7}

    def call(sandbox: Any, arguments: Any) -> tuple[str, bool]:
        output = sandbox.call(**arguments)
        return output.content, output.is_error

    return Adapter(
        securepy_llamaindex,
        "from_llamaindex_tool",
        lambda: FunctionTool.from_defaults(lookup),
        lambda t: t.metadata.get_parameters_dict(),
        call,
    )


ADAPTERS = {
    "langchain": _langchain,
    "openai": _openai,
    "anthropic": _anthropic,
    "llamaindex": _llamaindex,
}


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return ADAPTERS[request.param]()


@pytest.fixture
def sandbox(adapter: Adapter) -> Iterator[Any]:
    vat = securepy.Tool(
        "vat_rate", "The VAT rate of a country.", lambda country: 0.21, args={"country": str}
    )
    with adapter.module.securepy_tool(tools=[adapter.native(), order_total, vat]) as tool:
        yield tool


def test_every_adapter_exports_the_same_names(adapter: Adapter) -> None:
    for name in ("securepy_tool", "SecurePyTool", adapter.convert_name):
        assert name in adapter.module.__all__
    native = adapter.native()
    converted = getattr(adapter.module, adapter.convert_name)(
        *(native if isinstance(native, tuple) else (native,)), name="stock", max_calls=1
    )
    assert isinstance(converted, securepy.Tool)
    assert (converted.name, converted.max_calls) == ("stock", 1)


def test_native_tools_functions_and_securepy_tools_mix_in_tools(sandbox: Any) -> None:
    assert isinstance(sandbox, type(sandbox))
    assert sorted(sandbox.tools) == ["lookup", "order_total", "vat_rate"]
    assert sandbox.name == "run_python"


@pytest.mark.sandbox
def test_code_calls_each_kind_of_host_tool(adapter: Adapter, sandbox: Any) -> None:
    text, is_error = adapter.call(
        sandbox, {"code": "print(lookup(sku='X')['stock'])\norder_total('A1') * 2 + vat_rate('NL')"}
    )
    assert (text, is_error) == ("7\n85.21", False)


def test_the_model_sees_one_code_argument(adapter: Adapter, sandbox: Any) -> None:
    schema = adapter.schema(sandbox)
    assert schema["required"] == ["code"]
    assert schema["properties"]["code"]["type"] == "string"
    assert schema["properties"]["code"]["description"] == CODE_DESCRIPTION
    assert set(schema["properties"]) == set(code_schema()["properties"])


def test_the_description_is_a_full_stub_of_each_host_tool(sandbox: Any) -> None:
    description = sandbox.description
    assert "def lookup(sku: str) -> dict[str, int]:" in description
    assert "sku: the product's stock-keeping unit." in description
    assert 'def order_total(order_id: str) -> float:\n    """The total of an order, in euros.' in (
        description
    )
    assert 'order_id: the order\'s id, like "A1".' in description
    assert "def vat_rate(country: str):" in description


@pytest.mark.sandbox
def test_code_errors_come_back_as_text_flagged_as_errors(adapter: Adapter, sandbox: Any) -> None:
    text, is_error = adapter.call(sandbox, {"code": "1 / 0"})
    assert is_error
    assert text.endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("arguments", [{"source": "1"}, {"code": 3}])
def test_malformed_arguments_come_back_as_text(
    adapter: Adapter, sandbox: Any, arguments: dict[str, Any]
) -> None:
    text, is_error = adapter.call(sandbox, arguments)
    assert is_error
    assert text.startswith(
        'Error: run_python takes one argument, a "code" string, e.g. {"code": "print(1 + 1)"}; got '
    )


@pytest.mark.sandbox
def test_tool_errors_are_sanitized_by_default(adapter: Adapter, sandbox: Any) -> None:
    text, is_error = adapter.call(sandbox, {"code": "order_total('boom')"})
    assert is_error and "RuntimeError" in text
    assert "/home/alice" not in text


@pytest.mark.sandbox
def test_sanitizing_can_be_turned_off(adapter: Adapter) -> None:
    with adapter.module.securepy_tool(tools=[order_total], sanitize_errors=False) as tool:
        text, is_error = adapter.call(tool, {"code": "order_total('boom')"})
    assert is_error and "database at /home/alice/orders.db is locked" in text


@pytest.mark.sandbox
def test_close_stops_the_session_it_created(adapter: Adapter) -> None:
    tool = adapter.module.securepy_tool(tools=[order_total])
    assert adapter.call(tool, {"code": "x = 1\nx + 1"}) == ("2", False)
    session = tool.session
    assert session is not None and session.is_alive()
    tool.close()
    assert not session.is_alive()


def test_a_passed_session_is_left_open(adapter: Adapter) -> None:
    with securepy.Session([order_total], sandbox=False) as session:
        with adapter.module.securepy_tool(session=session) as tool:
            assert list(tool.tools) == ["order_total"]
            assert adapter.call(tool, {"code": "order_total('A1')"}) == ("42.5", False)
        assert session.is_alive()


def test_something_that_is_no_tool_is_refused_with_the_kinds_accepted(adapter: Adapter) -> None:
    with pytest.raises(
        TypeError,
        match=r"^tools= takes securepy Tools, typed functions, \w+ "
        r"tools; got builtins.int 42$",
    ):
        adapter.module.securepy_tool(tools=[42], sandbox=False)
