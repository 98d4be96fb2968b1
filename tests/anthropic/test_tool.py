"""securepy_tool without a model: definition, handling blocks, errors, beta tools, ownership."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
from anthropic.lib.tools import BetaAsyncFunctionTool, BetaFunctionTool, ToolError
from anthropic.types import ToolUseBlock
from securepy_anthropic import SecurePyTool, securepy_tool

CODE_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": securepy.adapters.CODE_DESCRIPTION}},
    "required": ["code"],
    "additionalProperties": False,
}


def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order by id.

    More text the model reads too.
    """
    return {"id": order_id, "status": "shipped"}


def cells_numbered_n(text: Any) -> str:
    """The text with each ``<cell-7>`` filename as ``<cell-N>``: the counter is the engine's."""
    return re.sub(r"<cell-\d+>", "<cell-N>", str(text))


def use(code: str, tool_use_id: str = "toolu_1", name: str = "run_python") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id, "name": name, "input": {"code": code}}


@pytest.fixture
def run_python() -> Iterator[SecurePyTool]:
    with securepy_tool(tools=[lookup_order], sandbox=False, timeout=2) as tool:
        yield tool


def test_definition_lists_host_tools_as_signatures(run_python: SecurePyTool) -> None:
    definition = run_python.definition
    assert list(definition) == ["name", "description", "input_schema"]
    assert definition["name"] == "run_python"
    assert definition["input_schema"] == CODE_SCHEMA
    assert definition["description"] == (
        securepy.adapters.DEFAULT_DESCRIPTION
        + "\nThese host functions are defined inside the session; call them like normal "
        "Python functions (they block until the host answers; a failure raises ToolError):\n\n"
        "def lookup_order(order_id: int) -> dict[str, Any]:\n"
        '    """Look up an order by id.\n\n    More text the model reads too.\n    """'
    )
    assert run_python.beta_tool.to_dict() == definition
    assert run_python.beta_async_tool.to_dict() == definition
    assert list(run_python.tools) == ["lookup_order"]


def test_name_and_description_can_be_set() -> None:
    with securepy_tool(name="python", description="Run code.", sandbox=False) as tool:
        assert tool.definition == {
            "name": "python",
            "description": "Run code.",
            "input_schema": CODE_SCHEMA,
        }
        assert tool.handle(use("1 + 1", name="python"))["content"] == "2"


@pytest.mark.parametrize("as_sdk_object", [False, True], ids=["dict", "ToolUseBlock"])
def test_handle_runs_the_code_and_keeps_state(
    run_python: SecurePyTool, as_sdk_object: bool
) -> None:
    first: Any = use("order = lookup_order(7)\nprint(order['status'])", "toolu_a")
    second: Any = use("order['id'] * 6", "toolu_b")
    if as_sdk_object:
        first, second = ToolUseBlock(**first), ToolUseBlock(**second)
    assert run_python.handle(first) == {
        "type": "tool_result",
        "tool_use_id": "toolu_a",
        "content": "shipped",
        "is_error": False,
    }
    assert run_python.handle(second) == {
        "type": "tool_result",
        "tool_use_id": "toolu_b",
        "content": "42",
        "is_error": False,
    }


def test_an_exception_is_an_error_result(run_python: SecurePyTool) -> None:
    result = run_python.handle(use("print('before')\nraise KeyError('missing')"))
    assert result["is_error"] is True
    assert result["tool_use_id"] == "toolu_1"
    assert cells_numbered_n(result["content"]) == (
        "before\n"
        "Traceback (most recent call last):\n"
        '  File "<cell-N>", line 2, in <module>\n'
        "    raise KeyError('missing')\n"
        "KeyError: 'missing'"
    )
    assert run_python.handle(use("'still usable'"))["content"] == "'still usable'"


def test_a_timeout_is_an_error_result_and_state_survives(run_python: SecurePyTool) -> None:
    run_python.handle(use("kept = 5"))
    result = run_python.handle(use("print('spinning')\nwhile True: pass"))
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "is_error": True,
        "content": "spinning\nError: execution timed out after 2 s: the code was interrupted; "
        "the session kept its state",
    }
    assert run_python.handle(use("kept"))["content"] == "5"


def test_a_denied_host_call_is_an_error_result() -> None:
    secret = securepy.Tool(
        "read_secret", "Read the secret.", lambda: "s3cret", approve=lambda call: "denied by policy"
    )
    with securepy_tool(tools=[secret], sandbox=False) as tool:
        result = tool.handle(use("read_secret()"))
        assert result["is_error"] is True
        assert str(result["content"]).endswith("PolicyError: denied by policy")
        caught = tool.handle(
            use("try:\n    read_secret()\nexcept Exception as e:\n    print(type(e).__name__, e)")
        )
        assert caught == {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "PolicyError denied by policy",
            "is_error": False,
        }


def test_output_is_bounded_by_max_output_chars() -> None:
    with securepy_tool(sandbox=False, max_output_chars=100) as tool:
        content = tool.handle(use("print('x' * 1000)"))["content"]
        assert isinstance(content, str)
        assert len(content) == 100
        assert "[output truncated: 947 more characters]" in content


