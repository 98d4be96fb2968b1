"""Session templates for a host user who is not root (bubblewrap's "user" mode).

The test process is root, so a script runs as uid 65534 (through setpriv, the system Python
and a copy of securepy and its dependencies, as test_bubblewrap_launcher's user-mode test
does) and reports what it observed as JSON, once for the module. It holds a SessionPool (which
forks from a template) and, as the reference, sessions started by bubblewrap in user mode. Each
test below checks one part of that report: forking really happened, state and tool calls work,
and the wall of a forked session is a user-mode bubblewrap session's. Every refusal has its
control: the same thing working where it is legitimate.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import run_as_another_user

pytestmark = pytest.mark.sandbox

_UID = 65534

# Runs as uid 65534. `look` is run in a session and returns what the wall looks like there.
_SCRIPT = r'''
import ctypes, json, os, signal, sys
import securepy
from securepy._launchers.bubblewrap import BubblewrapLauncher

LOOK = """
import ctypes, os, socket
fields = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
def attempt(f):
    try:
        return ["ok", f()]
    except OSError as exc:
        return ["error", exc.errno]
libc = ctypes.CDLL(None, use_errno=True)
def unshare_user():
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    return "unshared"
def write_sysctl():
    with open("/proc/sys/kernel/hostname", "w") as f:
        f.write("elsewhere")
    return "written"
{"status": {k: fields[k].strip() for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm",
                                             "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                                             "Seccomp")},
 "uid_map": open("/proc/self/uid_map").read().split(),
 "gid_map": open("/proc/self/gid_map").read().split(),
 "setgroups": open("/proc/self/setgroups").read().strip(),
 "pid": os.getpid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
 "namespaces": {n: os.readlink(f"/proc/self/ns/{n}")
                for n in ("pid", "mnt", "net", "ipc", "uts", "cgroup", "user")},
 "unshare_user": attempt(unshare_user),
 "max_user_namespaces": open("/proc/sys/user/max_user_namespaces").read().strip(),
 "proc_keys": attempt(lambda: open("/proc/keys").read()),
 "proc_sys_write": attempt(write_sysctl),
 "proc_sys_readable": attempt(lambda: open("/proc/sys/kernel/hostname").read().strip()),
 "proc_status_readable": "Name:" in open("/proc/self/status").read(),
 "pid1_environ": attempt(lambda: len(open("/proc/1/environ", "rb").read())),
 "inet_socket": attempt(lambda: socket.socket(socket.AF_INET).close()),
 "unix_pair": attempt(lambda: [s.close() for s in socket.socketpair()] and "paired"),
 "write_root": attempt(lambda: open("/escape", "w").close()),
 "write_workspace": attempt(lambda: open("/workspace/ok", "w").close() or "written"),
 "shadow": attempt(lambda: open("/etc/shadow").read()),
 "hostname": os.uname().nodename, "cwd": os.getcwd()}
"""


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]


def parent(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("PPid:"))


def child_kind(session):
    process = session._child.process
    return {"type": type(process).__name__, "wall": session.wall,
            "own": cmdline(process.pid), "parent": cmdline(parent(process.pid)),
            "cgroup": getattr(process, "_cgroup", None) is not None}


def bubblewraps_started_here():
    mine, found = os.getpid(), 0
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:  # other processes on the machine come and go meanwhile
            found += parent(int(p)) == mine and cmdline(int(p))[:1] == ["/usr/bin/bwrap"]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return found


@securepy.tool
def add(a: int, b: int) -> int:
    "Add two numbers."
    return a + b


def host_can_unshare_user():
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno())
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


report = {"host_uid": os.getuid(), "host_can_unshare_user": host_can_unshare_user()}
with securepy.SessionPool(2, tools=[add]) as pool:
    with pool.session() as one, pool.session() as two:
        report["forked"] = child_kind(one)
        report["bubblewraps_for_two_forked"] = bubblewraps_started_here()
        one.execute("x = 41")
        report["state"] = one.execute("x + 1").value
        report["tool"] = one.execute("add(2, 3)").value
        report["look"] = one.execute(LOOK).value
        report["sibling_look"] = two.execute(LOOK).value
        two.execute("kept = 42")
        setup = ("import os\nfor p in ('/workspace/mine', '/tmp/mine', '/dev/shm/mine'):\n"
                 "    open(p, 'w').write('one')\n"
                 "[os.path.exists(p) for p in ('/workspace/mine', '/tmp/mine', '/dev/shm/mine')]")
        report["own_files"] = one.execute(setup).value
        report["sibling_files"] = two.execute(
            "import os\n[os.path.exists(p) for p in "
            "('/workspace/mine', '/tmp/mine', '/dev/shm/mine')]").value
        kill_all = ("import os, signal, subprocess\nchild = subprocess.Popen(['sleep', '30'])\n"
                    "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                    "child.wait()")
        report["kill_all"] = one.execute(kill_all).value
        report["sibling_after_kill_all"] = two.execute("kept").value
        # pid 1 runs as the same host uid here (as bubblewrap's does in user mode): signals
        # from inside to a namespace's init without a handler are dropped by the kernel.
        report["kill_pid1"] = one.execute(
            "import os, signal\nfor s in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):\n"
            "    os.kill(1, s)\n'sent'").value
        report["state_after_kill_pid1"] = one.execute("x + 1").value
        template = next(iter(pool._core._template._templates.values()))
        template_pid = template._sandbox.pid
        os.kill(template_pid, 0)  # control: the host reaches it
        report["template_reach"] = one.execute(
            "import os\nout = []\nfor f in (lambda: os.kill(%d, 0), lambda: os.stat('/proc/%d')):\n"
            "    try:\n        f(); out.append('reached')\n"
            "    except OSError as exc:\n        out.append(exc.errno)\nout"
            % (template_pid, template_pid)).value
# The launcher named: a plain Session may come to fork from a shared template too.
with securepy.SessionPool(2, template=False, launcher=BubblewrapLauncher()) as pool:
    with pool.session() as started, pool.session():
        report["bubblewrap_pool"] = child_kind(started)
        report["bubblewraps_for_two_started"] = bubblewraps_started_here()
with securepy.Session(launcher=BubblewrapLauncher()) as reference:
    report["bubblewrap"] = child_kind(reference)
    report["bubblewrap_look"] = reference.execute(LOOK).value
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """What the unprivileged script saw (run once for the module)."""
    proc = run_as_another_user(_SCRIPT, prefix="securepy-nonroot-")
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield json.loads(proc.stdout.splitlines()[-1])


def test_a_non_root_pool_forks_its_sessions_from_a_template(report: dict[str, Any]) -> None:
    assert report["host_uid"] == _UID
    forked = report["forked"]
    # Told apart three ways: the host's handle; the process tree (a forked worker's parent is
    # the template, a Python process serving "template", where a started session's host
    # process is its own bubblewrap); and how many bubblewraps the host runs for two live
    # sessions: one (the template's) against two.
    assert forked["type"] == "TemplateChild" and forked["wall"] == "namespaces"
    assert forked["parent"][0].endswith("python3") and "template" in forked["parent"]
    assert report["bubblewraps_for_two_forked"] == 1
    for started in (report["bubblewrap_pool"], report["bubblewrap"]):  # controls
        assert started["type"] == "BubblewrapChild" and started["wall"] == "namespaces"
        assert started["own"][0] == "/usr/bin/bwrap"
    assert report["bubblewraps_for_two_started"] == 2
    # No delegated cgroup for this user here: none, for either kind (rlimits bound them).
    assert forked["cgroup"] is False and report["bubblewrap"]["cgroup"] is False


def test_state_and_tool_calls_work_in_a_forked_session(report: dict[str, Any]) -> None:
    assert report["state"] == 42
    assert report["tool"] == 5


def test_a_forked_session_has_the_identity_of_a_user_mode_bubblewrap_session(
    report: dict[str, Any],
) -> None:
    forked, reference = report["look"], report["bubblewrap_look"]
    zero = "0000000000000000"
    for look in (forked, reference):
        status = look["status"]
        assert status["Uid"].split() == [str(_UID)] * 4 and status["Gid"].split() == [str(_UID)] * 4
        assert [status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")] == [zero] * 5
        assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")
        # The host user's uid mapped through the outer namespace's 0, as bubblewrap maps it.
        assert look["uid_map"] == look["gid_map"] == [str(_UID), "0", "1"]
        assert look["setgroups"] == "deny"
        assert (look["pid"], look["pids"]) == (2, [1, 2])
        assert (look["hostname"], look["cwd"]) == ("sandbox", "/workspace")
    for key in ("status", "uid_map", "gid_map", "setgroups", "pid", "pids", "hostname", "cwd"):
        assert forked[key] == reference[key], key


def test_no_network_read_only_root_and_no_host_files(report: dict[str, Any]) -> None:
    for look in (report["look"], report["bubblewrap_look"]):
        assert look["inet_socket"] == ["error", errno.EPERM]
        assert look["unix_pair"] == ["ok", "paired"]  # control: AF_UNIX pairs work
        assert look["write_root"] == ["error", errno.EROFS]
        assert look["write_workspace"] == ["ok", "written"]  # control: its workspace is its own
        assert look["shadow"] == ["error", errno.ENOENT]


def test_a_forked_session_cannot_make_a_user_namespace(report: dict[str, Any]) -> None:
    # Control: the same call works for the unprivileged host user outside the sandbox.
    assert report["host_can_unshare_user"] == 0
    for look in (report["look"], report["bubblewrap_look"]):
        assert look["unshare_user"] == ["error", errno.EPERM]  # the seccomp filter first
    # Below seccomp, the session's own user namespace may hold none (--disable-userns limits
    # bubblewrap's sessions through their parent namespace's count, so theirs reads the default).
    assert report["look"]["max_user_namespaces"] == "0"


def test_masked_and_read_only_proc_entries_match_bubblewrap(report: dict[str, Any]) -> None:
    for look in (report["look"], report["bubblewrap_look"]):
        assert look["proc_keys"] == ["error", errno.EACCES]  # masked: a nodev /dev/null
        assert look["proc_sys_write"] == ["error", errno.EROFS]
        # Controls: the same sysctl reads, and the process's own entries are there.
        assert look["proc_sys_readable"] == ["ok", "sandbox"]
        assert look["proc_status_readable"] is True
    # pid 1: bubblewrap's runs in the session's outer user namespace with an empty
    # environment (readable, nothing in it); the template's reaper sits in the template's user
    # namespace, where the session holds no capability, so the kernel refuses its entries.
    assert report["bubblewrap_look"]["pid1_environ"] == ["ok", 0]
    assert report["look"]["pid1_environ"] == ["error", errno.EACCES]


def test_a_forked_session_sees_neither_the_template_nor_its_sibling(
    report: dict[str, Any],
) -> None:
    one, two = report["look"], report["sibling_look"]
    for name in ("pid", "mnt", "net", "ipc", "uts", "cgroup", "user"):
        assert one["namespaces"][name] != two["namespaces"][name], name
    assert one["pids"] == two["pids"] == [1, 2]
    assert report["own_files"] == [True] * 3  # control: its own files are there
    assert report["sibling_files"] == [False] * 3
    assert report["kill_all"] == -9  # control: its own subprocess was reachable, and died
    assert report["sibling_after_kill_all"] == 42
    assert report["template_reach"] == [errno.ESRCH, errno.ENOENT]  # the host reaches it


def test_signals_to_pid_1_leave_the_session_running(report: dict[str, Any]) -> None:
    assert report["kill_pid1"] == "sent"
    assert report["state_after_kill_pid1"] == 42
