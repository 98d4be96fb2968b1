"""IPC abuse: the code writes its own frames on the worker's socket (fd ``sys.argv[2]``).

Malformed, oversized, forged or out-of-turn frames end that child with ProtocolError, fast,
never the host, and the session restarts. Control: a well-formed frame written the same raw way
is accepted (it shows up in the output), so the refusals are not a broken write path. Also:
file descriptors passed with SCM_RIGHTS never land in the host, and unknown tools or hostile
arguments are refused on the host before any tool runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

RAW = """
import os, sys, socket, struct, time
sock = socket.socket(fileno=os.dup(int(sys.argv[2])))
def frame(body):
    return struct.pack(">I", len(body)) + body
def send(body):
    sock.sendall(frame(body))
"""
VALID = b'{"kind":"output","stream":"stdout","text":"forged but valid\\n"}'

MALFORMED = {
    "length-over-cap": "sock.sendall(struct.pack('>I', 0xFFFFFFFF))",
    "length-over-cap-then-stall": "sock.sendall(struct.pack('>I', 2**26 + 1) + b'{')",
    "invalid-json": "send(b'{not json')",
    "invalid-utf8": """send(b'{"kind":"output","stream":"stdout","text":"\\xff\\xfe"}')""",
    "json-array": "send(b'[1, 2, 3]')",
    "unknown-kind": """send(b'{"kind":"shell","cmd":"id"}')""",
    "extra-key": """send(b'{"kind":"output","stream":"stdout","text":"x","exec":1}')""",
    "wrong-type": """send(b'{"kind":"tool_call","call_id":"1","name":"x","args":{}}')""",
    "bool-as-int": """send(b'{"kind":"tool_call","call_id":true,"name":"x","args":{}}')""",
    "missing-key": """send(b'{"kind":"error","type":"X"}')""",
    "deep-nesting": """send(b'{"kind":"result","value":' + b'[' * 200000 + b']' * 200000 + b'}')""",
    "huge-integer": """send(b'{"kind":"result","value":' + b'9' * 100000 + b'}')""",
    "unknown-output-stream": """send(b'{"kind":"output","stream":"/etc/passwd","text":"x"}')""",
    "ready-mid-turn": """send(b'{"kind":"ready","version":1,"pid":1}')""",
    "truncated-then-exit": """sock.sendall(struct.pack('>I', 100) + b'{"kind"'); os._exit(0)""",
}


@pytest.mark.parametrize("attack", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_frames_end_the_child_not_the_host(
    attack: str, sandboxes: Any, host: Any
) -> None:
    session = sandboxes()
    control = session.execute(RAW + f"sock.sendall(frame({VALID!r}))\n'sent'")
    assert (control.value, control.stdout) == ("sent", "forged but valid\n")
    started = time.monotonic()
    outcome = host.run(session, RAW + MALFORMED[attack] + "\ntime.sleep(60)", timeout=20)
    assert outcome.error_type == "ProtocolError", outcome
    assert time.monotonic() - started < 5  # refused at once, not by the timeout
    assert host.value(session, "6 * 7") == 42  # restarted


# The running execute's turn id, which the code can read from the worker's own frames.
TURN = """
frame_ = sys._getframe()
while "message" not in frame_.f_locals:
    frame_ = frame_.f_back
turn = frame_.f_locals["message"]["turn"]
"""


def test_forged_result_frames_only_lie_about_the_child_itself(sandboxes: Any, host: Any) -> None:
    """A forged ``error`` frame claiming a limit becomes that error on the host: plain data,
    nothing executed, and the session stays usable."""
    session = sandboxes()
    forged = (
        '{"kind":"error","type":"X","message":"%s%n {0.__class__}","traceback":"",'
        '"limit":"cpu_seconds","turn":TURN_ID}'
    )
    code = (RAW + TURN + f"sock.sendall(frame({forged!r}.replace('TURN_ID', str(turn))"
            ".encode()))\ntime.sleep(1)")
    outcome = host.run(session, code)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "cpu_seconds"
    assert "%s%n {0.__class__}" in str(outcome.error)
    # Without this execute's id (as a frame left over from another turn) it is refused.
    unnamed = forged.replace(',"turn":TURN_ID', "").encode()
    outcome = host.run(session, RAW + f"sock.sendall(frame({unnamed!r}))\ntime.sleep(1)")
    assert outcome.error_type == "ProtocolError"


LEFT_RUNNING = """
import json, threading
def forge():
    time.sleep(0.3)  # after this execute's own result is sent: between turns
    body = json.dumps({"kind": "result", "value": "forged"}).encode()
    sock.sendall(frame(body))
