"""Sessions forked from a template: the same wall as a bubblewrap session, built per session.

The attack corpus (tests/security) runs against template sessions too; these pin what is
particular to forking: each session of one template is walled off from the others and from the
template, gets its own limits and cgroup, and the template's life (death, close, fall-back)
never leaves a session stuck or a process behind. Each isolation check has its control: the
same thing works inside one session.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
from securepy import errors
from securepy._launchers import template as template_module
from securepy._launchers.bubblewrap import BubblewrapChild
from securepy._launchers.cgroups import detect_cgroup_support
from securepy._launchers.identity import uid_range
from securepy._launchers.template import TemplateChild, TemplateLauncher

from ..conftest import wait_until

MiB = 1024 * 1024


pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("needs_template")]


@pytest.fixture(scope="module")
def launcher() -> Iterator[TemplateLauncher]:
    """One template for the module, started before any test's leak guard looks."""
    launcher = TemplateLauncher()
    with securepy.Session(launcher=launcher) as session:
        session.execute("1")
    yield launcher
    launcher.close()


@pytest.fixture
def forked(launcher: TemplateLauncher) -> Iterator[Any]:
    """Factory of sessions forked from the module's template, closed after the test."""
    made: list[securepy.Session] = []

    def make(**options: Any) -> securepy.Session:
        session = securepy.Session(launcher=launcher, timeout=30, **options)
        made.append(session)
        assert isinstance(session._child.process, TemplateChild)  # type: ignore[union-attr]
        return session

    yield make
    for session in made:
        session.close()


STATUS = """
import os
fields = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
{k: fields[k].strip() for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff",
                                    "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
 if k in fields} | {"cwd": os.getcwd(), "pid": os.getpid()}
"""


