"""Sessions are separate tenants: one cannot starve another of the kernel's per-uid budgets,
leave zombies behind, or share another's randomness (issue 14).

Each attack has tenant A exhaust a budget the kernel keeps per uid (processes, inotify
instances, pending signals, pipe buffer pages) and then checks that tenant B (another session,
of the same wall, of the other wall, and a brand-new session) still gets it. The control is A
itself: the same call fails in A, so the budget really was exhausted. As root each session has
its own uid (``_launchers/identity.py``); without root, sessions share the user's uid and these
budgets (docs/threat-model.md), so the per-uid tests need root.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import pytest
import securepy
from securepy._launchers.base import LaunchSpec
from securepy._launchers.cgroups import detect_cgroup_support
from securepy._launchers.identity import lease_identity
from securepy._launchers.template import TemplateLauncher
from securepy._launchers.unsandboxed import UnsandboxedLauncher

from ..conftest import skip_unless_ci
from .conftest import forked_from_template

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a uid per session needs a root host")

HOLD_PROCESSES = """
import os, signal
held = globals().setdefault("held", [])
try:
    while True:
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        held.append(pid)
except OSError as e:
    errno_name = __import__("errno").errorcode[e.errno]
(errno_name, len(held))
"""
USE_PROCESSES = """
import os, subprocess, threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
status = os.waitpid(pid, 0)[1]
(os.waitstatus_to_exitcode(status), subprocess.run(["true"]).returncode)
"""


@needs_root
def test_a_session_holding_its_processes_starves_no_other(
    sandboxes: Any, host: Any, template_launcher: TemplateLauncher | None
) -> None:
    a = sandboxes(limits=securepy.Limits(processes=64))
    kind, held = host.value(a, HOLD_PROCESSES)
    assert kind == "EAGAIN" and held >= 50  # A is at its own limit...
    assert host.run(a, USE_PROCESSES).error_type == "ResourceLimitError"  # ...the control
    others = [sandboxes(), securepy.Session(timeout=30)]  # same wall, bubblewrap
    if template_launcher is not None:
        others.append(securepy.Session(timeout=30, launcher=template_launcher))
    try:
        for b in others:
            assert host.value(b, USE_PROCESSES) == (7, 0)
    finally:
        for b in others[1:]:
            b.close()


INOTIFY = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fds = globals().setdefault("fds", [])
def one():
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return __import__("errno").errorcode[ctypes.get_errno()]
    fds.append(fd)
    return "ok"
COUNT
"""


PTYS = """
import os
held = []
try:
    for _ in range(100):
        held.append(os.openpty())
    r = (len(held), None)
except OSError as e:
    r = (len(held), e.strerror)
r
"""


@pytest.mark.usefixtures("needs_template")
def test_a_forked_session_holds_few_terminals_of_its_own() -> None:
    """Every devpts instance but the host's first shares one kernel pool (3,072 terminals by
    default, `docker exec -t` included): a session forked from a template gets an instance of
    its own, of at most 16, instead of the template's, shared by all its sessions."""
    with securepy.Session() as greedy, securepy.Session() as other:
        assert greedy.execute(PTYS).value == (16, "No space left on device")
        # the other session still gets one, and neither sees the other's
        assert other.execute("import os; m, s = os.openpty(); os.ttyname(s)").value == (
            "/dev/pts/0")
        assert other.execute("import os; sorted(os.listdir('/dev/pts'))").value == [
            "0", "ptmx"]
    # control: on the host a process may open more than that
    held = [os.openpty() for _ in range(20)]
    for master, slave in held:
        os.close(master)
        os.close(slave)


