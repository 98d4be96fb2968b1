"""The code's stdout and stderr: captured, streamed, capped, and a failing callback."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def echo(x: int) -> int:
    """Its argument."""
    return x


def add(a: int, b: int) -> int:
    """Their sum."""
    return a + b


def test_stdout_stderr_and_text(twin: Any) -> None:
    session = twin()
    result = session.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n'v'")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.text == "out\n[stderr]\nerr\n'v'"
    assert result.duration > 0


def test_subprocess_output_is_captured(twin: Any) -> None:
    session = twin()
    result = session.execute("import subprocess\nsubprocess.run(['echo', 'from child'])")
    assert result.stdout == "from child\n"


def test_output_streams_before_the_code_finishes(twin: Any) -> None:
    session = twin()
    first_line = threading.Event()
    seen: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        seen.append((stream, text))
        first_line.set()

    # The code waits for the host to have seen its first line: a file the test creates.
    marker = f"/tmp/securepy-stream-{os.getpid()}-{id(seen)}"

    def release() -> None:
        first_line.wait(10)
        with open(marker, "w"):
            pass

    helper = threading.Thread(target=release)
    helper.start()
    try:
        code = (f"import os, time\nprint('first')\nwhile not os.path.exists({marker!r}):\n"
                "    time.sleep(0.01)\nprint('second')")
        result = session.execute(code, on_output=on_output, timeout=20)
    finally:
        helper.join()
        if os.path.exists(marker):
            os.unlink(marker)
    assert seen == [("stdout", "first\n"), ("stdout", "second\n")]
    assert result.stdout == "first\nsecond\n"


def test_output_is_capped_with_a_marker(twin: Any) -> None:
    session = twin(max_output_bytes=1000)
    result = session.execute("print('x' * 5000)\nprint('more')")
    assert result.truncated
    assert result.stdout == "x" * 1000 + "\n[output truncated: over the 1000-byte output limit]\n"


def test_on_output_raising_after_a_serial_tool_call_does_not_hang(twin: Any) -> None:
    session = twin(tools=[add])

    def on_output(stream: str, text: str) -> None:
        raise RuntimeError("callback bug")

    started = time.monotonic()
    # The handler's failure is logged (test_callbacks.py) and the execute goes on.
    result = session.execute("x = add(1, 2)\nprint('hi')\nx", on_output=on_output, timeout=20)
    assert result.value == 3
    assert time.monotonic() - started < 10
    assert session.execute("add(2, 2)").value == 4
