"""The bubblewrap launcher, driven directly: a LaunchSpec running a small script that reports
over the inherited socket. The attack corpus lives in tests/security; these pin the wall's
shape, each with a control showing the legitimate case works."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import securepy
from securepy import _doctor
from securepy._interpreter import probe_interpreter
from securepy._launchers import bubblewrap, bwrap_binary
from securepy._launchers.base import LaunchSpec
from securepy._launchers.bubblewrap import BubblewrapChild, BubblewrapLauncher
from securepy._launchers.cgroups import detect_cgroup_support
from securepy._launchers.identity import uid_range
from securepy._launchers.seccomp import compile_filter
from securepy._limits import Limits
from securepy.errors import SandboxUnavailableError

from ..conftest import run_as_another_user

MiB = 1024 * 1024
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

# Prepended to every child script: `report(value)` sends one JSON line to the host.
PRELUDE = """
import json, os, socket, sys
_sock = socket.socket(fileno={fd})
def report(value):
    _sock.sendall((json.dumps(value) + "\\n").encode())
def attempt(fn):
    try:
        return ["ok", repr(fn())[:200]]
    except OSError as exc:
        return ["error", exc.errno]
"""


class Sandbox:
    """One launched child and the host end of its socket."""

    def __init__(self, code: str, limits: Limits) -> None:
        self.host, child = socket.socketpair()
        interpreter = probe_interpreter(None)
        script = PRELUDE.format(fd=child.fileno()) + textwrap.dedent(code)
        spec = LaunchSpec(
            interpreter=interpreter,
            argv=(interpreter.executable, "-I", "-S", "-c", script),
            child_fd=child.fileno(),
            limits=limits,
            env=dict(ENV),
        )
        try:
            self.child: BubblewrapChild = BubblewrapLauncher().launch(spec)
        finally:
            child.close()
        self.host.settimeout(30)
        self._reader = self.host.makefile("rb")

    def receive(self) -> Any:
        line = self._reader.readline()
        assert line, f"child ended early: {self.child.read_startup_error()}"
        return json.loads(line)

    def close(self) -> None:
        self.child.kill()
        self._reader.close()
        self.host.close()


@pytest.fixture
def sandbox() -> Iterator[Any]:
    started: list[Sandbox] = []

    def start(code: str, limits: Limits | None = None) -> Sandbox:
        box = Sandbox(code, limits or Limits())
        started.append(box)
        return box

    yield start
    for box in started:
        box.close()


def run(start: Any, code: str, limits: Limits | None = None) -> Any:
    """Run ``code`` (which reports one value) and return that value."""
    box = start(code, limits)
    value = box.receive()
    assert box.child.wait(30) == 0, box.child.read_startup_error()
    return value


# --- identity -------------------------------------------------------------------------------


@pytest.mark.sandbox
def test_code_never_runs_with_host_root_powers(sandbox: Any) -> None:
    info = run(
        sandbox,
        """
        import getpass
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines()
                      if ":\\t" in l)
        report({"ids": os.getresuid() + os.getresgid(), "groups": os.getgroups(),
                "caps": [status[k].strip()
                         for k in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")],
                "nnp": status["NoNewPrivs"].strip(), "user": getpass.getuser()})
        """,
    )
    # As root: a uid (= gid) leased for this session alone from the range; else the user's.
    first, last = uid_range() if os.geteuid() == 0 else (os.getuid(), os.getuid())
    assert first <= info["ids"][0] <= last
    uid = info["ids"][0]
    assert info["ids"] == ([uid] * 6 if os.geteuid() == 0 else [uid] * 3 + info["ids"][3:])
    assert 0 not in info["ids"]
    assert info["groups"] in ([], [info["ids"][3]])
    assert info["caps"] == ["0000000000000000"] * 5
    assert info["nnp"] == "1"
    assert info["user"] == "sandbox"


# --- filesystem -----------------------------------------------------------------------------


@pytest.mark.sandbox
def test_host_secrets_and_working_directories_are_absent(sandbox: Any) -> None:
    with tempfile.NamedTemporaryFile(prefix="securepy-canary-", dir="/tmp") as canary:
        found = run(
            sandbox,
            f"""
            paths = ["/etc/shadow", "/sys/kernel", "/run", "/var/run/docker.sock", "/home",
                     {canary.name!r}, {os.getcwd() + "/pyproject.toml"!r},
                     "/root/.bashrc", "/proc/kcore", "/proc/sched_debug"]
            report({{"exists": [p for p in paths if os.path.exists(p) and
                                os.access(p, os.R_OK) and os.path.getsize(p) > 0],
                    "passwd": open("/etc/passwd").read().splitlines(),
                    "cwd": os.getcwd(), "tmp": sorted(os.listdir("/tmp"))}})
            """,
        )
    assert found["exists"] == []
    assert len(found["passwd"]) == 1 and found["passwd"][0].startswith("sandbox:x:")
    assert found["cwd"] == "/workspace"
    # /tmp holds nothing of the host's but, when the interpreter (or this checkout) lives
    # under /tmp, the directories leading to its read-only binds.
    interpreter = probe_interpreter(None)
    binds = [*interpreter.roots, os.path.dirname(os.path.dirname(securepy.__file__))]
    allowed = sorted({p.split("/")[2] for p in binds if p.startswith("/tmp/")})
    assert found["tmp"] == allowed


@pytest.mark.sandbox
def test_only_the_workspace_tmp_and_shm_are_writable(sandbox: Any) -> None:
    site = probe_interpreter(None).prefix
    result = run(
        sandbox,
        f"""
        targets = ["/x", "/dev/x", "/usr/x", "/etc/x", {site + "/x"!r},
                   "/proc/sys/kernel/core_pattern", "/workspace/x", "/tmp/x", "/dev/shm/x"]
        report({{t: attempt(lambda t=t: open(t, "w").write("1")) for t in targets}})
        """,
    )
    for target in ("/workspace/x", "/tmp/x", "/dev/shm/x"):
        assert result.pop(target)[0] == "ok", target
    assert all(outcome[0] == "error" for outcome in result.values()), result


@pytest.mark.sandbox
def test_workspace_size_is_bounded(sandbox: Any) -> None:
    result = run(
        sandbox,
        """
        chunk = b"x" * (1 << 20)
        def fill(path):
            with open(path, "wb") as f:
                for _ in range(64):
                    f.write(chunk)
                    f.flush()
        report([attempt(lambda: fill("/workspace/big")), attempt(lambda: fill("/dev/shm/big"))])
        """,
        Limits(workspace_bytes=8 * MiB),
    )
    assert result == [["error", 28], ["error", 28]]  # ENOSPC on both tmpfs


@pytest.mark.sandbox
def test_environment_and_options_do_not_leak_through_pid_1(sandbox: Any) -> None:
    os.environ["SECUREPY_TEST_SECRET"] = "canary-4711"
    try:
        result = run(
            sandbox,
            """
            def read(p):
                return open(p, "rb").read().decode("latin-1")
            report({"env": dict(os.environ), "environ": attempt(lambda: read("/proc/1/environ")),
                    "cmdline": read("/proc/1/cmdline"), "pids": sorted(
                        int(p) for p in os.listdir("/proc") if p.isdigit())})
            """,
        )
    finally:
        del os.environ["SECUREPY_TEST_SECRET"]
    assert result["env"] == {**ENV, "HOME": "/workspace", "TMPDIR": "/tmp", "PWD": "/workspace"}
    assert "canary-4711" not in json.dumps(result)
    assert "--ro-bind" not in result["cmdline"]
    assert result["pids"][0] == 1 and len(result["pids"]) <= 3


# --- network and kernel surface -------------------------------------------------------------


@pytest.mark.sandbox
def test_network_is_unreachable_but_unix_sockets_work(sandbox: Any) -> None:
    result = run(
        sandbox,
        """
        report({"inet": attempt(lambda: socket.create_connection(("127.0.0.1", 22), 1)),
                "inet6": attempt(lambda: socket.socket(socket.AF_INET6)),
                "netlink": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
                "unix": attempt(lambda: socket.socketpair()[0].close())})
        """,
    )
    assert result["unix"][0] == "ok"
    assert result["inet"][0] == result["inet6"][0] == result["netlink"][0] == "error"


SYSCALL_PROBES = {
    # name: (x86-64 number, args, expected errno)
    "ptrace": (101, (16, 1, 0, 0), 1),  # PTRACE_ATTACH pid 1
    "unshare_user": (272, (0x10000000,), 1),
    "mount": (165, (0, 0, 0, 0, 0), 1),
    "bpf": (321, (0, 0, 0), 1),
    "perf_event_open": (298, (0, 0, -1, -1, 0), 1),
    "userfaultfd": (323, (0,), 1),
    "keyctl": (250, (0, 0, 0, 0, 0), 1),
    "io_uring_setup": (425, (1, 0), 1),
    "clone3": (435, (0, 0), 38),
}


@pytest.mark.sandbox
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86-64's")
@pytest.mark.parametrize("name", list(SYSCALL_PROBES), ids=list(SYSCALL_PROBES))
def test_seccomp_refuses_kernel_surface_with_a_clean_errno(sandbox: Any, name: str) -> None:
    number, args, expected = SYSCALL_PROBES[name]
    result = run(
        sandbox,
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        rc = libc.syscall(*[ctypes.c_long(a) for a in ({number}, *{args!r})])
        report([rc, ctypes.get_errno()])
        """,
    )
    assert result == [-1, expected]


