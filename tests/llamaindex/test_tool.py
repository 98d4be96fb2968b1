"""securepy_tool, SecurePyToolSpec and code_execute_fn, called directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import securepy
from llama_index.core.tools import FunctionTool, ToolOutput
from llama_index.core.tools.tool_spec.base import BaseToolSpec
from securepy.adapters import CODE_DESCRIPTION, DEFAULT_DESCRIPTION, RunOutcome
from securepy_llamaindex import SecurePyToolSpec, code_execute_fn, from_llamaindex, securepy_tool

TIMED_OUT = (
    "Error: execution timed out after 0.5 s: the code was interrupted; the session kept its state"
)


async def call(tool: FunctionTool, session: Any, code: str) -> ToolOutput:
    """``acall`` for an AsyncSession, ``call`` for a Session: each twin's natural path."""
    if isinstance(session, securepy.AsyncSession):
        return await tool.acall(code=code)
    return tool.call(code=code)


def test_the_tool_is_run_python_taking_code(order_tool: FunctionTool) -> None:
    tool = securepy_tool(tools=[from_llamaindex(order_tool)], sandbox=False)

    assert isinstance(tool, FunctionTool)
    assert tool.metadata.name == "run_python"
    assert tool.metadata.get_parameters_dict() == {
        "type": "object",
        "properties": {
            "code": {"title": "Code", "type": "string", "description": CODE_DESCRIPTION}
        },
        "required": ["code"],
    }
    assert tool.metadata.description == (
        DEFAULT_DESCRIPTION + "\nThese host functions are defined inside the session; call "
        "them like normal Python functions (they block until the host answers; a failure "
        "raises ToolError):\n\ndef lookup_order(order_id: str) -> dict[str, Any]:\n"
        '    """Look up an order by id."""'
    )
    assert tool.metadata.to_openai_tool()["function"]["name"] == "run_python"


def test_name_and_description_can_be_set() -> None:
    tool = securepy_tool(name="python", description="Run Python.", sandbox=False)
    assert (tool.metadata.name, tool.metadata.description) == ("python", "Run Python.")


async def test_runs_keep_state_and_return_tool_outputs(
    make_session: Callable[..., Any], order_tool: FunctionTool
) -> None:
    session = make_session([from_llamaindex(order_tool)])
    tool = securepy_tool(session=session)

    first = await call(tool, session, "order = lookup_order('A1')\nprint(order['status'])")
    second = await call(tool, session, "order['total'] * 2")

    assert (first.content, first.is_error) == ("shipped", False)
    assert (second.content, second.is_error) == ("60.0", False)
    assert second.tool_name == "run_python"
    assert second.raw_input == {"code": "order['total'] * 2"}
    assert isinstance(second.raw_output, RunOutcome)
    assert second.raw_output.execution.value == 60.0


async def test_errors_timeouts_and_denials_are_error_outputs_and_the_session_goes_on(
    make_session: Callable[..., Any],
) -> None:
    refund = securepy.Tool(
        "refund",
        "Refund an order.",
        lambda order_id: "done",
        args={"order_id": str},
        approve=lambda request: "needs a human",
    )
    session = make_session([refund])
    tool = securepy_tool(session=session, timeout=0.5)

    await call(tool, session, "x = 41")
    raised = await call(tool, session, "1/0")
    timed_out = await call(tool, session, "while True: pass")
    denied = await call(tool, session, "refund('A1')")
    after = await call(tool, session, "x + 1")

    assert raised.is_error
    assert raised.content.splitlines()[0] == "Traceback (most recent call last):"
    assert raised.content.splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert isinstance(raised.exception, securepy.ExecutionError)
    assert (timed_out.is_error, timed_out.content) == (True, TIMED_OUT)
    assert isinstance(timed_out.exception, securepy.ExecutionTimeout)
    assert denied.is_error
    # endswith: core prints the worker's module path before the name (reported upstream).
    assert denied.content.splitlines()[-1].endswith("PolicyError: needs a human")
    assert (after.is_error, after.content) == (False, "42")


