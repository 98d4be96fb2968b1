"""The caller's callbacks: a failing ``pre_execute_hook`` is a PolicyError with its cause, a
failing ``on_output`` handler is logged and the execute goes on with its state."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from securepy import errors


def add(a: int, b: int) -> int:
    """Their sum."""
    return a + b


def test_a_pre_execute_hook_that_raises_refuses_with_the_cause_kept(twin: Any) -> None:
    def hook(code: str) -> bool:
        if "forbidden" in code:
            raise LookupError("policy service unreachable")
        return True

    session = twin(pre_execute_hook=hook)
    session.execute("x = 1")
    with pytest.raises(
        errors.PolicyError,
        match=r"^the pre_execute_hook raised LookupError: policy service unreachable; "
        r"the code was not run$",
    ) as caught:
        session.execute("forbidden = 2")
    assert isinstance(caught.value.__cause__, LookupError)
    assert session.execute("x").value == 1  # nothing ran, the state is intact


def test_a_pre_execute_hook_returning_false_still_refuses(twin: Any) -> None:
    session = twin(pre_execute_hook=lambda code: "forbidden" not in code)
    with pytest.raises(errors.PolicyError, match=r"^the pre_execute_hook refused this code$"):
        session.execute("forbidden = 1")
    assert session.execute("1 + 1").value == 2


def test_an_on_output_handler_that_raises_is_logged_and_the_execute_goes_on(
    twin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    session = twin(tools=[add])
    session.execute("kept = 40")
    seen: list[str] = []

    def on_output(stream: str, text: str) -> None:
        seen.append(text)
        raise RuntimeError("handler bug")

    with caplog.at_level(logging.WARNING, logger="securepy"):
        run = session.execute(
            "print('a')\nx = add(1, 1)\nprint('b')\nkept + x", on_output=on_output
        )
    assert run.value == 42
    assert run.stdout == "a\nb\n"
    assert seen == ["a\n", "b\n"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"session {session.inner.id}: the on_output handler raised RuntimeError: handler bug; "
        "the output is kept in the Execution and the code goes on (later failures of this "
        "execute are logged at DEBUG)"
    ]
    assert warnings[0].exc_info is not None
    assert session.execute("kept").value == 40


def test_on_output_that_is_not_callable_is_refused_before_anything_runs(twin: Any) -> None:
    session = twin()
    with pytest.raises(
        TypeError,
        match=r"^on_output must be a callable taking \(stream, text\), not str$",
    ):
        session.execute("ran = True", on_output="print")
    with pytest.raises(errors.ExecutionError, match=r"^NameError: name 'ran' is not defined$"):
        session.execute("ran")


def test_an_on_output_handler_interrupted_by_the_host_still_ends_the_execute(
    twin: Any,
) -> None:
    # Not an Exception (Ctrl-C on the host): it goes on to the caller, the session recovers.
    session = twin()

    def on_output(stream: str, text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.execute("print('x')\nimport time\ntime.sleep(0.2)\n1", on_output=on_output)
    assert session.execute("2 + 2").value == 4
