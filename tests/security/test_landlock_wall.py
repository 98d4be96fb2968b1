"""The Landlock wall (``wall="landlock"``): the attack classes the namespace wall contains, run
against the wall for hosts where namespaces cannot be made, and the wall chosen by itself in a
reproduced default container (Docker's default seccomp profile and capabilities).

Each attack has its control: the same code succeeds unsandboxed (or on the session's own
workspace), so the refusal is the wall's. As root the wall runs each session as a uid of its
own, which cannot enter an interpreter installed under /root (pyenv): there the tests run the
sandboxed interpreter from /usr/bin/python3 (``python=``).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy
from securepy._interpreter import probe_interpreter
from securepy._launchers.identity import uid_range
from securepy._launchers.landlock import landlock_problem, landlock_problem_for

from ..conftest import run_as_another_user, wait_until

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
HERE = pathlib.Path(__file__).parent


def _python() -> str | None:
    if landlock_problem_for(probe_interpreter(None)) is None:
        return None
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else None


@pytest.fixture
def landlocked(host: Any) -> Iterator[Callable[..., securepy.Session]]:
    """Factory of sessions behind the Landlock wall, closed after the test; then no process
    of theirs may be left (as root: nothing runs as their uids)."""
    problem = landlock_problem()
    if problem is not None:
        pytest.fail(f"the Landlock wall cannot stand here: {problem}")
    made: list[securepy.Session] = []
    uids: list[int] = []

    def make(**options: Any) -> securepy.Session:
        session = securepy.Session(wall="landlock", python=_python(), timeout=30, **options)
        made.append(session)
        assert session.wall == "landlock"
        uids.append(host.value(session, "__import__('os').getuid()"))
        return session

    yield make
    for session in made:
        session.close()
    if ROOT:
        wait_until(lambda: not [p for p in _pids() if _uid_of(p) in uids], timeout=10)
    host.assert_nothing_survived([])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


ATTEMPT = """
import os, socket
def attempt(f):
    try:
        r = f()
        return "ok" if r is None else r
    except OSError as e:
        return type(e).__name__
"""


def test_host_files_are_out_of_reach(landlocked: Any, control: securepy.Session, host: Any) -> None:
    canary = next(iter(host.canary_files))
    code = (
        ATTEMPT
        + f"""
[attempt(lambda: open({canary!r}).read()),
 attempt(lambda: os.listdir({str(pathlib.Path(canary).parent)!r})),
 attempt(lambda: open("/etc/shadow").read()),
 attempt(lambda: os.listdir("/proc")),
 attempt(lambda: open(f"/proc/{os.getpid()}/environ").read()),
 attempt(lambda: os.listdir("/sys")),
 attempt(lambda: open("mine.txt", "w").write("own") and open("mine.txt").read())]
"""
    )
    reached = host.value(control, code, record=False)
    assert host.canary in reached[0] and reached[3] != "PermissionError"  # control
    got = host.value(landlocked(), code)
    assert got[:6] == ["PermissionError"] * 6
    assert got[6] == "own"  # its own workspace is its to use


def test_nothing_outside_the_workspace_is_writable(
    landlocked: Any, control: securepy.Session, host: Any
) -> None:
    targets = [
        f"/tmp/{host.token}",
        f"/var/tmp/{host.token}",
        f"/dev/shm/{host.token}",
        f"{os.path.dirname(os.__file__)}/{host.token}",
        f"/{host.token}",
    ]
    code = ATTEMPT + f"[attempt(lambda: open(p, 'w').close()) for p in {targets!r}]"
    got = host.value(landlocked(), code)
    assert got == ["PermissionError"] * len(targets)
    reached = host.value(control, code)  # control: the host user can create them
    assert reached[0] == "ok"
    for path in targets:
        pathlib.Path(path).unlink(missing_ok=True)


def test_no_network_of_any_kind(landlocked: Any, control: securepy.Session, host: Any) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            ATTEMPT
            + f"""
def tcp():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
    s.close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", {port}))