threading.Thread(target=forge, daemon=True).start()
"planted"
"""


def test_a_thread_left_running_cannot_end_a_later_execute(sandboxes: Any, host: Any) -> None:
    session = sandboxes()
    assert host.value(session, RAW + LEFT_RUNNING) == "planted"
    time.sleep(1)
    outcome = host.run(session, "'the second code ran'")
    assert outcome.error_type == "ProtocolError"  # not the forged value: the child is replaced
    assert "other than the one it was running" in str(outcome.error)
    # Every later execute gets its own result (none is one behind).
    assert host.value(session, "'third'") == "third"
    assert host.value(session, "'fourth'") == "fourth"


def _host_fds() -> dict[str, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[name] = os.readlink(f"/proc/self/fd/{name}")
    return found


def test_fds_sent_with_scm_rights_never_reach_the_host(sandboxes: Any, host: Any) -> None:
    # Control: over a plain socketpair, a receiver that asks for ancillary data does get the fd.
    left, right = socket.socketpair()
    with left, right, open("/dev/null") as null:
        socket.send_fds(left, [b"x"], [null.fileno()])
        _, fds, _, _ = socket.recv_fds(right, 10, 4)
        assert len(fds) == 1
        os.close(fds[0])
    session = sandboxes()
    before = _host_fds()
    code = (
        RAW
        + f"""
marked = open("/workspace/{host.token}-fd", "w")
for _ in range(20):
    socket.send_fds(sock, [frame({VALID!r})], [marked.fileno(), sock.fileno()] * 4)
'sent'
"""
    )
    execution = session.execute(code)
    assert execution.value == "sent" and execution.stdout == "forged but valid\n" * 20
    after = _host_fds()
    assert not [link for link in after.values() if host.token in link]
    assert len(after) <= len(before) + 2, set(after.values()) - set(before.values())
    assert host.value(session, "6 * 7") == 42


def test_a_flood_of_output_frames_is_capped(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(output_bytes=64 * 1024))
    text = "z" * 60000
    body = json.dumps({"kind": "output", "stream": "stdout", "text": text}).encode()
    code = (
        RAW + f"data = frame({body!r}) * 100\nfor _ in range(30):\n    sock.sendall(data)\n'done'"
    )
    started = time.monotonic()
    execution = session.execute(code, timeout=60)  # 180 MB of frames
    assert execution.value == "done" and execution.truncated
    assert len(execution.stdout) <= 64 * 1024 + 200
    assert time.monotonic() - started < 30
    assert host.value(session, "6 * 7") == 42


@pytest.mark.parametrize(
    "twin", ["sync", "async"], ids=["tool-call-flood-sync", "tool-call-flood-async"]
)
def test_a_flood_of_tool_calls_that_never_reads_replies_cannot_hang_the_host(
    twin: str, host: Any
) -> None:
    body = b'{"kind":"tool_call","call_id":7,"name":"nope","args":{}}'
    code = RAW + f"data = frame({body!r}) * 1000\nfor _ in range(2000):\n    sock.sendall(data)\n"
    done = threading.Event()
    sessions: list[Any] = []
    errors: list[str] = []

    async def run_async() -> None:
        async with securepy.AsyncSession(timeout=30) as session:
            sessions.append(session)
            try:
                await session.execute(code, timeout=3)
            except securepy.SecurePyError as exc:
                errors.append(type(exc).__name__)

    def run() -> None:
        try:
            if twin == "async":
                asyncio.run(run_async())
            else:
                with securepy.Session(timeout=30) as session:
                    sessions.append(session)
                    errors.append(host.run(session, code, timeout=3).error_type)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    finished = done.wait(10)
    while not done.is_set():  # unblock the host: kill the child, so its send fails
        for session in sessions:
            child = session._child
            if child is not None:
                child.process.kill()
        done.wait(1)
    thread.join(15)
    assert finished, "execute(timeout=3) was still blocked after 10 s"
    assert errors and errors[0] in ("ExecutionTimeout", "ProtocolError")


def test_unknown_tools_and_hostile_arguments_are_refused_on_the_host(
    sandboxes: Any, host: Any
) -> None:
    calls: list[Any] = []

    def lookup(key: str, limit: int = 10) -> str:
        """Look a key up on the host."""
        calls.append((key, limit))
        return f"value of {key}"

    session = sandboxes(tools=[lookup])
    assert host.value(session, "lookup('a')") == "value of a"  # control
    code = """
import gc
from securepy_tools import ToolError
broker = next(o for o in gc.get_objects() if type(o).__name__ == "ToolBroker")
def attempt(name, args):
    try:
        broker.call(name, args)
        return "ran"
    except ToolError as e:
        return e.type_name
deep = []
for _ in range(60):
    deep = [deep]
[attempt("nope", {}), attempt("__import__", {"name": "os"}),
 attempt("lookup", {"key": 1}), attempt("lookup", {"key": "a", "limit": "9; rm -rf /"}),
 attempt("lookup", {"key": "a", "evil": True}), attempt("lookup", {}),
 attempt("lookup", {"key": deep})]
"""
    assert host.value(session, code) == ["ToolError"] * 2 + ["ValidationError"] * 5
    assert calls == [("a", 10)]  # the tool never ran with a hostile argument
