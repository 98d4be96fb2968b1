"""Process attacks: signals to host processes (kill(-1) included), ptrace and memory access,
fork and thread bombs, leaving the pid namespace, outliving the session, gaining privileges.

Host victims are processes this test owns; one runs as uid 65534, the sandbox's own uid, so
only the pid namespace protects it. Controls run the same code unsandboxed (as root in CI),
where it works.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
from securepy._launchers.identity import uid_range

from .conftest import forked_from_template

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_signals_to_host_pids_are_impossible(
    victim: subprocess.Popen[bytes],
    shared: securepy.Session,
    control: securepy.Session,
    host: Any,
) -> None:
    code = """
import os, signal
def attempt(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        return "killed"
    except OSError as e:
        return type(e).__name__
[attempt(p) for p in PIDS]
"""
    sandboxed = host.value(shared, code.replace("PIDS", repr([host.helper.pid, victim.pid])))
    assert sandboxed == ["ProcessLookupError", "ProcessLookupError"]
    assert victim.poll() is None
    assert host.value(control, code.replace("PIDS", repr([victim.pid]))) == ["killed"]
    assert victim.wait(timeout=10) == -signal.SIGKILL


def test_kill_minus_one_reaches_only_the_sandbox(shared: securepy.Session, host: Any) -> None:
    """kill(-1) kills what the code itself started (the control), nothing on the host: not the
    uid-65534 helper (checked by the host fixture), not bubblewrap, not the worker."""
    code = """
import os, signal, subprocess
child = subprocess.Popen(["sleep", "60"])
os.kill(-1, signal.SIGKILL)
child.wait()
"""
    assert host.value(shared, code) == -signal.SIGKILL
    assert host.helper.poll() is None


PTRACE_CODE = (
    LIBC
    + """
def attempt(pid):
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        os.waitpid(pid, 0)
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        return "attached"
    return os.strerror(ctypes.get_errno())
[attempt(p) for p in PIDS]
"""
)


def test_ptrace_is_refused(
    victim: subprocess.Popen[bytes],
    shared: securepy.Session,
    control: securepy.Session,
    host: Any,
) -> None:
    if ROOT:
        assert host.value(control, PTRACE_CODE.replace("PIDS", repr([victim.pid]))) == ["attached"]
    pids = [1, host.helper.pid, victim.pid]
    result = host.value(shared, PTRACE_CODE.replace("PIDS", repr(pids)))
    assert result == [os.strerror(1)] * 3  # EPERM from the seccomp filter


def test_process_vm_readv_is_refused(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    code = (
        LIBC
        + """
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
src = ctypes.create_string_buffer(b"readable", 16)
dst = ctypes.create_string_buffer(16)
local, remote = iovec(ctypes.addressof(dst), 8), iovec(ctypes.addressof(src), 8)
n = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
dst.value if n == 8 else os.strerror(ctypes.get_errno())
"""
    )
    assert host.value(control, code) == b"readable"
    assert host.value(shared, code) == os.strerror(1)


def test_proc_mem_and_root_of_pid_1_are_closed(
    victim: subprocess.Popen[bytes],
    shared: securepy.Session,
    control: securepy.Session,
    host: Any,
) -> None:
    code = """
import os
def attempt(f):
    try:
        f()
        return "opened"
    except OSError as e:
        return type(e).__name__
[attempt(lambda: open(f"/proc/{PID}/mem", "rb").close()),
 attempt(lambda: os.listdir(f"/proc/{PID}/root/")),
 attempt(lambda: os.readlink(f"/proc/{PID}/exe"))]
"""
    if ROOT:
        assert host.value(control, code.replace("PID", str(victim.pid))) == ["opened"] * 3
    # pid 1 is bubblewrap (host root) or a template session's reaper (uid 65534, not the
    # session's): nothing outside the namespace has a number inside.
    assert host.value(shared, code.replace("PID", "1")) == ["PermissionError"] * 3


def test_pid_namespace_cannot_be_left(shared: securepy.Session, host: Any) -> None:
    code = (
        LIBC
        + """
fd = os.open("/proc/1/ns/pid", os.O_RDONLY) if os.access("/proc/1/ns/pid", os.R_OK) else -1
r = {"setns": libc.setns(fd, 0) == 0, "errno": ctypes.get_errno(),
     "unshare": libc.unshare(0x20000000) == 0,  # CLONE_NEWPID
     "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
     "ppid": os.getppid()}
r
"""
    )
    result = host.value(shared, code)
    assert result["setns"] is False and result["unshare"] is False
    # pid numbers of a fresh namespace; the parent is bubblewrap's pid 1, or (a template's
    # session is the template's child) outside the namespace, so it reads 0
    assert max(result["pids"]) < 100
    assert result["ppid"] == (0 if forked_from_template(shared) else 1)


def test_no_privilege_can_be_gained(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    """No capabilities, no-new-privs set (setuid binaries grant nothing), the session's uid."""
    code = """
import subprocess
status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
fields = dict(line.split(":\\t", 1) for line in status.splitlines() if ":\\t" in line)
r = {k: fields[k].split()[0] for k in ("Uid", "CapEff", "CapPrm", "NoNewPrivs")}
r
"""
    if ROOT:
        assert host.value(control, code)["NoNewPrivs"] == "0"
        assert host.value(control, code)["CapEff"] != "0000000000000000"
    got = host.value(shared, code)
    # As root each session has a uid of its own from the range; otherwise the user's own.
    first, last = uid_range() if ROOT else (os.getuid(), os.getuid())
    assert first <= int(got.pop("Uid")) <= last
    assert got == {
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
        "NoNewPrivs": "1",
    }


FORK_CODE = """
import os, errno, signal
made = []
try:
    for _ in range(COUNT):
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        made.append(pid)
    r = ("forked", len(made))
except OSError as e:
    r = (errno.errorcode[e.errno], len(made))
for pid in made:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
r
"""


def test_fork_bomb_is_bounded(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(processes=16))
    assert host.value(session, FORK_CODE.replace("COUNT", "4")) == ("forked", 4)  # control
    kind, count = host.value(session, FORK_CODE.replace("COUNT", "10000"))
    # Limits.processes counts what the code starts, besides the worker's own two threads.
    assert kind == "EAGAIN" and count <= 16
    # The real thing: every child forks forever; the session and the host survive it, and
    # closing the session leaves nothing (checked by the fixture through the pid namespace).
    bomb = """
import os
for _ in range(4):
    try:
        child = os.fork()  # the first children may fill the pids limit before the last fork
    except OSError:
        break
    if child == 0:
        while True:
            try:
                os.fork()
            except OSError:
                pass
"done"
"""
    assert host.value(session, bomb) == "done"
    assert host.value(session, "6 * 7") == 42


def test_thread_bomb_is_bounded(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(processes=16))
    code = """
import threading
stop = threading.Event()
threads = []
try:
    for _ in range(COUNT):
        t = threading.Thread(target=stop.wait)
        t.start()
        threads.append(t)
    r = ("started", len(threads))
except RuntimeError as e:
    r = ("refused", len(threads))
stop.set()
for t in threads:
    t.join()
r
"""
    assert host.value(session, code.replace("COUNT", "4")) == ("started", 4)  # control
    kind, count = host.value(session, code.replace("COUNT", "10000"))
    assert kind == "refused" and count <= 16
    assert host.value(session, "6 * 7") == 42


DAEMON_CODE = """
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["/bin/sh", "-c", "trap '' HUP TERM INT; sleep 300; : MARKER"])
    os._exit(0)
os.wait()
"forked"
"""


def test_daemonized_child_does_not_outlive_the_session(sandboxes: Any, host: Any) -> None:
    # Control: unsandboxed, a double-forked setsid daemon escapes the session's process group
    # and outlives close() (sandbox=False is no wall); here we clean it up ourselves.
    marker = f"{host.token}-control"
    with securepy.Session(sandbox=False) as unsandboxed:
        assert host.value(unsandboxed, DAEMON_CODE.replace("MARKER", marker)) == "forked"
    survivors = host.kill_marked(marker, wait=10)
    assert survivors, "control: the unsandboxed daemon should have outlived its session"
    # Sandboxed: the same daemon dies with the sandbox (the fixture checks the pid namespace
    # and the marker after close).
    session = sandboxes()
    assert host.value(session, DAEMON_CODE.replace("MARKER", host.token)) == "forked"
    assert host.value(session, "6 * 7") == 42
