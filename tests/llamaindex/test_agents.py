"""Agent loops: FunctionAgent, ReActAgent and CodeActAgent driven by scripted models."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
import securepy
from llama_index.core.agent.workflow import (
    CodeActAgent,
    FunctionAgent,
    ReActAgent,
    ToolCallResult,
)
from llama_index.core.base.llms.types import (
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    ToolCallBlock,
)
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools import BaseTool, FunctionTool
from pydantic import PrivateAttr
from securepy_llamaindex import code_execute_fn, from_llamaindex, securepy_tool

# llama-index's workflows package lists each agent's members with inspect.getmembers, which
# reads pydantic's deprecated instance attributes (`__fields__`, `model_computed_fields`, ...).
# Only those, as attributed to inspect, are ignored.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince20:inspect"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211:inspect"),
    # ReActAgent.take_step itself calls ctx.is_running, which the workflows package deprecates.
    pytest.mark.filterwarnings("ignore:is_running called from within a step:DeprecationWarning"),
]


@dataclasses.dataclass(frozen=True)
class Answer:
    """A scripted final answer (any other step is code to run)."""

    text: str


Style = Literal["function", "react", "codeact"]
CODEACT_RESULT = "Result of executing the code given:\n\n"


class Script:
    """A model that plays ``steps`` in order, one per model call, and records what it read.

    A ``str`` step is code: a ``run_python`` tool call (``function``), a ReAct action
    (``react``) or an ``<execute>`` block (``codeact``). ``observations`` holds the tool
    results the model has been shown so far, in order.
    """

    def __init__(
        self,
        steps: Sequence[str | Answer],
        style: Style = "function",
        tool_name: str = "run_python",
    ) -> None:
        self.steps = list(steps)
        self.style = style
        self.tool_name = tool_name
        self.turn = 0
        self.observations: list[str] = []
        self.prompts: list[Sequence[ChatMessage]] = []

    @property
    def llm(self) -> ScriptedLLM:
        return ScriptedLLM(self)

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.prompts.append(list(messages))
        self.observations = self._observations_in(messages)
        step = self.steps[self.turn]
        self.turn += 1
        if isinstance(step, Answer):
            if self.style == "react":
                return ChatMessage(
                    role="assistant", content=f"Thought: I can answer.\nAnswer: {step.text}"
                )
            return ChatMessage(role="assistant", content=step.text)
        if self.style == "react":
            return ChatMessage(
                role="assistant",
                content=(
                    f"Thought: I will run code.\nAction: {self.tool_name}\n"
                    f"Action Input: {json.dumps({'code': step})}"
                ),
            )
        if self.style == "codeact":
            return ChatMessage(role="assistant", content=f"<execute>\n{step}\n</execute>")
        return ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id=f"call-{self.turn}",
                    tool_name=self.tool_name,
                    tool_kwargs={"code": step},
                )
            ],
        )

    def _observations_in(self, messages: Sequence[ChatMessage]) -> list[str]:
        if self.style == "function":
            return [m.content or "" for m in messages if m.role == MessageRole.TOOL]
        if self.style == "codeact":
            return [
                (m.content or "").removeprefix(CODEACT_RESULT)
                for m in messages
                if m.role == MessageRole.USER and (m.content or "").startswith(CODEACT_RESULT)
            ]
        # The ReAct system prompt also says "Observation", so only later messages count.
        return [
            (m.content or "").removeprefix("Observation: ")
            for m in messages
            if m.role != MessageRole.SYSTEM and (m.content or "").startswith("Observation:")
        ]


class ScriptedLLM(FunctionCallingLLM):
    """A function-calling model whose every reply is ``script(messages)``.

    Written here rather than taken from ``llama_index.core.llms.mock``: its
    ``MockFunctionCallingLLM`` takes a reply function only from llama-index-core 0.14.12 on,
    and the adapter supports 0.14.10 (the lowest-direct run tests it there).
    """

    _script: Callable[[Sequence[ChatMessage]], ChatMessage] = PrivateAttr()

    def __init__(self, script: Callable[[Sequence[ChatMessage]], ChatMessage]) -> None:
        super().__init__()
        self._script = script

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=True, is_function_calling_model=True)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        message = self._script(messages)
        return ChatResponse(message=message, delta=message.content or "")

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self.chat(messages)
        return iter([response])

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        response = self.chat(messages)

        async def one() -> ChatResponseAsyncGen:
            yield response

        return one()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise AssertionError("the agents under test only chat")

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        raise AssertionError("the agents under test only chat")

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        raise AssertionError("the agents under test only chat")

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        raise AssertionError("the agents under test only chat")

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        return {"messages": messages}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        return [
            ToolSelection(
                tool_id=block.tool_call_id or "",
                tool_name=block.tool_name,
                tool_kwargs=(
                    json.loads(block.tool_kwargs)
                    if isinstance(block.tool_kwargs, str)
                    else block.tool_kwargs
                ),
            )
            for block in response.message.blocks
            if isinstance(block, ToolCallBlock)
        ]


async def run_agent(agent: Any, user_msg: str) -> tuple[str, list[ToolCallResult]]:
    """Run ``agent`` to the end; return its answer and the tool results it produced."""
    handler = agent.run(user_msg=user_msg)
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    return str(await handler), results


MULTI_STEP = [
    "orders = [lookup_order(i) for i in ('A1', 'B2')]\nlen(orders)",
    "total = sum(o['total'] for o in orders)\nprint(f'total={total}')",
    Answer("The two orders total 42.5."),
]


@pytest.mark.parametrize("agent_class", [FunctionAgent, ReActAgent], ids=["function", "react"])
async def test_model_code_calls_a_converted_tool_over_several_steps(
    agent_class: type[FunctionAgent] | type[ReActAgent],
    make_session: Callable[..., Any],
    order_tool: FunctionTool,
) -> None:
    session = make_session([from_llamaindex(order_tool)])
    script = Script(MULTI_STEP, "function" if agent_class is FunctionAgent else "react")
    agent = agent_class(tools=[securepy_tool(session=session)], llm=script.llm)

    answer, results = await run_agent(agent, "What do orders A1 and B2 total?")

    assert answer == "The two orders total 42.5."
    assert script.observations == ["2", "total=42.5"]
    assert [(r.tool_name, r.tool_kwargs, r.tool_output.is_error) for r in results] == [
        ("run_python", {"code": MULTI_STEP[0]}, False),
        ("run_python", {"code": MULTI_STEP[1]}, False),
    ]
    kept = session.execute("total")
    if isinstance(session, securepy.AsyncSession):
        kept = await kept
    assert kept.value == 42.5


async def test_errors_and_timeouts_are_read_by_the_agent_which_continues(
    order_tool: FunctionTool,
) -> None:
    steps = [
        "x = 41",
        "1/0",
        "lookup_order('nope')",
        "while True: pass",
        "x + 1",
        Answer("x + 1 is 42."),
    ]
    script = Script(steps)
    run_python = securepy_tool(tools=[from_llamaindex(order_tool)], timeout=0.5, sandbox=False)
    agent = FunctionAgent(tools=[run_python], llm=script.llm)

    answer, results = await run_agent(agent, "Compute x + 1.")

    assert answer == "x + 1 is 42."
    assert [r.tool_output.is_error for r in results] == [False, True, True, True, False]
    seen = script.observations
    assert seen[0] == "(no output)"
    assert seen[1].splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert seen[2].splitlines()[-1].endswith("ToolError: lookup_order() failed: KeyError: 'nope'")
    assert seen[3] == (
        "Error: execution timed out after 0.5 s: the code was interrupted; "
        "the session kept its state"
    )
    assert seen[4] == "42"


async def test_react_agent_reads_an_error_and_continues(make_session: Callable[..., Any]) -> None:
    script = Script(
        ["items = [1, 2]", "items[5]", "items[-1]", Answer("The last item is 2.")], "react"
    )
    agent = ReActAgent(tools=[securepy_tool(session=make_session())], llm=script.llm)

    answer, results = await run_agent(agent, "Which item is last?")

    assert answer == "The last item is 2."
    assert [r.tool_output.is_error for r in results] == [False, True, False]
    assert script.observations[1].splitlines()[-1] == "IndexError: list index out of range"
    assert script.observations[2] == "2"


async def test_code_act_agent_runs_its_code_in_the_session_with_its_tools(
    make_session: Callable[..., Any],
    order_tool: FunctionTool,
) -> None:
    session = make_session([from_llamaindex(order_tool)])
    steps = [
        "order = lookup_order('A1')\nprint(order['status'])",
        "lookup_order('nope')",
        "print(order['total'] * 2)",
        Answer("Order A1 is shipped; twice its total is 60.0."),
    ]
    script = Script(steps, "codeact")
    agent = CodeActAgent(
        code_execute_fn=code_execute_fn(session), tools=[order_tool], llm=script.llm
    )

    answer, results = await run_agent(agent, "Tell me about order A1.")

    assert answer == "Order A1 is shipped; twice its total is 60.0."
    assert "def lookup_order(order_id: str) -> dict[str, typing.Any]:" in (
        script.prompts[0][0].content or ""
    )
    assert [r.tool_name for r in results] == ["execute", "execute", "execute"]
    assert [r.tool_output.raw_output["success"] for r in results] == [True, False, True]
    assert script.observations[0] == "shipped"
    assert (
        script.observations[1]
        .splitlines()[-1]
        .endswith("ToolError: lookup_order() failed: KeyError: 'nope'")
    )
    assert script.observations[2] == "60.0"


@pytest.mark.sandbox
async def test_a_converted_tool_reads_host_data_the_sandbox_cannot(tmp_path: Path) -> None:
    secret = tmp_path / "prices.json"
    secret.write_text(json.dumps({"apple": 1.5}))

    def price(item: str) -> float:
        """Price of an item, from the host's price file."""
        return float(json.loads(secret.read_text())[item])

    steps = [
        f"try:\n    open({str(secret)!r}).read()\nexcept OSError as exc:\n"
        "    print(type(exc).__name__)",
        "price('apple') * 2",
        Answer("Two apples cost 3.0."),
    ]
    script = Script(steps)
    with securepy.Session(
        [from_llamaindex(FunctionTool.from_defaults(price))], timeout=30
    ) as session:
        agent = FunctionAgent(tools=[securepy_tool(session=session)], llm=script.llm)
        answer, results = await run_agent(agent, "What do two apples cost?")
        assert session.sandboxed

    assert answer == "Two apples cost 3.0."
    assert script.observations == ["FileNotFoundError", "3.0"]
    assert [r.tool_output.is_error for r in results] == [False, False]
