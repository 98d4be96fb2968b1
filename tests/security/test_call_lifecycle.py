"""The tool-call lifecycle belongs to the host: forged frames cannot run tools after their turn,
escape the in-flight cap, or shift results between turns.

The code writes its own ``tool_call`` and ``result`` frames on the worker's socket (fd
``sys.argv[2]``) and reads the host's replies there, as an attacker would. Each attack has its
control: the same frames in a legitimate order are served. The same rules are driven without a
process in tests/core/test_turn.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

RAW = """
import json, os, sys, socket, struct, time
sock = socket.socket(fileno=os.dup(int(sys.argv[2])))
def send(message):
    body = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
def call(call_id, name, **args):
    send({"kind": "tool_call", "call_id": call_id, "name": name, "args": args})
def reply():
    def take(n):
        data = b""
        while len(data) < n:
            data += sock.recv(n - len(data))
        return data
    return json.loads(take(struct.unpack(">I", take(4))[0]))
"""


class Counter:
    """A host tool that records each start; ``hold`` makes it wait until released."""

    def __init__(self, hold: bool = False, pause: float = 0.0) -> None:
        self.starts: list[float] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.pause = pause
        self._lock = threading.Lock()

    def tool(self) -> securepy.Tool:
        def count(n: int = 0) -> int:
            """Count a call."""
            with self._lock:
                self.starts.append(time.monotonic())
            self.release.wait(20)
            time.sleep(self.pause)
            return n

        return securepy.Tool("count", "Count a call.", count)


def test_a_reused_call_id_ends_the_child(sandboxes: Any, host: Any) -> None:
    counter = Counter()
    session = sandboxes(tools=[counter.tool()])
    control = host.value(
        session,
        RAW + "call(900001, 'count', n=1)\ncall(900002, 'count', n=2)\n"
        "sorted(reply()['value'] for _ in range(2))",
    )
    assert control == [1, 2]
    outcome = host.run(
        session,
        RAW + "call(900003, 'count', n=1)\ncall(900003, 'count', n=2)\ntime.sleep(30)",
        timeout=20,
    )
    assert outcome.error_type == "ProtocolError" and "reused tool call id 900003" in str(
        outcome.error
    )
    assert len(counter.starts) <= 3  # the duplicate never ran
    assert host.value(session, "6 * 7") == 42


def test_a_forged_result_while_a_tool_runs_ends_the_child_and_shifts_nothing(
    sandboxes: Any, host: Any
) -> None:
    counter = Counter(hold=True)
    session = sandboxes(tools=[counter.tool()])
    started = time.monotonic()
    outcome = host.run(
        session,
        RAW + "call(900001, 'count', n=1)\n"
        # With this execute's turn id (the code can read it), so it is the end it claims.
        "f = sys._getframe()\nwhile 'message' not in f.f_locals:\n    f = f.f_back\n"
        "send({'kind': 'result', 'value': 'forged', 'turn': f.f_locals['message']['turn']})\n"
        "time.sleep(30)",
        timeout=20,
    )
    assert outcome.error_type == "ProtocolError" and "still outstanding" in str(outcome.error)
    assert time.monotonic() - started < 10
    counter.release.set()
    time.sleep(0.2)  # the held tool returns now: its result must reach no later turn
    assert [host.value(session, f"{n} * 7") for n in range(1, 4)] == [7, 14, 21]
    # Control: the same frames, the result only once the call was answered, is accepted.
    assert host.value(session, RAW + "call(900002, 'count', n=5)\nr = reply()['value']\nr") == 5


def test_calls_queued_when_the_timeout_fires_never_start(sandboxes: Any, host: Any) -> None:
    counter = Counter(pause=0.4)
    session = sandboxes(tools=[counter.tool()])
    forge = RAW + "for i in range(30):\n    call(900000 + i, 'count', n=i)\n"
    # Control: with time enough, every forged call runs and is answered.
    assert host.value(session, forge + "len([reply() for _ in range(30)])", timeout=30) == 30
    assert len(counter.starts) == 30
    counter.starts.clear()
    begun = time.monotonic()
    outcome = host.run(session, forge.replace("900000", "800000") + "time.sleep(30)", timeout=1)
    assert outcome.error_type == "ExecutionTimeout"
    deadline = begun + 1
    time.sleep(2.5)  # the pool's threads are free again: nothing queued may start now
    late = [t - deadline for t in counter.starts if t > deadline + 0.05]
    assert late == [] and len(counter.starts) < 30
    assert host.value(session, "6 * 7") == 42


def test_the_in_flight_cap_counts_calls(sandboxes: Any, host: Any) -> None:
    counter = Counter(hold=True)
    session = sandboxes(tools=[counter.tool()])
    threading.Timer(2.0, counter.release.set).start()
    code = (
        RAW
        + """
for i in range(70):
    call(900000 + i, 'count', n=i)
kinds = [r["ok"] or r["error"]["kind"] for r in (reply() for _ in range(70))]
(kinds.count(True), kinds.count("policy"))
"""
    )
    assert host.value(session, code, timeout=30) == (64, 6)
    assert len(counter.starts) == 64