def test_a_refused_execute_is_an_error_output() -> None:
    with securepy.Session(sandbox=False, max_executions=1) as session:
        tool = securepy_tool(session=session)
        assert tool.call(code="1").content == "1"
        refused = tool.call(code="2")
    assert refused.is_error
    assert refused.content == (
        "Error (PolicyError): this session already ran "
        "max_executions=1 executions; start a new session"
    )


def test_output_is_bounded_by_max_output_chars(session: securepy.Session) -> None:
    tool = securepy_tool(session=session, max_output_chars=100)
    content = tool.call(code="print('x' * 1000)").content
    assert len(content) == 100
    assert "[output truncated: 947 more characters]" in content


async def test_an_async_session_needs_the_async_path() -> None:
    async with securepy.AsyncSession(sandbox=False) as session:
        tool = securepy_tool(session=session)
        with pytest.raises(
            TypeError,
            match=r"^this tool wraps an async session or pool: "
            r"call it asynchronously",
        ):
            tool.call(code="1")
        assert (await tool.acall(code="1")).content == "1"


def test_a_session_passed_in_stays_open(session: securepy.Session) -> None:
    with SecurePyToolSpec(session=session) as spec:
        spec.run_python("y = 1")
    assert session.is_alive()
    assert session.execute("y").value == 1


def test_the_tool_owns_the_session_it_creates() -> None:
    spec = SecurePyToolSpec(sandbox=False)
    spec.run_python("1")
    owned = spec._runner.session
    assert owned is not None and owned.is_alive()
    spec.close()
    assert not owned.is_alive()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"session": "s", "pool": "p"}, r"^pass session= or pool=, not both$"),
        ({"session": "s", "sandbox": False}, r"^session options \(sandbox\) apply only to a "),
        ({"sandbx": False}, r"sandbx"),
    ],
    ids=["session-and-pool", "options-with-session", "unknown-option"],
)
def test_misuse_fails_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        securepy_tool(**options)


async def test_the_tool_spec_exposes_the_same_tool() -> None:
    with SecurePyToolSpec(sandbox=False, timeout=5) as spec:
        tools = spec.to_tool_list()
        assert isinstance(spec, BaseToolSpec)
        assert tools == spec.to_tool_list()
        assert len(tools) == 1 and tools[0].metadata.name == "run_python"
        assert tools[0].metadata.description == DEFAULT_DESCRIPTION
        assert spec.run_python("z = 2").content == "(no output)"
        assert (await spec.arun_python("z * 21")).content == "42"
        failed = await tools[0].acall(code="z.missing")
        assert failed.is_error
        assert failed.content.splitlines()[-1] == (
            "AttributeError: 'int' object has no attribute 'missing'"
        )


async def test_code_execute_fn_returns_what_code_act_agent_reads(
    make_session: Callable[..., Any], order_tool: FunctionTool
) -> None:
    execute = code_execute_fn(make_session([from_llamaindex(order_tool)]), timeout=5)

    ok = await execute("order = lookup_order('B2')\nprint(order['status'])\norder['total']")
    failed = await execute("lookup_order('nope')")

    assert ok == {"success": True, "output": "pending\n12.5", "return_value": 12.5}
    assert str(ok) == "pending\n12.5"
    assert failed["success"] is False
    assert failed["return_value"] is None
    assert (
        str(failed).splitlines()[-1].endswith("ToolError: lookup_order() failed: KeyError: 'nope'")
    )


def test_code_execute_fn_takes_a_session_or_pool() -> None:
    with pytest.raises(
        TypeError,
        match=r"^code_execute_fn\(\) takes a securepy session or "
        r"pool, not str$",
    ):
        code_execute_fn("session")  # type: ignore[arg-type]


def test_the_spec_keeps_its_tool_when_asked_by_name(order_tool: FunctionTool) -> None:
    with SecurePyToolSpec(tools=[order_tool], sandbox=False) as spec:
        [tool] = spec.to_tool_list(spec_functions=["run_python"])
        assert "def lookup_order(order_id: str)" in tool.metadata.description
        assert tool.call(code="lookup_order('A1')['total']").is_error is False
        failed = tool.call(code="1/0")
    assert failed.is_error
    assert failed.content.endswith("ZeroDivisionError: division by zero")
