"""The turn as a state machine, driven with no process: messages and clock readings in,
actions out. Every message kind, every deadline, the call lifecycle and its attacks (each
with its control: the same frames, legitimately ordered, are served)."""

from __future__ import annotations

from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import securepy
from securepy import errors
from securepy._child_text import MAX_ERROR_TEXT
from securepy._turn import (
    MAX_KEPT_ARGUMENTS,
    MAX_RECORDS,
    Finish,
    Interrupt,
    Phase,
    RunTool,
    Send,
    StopTool,
    Turn,
)
from securepy._worker import codec


def add(a: int, b: int) -> int:
    """Their sum."""
    return a + b


def slow() -> str:
    """A tool with a timeout of its own."""
    return "done"


TOOLS = {
    t.name: t
    for t in [
        securepy.Tool("add", "Add.", add),
        securepy.Tool("slow", "Slow.", slow, timeout=2.0),
        securepy.Tool("once", "Once.", add, max_calls=1),
        securepy.Tool("vetoed", "No.", add, approve=lambda r: "not today"),
    ]
}


def make(deadline: float | None = 10.0, **options: Any) -> Turn:
    settings: dict[str, Any] = {
        "max_tool_calls": None,
        "max_output_bytes": 1000,
        "on_output": None,
        "emit": None,
        "sanitize": lambda t: t,
        "timeout": deadline,
    }
    settings.update(options)
    return _EchoingTurn(TOOLS, deadline=deadline, **settings)


class _EchoingTurn(Turn):
    """A turn fed as the worker feeds it: results and errors echo its id (the tests of the
    other rules leave it out of their messages; test_a_result_must_name_its_turn checks it)."""

    __slots__ = ()

    def feed(self, message: dict[str, Any], now: float) -> Any:
        if message.get("kind") in ("result", "error") and "turn" not in message:
            message = {**message, "turn": self.id}
        return super().feed(message, now)


def call(call_id: int, name: str = "add", solo: bool = False, **args: Any) -> dict[str, Any]:
    args = args or {"a": 1, "b": 2}
    return {
        "kind": "tool_call",
        "call_id": call_id,
        "name": name,
        "solo": solo,
        "args": {k: codec.encode(v) for k, v in args.items()},
    }


RESULT = {"kind": "result", "value": codec.encode(42)}


@pytest.mark.parametrize("kind", ["result", "error"])
def test_a_result_must_name_its_turn(kind: str) -> None:
    end: dict[str, Any] = {"kind": "result", "value": codec.encode(42)} if kind == "result" else {
        "kind": "error", "type": "E", "message": "", "traceback": ""}
    first, second = Turn(TOOLS, **_settings()), Turn(TOOLS, **_settings())
    assert first.id != second.id
    finish = first.feed({**end, "turn": first.id}, 0.0)  # control: its own id ends it
    assert isinstance(finish, Finish)
    for forged in ({**end, "turn": first.id}, end, {**end, "turn": -1}):
        with pytest.raises(errors.ProtocolError, match="other than the one it was running"):
            second.feed(forged, 0.0)


@pytest.mark.parametrize("call_id", [-1, 2**53, 2**61 - 1, 2**200])
def test_a_tool_call_id_out_of_range_is_a_protocol_violation(call_id: int) -> None:
    turn = make()
    assert isinstance(turn.feed(call(2**53 - 1), 0.0), RunTool)  # control: the largest one
    with pytest.raises(errors.ProtocolError, match="outside 0"):
        turn.feed(call(call_id), 0.0)


def _settings() -> dict[str, Any]:
    return {"deadline": 10.0, "timeout": 10.0, "max_tool_calls": None,
            "max_output_bytes": 1000, "on_output": None, "emit": None,
            "sanitize": lambda t: t}