@needs_root
def test_inotify_instances_are_per_session(sandboxes: Any, host: Any) -> None:
    limit = int(pathlib.Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    a = sandboxes(limits=securepy.Limits(open_files=limit + 64))
    if a.wall == "landlock":  # no inotify there at all, so none of the budget to take
        assert host.value(a, INOTIFY.replace("COUNT", "one()")) == "EPERM"
        return
    loop = f"r = [one() for _ in range({limit + 1})]\n(r.count('ok'), r[-1])"
    made, last = host.value(a, INOTIFY.replace("COUNT", loop))
    assert (made, last) == (limit, "EMFILE")  # A used the whole per-uid budget
    assert host.value(a, INOTIFY.replace("COUNT", "one()")) == "EMFILE"  # control
    b = sandboxes()
    assert host.value(b, INOTIFY.replace("COUNT", "one()")) == "ok"


SIGNALS = """
import ctypes, errno, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
def queue(n, hold=False):
    \"\"\"In a single-threaded child that blocks SIGRTMIN, queue it n times to itself; with
    hold, the child keeps them pending (it lives until the session ends).\"\"\"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
        i = 0
        while i < n and libc.sigqueue(os.getpid(), signal.SIGRTMIN, None) == 0:
            i += 1
        os.write(w, b"%d %d" % (i, 0 if i == n else ctypes.get_errno()))
        if hold:
            time.sleep(600)
        os._exit(0)
    i, err = map(int, os.read(r, 100).split())
    os.close(r); os.close(w)
    if not hold:
        os.waitpid(pid, 0)
    return (i, errno.errorcode.get(err, "ok"))
COUNT
"""


@needs_root
def test_pending_signals_are_per_session(sandboxes: Any, host: Any) -> None:
    limits = pathlib.Path("/proc/self/limits").read_text().splitlines()
    limit = int(next(line for line in limits if line.startswith("Max pending")).split()[3])
    a = sandboxes()
    code = SIGNALS.replace("COUNT", f"queue({limit + 10}, hold=True)")
    queued, last = host.value(a, code)
    assert last == "EAGAIN" and queued <= limit  # A filled the per-uid queue
    assert host.value(a, "queue(1)") == (0, "EAGAIN")  # control: still full for A
    b = sandboxes()
    assert host.value(b, SIGNALS.replace("COUNT", "queue(100)")) == (100, "ok")


PIPES = """
import fcntl, os
pipes = globals().setdefault("pipes", [])
def fill(count):
    \"\"\"Make pipes, growing each to 1 MiB while the kernel allows it, until a new pipe
    comes out shrunk: the per-uid soft budget of pipe pages is spent.\"\"\"
    for _ in range(count):
        r, w = os.pipe()
        pipes.append((r, w))
        if fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) < 65536:
            return "over"
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        except PermissionError:
            pass
    return "not over"
def fresh():
    r, w = os.pipe()
    size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        grown = "grown"
    except PermissionError:
        grown = "refused"
    os.close(r); os.close(w)
    return (size, grown)
COUNT
"""


@needs_root
def test_pipe_buffer_pages_are_per_session(sandboxes: Any, host: Any) -> None:
    """Past the per-uid soft limit (fs.pipe-user-pages-soft), a new pipe gets two pages and
    growing one is refused."""
    soft_pages = int(pathlib.Path("/proc/sys/fs/pipe-user-pages-soft").read_text())
    count = soft_pages // 256 + 64
    a = sandboxes(limits=securepy.Limits(open_files=2 * count + 64))
    assert host.value(a, PIPES.replace("COUNT", f"fill({count})")) == "over"
    assert host.value(a, "fresh()") == (8192, "refused")  # control: A is over the budget
    b = sandboxes()
    assert host.value(b, PIPES.replace("COUNT", "fresh()")) == (65536, "grown")


def test_posix_message_queues_are_refused(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    """POSIX message queues draw on a per-uid byte budget and nothing common needs them: the
    seccomp allow list refuses them (the control creates one unsandboxed)."""
    code = """
import ctypes, os
rt = ctypes.CDLL("librt.so.1", use_errno=True)
name = b"/securepy-mq-%d" % os.getpid()
fd = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
if fd >= 0:
    rt.mq_unlink(name)
    os.close(fd)
"ok" if fd >= 0 else __import__("errno").errorcode[ctypes.get_errno()]
"""
    if ROOT:
        assert host.value(control, code) == "ok"
    assert host.value(shared, code) == "EPERM"


ORPHANS = """
import os, time
if os.fork() == 0:          # a child that leaves a grandchild behind, then exits
    if os.fork() == 0:
        time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.6)             # the grandchild has exited by now, reparented to pid 1
def zombies():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state == "Z":
                found.append(int(pid))
    return found
# The code's own children stay its own: an exited child it has not waited for is still a
# zombie the code can wait for, with its real status (the reaper does not take it).
mine = os.fork()
if mine == 0:
    os._exit(5)
time.sleep(0.3)
before_wait = mine in zombies()
status = os.waitstatus_to_exitcode(os.waitpid(mine, 0)[1])
(zombies(), before_wait, status)
"""


def test_orphans_are_reaped_and_own_children_are_kept(sandboxes: Any, host: Any) -> None:
    session = sandboxes()
    assert host.value(session, ORPHANS) == ([], True, 5)


def test_forked_sessions_do_not_share_randomness(host: Any) -> None:
    """Sessions forked from one template with numpy preloaded draw different numbers from
    ``random`` and from numpy's global generator (the reseed itself, with its control, is
    tested in tests/core/test_template.py)."""
    draw = "import random, numpy\n(random.random(), float(numpy.random.rand()))"
    with (
        securepy.SessionPool(size=2, preload=["numpy"], timeout=30) as pool,
        pool.session() as one,
        pool.session() as two,
    ):
        if not (forked_from_template(one) and forked_from_template(two)):
            skip_unless_ci("this pool does not fork its sessions from a template")
        first, second = host.value(one, draw), host.value(two, draw)
    assert first[0] != second[0] and first[1] != second[1]


@needs_root
def test_a_worker_that_cannot_start_a_thread_names_the_limit(host: Any) -> None:
    """A worker whose uid has no process left to start a thread with fails to start with an
    error naming the processes budget, not a protocol mismatch ("reinstall securepy")."""
    identity = lease_identity()

    class CappedLauncher(UnsandboxedLauncher):
        def __init__(self, nproc: int) -> None:
            self.nproc = nproc

        def launch(self, spec: LaunchSpec) -> Any:
            argv = (
                "prlimit",
                f"--nproc={self.nproc}",
                "setpriv",
                f"--reuid={identity.uid}",
                f"--regid={identity.gid}",
                "--clear-groups",
                "--",
                *spec.argv,
            )
            return super().launch(dataclasses.replace(spec, argv=argv))

    try:
        with securepy.Session(launcher=CappedLauncher(64), timeout=30) as session:
            assert host.value(session, "6 * 7") == 42  # control: the same start, with room
        with pytest.raises(securepy.SandboxUnavailableError) as refused:
            securepy.Session(launcher=CappedLauncher(1), timeout=30)
    finally:
        identity.release()
    message = str(refused.value)
    assert "processes limit" in message and "per-uid budget" in message, message
    assert "reinstall" not in message and "protocol" not in message


FILES = """
import errno, os
def make(count):
    n = 0
    try:
        while n < count:
            open(f"{os.getcwd()}/f{n}", "w").close()
            n += 1
        return ("made", n)
    except OSError as e:
        return (errno.errorcode[e.errno], n)
make(COUNT)
"""


def test_empty_files_cannot_exhaust_kernel_memory(sandboxes: Any, host: Any) -> None:
    """A tmpfs size bounds pages, not inodes: empty files cost kernel memory only. A template
    session's tmpfs has nr_inodes (one per 4 KiB of workspace); bubblewrap cannot set it, and
    there the memory cgroup, which the kernel charges for inodes, stops the flood."""
    session = sandboxes(limits=securepy.Limits(memory_bytes=64 * 2**20, workspace_bytes=2**24))
    assert host.value(session, FILES.replace("COUNT", "100")) == ("made", 100)  # control
    outcome = host.run(session, FILES.replace("COUNT", "400000"), timeout=120)
    if forked_from_template(session):
        assert outcome.ok and outcome.value[0] == "ENOSPC"
        assert outcome.value[1] <= 2**24 // 4096
    elif not detect_cgroup_support().version:
        pytest.xfail("without a memory cgroup a bubblewrap workspace's inodes are unbounded")
    else:
        assert outcome.error_type == "ResourceLimitError" and outcome.limit == "memory", outcome
    assert host.value(session, "6 * 7") == 42