@pytest.mark.sandbox
def test_threads_fork_subprocess_and_multiprocessing_still_work(sandbox: Any) -> None:
    result = run(
        sandbox,
        """
        import subprocess, threading, multiprocessing
        out = []
        t = threading.Thread(target=lambda: out.append("thread")); t.start(); t.join()
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        out.append(subprocess.run(["/usr/bin/id", "-un"], capture_output=True, text=True).stdout)
        with multiprocessing.Pool(2) as pool:
            out.append(pool.map(abs, [-1, -2]))
        report(out)
        """,
    )
    assert result == ["thread", 7, "sandbox\n", [1, 2]]


# --- the child handle -----------------------------------------------------------------------


@pytest.mark.sandbox
def test_interrupt_reaches_the_worker_not_bubblewrap(sandbox: Any) -> None:
    box = sandbox(
        """
        import signal, threading
        done = threading.Event()
        signal.signal(signal.SIGINT, lambda *a: (report(["sigint", os.getpid()]), done.set()))
        report("ready")
        done.wait(30)
        """
    )
    assert box.receive() == "ready"
    box.child.interrupt()
    assert box.receive()[0] == "sigint"
    assert box.child.wait(30) == 0


@pytest.mark.sandbox
def test_kill_leaves_nothing_of_the_sandbox_running(sandbox: Any) -> None:
    box = sandbox(
        """
        import time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        report("ready")
        time.sleep(60)
        """
    )
    assert box.receive() == "ready"
    worker = box.child._find_worker()
    assert worker is not None
    namespace = os.readlink(f"/proc/{worker}/ns/pid")
    box.child.kill()
    box.child.kill()  # idempotent
    assert box.child.poll() is not None
    assert _processes_in_namespace(namespace) == []