def run(turn: Turn, action: Any, value: Any = 3, *, now: float = 1.0) -> dict[str, Any] | None:
    """What a loop does with RunTool: start it, run it (here: ``value``), answer."""
    assert isinstance(action, RunTool)
    if not turn.start(action):
        return None
    return turn.tool_finished(action, duration=now - action.started, value=value)


# -- every message kind ----------------------------------------------------------------------


def test_output_is_kept_and_passed_on_and_capped_with_a_marker() -> None:
    seen: list[tuple[str, str]] = []
    turn = make(max_output_bytes=10, on_output=lambda s, t: seen.append((s, t)))
    assert turn.feed({"kind": "output", "stream": "stdout", "text": "hello "}, 0.0) is None
    assert turn.feed({"kind": "output", "stream": "stderr", "text": "wörld!"}, 0.0) is None
    assert turn.feed({"kind": "output", "stream": "stdout", "text": "more"}, 0.0) is None
    assert seen == [("stdout", "hello "), ("stderr", "wör")]  # 4 bytes: the room left
    assert turn.truncated and turn.stderr == "wör"
    assert turn.stdout == "hello \n[output truncated: over the 10-byte output limit]\n"


def test_output_for_an_unknown_stream_breaks_the_protocol() -> None:
    with pytest.raises(errors.ProtocolError, match="unknown stream"):
        make().feed({"kind": "output", "stream": "/etc/passwd", "text": "x"}, 0.0)


def test_a_result_finishes_with_its_decoded_value() -> None:
    turn = make()
    finish = turn.feed(RESULT, 0.5)
    assert finish == Finish(value=42) and turn.ended
    execution = turn.build_execution(finish.value, duration=0.5)
    assert (execution.value, execution.tool_calls) == (42, ())


def test_an_undecodable_result_breaks_the_protocol() -> None:
    with pytest.raises(errors.ProtocolError, match="undecodable result"):
        make().feed({"kind": "result", "value": {"$": "nope"}}, 0.0)


def test_an_error_becomes_execution_error_with_the_output_so_far() -> None:
    turn = make()
    turn.feed({"kind": "output", "stream": "stdout", "text": "before\n"}, 0.0)
    finish = turn.feed(
        {
            "kind": "error",
            "type": "ValueError",
            "message": "boom",
            "traceback": "Traceback...",
            "limit": None,
        },
        0.1,
    )
    assert isinstance(finish, Finish) and isinstance(finish.error, errors.ExecutionError)
    assert str(finish.error) == "ValueError: boom" and finish.error.stdout == "before\n"
    assert finish.restart is None


def test_an_error_naming_a_limit_becomes_resource_limit_error() -> None:
    finish = make().feed(
        {"kind": "error", "type": "MemoryError", "message": "", "traceback": "", "limit": "memory"},
        0.0,
    )
    assert isinstance(finish, Finish) and isinstance(finish.error, errors.ResourceLimitError)
    assert finish.error.limit == "memory" and finish.error.state_kept


@pytest.mark.parametrize("kind", ["ready", "configure", "execute", "tool_result"])
def test_any_other_kind_during_a_turn_breaks_the_protocol(kind: str) -> None:
    with pytest.raises(errors.ProtocolError, match=f"unexpected '{kind}' message"):
        make().feed({"kind": kind}, 0.0)


# -- text caps -------------------------------------------------------------------------------


def test_a_forged_error_of_megabytes_is_capped_with_a_marker() -> None:
    huge = "A" * 5_000_000
    finish = make().feed(
        {"kind": "error", "type": "X" * 10_000, "message": huge, "traceback": huge, "limit": None},
        0.0,
    )
    assert isinstance(finish, Finish) and isinstance(finish.error, errors.ExecutionError)
    marker = f"\n...[truncated: {5_000_000 - MAX_ERROR_TEXT} more characters]"
    assert finish.error.message == "A" * MAX_ERROR_TEXT + marker
    assert finish.error.traceback == "A" * MAX_ERROR_TEXT + marker
    assert finish.error.type_name == "X" * 200
    # Control: an error within the bound is kept whole.
    small = make().feed(
        {
            "kind": "error",
            "type": "E",
            "message": "m" * MAX_ERROR_TEXT,
            "traceback": "t",
            "limit": None,
        },
        0.0,
    )
    assert isinstance(small, Finish) and isinstance(small.error, errors.ExecutionError)
    assert small.error.message == "m" * MAX_ERROR_TEXT