def unix_path():
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/docker.sock")
def abstract():
    s = socket.socket(socket.AF_UNIX)
    s.connect("\\0securepy-nothing")
[attempt(tcp), attempt(udp), attempt(unix_path), attempt(abstract),
 attempt(lambda: socket.socketpair()[0].close())]
"""
        )
        assert host.value(control, code)[:2] == ["ok", "ok"]  # control
        got = host.value(landlocked(), code)
    assert got[:4] == ["PermissionError"] * 4
    assert got[4] == "ok"  # the one kind of socket it keeps: a pair within itself


def test_other_processes_cannot_be_signalled_traced_or_read(
    landlocked: Any, control: securepy.Session, host: Any
) -> None:
    victims = [host.helper.pid, os.getpid()]
    code = (
        ATTEMPT
        + f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def ptrace(pid):
    if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
[[attempt(lambda: os.kill(pid, 0)), attempt(lambda: os.kill(pid, SIGNAL)),
  attempt(lambda: PTRACE), attempt(lambda: open(f"/proc/{{pid}}/cmdline").read())]
 for pid in {victims!r}]
"""
    )
    # control: unsandboxed (root here), the same code reaches the helper (signal 0 only)
    # (never PTRACE_ATTACH for real: it would stop the test process)
    control_code = code.replace("SIGNAL", "0").replace("PTRACE", "None")
    reached = host.value(control, control_code, record=False)
    assert reached[0][:2] == ["ok", "ok"] and reached[0][3] != "PermissionError"
    code = code.replace("SIGNAL", str(int(signal.SIGTERM))).replace("PTRACE", "ptrace(pid)")
    got = host.value(landlocked(), code)
    for per_victim in got:
        assert per_victim == ["PermissionError"] * 4, got
    host.assert_helper_alive()


def test_escaped_processes_end_with_the_session(landlocked: Any, host: Any) -> None:
    """A double-forked, setsid daemon (no pid namespace ends it here): it runs while the
    session lives (the control) and is gone when it closes."""
    session = landlocked()
    code = f"""
import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.execv("/bin/sleep", [{host.token!r}, "600"])  # the token as argv[0]: marked
    os._exit(0)
os.wait()
int(os.read(r, 20))
"""
    daemon = host.value(session, code)
    assert os.path.exists(f"/proc/{daemon}")  # control: it escaped its parent and runs
    session.close()
    wait_until(lambda: not os.path.exists(f"/proc/{daemon}"), timeout=10)


def test_each_session_has_its_own_uid_and_workspace(landlocked: Any, host: Any) -> None:
    one, two = landlocked(), landlocked()
    look = "import os\n(os.getuid(), os.getgid(), os.getgroups(), os.getcwd())"
    (uid1, gid1, groups1, cwd1), (uid2, _, _, cwd2) = host.value(one, look), host.value(two, look)
    if ROOT:
        first, last = uid_range()
        assert uid1 != uid2 and first <= uid1 <= last and gid1 == uid1 and groups1 == []
    assert cwd1 != cwd2
    host.value(one, "open('secret.txt', 'w').write('one')")
    assert host.value(two, f"import os\nos.path.exists({cwd1 + '/secret.txt'!r})") is False
    assert host.value(one, "open('secret.txt').read()") == "one"  # control
    one.close()
    assert not os.path.exists(cwd1)  # the host removed it


def test_kernel_surface_is_refused(landlocked: Any, host: Any) -> None:
    code = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(n, *a):
    r = libc.syscall(ctypes.c_long(n), *[ctypes.c_long(x) for x in a])
    return 0 if r >= 0 else ctypes.get_errno()