def test_a_forked_session_has_the_identity_of_a_bubblewrap_session(forked: Any) -> None:
    with securepy.Session(timeout=30, template=False) as bubblewrap_session:
        assert isinstance(bubblewrap_session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        expected = bubblewrap_session.execute(STATUS).value
    got = forked().execute(STATUS).value
    # pid 2 of its own namespace in both: pid 1 is the reaper (bubblewrap's pid 1 there)
    assert got.pop("pid") == expected.pop("pid") == 2
    # Each session runs as a uid of its own from the range (uid = gid), never 65534 or root.
    uids = {int(d.pop("Uid").split()[0]) for d in (got, expected)}
    gids = {int(d.pop("Gid").split()[0]) for d in (got, expected)}
    first, last = uid_range()
    assert uids == gids and len(uids) == 2 and all(first <= uid <= last for uid in uids)
    assert got == expected
    zero = "0000000000000000"
    assert (got["CapEff"], got["CapPrm"], got["CapBnd"], got["CapAmb"]) == (zero,) * 4
    assert (got["NoNewPrivs"], got["Seccomp"]) == ("1", "2")


def test_sessions_of_one_template_cannot_see_each_other(forked: Any) -> None:
    one, two = forked(), forked()
    # Control: within one session, a file, a shm segment and an abstract socket are shared
    # between its own processes.
    setup = """
import os, socket
for path in ("/workspace/mine", "/tmp/mine", "/dev/shm/mine"):
    open(path, "w").write("one")
listener = socket.socket(socket.AF_UNIX)
listener.bind("\\0securepy-test-abstract")
listener.listen()
probe = socket.socket(socket.AF_UNIX)
probe.connect("\\0securepy-test-abstract")
probe.close()
sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
"""
    assert one.execute(setup).value == [1, 2]  # its reaper and its worker
    look = """
import os, socket
def connect():
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("\\0securepy-test-abstract")
        return "connected"
    except OSError as exc:
        return exc.errno
    finally:
        s.close()
{"files": [os.path.exists(p) for p in ("/workspace/mine", "/tmp/mine", "/dev/shm/mine")],
 "abstract": connect(),
 "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
 "pid_ns": os.readlink("/proc/self/ns/pid"), "net_ns": os.readlink("/proc/self/ns/net"),
 "ipc_ns": os.readlink("/proc/self/ns/ipc"), "mnt_ns": os.readlink("/proc/self/ns/mnt")}
"""
    mine, theirs = one.execute(look).value, two.execute(look).value
    assert mine["files"] == [True] * 3 and mine["abstract"] == "connected"
    assert theirs["files"] == [False] * 3 and theirs["abstract"] != "connected"
    assert theirs["pids"] == [1, 2]  # neither the other session nor the template is visible
    for key in ("pid_ns", "net_ns", "ipc_ns", "mnt_ns"):
        assert mine[key] != theirs[key], key


def test_signalling_everything_reachable_harms_no_other_session(forked: Any) -> None:
    one, two = forked(), forked()
    two.execute("kept = 42")
    code = """
import os, signal, subprocess
child = subprocess.Popen(["sleep", "30"])
try:
    os.kill(-1, signal.SIGKILL)  # every process this one may signal
except OSError as exc:
    pass
child.wait()
"""
    # Control: the code's own subprocess is reachable, and dies.
    assert one.execute(code).value == -signal.SIGKILL
    assert two.execute("kept").value == 42


def test_the_template_process_is_out_of_reach(forked: Any, launcher: TemplateLauncher) -> None:
    session = forked()
    template_pid = next(iter(launcher._templates.values()))._sandbox.pid
    code = f"""
import os
def attempt(f):
    try:
        f()
        return "reached"
    except OSError as exc:
        return exc.errno
[attempt(lambda: os.kill({template_pid}, 0)), attempt(lambda: os.stat("/proc/{template_pid}"))]
"""
    import errno
    import os

    os.kill(template_pid, 0)  # control: the pid is real, and reachable from the host
    assert session.execute(code).value == [errno.ESRCH, errno.ENOENT]


def test_each_session_gets_its_own_workspace_size(forked: Any) -> None:
    session = forked(limits=securepy.Limits(workspace_bytes=4 * MiB))
    code = """
import os
try:
    with open("/workspace/big", "wb") as f:
        for _ in range(16):
            f.write(bytes(1 << 20))
    r = "wrote 16 MiB"
except OSError as exc:
    r = exc.errno
os.remove("/workspace/big")
r
"""
    import errno

    assert session.execute(code).value == errno.ENOSPC
    roomy = forked(limits=securepy.Limits(workspace_bytes=64 * MiB))
    assert roomy.execute(code).value == "wrote 16 MiB"  # control


def test_cpu_limit_is_named_although_the_worker_is_pid_1(forked: Any) -> None:
    session = forked(limits=securepy.Limits(cpu_seconds=1))
    with pytest.raises(errors.ResourceLimitError) as info:
        session.execute("while True: pass", timeout=20)
    assert info.value.limit == "cpu_seconds"
    assert session.execute("2").value == 2


@pytest.mark.skipif(
    detect_cgroup_support().version == 0, reason="no usable memory and pids cgroup here"
)
def test_each_session_gets_its_own_memory_cgroup(forked: Any) -> None:
    small = forked(limits=securepy.Limits(memory_bytes=64 * MiB, workspace_bytes=8 * MiB))
    hog = "hog = []\nwhile True: hog.append(bytearray(8 << 20))"
    with pytest.raises(errors.ResourceLimitError) as info:
        small.execute(hog, timeout=60)
    assert info.value.limit == "memory"
    # Control: another session of the same template holds more than the first one's limit.
    large = forked(limits=securepy.Limits(memory_bytes=512 * MiB, workspace_bytes=8 * MiB))
    assert large.execute("len(bytearray(128 << 20))").value == 128 << 20
    cgroup = large._child.process._cgroup  # type: ignore[union-attr]
    assert cgroup is not None
    with open(cgroup.procs_files[0]) as members:
        assert str(large._child.process.pid) in members.read().split()  # type: ignore[union-attr]


def test_timeouts_interrupt_then_kill_a_forked_session(forked: Any) -> None:
    session = forked()
    session.execute("kept = 1")
    with pytest.raises(errors.ExecutionTimeout) as info:
        session.execute("import time\nwhile True: time.sleep(0.01)", timeout=0.5)
    assert info.value.state_kept is True
    assert session.execute("kept").value == 1
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    with pytest.raises(errors.ExecutionTimeout) as info:
        session.execute(code, timeout=0.5)
    assert info.value.state_kept is False
    assert session.execute("2").value == 2


def test_a_dead_template_is_replaced_and_its_sessions_restart(launcher: TemplateLauncher) -> None:
    own = TemplateLauncher()
    try:
        session = securepy.Session(launcher=own, timeout=30)
        old = next(iter(own._templates.values()))
        old._sandbox.kill()
        wait_until(lambda: not session.is_alive())
        with pytest.raises(errors.SecurePyError):
            session.execute("1")
        assert session.execute("6 * 7").value == 42  # restarted from a new template
        assert next(iter(own._templates.values())) is not old
        session.close()
    finally:
        own.close()


def test_close_stops_the_template_and_its_sessions() -> None:
    own = TemplateLauncher()
    session = securepy.Session(launcher=own, timeout=30)
    template = next(iter(own._templates.values()))
    own.close()
    assert template._sandbox.poll() is not None
    wait_until(lambda: not session.is_alive())
    session.close()
    with pytest.raises(errors.SandboxUnavailableError, match="closed"):
        securepy.Session(launcher=own)


def test_pool_sessions_come_from_its_template_with_preload_loaded() -> None:
    code = "import sys\n'fractions' in sys.modules"
    with securepy.SessionPool(2, preload=["fractions"]) as pool, pool.session() as session:
        assert isinstance(session._child.process, TemplateChild)  # type: ignore[union-attr]
        assert session.execute(code).value is True
    # Control: the other start path.
    with securepy.SessionPool(1, template=False) as pool, pool.session() as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute(code).value is False


def test_a_preload_that_fails_is_reported(forked: Any) -> None:
    own = TemplateLauncher(preload=("no_such_module_securepy",))
    try:
        with pytest.raises(errors.SandboxUnavailableError, match="no_such_module_securepy"):
            securepy.Session(launcher=own)
    finally:
        own.close()


def test_pools_fall_back_to_bubblewrap_where_no_template_can_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(template_module, "template_problem", lambda interpreter: "not root")
    with securepy.SessionPool(1) as pool, pool.session() as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("6 * 7").value == 42
    with pytest.raises(errors.SandboxUnavailableError, match="not root"):
        securepy.Session(launcher=TemplateLauncher())  # without fall_back: the reason


def test_pool_option_is_checked() -> None:
    with pytest.raises(TypeError, match="template"):
        securepy.SessionPool(1, template="yes")


def test_an_interpreter_under_tmp_gets_a_private_tmp_per_session(tmp_path: Any) -> None:
    # CI often clones (and so builds its venv) under /tmp: /tmp then holds read-only binds,
    # and each forked session must still get a /tmp of its own around them.
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (tmp_path / "host-secret.txt").write_text("not for the sandbox")
    own = TemplateLauncher()
    try:
        python = str(venv / "bin" / "python")
        with (
            securepy.Session(python=python, launcher=own) as one,
            securepy.Session(python=python, launcher=own) as two,
        ):
            code = f"import os\nsorted(os.listdir({str(tmp_path)!r})), os.listdir('/tmp')"
            one.execute("open('/tmp/scratch', 'w').write('one')")
            assert one.execute("open('/tmp/scratch').read()").value == "one"  # control
            listing, tmp = two.execute(code).value
            assert listing == ["venv"]  # bound; the rest of the host's /tmp is absent
            assert "scratch" not in tmp  # the other session's /tmp is not this one's
            assert two.execute("import sys\nsys.executable").value == python
    finally:
        own.close()


def test_a_template_whose_sessions_cannot_isolate_fails_at_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stand-in for a kernel that refuses one of the steps: an id the drop cannot switch to.
    real_wall_config = template_module.wall_config
    monkeypatch.setattr(
        template_module,
        "wall_config",
        lambda interpreter: dataclasses.replace(real_wall_config(interpreter), gid=-2),
    )
    own = TemplateLauncher()
    try:
        with pytest.raises(errors.SandboxUnavailableError, match="cannot isolate itself"):
            securepy.Session(launcher=own)
    finally:
        own.close()
    # A pool falls back to bubblewrap, which does not use that part of the configuration.
    with securepy.SessionPool(1) as pool, pool.session() as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("6 * 7").value == 42


MASKS = """
import os
def attempt(path, mode):
    try:
        with open(path, mode) as f:
            f.read(10) if "r" in mode else f.write(b"x")
        return "ok"
    except OSError as exc:
        return exc.errno
candidates = ("kcore", "keys", "kmsg", "timer_list", "sysrq-trigger", "sys/kernel/hostname",
              "acpi", "driver", "tty", "pressure")
names = sorted(n for n in candidates if os.path.exists("/proc/" + n))
{n: (attempt("/proc/" + n, "rb"), attempt("/proc/" + n, "wb"),
     sorted(os.listdir("/proc/" + n)) if os.path.isdir("/proc/" + n) else None) for n in names}
"""


def test_masked_proc_entries_behave_as_in_a_bubblewrap_session(forked: Any) -> None:
    with securepy.Session(timeout=30) as bubblewrap_session:
        expected = bubblewrap_session.execute(MASKS).value
    assert expected  # the kernel has some of them
    assert forked().execute(MASKS).value == expected


def test_a_fork_reseeds_numpys_global_generator() -> None:
    """Once drawn from, numpy's global generator is state a fork copies: without the reseed a
    forked child draws what its parent draws next (the control), with it something else."""
    import numpy
    from securepy._worker.template import _reseed

    def child_draw(reseed: bool) -> float:
        numpy.random.rand()  # the state exists now
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            if reseed:
                _reseed()
            os.write(write_end, repr(float(numpy.random.rand())).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            return float(f.read())

    assert child_draw(reseed=False) == float(numpy.random.rand())
    assert child_draw(reseed=True) != float(numpy.random.rand())