def _processes_in_namespace(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.sandbox
def test_cpu_limit_exit_is_named(sandbox: Any) -> None:
    box = sandbox(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (1, 2))
        report("ready")
        while True:
            pass
        """
    )
    assert box.receive() == "ready"
    status = box.child.wait(30)
    assert status == 128 + signal.SIGXCPU
    assert box.child.describe_exit(status) == "cpu_seconds"


needs_cgroup = pytest.mark.skipif(
    detect_cgroup_support().version == 0, reason="no usable memory and pids cgroup here"
)


@pytest.mark.sandbox
@needs_cgroup
def test_memory_cgroup_kill_is_named_memory(sandbox: Any) -> None:
    box = sandbox(
        """
        report("ready")
        hog = []
        while True:
            hog.append(bytearray(8 << 20))
        """,
        Limits(memory_bytes=64 * MiB, workspace_bytes=8 * MiB),
    )
    assert box.receive() == "ready"
    status = box.child.wait(60)
    assert status == 128 + signal.SIGKILL
    assert box.child.describe_exit(status) == "memory"


@pytest.mark.sandbox
@needs_cgroup
def test_pids_cgroup_bounds_processes(sandbox: Any) -> None:
    result = run(
        sandbox,
        """
        import time
        made = 0
        try:
            for _ in range(50):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
        except OSError as exc:
            report([made, exc.errno])
        else:
            report([made, 0])
        os._exit(0)
        """,
        Limits(processes=8),
    )
    assert result[1] == 11 and result[0] < 10  # EAGAIN


# --- when the wall cannot stand -------------------------------------------------------------


def test_missing_bubblewrap_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap_binary, "_which_bwrap", lambda: None)
    bubblewrap.build_wall_config.cache_clear()
    try:
        with pytest.raises(
            SandboxUnavailableError, match=r"^bubblewrap \(bwrap\) is not installed"
        ):
            bubblewrap.wall_config(probe_interpreter(None))
    finally:
        bubblewrap.build_wall_config.cache_clear()


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted", "/proc"),
        ("bwrap: setting up uid map: Permission denied", "namespaces"),
        ("bwrap: Can't find source path /opt/py: Permission denied", "cannot bind"),
        ("bwrap: something else", "run `securepy doctor`"),
    ],
    ids=["proc", "userns", "bind", "other"],
)
def test_bwrap_failures_are_diagnosed(stderr: str, expected: str) -> None:
    assert expected in bubblewrap.diagnose_bwrap_failure(stderr)


def test_seccomp_program_is_whole_bpf_instructions() -> None:
    program = compile_filter()
    assert program and len(program) % 8 == 0
    assert compile_filter() is program  # compiled once


def test_can_sandbox_ignores_optional_checks() -> None:
    ok = _doctor.Check("bubblewrap", True, "found")
    optional = _doctor.Check("cgroups", False, "none", "delegate", required=False)
    assert _doctor.can_sandbox([ok, optional])
    assert not _doctor.can_sandbox([ok, _doctor.Check("/proc mount", False, "refused", "fix")])


@pytest.mark.sandbox
def test_doctor_reports_a_working_sandbox_here() -> None:
    checks = _doctor.run_checks()
    assert _doctor.can_sandbox(checks), [c for c in checks if not c.ok]
    names = [c.name for c in checks]
    for name in ("bubblewrap", "user namespaces", "/proc mount", "seccomp", "cgroups",
                 "rlimits", "interpreter"):  # fmt: skip
        assert name in names


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.sandbox
def test_sandboxed_session_runs_code_with_numpy(sandboxed_session: securepy.Session) -> None:
    result = sandboxed_session.execute(
        "import os, numpy\n(os.getcwd(), int(numpy.arange(5).sum()))"
    )
    assert result.value == ("/workspace", 10) or result.value == ["/workspace", 10]


def test_launch_spec_runs_nothing_unsandboxed_when_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(interpreter: Any) -> Any:
        raise SandboxUnavailableError("refused")

    started: list[Any] = []
    monkeypatch.setattr(bubblewrap, "wall_config", refuse)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    spec = LaunchSpec(
        interpreter=probe_interpreter(None),
        argv=("/bin/true",),
        child_fd=0,
        limits=Limits(),
        env={},
    )
    with pytest.raises(SandboxUnavailableError, match=r"^refused$"):
        BubblewrapLauncher().launch(spec)
    assert started == []


@pytest.mark.sandbox
def test_an_interpreter_under_tmp_works_and_tmp_stays_private(tmp_path: Path) -> None:
    # CI often clones (and so builds its venv) under /tmp: /tmp must then hold the binds.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (tmp_path / "host-secret.txt").write_text("not for the sandbox")
    # template=False: bubblewrap's binds are the subject (and a throwaway interpreter would
    # otherwise get a shared template of its own for the rest of the process).
    with securepy.Session(python=str(venv / "bin" / "python"), template=False) as session:
        listing = session.execute(
            "import os\nopen('/tmp/scratch', 'w').write('ok')\n"
            f"sorted(os.listdir({str(tmp_path)!r}))").value
    assert listing == ["venv"]  # the venv is bound; the rest of the host's /tmp is absent


@pytest.mark.sandbox
@pytest.mark.skipif(os.geteuid() != 0 and not os.access("/", os.W_OK),
                    reason="needs to create a directory under /workspace")
def test_an_interpreter_under_workspace_moves_the_workspace() -> None:
    # The workspace tmpfs at /workspace would hide an interpreter installed there.
    created = not os.path.exists("/workspace")
    base = tempfile.mkdtemp(prefix="securepy-test-", dir=_make_dir("/workspace"))
    try:
        venv = os.path.join(base, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        with securepy.Session(python=os.path.join(venv, "bin", "python"),
                              template=False) as session:
            cwd, home = session.execute("import os\nos.getcwd(), os.environ['HOME']").value
        assert cwd == home == "/securepy-workspace"
    finally:
        subprocess.run(["rm", "-rf", base], check=True)
        if created:
            os.rmdir("/workspace")


def _make_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


@pytest.mark.sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="becoming an unprivileged host user needs root")
def test_user_mode_for_an_unprivileged_host_user() -> None:
    # The host process itself runs as uid 65534: bubblewrap then builds the sandbox in an
    # unprivileged user namespace ("user" mode) instead of the root-drop mode.
    code = ("import securepy\nwith securepy.Session() as s:\n"
            "    print(s.execute(\"import os\\nopen('/proc/self/status').read()"
            ".split('CapEff:')[1].split()[0], os.getuid()\").value)\n"
            "    try:\n        s.execute(\"open('/etc/shadow')\")\n"
            "    except securepy.ExecutionError as e:\n        print(e.type_name)\n")
    proc = run_as_another_user(code, prefix="securepy-usermode-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["('0000000000000000', 65534)", "FileNotFoundError"]