# unshare(CLONE_NEWUSER), io_uring_setup, bpf, landlock_create_ruleset, memfd_secret
[sc(272, 0x10000000), sc(425, 1, 0), sc(321, 0, 0, 0), sc(444, 0, 0, 1), sc(447, 0)]
"""
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers of x86-64")
    assert host.value(landlocked(), code) == [1, 1, 1, 1, 38]  # EPERM x4, ENOSYS


# -- what the kernel would let the code see or reach past the wall --------------------------

MOVES = """
import errno, os, shutil
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
os.chdir(BASE)
os.makedirs("a/deep", exist_ok=True)
os.makedirs("a/up", exist_ok=True)
os.makedirs("b", exist_ok=True)
open("a/f", "w").write("data")
[attempt(lambda: os.rename("a/f", "a/g")),          # within one directory
 attempt(lambda: os.link("a/g", "a/h")),
 attempt(lambda: os.rename("a/deep", "a/deeper")),
 attempt(lambda: os.rename("a/h", "b/h")),          # between two directories
 attempt(lambda: os.link("a/g", "b/l")),
 attempt(lambda: os.rename("a/deeper", "b/deeper")),
 attempt(lambda: os.rename("a/up", "up")),
 shutil.move("a/g", "b/g"), open("b/g").read(), sorted(os.listdir("a"))]
"""


def test_renames_and_links_between_directories_fail_with_exdev(
    landlocked: Any, control: securepy.Session, host: Any
) -> None:
    """A tree moved between the directories the host's workspace walk has listed and those it
    has still to list is never measured (timed with inotify, 540 MiB past an 8 MiB bound): the
    wall grants Landlock's REFER right nowhere, so only a rename within one directory works,
    and shutil.move falls back to a copy."""
    got = host.value(landlocked(limits=SMALL), MOVES.replace("BASE", "'.'"))
    assert got[:3] == ["ok"] * 3  # control: within one directory
    assert got[3:7] == ["EXDEV"] * 4
    assert got[7:] == ["b/g", "data", ["deeper", "h", "up"]]
    base = tempfile.mkdtemp(prefix="securepy-moves-")
    try:  # control: the host's own kernel allows the same moves
        reached = host.value(control, MOVES.replace("BASE", repr(base)), record=False)
    finally:
        shutil.rmtree(base)
    assert reached[:7] == ["ok"] * 7


INOTIFY = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs(BASE, exist_ok=True)
fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
if fd < 0:
    r = os.strerror(ctypes.get_errno())
else:
    libc.inotify_add_watch(fd, BASE.encode(), 0x100)  # IN_CREATE
    open(os.path.join(BASE, "seen-by-a-watch"), "w").close()
    data = os.read(fd, 4096)
    length = struct.unpack_from("iIII", data)[3]
    r = data[16 : 16 + length].rstrip(b"\\0").decode()
r
"""


def test_inotify_is_refused(landlocked: Any, control: securepy.Session, host: Any) -> None:
    """Watches would see the host's own directories (names created in /tmp the code cannot
    list, a sibling session's workspace on a non-root host) and time the host's workspace
    walk; the namespace wall keeps them (its directories are its own)."""
    code = INOTIFY.replace("BASE", "'watched'")
    assert host.value(landlocked(), code) == "Operation not permitted"
    base = tempfile.mkdtemp(prefix="securepy-inotify-")
    try:  # control: on the host the same watch sees the name
        assert host.value(control, INOTIFY.replace("BASE", repr(base)), record=False) == (
            "seen-by-a-watch"
        )
    finally:
        shutil.rmtree(base)
    try:
        namespaces = securepy.Session(wall="namespaces", template=False, timeout=30)
    except securepy.SandboxUnavailableError:
        return
    with namespaces:  # control: and so it does in the namespace wall
        assert host.value(namespaces, code) == "seen-by-a-watch"


DATAGRAMS = ATTEMPT + """
import subprocess, multiprocessing, asyncio
def dgram(kind):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.sendto(b"from-a-pair", TARGET)
    c, d = socket.socketpair(socket.AF_UNIX, kind)
    c.connect(TARGET)
    c.send(b"through-connect")
    for s in (a, b, c, d):
        s.close()
[attempt(lambda: dgram(socket.SOCK_DGRAM)),
 attempt(lambda: dgram(socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)),
 attempt(lambda: [s.close() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)]
         and None)]
"""