PROBLEM = (
    'Error: run_python takes one argument, a "code" string, e.g. {"code": "print(1 + 1)"}; got '
)
MALFORMED = [
    (None, "", "Error: expected a tool_use block with an id, got None"),
    (
        {"type": "text", "text": "hi"},
        "",
        "Error: expected a tool_use block with an id, got {'type': 'text', 'text': 'hi'}",
    ),
    (
        {"type": "tool_use", "name": "run_python", "input": {"code": "1"}},
        "",
        "Error: expected a tool_use block with an id, got {'type': 'tool_use', 'name': "
        "'run_python', 'input': {'code': '1'}}",
    ),
    (use("1", name="search"), "toolu_1", "Error: this handler runs 'run_python', not 'search'."),
    (
        {"type": "tool_use", "id": "toolu_1", "name": "run_python", "input": {"cod": "1"}},
        "toolu_1",
        PROBLEM + "{'cod': '1'}.",
    ),
    (
        {"type": "tool_use", "id": "toolu_1", "name": "run_python", "input": {"code": 1}},
        "toolu_1",
        PROBLEM + "{'code': 1}.",
    ),
    (
        {"type": "tool_use", "id": "toolu_1", "name": "run_python", "input": "print(1)"},
        "toolu_1",
        PROBLEM + "'print(1)'.",
    ),
]


@pytest.mark.parametrize(
    ("block", "tool_use_id", "message"),
    MALFORMED,
    ids=[
        "none",
        "text-block",
        "no-id",
        "other-tool",
        "no-code",
        "code-not-str",
        "input-not-object",
    ],
)
async def test_malformed_blocks_are_error_results(
    run_python: SecurePyTool, block: Any, tool_use_id: str, message: str
) -> None:
    expected = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": message,
        "is_error": True,
    }
    assert run_python.handle(block) == expected
    assert await run_python.ahandle(block) == expected


async def test_ahandle_shares_the_session_with_handle(run_python: SecurePyTool) -> None:
    assert (await run_python.ahandle(use("n = lookup_order(3)['id']")))["is_error"] is False
    assert run_python.handle(use("n + 1"))["content"] == "4"
    result = await run_python.ahandle(use("1/0"))
    assert result["is_error"] is True
    assert str(result["content"]).endswith("ZeroDivisionError: division by zero")


def test_beta_tool_returns_text_or_raises_tool_error(run_python: SecurePyTool) -> None:
    assert isinstance(run_python.beta_tool, BetaFunctionTool)
    assert run_python.beta_tool.call({"code": "lookup_order(1)['status']"}) == "'shipped'"
    with pytest.raises(ToolError) as caught:
        run_python.beta_tool.call({"code": "raise ValueError('boom')"})
    assert cells_numbered_n(caught.value.content) == (
        "Traceback (most recent call last):\n"
        '  File "<cell-N>", line 1, in <module>\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom"
    )


async def test_beta_async_tool_returns_text_or_raises_tool_error(run_python: SecurePyTool) -> None:
    assert isinstance(run_python.beta_async_tool, BetaAsyncFunctionTool)
    assert await run_python.beta_async_tool.call({"code": "2 ** 10"}) == "1024"
    with pytest.raises(ToolError, match=r"ZeroDivisionError: division by zero$"):
        await run_python.beta_async_tool.call({"code": "1/0"})


def test_a_passed_session_stays_open(session: securepy.Session) -> None:
    session.execute("shared = 'from the caller'")
    tool = securepy_tool(session=session)
    assert tool.handle(use("shared"))["content"] == "'from the caller'"
    tool.close()
    assert session.is_alive()
    assert session.execute("shared").value == "from the caller"


async def test_a_passed_async_session_is_used_by_ahandle() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        tool = securepy_tool(session=session)
        assert (await tool.ahandle(use("7 * 6")))["content"] == "42"
        with pytest.raises(TypeError, match=r"call it asynchronously"):
            tool.handle(use("1"))
        tool.close()
        assert session.is_alive()


def test_close_stops_the_owned_session() -> None:
    tool = securepy_tool(sandbox=False)
    tool.handle(use("1"))
    owned = tool._runner.session
    assert isinstance(owned, securepy.Session)
    assert owned.is_alive()
    tool.beta_tool.close()  # type: ignore[misc]  # the hook a session runner calls
    assert not owned.is_alive()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"session": object(), "pool": object()}, TypeError, r"^pass session= or pool=, not both$"),
        ({"sandbox": False, "not_an_option": 1}, TypeError, r"not_an_option"),
        (
            {"max_output_chars": 0},
            ValueError,
            r"^max_output_chars must be a positive integer, got 0$",
        ),
    ],
    ids=["session-and-pool", "unknown-option", "bad-max-output"],
)
def test_misuse_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        securepy_tool(**kwargs)


def test_dropping_the_tool_stops_its_session_without_a_gc_pass() -> None:
    import gc

    tool = securepy_tool(sandbox=False)
    tool.handle(use("1"))
    owned = tool._runner.session
    assert isinstance(owned, securepy.Session)
    gc.disable()
    try:
        del tool
        assert not owned.is_alive()
    finally:
        gc.enable()


def test_cache_control_and_strict_reach_the_definition_and_beta_tools() -> None:
    with securepy_tool(sandbox=False, cache_control={"type": "ephemeral"}, strict=True) as tool:
        definition = tool.definition
        assert (definition["cache_control"], definition["strict"]) == ({"type": "ephemeral"}, True)
        assert tool.beta_tool.to_dict() == definition


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"x": leaf}
    return leaf


@pytest.mark.parametrize("block_input", [
    _nested(995, {"code": "1"}),  # a model's input nested past the recursion limit
    {"code": _nested(5000, [])},
])
async def test_inputs_too_deep_to_show_are_error_results_not_exceptions(
    run_python: SecurePyTool, block_input: Any
) -> None:
    block = {"type": "tool_use", "id": "t1", "name": run_python.name, "input": block_input}
    for result in (run_python.handle(block), await run_python.ahandle(block)):
        assert result["is_error"] is True and result["tool_use_id"] == "t1"
    control = {"type": "tool_use", "id": "t2", "name": run_python.name, "input": {"code": "6*7"}}
    assert run_python.handle(control)["content"] == "42"