def test_refused_calls_keep_small_arguments_and_only_the_size_of_large_ones() -> None:
    turn = make()
    big = turn.feed(call(1, "vetoed", a="x" * 100_000, b=1), 0.0)
    small = turn.feed(call(2, "vetoed", a=1, b=2), 0.0)
    assert isinstance(big, Send) and isinstance(small, Send)
    records = turn.build_execution(None, duration=0).tool_calls
    assert records[0].arguments == {"[arguments not kept]": "about 100008 characters"}
    assert records[1].arguments == {"a": 1, "b": 2}  # control


def _echo(text: str) -> int:
    return len(text)


def test_records_keep_arguments_within_a_budget_and_only_the_size_past_it() -> None:
    turn = Turn({"echo": securepy.Tool("echo", "Echo.", _echo)}, **_settings())
    large = "x" * (MAX_KEPT_ARGUMENTS // 2)
    for n in range(3):  # each runs; together they pass the budget
        run(turn, turn.feed(call(n, "echo", text=large), 0.0))
    run(turn, turn.feed(call(3, "echo", text="small"), 0.0))
    kept = [record.arguments for record in turn.build_execution(None, duration=0).tool_calls]
    assert kept[0] == kept[1] == {"text": large}  # control: within the budget, kept whole
    assert kept[2] == {"[arguments not kept]": f"about {len(large)} characters"}
    assert kept[3] == {"text": "small"}  # small ones are kept past it too


def test_records_are_bounded() -> None:
    turn = make(deadline=None)
    for n in range(MAX_RECORDS + 5):
        turn.feed(call(n, "nope"), 0.0)
    assert len(turn.build_execution(None, duration=0).tool_calls) == MAX_RECORDS


# -- tool calls ------------------------------------------------------------------------------


def test_a_tool_call_runs_then_is_answered_once() -> None:
    turn = make()
    action = turn.feed(call(1), 0.5)
    assert isinstance(action, RunTool) and action.arguments == {"a": 1, "b": 2}
    assert not action.relay and action.tool_deadline is None
    assert run(turn, action) == {"kind": "tool_result", "call_id": 1, "ok": True, "value": 3}
    assert turn.tool_finished(action, duration=0, value=4) is None  # answered already
    assert turn.feed(RESULT, 1.0) == Finish(value=42)
    [record] = turn.build_execution(42, duration=1).tool_calls
    assert (record.name, record.arguments, record.ok) == ("add", {"a": 1, "b": 2}, True)


def test_solo_calls_to_tools_without_a_timeout_may_be_relayed() -> None:
    turn = make()
    relayed = turn.feed(call(1, solo=True), 0.0)
    timed = turn.feed(call(2, "slow", solo=True, a=None, b=None) | {"args": {}}, 0.0)
    assert isinstance(relayed, RunTool) and relayed.relay
    assert isinstance(timed, RunTool) and not timed.relay and timed.tool_deadline == 2.0


def test_a_tool_error_is_answered_as_tool_error_and_recorded() -> None:
    turn = make()
    action = turn.feed(call(1), 0.0)
    assert isinstance(action, RunTool) and turn.start(action)
    reply = turn.tool_finished(action, duration=0.1, error=SystemExit(2))
    assert reply == {
        "kind": "tool_result",
        "call_id": 1,
        "ok": False,
        "error": {"type": "SystemExit", "message": "add() failed: SystemExit: 2", "kind": "tool"},
    }


def test_an_unencodable_tool_value_becomes_the_tools_error() -> None:
    turn = make()
    action = turn.feed(call(1), 0.0)
    deep: list[Any] = []
    for _ in range(300):  # deeper than the codec carries
        deep = [deep]
    reply = run(turn, action, value=deep)
    assert reply is not None and reply["ok"] is False
    assert reply["error"]["message"].startswith("add() failed: CodecError: ")


@pytest.mark.parametrize(
    ("message", "type_name", "kind"),
    [
        (call(1, "nope"), "ToolError", "tool"),
        (call(1, "add", a="x", b=2), "ValidationError", "tool"),
        (call(1, "vetoed"), "PolicyError", "policy"),
    ],
    ids=["unknown-tool", "invalid-arguments", "approval-denied"],
)
def test_refused_calls_are_answered_without_running(
    message: dict[str, Any], type_name: str, kind: str
) -> None:
    action = make().feed(message, 0.0)
    assert isinstance(action, Send)
    assert action.message["error"]["type"] == type_name
    assert action.message["error"]["kind"] == kind


def test_a_tool_name_is_checked_before_its_arguments_are_decoded() -> None:
    bad_args = {"kind": "tool_call", "call_id": 1, "name": "nope", "args": {"a": {"$": "x"}}}
    action = make().feed(bad_args, 0.0)  # undecodable, but never decoded: refused by name
    assert isinstance(action, Send) and action.message["error"]["type"] == "ToolError"
    with pytest.raises(errors.ProtocolError, match="undecodable tool arguments"):  # control
        make().feed(bad_args | {"name": "add"}, 0.0)


def test_call_limits_deny_with_policy_error() -> None:
    turn = make(max_tool_calls=2)
    assert isinstance(turn.feed(call(1, "once"), 0.0), RunTool)
    denied = turn.feed(call(2, "once"), 0.0)
    assert isinstance(denied, Send) and "at most 1 times" in denied.message["error"]["message"]
    over = turn.feed(call(3), 0.0)
    assert isinstance(over, Send) and "(max_tool_calls)" in over.message["error"]["message"]


# -- the call lifecycle: attacks and their controls ------------------------------------------


def test_a_reused_call_id_is_a_protocol_violation() -> None:
    turn = make()
    first = turn.feed(call(7), 0.0)
    run(turn, first)  # even once the first call was answered
    with pytest.raises(errors.ProtocolError, match="reused tool call id 7"):
        turn.feed(call(7), 0.0)
    control = make()
    assert isinstance(control.feed(call(7), 0.0), RunTool)
    assert isinstance(control.feed(call(8), 0.0), RunTool)


def test_the_in_flight_cap_counts_calls() -> None:
    turn = make(max_in_flight=3)
    actions = [turn.feed(call(n), 0.0) for n in range(1, 5)]
    assert [type(a) for a in actions] == [RunTool, RunTool, RunTool, Send]
    refused = actions[3]
    assert isinstance(refused, Send)
    assert "more than 3 tool calls are in flight" in refused.message["error"]["message"]
    run(turn, actions[0])  # control: one answered, room for one more
    assert isinstance(turn.feed(call(5), 0.0), RunTool)


def test_a_result_while_calls_are_outstanding_is_a_protocol_violation() -> None:
    turn = make()
    action = turn.feed(call(1), 0.0)
    with pytest.raises(errors.ProtocolError, match="1 of its tool calls were still outstanding"):
        turn.feed(RESULT, 0.1)
    control = make()  # the same frames in the legitimate order
    run(control, control.feed(call(1), 0.0))
    assert control.feed(RESULT, 0.1) == Finish(value=42)
    assert isinstance(action, RunTool) and action.call_id == 1


def test_an_error_while_calls_are_outstanding_is_a_protocol_violation() -> None:
    turn = make()
    turn.feed(call(1), 0.0)
    with pytest.raises(errors.ProtocolError, match="still outstanding"):
        turn.feed({"kind": "error", "type": "E", "message": "", "traceback": ""}, 0.1)


def test_a_tool_finishing_after_its_turn_ended_is_dropped() -> None:
    turn = make()
    action = turn.feed(call(1), 0.0)
    assert isinstance(action, RunTool) and turn.start(action)
    turn.end()  # e.g. close(), or an exception on the host
    assert turn.tool_finished(action, duration=1, value=3) is None
    assert turn.build_execution(None, duration=1).tool_calls == ()


def test_no_tool_starts_after_its_turn_ended() -> None:
    turn = make()
    action = turn.feed(call(1), 0.0)
    assert isinstance(action, RunTool)
    turn.end()
    assert not turn.start(action)
    control = make()
    assert control.start(control.feed(call(1), 0.0))  # type: ignore[arg-type]


def test_a_call_after_the_deadline_is_answered_with_a_timeout_not_run() -> None:
    turn = make(deadline=1.0)
    late = turn.feed(call(1), 1.0)
    assert isinstance(late, Send) and late.message["error"]["type"] == "TimeoutError"
    assert isinstance(make(deadline=1.0).feed(call(1), 0.99), RunTool)  # control


# -- deadlines -------------------------------------------------------------------------------


def test_next_deadline_is_the_earliest_of_the_execution_and_tool_deadlines() -> None:
    turn = make(deadline=10.0)
    assert turn.next_deadline() == 10.0
    timed = turn.feed(call(1, "slow") | {"args": {}}, 3.0)
    assert isinstance(timed, RunTool) and turn.next_deadline() == 5.0
    run(turn, timed, "done", now=4.0)
    assert turn.next_deadline() == 10.0
    assert make(deadline=None).next_deadline() is None


def test_a_tool_past_its_own_timeout_is_stopped_and_answered_once() -> None:
    turn = make(deadline=10.0)
    action = turn.feed(call(1, "slow") | {"args": {}}, 0.0)
    assert isinstance(action, RunTool) and turn.start(action)
    assert turn.tick(1.9) == []
    [stop] = turn.tick(2.0)
    assert isinstance(stop, StopTool) and stop.call_id == 1
    assert stop.message["error"]["message"] == (
        "slow() failed: TimeoutError: the tool did not finish within 2 s"
    )
    assert turn.tool_finished(action, duration=3, value="late") is None  # dropped
    assert turn.phase is Phase.RUNNING and turn.feed(RESULT, 3.0) == Finish(value=42)


def test_the_deadline_interrupts_answers_outstanding_calls_and_refuses_new_ones() -> None:
    turn = make(deadline=5.0)
    running = turn.feed(call(1), 1.0)
    queued = turn.feed(call(2), 1.0)
    assert isinstance(running, RunTool) and turn.start(running)
    actions = turn.tick(5.0)
    assert [type(a) for a in actions] == [StopTool, StopTool, Interrupt]
    assert {a.call_id for a in actions if isinstance(a, StopTool)} == {1, 2}
    assert turn.phase is Phase.INTERRUPTING and turn.next_deadline() == 6.0
    assert not turn.start(queued)  # type: ignore[arg-type]  # no tool starts after time is up
    assert turn.tool_finished(running, duration=4, value=3) is None
    refused = turn.feed(call(3), 5.5)
    assert isinstance(refused, Send) and refused.message["error"]["type"] == "TimeoutError"
    assert turn.feed({"kind": "output", "stream": "stdout", "text": "x"}, 5.5) is None
    finish = turn.feed(
        {"kind": "error", "type": "KeyboardInterrupt", "message": "", "traceback": ""}, 5.6
    )
    assert isinstance(finish, Finish) and finish.restart is None
    assert isinstance(finish.error, errors.ExecutionTimeout) and finish.error.state_kept
    assert finish.error.stdout == "x"


def test_code_that_ignores_the_interrupt_is_killed_at_the_end_of_the_grace_period() -> None:
    turn = make(deadline=5.0, grace=1.0)
    assert turn.tick(5.0) == [Interrupt()]
    assert turn.tick(5.9) == []
    [finish] = turn.tick(6.0)
    assert isinstance(finish, Finish) and finish.restart == (
        "the code did not stop after its timeout"
    )
    assert isinstance(finish.error, errors.ExecutionTimeout) and not finish.error.state_kept
    assert turn.ended


def test_a_child_lost_while_interrupting_is_the_timeouts_end_otherwise_a_death() -> None:
    lost = errors.ProtocolError("the child closed the connection")
    with pytest.raises(errors.ProtocolError) as info:  # running: the session explains it
        make().child_lost(lost)
    assert info.value is lost
    turn = make(deadline=1.0)
    turn.tick(1.0)
    finish = turn.child_lost(lost)
    assert finish.restart is not None
    assert isinstance(finish.error, errors.ExecutionTimeout) and not finish.error.state_kept


def test_a_send_past_its_deadline_replaces_the_child() -> None:
    finish = make().send_timed_out()
    assert finish.restart == "the child stopped reading its socket"
    assert isinstance(finish.error, errors.ExecutionTimeout) and not finish.error.state_kept


def test_cancelling_interrupts_like_a_timeout_and_says_so() -> None:
    turn = make(deadline=None)
    assert turn.interrupt(1.0, cancelled=True) == [Interrupt()]
    assert turn.interrupt(1.0) == []  # once
    [finish] = turn.tick(2.0)
    assert isinstance(finish, Finish)
    assert finish.restart == "the code did not stop after its execute was cancelled"


def test_no_deadline_means_tick_does_nothing() -> None:
    turn = make(deadline=None)
    assert turn.tick(1e9) == [] and turn.phase is Phase.RUNNING


# -- properties over orderings ---------------------------------------------------------------


@hypothesis.settings(
    max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
@hypothesis.given(
    st.lists(st.sampled_from(["call", "finish", "output", "tick"]), max_size=30), st.integers(1, 4)
)
def test_every_call_is_answered_exactly_once_and_none_after_the_end(
    steps: list[str], in_flight: int
) -> None:
    """Any interleaving of calls, tool completions, output and clock ticks: each call the
    turn accepts gets exactly one answer, the turn never accepts a result while one is
    unanswered, and after the end nothing is answered."""
    turn = make(deadline=20.0, max_in_flight=in_flight)
    answers: dict[int, int] = {}
    started: list[RunTool] = []
    now, next_id = 0.0, 1
    for step in steps:
        now += 1.0
        if step == "call":
            action = turn.feed(call(next_id, "slow") | {"args": {}}, now)
            if isinstance(action, RunTool):
                assert turn.start(action) == (turn.phase is Phase.RUNNING)
                started.append(action)
            elif isinstance(action, Send):
                answers[next_id] = answers.get(next_id, 0) + 1
            next_id += 1
        elif step == "finish" and started:
            done = started.pop(0)
            if turn.tool_finished(done, duration=1, value="ok") is not None:
                answers[done.call_id] = answers.get(done.call_id, 0) + 1
        elif step == "output":
            turn.feed({"kind": "output", "stream": "stdout", "text": "."}, now)
        elif step == "tick":
            for action in turn.tick(now):
                if isinstance(action, StopTool):
                    answers[action.call_id] = answers.get(action.call_id, 0) + 1
        if turn.ended:
            break
    assert all(count == 1 for count in answers.values()), answers
    unanswered = [c for c in started if c.call_id not in answers]
    if unanswered and not turn.ended:
        with pytest.raises(errors.ProtocolError):
            turn.feed(RESULT, now)
    turn.end()
    for leftover in started:
        assert turn.tool_finished(leftover, duration=0, value=1) is None