STREAMS = """
import asyncio, multiprocessing, os, socket, subprocess
def pair(kind):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.sendall(b"x")
    r = b.recv(1)
    a.close(); b.close()
    return r.decode()
def child(conn):
    conn.send(6 * 7)
    conn.close()
def forked():
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    process = context.Process(target=child, args=(theirs,))
    process.start()
    value = mine.recv()
    process.join()
    return (value, process.exitcode)
async def loop():
    process = await asyncio.create_subprocess_exec("echo", "async", stdout=subprocess.PIPE)
    return (await process.communicate())[0].decode().strip()
[pair(socket.SOCK_STREAM), pair(socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK),
 subprocess.run(["echo", "sub"], capture_output=True, text=True).stdout.strip(),
 forked(), asyncio.run(loop())]
"""


def _received(sock: socket.socket) -> list[bytes]:
    got = []
    sock.setblocking(False)
    while True:
        try:
            got.append(sock.recv(100))
        except BlockingIOError:
            return got


def test_no_datagram_pair_reaches_a_socket_on_disk(
    landlocked: Any, control: securepy.Session, host: Any
) -> None:
    """Landlock does not check a unix connect by path: a datagram end of a socketpair could
    sendto() or connect() any socket on disk (/dev/log, journald, an application's). Only
    SOCK_STREAM pairs are allowed; they are connected to each other for good."""
    folder = tempfile.mkdtemp(prefix="securepy-dgram-")
    os.chmod(folder, 0o755)
    target = os.path.join(folder, "host.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(target)
            os.chmod(target, 0o777)
            code = DATAGRAMS.replace("TARGET", repr(target))
            got = host.value(landlocked(), code)
            assert got == ["PermissionError"] * 3
            assert _received(listener) == []
            # control: the host's own kernel lets the same code deliver both datagrams, twice
            assert host.value(control, code, record=False) == ["ok", "ok", "ok"]
            assert _received(listener) == [b"from-a-pair", b"through-connect"] * 2
    finally:
        shutil.rmtree(folder)
    # control: what needs a pair still works (subprocess, multiprocessing, asyncio's self-pipe)
    assert host.value(landlocked(), STREAMS) == ["x", "x", "sub", (42, 0), "async"]


SQUAT = """
import socket
end, other = socket.socketpair()
name = "\\0securepy-squat-" + str(id(end))
try:
    end.bind(name)
    r = "bound"
except OSError as e:
    r = type(e).__name__
end.close(); other.close()
r
"""


def test_no_socket_name_can_be_bound(landlocked: Any, control: securepy.Session,
                                     host: Any) -> None:
    """An abstract name bound there is in the host's namespace: the code could squat a name a
    host service wants (the host then gets EADDRINUSE) and receive what its clients send."""
    assert host.value(landlocked(), SQUAT) == "PermissionError"
    assert host.value(control, SQUAT, record=False) == "bound"  # control: the host's kernel


PRIORITIES = """
import os
def attempt(f):
    try:
        f()
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError as e:
        return type(e).__name__
[attempt(lambda: os.setpriority(os.PRIO_USER, 0, 19)),
 attempt(lambda: os.setpriority(os.PRIO_PGRP, 0, 19)),
 attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))]
"""


def test_priority_is_set_for_the_caller_alone(landlocked: Any, host: Any) -> None:
    """setpriority(PRIO_USER or PRIO_PGRP, 0) means the caller's uid or group, which without
    root is the host user's (every process of it reniced to 19, for good). The control, the
    caller's own priority, works (never run unsandboxed: it would renice the test run)."""
    assert host.value(landlocked(), PRIORITIES) == ["PermissionError", "PermissionError", 5]


MEMFD = """
import os
try:
    os.close(os.memfd_create("pages"))
    r = "ok"
except OSError as e:
    r = type(e).__name__
r
"""


def test_memfd_is_refused_without_a_memory_cgroup(
    landlocked: Any, host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages written into a memfd and never mapped count against no rlimit (not RLIMIT_AS):
    with no memory cgroup to charge them to (a default container's read-only /sys/fs/cgroup),
    memory_bytes would not bound them, so memfd_create is refused there."""
    from securepy._launchers import landlock

    with_cgroup = landlocked()
    if ROOT and landlock.create_cgroup is not None and with_cgroup._child is not None:
        cgroup = getattr(with_cgroup._child, "_cgroup", None)
        if cgroup is not None:  # control: charged to the session's cgroup, it is allowed
            assert host.value(with_cgroup, MEMFD) == "ok"
    monkeypatch.setattr(landlock, "create_cgroup", lambda spec, own_processes=1: None)
    assert host.value(landlocked(), MEMFD) == "PermissionError"
    # control: with no memory bound to keep, nothing is refused
    unbounded = securepy.Limits(memory_bytes=None)
    assert host.value(landlocked(limits=unbounded), MEMFD) == "ok"


# -- a reproduced default container ---------------------------------------------------------

IN_CONTAINER = """
import json, os, securepy, subprocess
out = {}
out["unshare"] = subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode
with securepy.Session(python=PYTHON, timeout=30) as session:
    out["wall"] = session.wall
    out["value"] = session.execute("6 * 7").value
    out["etc"] = session.execute(
        "import os\\ntry:\\n    open('/etc/shadow').read()\\nexcept OSError as e:\\n"
        "    r = type(e).__name__\\nr").value
small = securepy.Limits(workspace_bytes=8 * 2**20)
with securepy.Session(python=PYTHON, timeout=30, limits=small) as session:
    try:
        session.execute("import os\\nn = 0\\nwhile True:\\n"
                        "    open(f'f{n}', 'wb').write(b'x' * 2**20)\\n    n += 1")
    except securepy.ResourceLimitError as e:
        out["fill"] = e.limit
try:
    securepy.Session(wall="namespaces", python=PYTHON)
    out["pinned"] = "started"
except securepy.SandboxUnavailableError as e:
    out["pinned"] = str(e)
print(json.dumps(out))
"""


@pytest.mark.skipif(not ROOT, reason="a container's root is root: the reproduction needs it")
def test_in_a_default_container_auto_picks_landlock(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "in_container.py"
    script.write_text(IN_CONTAINER.replace("PYTHON", repr(_python())))
    proc = subprocess.run(
        [sys.executable, str(HERE / "default_container.py"), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert out["unshare"] != 0  # the reproduction holds: namespaces are refused
    assert out["wall"] == "landlock" and out["value"] == 42
    assert out["etc"] == "PermissionError"
    assert out["fill"] == "workspace"  # the workspace bound holds there (no CAP_SYS_PTRACE)
    assert "namespace" in out["pinned"] or "bubblewrap" in out["pinned"], out["pinned"]
    assert "Landlock wall" in proc.stderr  # chosen, never silently


def test_doctor_names_the_wall() -> None:
    command = os.path.join(os.path.dirname(sys.executable), "securepy")
    proc = subprocess.run(
        [command, "doctor"], capture_output=True, text=True, timeout=120, check=False
    )
    assert "wall" in proc.stdout and ("namespaces" in proc.stdout or "landlock" in proc.stdout)


# -- the workspace's bounds (a host directory: see _launchers/landlock_workspace.py) ----------

MiB = 2**20
SMALL = securepy.Limits(workspace_bytes=8 * MiB)

FILL = """
import os
os.makedirs("fill", exist_ok=True)
n = 0
while n < COUNT:
    with open(f"fill/{n}", "wb") as f:
        f.write(b"x" * 2**20)
    n += 1
n
"""

EMPTY_FILES = """
import os
os.makedirs("many", exist_ok=True)
n = 0
while n < COUNT:
    open(f"many/{n}", "w").close()
    n += 1
n
"""

# Held open and unlinked: in no directory the host can list.
HIDDEN = """
import os
held = []
for n in range(COUNT):
    f = open(f"hidden-{n}", "wb")
    os.unlink(f"hidden-{n}")
    f.write(b"x" * 2**20)
    f.flush()
    held.append(f)
import time
time.sleep(WAIT)
len(held)
"""


def test_filling_the_workspace_stops_the_code(landlocked: Any, host: Any) -> None:
    session = landlocked(limits=SMALL)
    assert host.value(session, FILL.replace("COUNT", "4")) == 4  # control: under the bound
    # ...and keeps it across several of the watch's scans (0.05 s apart)
    still = "import os, time\ntime.sleep(0.5)\nlen(os.listdir('fill'))"
    assert host.value(session, still) == 4
    outcome = host.run(session, FILL.replace("COUNT", "10**6"), timeout=60)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "workspace", outcome
    # ...with the reason the host stopped it
    assert re.search(r"workspace limit \(\d+ (bytes|files), over ", str(outcome.error))
    assert host.value(session, "import os\n(os.listdir('.'), 6 * 7)") == ([".tmp"], 42)


def test_many_empty_files_are_bounded_too(landlocked: Any, host: Any) -> None:
    """One file per 4 KiB of workspace (2048 for 8 MiB), as a namespace session's nr_inodes."""
    session = landlocked(limits=SMALL)
    assert host.value(session, EMPTY_FILES.replace("COUNT", "1000")) == 1000  # control
    outcome = host.run(session, EMPTY_FILES.replace("COUNT", "10**7"), timeout=60)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "workspace", outcome
    assert host.value(session, "6 * 7") == 42


def test_one_file_never_outgrows_the_workspace(landlocked: Any, host: Any) -> None:
    """RLIMIT_FSIZE is at most the workspace's size: the write fails inside, synchronously,
    and the code can catch it (the session keeps its state)."""
    session = landlocked(limits=securepy.Limits(workspace_bytes=8 * MiB,
                                                 file_size_bytes=64 * MiB))
    code = """
kept = "state"
try:
    open("big", "wb").write(b"x" * SIZE)
    r = "written"
except OSError as e:
    r = e.strerror
r
"""
    assert host.value(session, code.replace("SIZE", str(4 * MiB))) == "written"  # control
    assert host.value(session, code.replace("SIZE", str(16 * MiB))) == "File too large"
    assert host.value(session, "kept") == "state"


@pytest.mark.skipif(not ROOT, reason="needs to read the session's /proc/PID/fd")
def test_unlinked_open_files_count_against_the_workspace(landlocked: Any, host: Any) -> None:
    session = landlocked(limits=SMALL)
    code = HIDDEN.replace("WAIT", "0.5")
    assert host.value(session, code.replace("COUNT", "2")) == 2  # control: under the bound
    outcome = host.run(session, HIDDEN.replace("COUNT", "12").replace("WAIT", "30"), timeout=60)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "workspace", outcome


HIDE_IN = """
import os, time
os.makedirs("h", exist_ok=True)
for n in range(COUNT):
    if not MODE & 0o100:  # 0600 keeps the code out too: it opens up to write, briefly
        os.chmod("h", 0o700)
    with open(f"h/f{n}", "wb") as f:
        f.write(b"x" * 7 * 2**20)
    os.chmod("h", MODE)
    time.sleep(0.12)
time.sleep(0.5)
COUNT
"""

HIDDEN_DIRECTORY_HOST = """
import json, os, securepy
out = {}
small = securepy.Limits(workspace_bytes=8 * 2**20)
code = CODE
with securepy.Session(wall="landlock", timeout=60, limits=small) as session:
    out["uid"] = session.execute("__import__('os').getuid()").value
    # control: under the bound, the directory it hid from its host keeps its data
    out["under"] = session.execute(code.replace("COUNT", "1").replace("MODE", "0o300")).value
    out["kept"] = session.execute("len(open('h/f0', 'rb').read())").value  # (0300: x, no r)
    for mode in ("0o300", "0o600"):
        session.execute("import shutil\\nshutil.rmtree('h', ignore_errors=True)")
        try:
            session.execute(code.replace("COUNT", "20").replace("MODE", mode))
            out[mode] = "not stopped"
        except securepy.ResourceLimitError as e:
            out[mode] = e.limit
print(json.dumps(out))
"""


@pytest.mark.skipif(not ROOT, reason="becoming an unprivileged host user needs root")
def test_a_directory_hidden_from_a_non_root_host_is_counted_all_the_same() -> None:
    """A non-root host is the code's own uid, without CAP_DAC_*: a directory of mode 0300 (no
    listing) or 0600 (no looking at its entries) hid 140 MiB from the watch against an 8 MiB
    bound. The watch gives the owner back its rights and counts it, or stops the session.
    (0600 also keeps the code out, so it opens up to write and the old walk caught it by
    chance; test_workspace_tree.py covers it without a race.)"""
    script = HIDDEN_DIRECTORY_HOST.replace("CODE", repr(HIDE_IN))
    proc = run_as_another_user(script, prefix="securepy-hidden-", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534  # the host's own uid: no DAC override over its files
    assert out["under"] == 1 and out["kept"] == 7 * MiB  # control: under the bound, kept
    assert out["0o300"] == "workspace" and out["0o600"] == "workspace", out


MAPS = """
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
fd = os.open("kept", os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 2**20)
kept = libc.mmap(None, 2**20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
ctypes.memset(kept, 1, 2**20)
os.close(fd)
os.unlink("kept")
filler = os.open("filler", os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(filler, 8192)
fill = [libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, filler, 4096 * (n % 2))
        for n in range(5000)]  # a maps line each, listed before the deleted file's
len(fill)
"""


@pytest.mark.skipif(not ROOT, reason="needs to read the session's /proc/PID/maps")
def test_maps_past_what_a_scan_reads_stop_the_session(
    landlocked: Any, host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch thread is shared: one session's huge /proc/PID/maps (3-4 s a scan with 30
    processes of 60,000 mappings) delayed every other session's check. A scan reads at most
    MAPS_BUDGET bytes of them, and stops the session past it."""
    from securepy._launchers import landlock_workspace

    session = landlocked(limits=SMALL)
    assert host.value(session, MAPS) == 5000  # control: within the budget, it runs on
    assert host.value(session, "import time\ntime.sleep(0.5)\nlen(fill)") == 5000
    monkeypatch.setattr(landlock_workspace, "MAPS_BUDGET", 64 * 1024)  # below 5000 lines
    outcome = host.run(session, "import time\ntime.sleep(5)\nlen(fill)", timeout=60)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "workspace", outcome


def test_a_daemon_outlives_neither_its_dead_worker_nor_the_session(
    landlocked: Any, host: Any
) -> None:
    """The worker is gone first (the code ends it), so the daemon is no longer in its tree:
    the uid of the session (as root) or its cgroup still finds it."""
    session = landlocked()
    daemon = host.value(session, DAEMON.replace("TOKEN", host.token))
    assert os.path.exists(f"/proc/{daemon}")  # control: it escaped and runs
    outcome = host.run(session, "import os\nos._exit(3)")
    assert not outcome.ok
    session.close()
    wait_until(lambda: not os.path.exists(f"/proc/{daemon}"), timeout=10)



ORPHAN = """
import os, time
r, w = os.pipe()
if os.fork() == 0:          # a child that leaves a grandchild behind, then exits
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()
int(os.read(r, 20))
"""

OWN_CHILD = """
import os, time
mine = os.fork()
if mine == 0:
    os._exit(5)
time.sleep(0.3)             # exited, not yet waited for: still the code's to wait for
os.waitstatus_to_exitcode(os.waitpid(mine, 0)[1])
"""


def test_orphans_are_reaped_and_own_children_are_kept(landlocked: Any, host: Any) -> None:
    """The keeper reaps what it adopts (no zombie holds a pid of the session's budget); the
    code's own children stay its own, their status included (the control). Seen from the
    host: there is no /proc inside."""
    session = landlocked()
    orphan = host.value(session, ORPHAN)
    wait_until(lambda: not os.path.exists(f"/proc/{orphan}"), timeout=10)  # reaped, not Z
    assert host.value(session, OWN_CHILD) == 5


DAEMON = """
import os
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.execv("/bin/sleep", ["TOKEN", "600"])  # the token as argv[0]: marked
    os._exit(0)
os.wait()
int(os.read(r, 20))
"""


# -- mounts and the font cache ------------------------------------------------------------------


def test_a_mount_elsewhere_than_its_host_path_is_refused_with_the_reason(
    landlocked: Any, tmp_path: pathlib.Path
) -> None:
    mount = securepy.Mount(tmp_path, "/data")
    with pytest.raises(securepy.SandboxUnavailableError, match="stays at its own path"):
        securepy.Session(wall="landlock", python=_python(), mounts=[mount])


def test_the_prepared_font_cache_is_in_the_session(
    landlocked: Any, host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib finds the host's prepared font list in its config directory (it would
    otherwise rebuild it in every fresh session). The interpreter the wall runs here may have
    no matplotlib, so the cache is a stand-in with the real name pattern."""
    from securepy._launchers import landlock_workspace

    cache = tempfile.mkdtemp(prefix="securepy-fonts-")
    pathlib.Path(cache, "fontlist-v390.json").write_text('{"_version": 390}')
    monkeypatch.setattr(landlock_workspace, "font_cache", lambda interpreter: cache)
    try:
        session = landlocked()
        code = (
            "import os\nd = os.environ.get('MPLCONFIGDIR')\n"
            "(d, open(d + '/fontlist-v390.json').read())"
        )
        folder, text = host.value(session, code)
    finally:
        shutil.rmtree(cache)
    assert folder.endswith("/.tmp/.matplotlib") and text == '{"_version": 390}'


NON_ROOT_HOST = """
import json, os, securepy
out = {}
with securepy.Session(wall="landlock", timeout=30) as session:
    out["uid"] = session.execute("__import__('os').getuid()").value
    out["daemon"] = session.execute(DAEMON).value
    out["alive"] = os.path.exists(f"/proc/{out['daemon']}")
    try:
        session.execute("import os\\nos._exit(3)")
    except securepy.SecurePyError as e:
        out["ended"] = type(e).__name__
print(json.dumps(out))
"""


@pytest.mark.skipif(not ROOT, reason="becoming an unprivileged host user needs root")
def test_without_root_a_daemon_ends_with_its_session(tmp_path: pathlib.Path) -> None:
    """A non-root host runs every session as its own uid and, here, has no cgroup to find
    them by: the keeper above the worker (a child subreaper outside the wall) holds the daemon
    in its tree after the code ended the worker, and ends it."""
    script = NON_ROOT_HOST.replace("DAEMON", repr(DAEMON.replace("TOKEN", "nonroot")))
    proc = run_as_another_user(script, prefix="securepy-nonroot-")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534  # the host user's own uid: no uid of its own to sweep
    assert out["alive"] is True  # control: the daemon escaped the worker and runs
    assert out["ended"] == "ProtocolError"
    wait_until(lambda: not os.path.exists(f"/proc/{out['daemon']}"), timeout=10)


def test_the_host_kills_a_listed_pid_only_while_it_is_still_that_parents_child() -> None:
    """The host lists a session's processes, then kills them: a pid freed and taken by another
    process in between must not be hit. kill_child checks the parent through a pidfd taken
    first."""
    from securepy._worker.process_tree import kill_child

    bystander = subprocess.Popen(["sleep", "30"])
    try:
        kill_child(bystander.pid, parent=1)  # listed under another parent: a newcomer here
        assert bystander.poll() is None
        kill_child(bystander.pid, parent=os.getpid())  # the control: its real parent
        assert bystander.wait(timeout=10) == -signal.SIGKILL
    finally:
        bystander.kill()
        bystander.wait()
