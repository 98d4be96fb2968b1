"""Python-level tricks: ctypes straight to libc, gc and frame walking to the worker's broker
and connection, monkeypatching the worker, looking for secrets in argv, the environment and
the interpreter's memory. The worker is inside the wall: reaching it grants nothing the host
does not check again.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
CTYPES = {
    "ctypes-socket-af-inet": "libc.socket(2, 1, 0)",
    "ctypes-setuid-0": "libc.setuid(0)",
    "ctypes-open-etc-shadow": "libc.open(b'/etc/shadow', 0)",
    "ctypes-kill-pid-1": "libc.kill(1, 9)",
}


@pytest.mark.parametrize("call", list(CTYPES), ids=list(CTYPES))
def test_ctypes_calls_to_libc_meet_the_same_wall(
    call: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    code = LIBC + f"ret = {CTYPES[call]}\n'ok' if ret >= 0 else os.strerror(ctypes.get_errno())"
    if os.geteuid() == 0 and call != "ctypes-kill-pid-1":  # never signal the host's init
        assert host.value(control, code) == "ok"
    assert host.value(shared, code) != "ok"


GC_BROKER = """
import gc
from securepy_tools import PolicyError, ToolError
broker = next(o for o in gc.get_objects() if type(o).__name__ == "ToolBroker")
def attempt(name, args):
    try:
        return broker.call(name, args)
    except (PolicyError, ToolError) as e:
        return type(e).__name__
"""


def test_the_broker_reached_through_gc_grants_nothing_more(sandboxes: Any, host: Any) -> None:
    ran: list[str] = []

    def fetch(key: str) -> str:
        """Fetch a key."""
        ran.append(key)
        return key.upper()

    def delete_all() -> str:
        """Delete everything (denied by policy)."""
        ran.append("delete_all")
        return "deleted"

    tools = [
        securepy.Tool("fetch", "Fetch a key.", fetch, max_calls=2),
        securepy.Tool("delete_all", "Delete.", delete_all, approve=lambda r: False),
    ]
    session = sandboxes(tools=tools)
    code = (
        GC_BROKER
        + """
[attempt("fetch", {"key": "a"}),                       # control: a legitimate call works
 attempt("delete_all", {}),                            # still asks the host's approve hook
 attempt("fetch", {"key": "b"}), attempt("fetch", {"key": "c"})]  # still counted
"""
    )
    assert host.value(session, code) == ["A", "PolicyError", "B", "PolicyError"]
    assert ran == ["a", "b"]


def test_frame_walking_and_gc_find_no_host_secret(sandboxes: Any, host: Any) -> None:
    """The secret lives in a host tool's closure: the host holds it (control), the code can
    use the tool, and no object in the sandboxed interpreter holds the secret."""
    api_key = host.canary

    def whoami() -> str:
        """The account name."""
        return "account-1" if api_key else ""

    assert whoami.__closure__ is not None
    assert whoami.__closure__[0].cell_contents == host.canary  # control: the host holds it
    session = sandboxes(tools=[whoami])
    code = """
import gc, sys
found = []
frame = sys._getframe()
names = []
while frame is not None:  # walk up into the worker's own frames
    names.append(frame.f_code.co_name)
    found += [repr(v)[:2000] for v in frame.f_locals.values()]
    frame = frame.f_back
for o in gc.get_objects():
    try:
        found.append(repr(o)[:2000])
    except Exception:
        pass
found.append(repr(sys.argv) + repr(dict(__import__("os").environ)) + repr(sys.path))
found += [open("/proc/self/cmdline", "rb").read().decode(errors="replace"),
          open("/proc/self/environ", "rb").read().decode(errors="replace")]
(whoami(), names, "\\n".join(found))
"""
    account, frames, everything = host.value(session, code)
    assert account == "account-1"
    assert "main" in frames  # the walk did reach the worker's loop
    assert host.canary not in everything  # also checked by the host fixture
    assert host.canary_env not in everything


def test_monkeypatching_the_worker_cannot_lift_host_caps(sandboxes: Any, host: Any) -> None:
    """Replace the worker's output stream writer to send huge frames directly: the host's
    output cap and frame cap still hold, because they are enforced on the host."""
    session = sandboxes(limits=securepy.Limits(output_bytes=4096), max_frame_bytes=1024 * 1024)
    patch = """
import sys
output = sys.modules["_securepy_worker.output"]
protocol = sys.modules["_securepy_worker.protocol"]
connection = next(o for o in __import__("gc").get_objects()
                  if type(o).__name__ == "Connection")
# Straight to the socket: the worker's own send refuses frames over the cap, a hostile one won't.
output._OutputStream.write = lambda self, text: connection._sock.sendall(protocol.encode_frame(
    {"kind": "output", "stream": "stdout", "text": text * SIZE})) or len(text)
print("x" * 1000)
"""
    capped = session.execute(patch.replace("SIZE", "100"))  # 100 kB in one frame
    assert capped.truncated and len(capped.stdout) <= 4096 + 200
    outcome = host.run(session, patch.replace("SIZE", "2000"))  # a 2 MB frame: over the cap
    assert outcome.error_type == "ProtocolError"
    assert host.value(session, "6 * 7") == 42  # a fresh, unpatched worker
