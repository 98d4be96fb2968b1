"""The shared template: sessions outside pools fork from one template per configuration.

How a test tells a forked session from a bubblewrap one: the session's process is a
``TemplateChild`` whose host pid descends from the pid ``Session.shared_templates()`` reports
(a bubblewrap session's process is our own child). Each claim has its control: the same check
on a ``template=False`` session gives the other answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import securepy
from securepy import errors
from securepy._child import _child_environment
from securepy._interpreter import probe_interpreter
from securepy._launchers import shared
from securepy._launchers import template as template_module
from securepy._launchers.bubblewrap import BubblewrapChild
from securepy._launchers.template import TemplateChild

from ..conftest import UNPRIVILEGED_UID, run_as_another_user, wait_until

MiB = 1024 * 1024

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("needs_template")]


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The environment switch, unset for the test whatever the caller's environment says."""
    monkeypatch.delenv(shared.ENV_SWITCH, raising=False)
    yield monkeypatch


def plain_template() -> shared.SharedTemplateStatus:
    """The template of sessions with no mounts on this interpreter (other tests may leave
    templates of other interpreters)."""
    python = probe_interpreter(None).executable
    (status,) = [s for s in securepy.Session.shared_templates()
                 if not s.mounts and s.python == python]
    return status


def ancestors(pid: int) -> list[int]:
    """``pid``'s parents, up to (not including) this process."""
    found: list[int] = []
    while pid not in (0, 1, os.getpid()):
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        found.append(pid)
    return found


def forked_from(session: securepy.Session, status: shared.SharedTemplateStatus) -> bool:
    process = session._child.process  # type: ignore[union-attr]
    return isinstance(process, TemplateChild) and status.pid in ancestors(process.pid)


def test_a_plain_session_forks_from_the_shared_template(switch: pytest.MonkeyPatch) -> None:
    with securepy.Session() as session:
        status = plain_template()
        assert status.pid is not None and status.sessions >= 1
        assert forked_from(session, status)
        assert session.wall == "namespaces"
        assert session.execute("6 * 7").value == 42
        assert len(status.fds) == 2  # its control socket and its stderr pipe
        links = sorted(os.readlink(f"/proc/self/fd/{fd}").split(":")[0] for fd in status.fds)
        assert links == ["pipe", "socket"]
        with securepy.Session(template=False) as control:  # the other start path
            assert isinstance(control._child.process, BubblewrapChild)  # type: ignore[union-attr]
            assert status.pid not in ancestors(control._child.process.pid)  # type: ignore[union-attr]
            assert control.execute("6 * 7").value == 42
        assert plain_template().sessions == status.sessions  # the control was not counted
    assert plain_template().sessions == status.sessions - 1


async def test_an_async_session_forks_from_it_too(switch: pytest.MonkeyPatch) -> None:
    async with securepy.AsyncSession() as session:
        status = plain_template()
        assert isinstance(session._child.process, TemplateChild)  # type: ignore[union-attr]
        assert status.pid in ancestors(session._child.process.pid)  # type: ignore[union-attr]
        assert (await session.execute("1 + 1")).value == 2


_TENANT = """
import os
(os.getuid(), os.readlink('/proc/self/ns/pid'), os.readlink('/proc/self/ns/net'),
 os.readlink('/proc/self/ns/mnt'), os.getpid(), hash('securepy'))
"""


def test_two_sessions_of_one_template_are_separate_tenants(switch: pytest.MonkeyPatch) -> None:
    with securepy.Session() as a, securepy.Session() as b:
        status = plain_template()
        assert forked_from(a, status) and forked_from(b, status)
        ua, pid_a, net_a, mnt_a, own_pid_a, hash_a = a.execute(_TENANT).value
        ub, pid_b, net_b, mnt_b, own_pid_b, hash_b = b.execute(_TENANT).value
        assert ua != ub  # a uid each
        assert (pid_a, net_a, mnt_a) != (pid_b, net_b, mnt_b)
        assert pid_a != pid_b and net_a != net_b and mnt_a != mnt_b
        assert own_pid_a == own_pid_b == 2  # each sees its own pid namespace only
        a.files.write("secret.txt", b"a's")
        b.execute("y = 'b only'")
        assert a.files.read("secret.txt") == b"a's"  # control: a's own file is there
        assert "secret.txt" not in b.files.list()
        with pytest.raises(errors.ExecutionError, match="NameError"):
            a.execute("y")
        assert b.execute("y").value == "b only"  # control
        # What a fork cannot renew (documented): the str hash secret of the template.
        assert hash_a == hash_b
    with securepy.Session(template=False) as c, securepy.Session(template=False) as d:
        assert c.execute("hash('securepy')").value != d.execute("hash('securepy')").value


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_environment_switch_turns_it_off_for_the_process(
    switch: pytest.MonkeyPatch,
    value: str,
) -> None:
    switch.setenv(shared.ENV_SWITCH, value)
    with securepy.Session(template=True) as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("1 + 1").value == 2
    switch.setenv(shared.ENV_SWITCH, "1")  # and back on
    with securepy.Session() as session:
        assert forked_from(session, plain_template())


def test_a_session_opts_out_with_template_false(switch: pytest.MonkeyPatch) -> None:
    with securepy.Session(template=False) as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.wall == "namespaces"
    assert securepy.execute_python("7 * 6") == 42  # the default path, control
    with pytest.raises(TypeError, match="template must be True or False"):
        securepy.Session(template="no")  # type: ignore[arg-type]


def test_a_bad_switch_value_names_the_variable_and_the_fix(switch: pytest.MonkeyPatch) -> None:
    switch.setenv(shared.ENV_SWITCH, "maybe")
    with pytest.raises(ValueError, match=r"SECUREPY_SHARED_TEMPLATE='maybe' is neither on nor "
                                         r"off: set it to 0"):
        securepy.Session()


def test_pools_keep_their_own_template_and_template_false_pools_use_neither(
    switch: pytest.MonkeyPatch,
) -> None:
    with securepy.Session() as session:
        status = plain_template()
        with securepy.SessionPool(1) as pool, pool.session() as pooled:
            assert isinstance(pooled._child.process, TemplateChild)  # type: ignore[union-attr]
            assert status.pid not in ancestors(pooled._child.process.pid)  # type: ignore[union-attr]
        with securepy.SessionPool(1, template=False) as pool, pool.session() as pooled:
            assert isinstance(pooled._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert forked_from(session, status)  # control


def test_it_is_stopped_at_interpreter_exit() -> None:
    # The check is registered before securepy is imported, so it runs after securepy's own
    # exit hook: a session left open and its template must already be gone by then.
    script = textwrap.dedent("""
        import atexit, os

        def children():
            found = set()
            for task in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{task}/children") as f:
                    found.update(int(p) for p in f.read().split())
            return sorted(found)

        atexit.register(lambda: print("at exit:", children(), flush=True))
        import securepy

        session = securepy.Session()
        session.execute("1")
        (status,) = securepy.Session.shared_templates()
        print("template:", status.pid, children(), flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != shared.ENV_SWITCH}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env, check=True)
    lines = result.stdout.splitlines()
    pid = int(lines[0].split()[1])
    assert lines[0] == f"template: {pid} [{pid}]"  # control: it ran, as the host's child
    assert lines[1] == "at exit: []"
    assert not os.path.exists(f"/proc/{pid}")


def test_a_template_that_dies_is_replaced_and_its_sessions_restart(
    switch: pytest.MonkeyPatch,
) -> None:
    with securepy.Session() as session:
        session.execute("kept = 1")
        old = plain_template()
        assert old.pid is not None
        os.kill(old.pid, signal.SIGKILL)
        wait_until(lambda: not session.is_alive())
        with pytest.raises(errors.SecurePyError):
            session.execute("kept")  # the child died with its template; state lost
        assert session.execute("2 + 2").value == 4  # restarted, from a new template
        new = plain_template()
        assert new.pid not in (None, old.pid)
        assert forked_from(session, new)
        with securepy.Session() as another:
            assert forked_from(another, new)
    assert not os.path.exists(f"/proc/{old.pid}")  # reaped, not a zombie


def test_closing_it_early_stops_its_sessions_and_the_next_session_starts_one(
    switch: pytest.MonkeyPatch,
) -> None:
    with securepy.Session() as session:
        old = plain_template()
        securepy.Session.close_shared_templates()
        assert securepy.Session.shared_templates() == ()
        assert not os.path.exists(f"/proc/{old.pid}")
        assert not session.is_alive()
        with securepy.Session() as fresh:
            new = plain_template()
            assert new.pid != old.pid and forked_from(fresh, new)


def test_sessions_with_limits_fork_from_it_and_keep_their_limits(
    switch: pytest.MonkeyPatch,
) -> None:
    limits = securepy.Limits(memory_bytes=256 * MiB, workspace_bytes=4 * MiB)
    with securepy.Session(limits=limits) as session:
        assert forked_from(session, plain_template())
        session.execute("kept = 1")
        session.files.write("small.bin", b"x" * MiB)  # control: under the workspace limit
        with pytest.raises(errors.ResourceLimitError) as info:
            session.execute("open('big.bin', 'wb').write(b'x' * (8 * 1024 * 1024))")
        assert info.value.limit == "workspace"
        with pytest.raises(errors.ResourceLimitError) as info:
            session.execute("x = bytearray(1024 * 1024 * 1024)")
        assert info.value.limit == "memory"


def test_sessions_with_mounts_get_a_template_of_their_own(
    switch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "hello.txt").write_text("from the host")
    tmp_path.chmod(0o755)  # the sandbox's user (uid 65534 as root) reads it
    mount = securepy.Mount(str(tmp_path), "data")
    with securepy.Session(mounts=[mount]) as session, securepy.Session() as plain:
        (own,) = [s for s in securepy.Session.shared_templates() if s.mounts == (mount,)]
        assert forked_from(session, own) and own.pid != plain_template().pid
        assert session.execute("open('data/hello.txt').read()").value == "from the host"
        with pytest.raises(errors.ExecutionError, match="FileNotFoundError"):
            plain.execute("open('data/hello.txt').read()")  # control: no mount, no file
        with pytest.raises(errors.ExecutionError, match="Read-only file system"):
            session.execute("open('data/new.txt', 'w')")


def test_past_the_bound_a_new_configuration_starts_with_bubblewrap(
    switch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    switch.setattr(shared, "MAX_TEMPLATES", len(securepy.Session.shared_templates()))
    mount = securepy.Mount(str(tmp_path), "data")
    with securepy.Session(mounts=[mount]) as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("import os\nos.path.isdir('data')").value is True
    with securepy.Session() as plain:  # control: a configuration that has its template
        assert forked_from(plain, plain_template())


def test_where_no_template_can_run_sessions_start_as_before(switch: pytest.MonkeyPatch) -> None:
    switch.setattr(template_module, "template_problem", lambda interpreter: "not root")
    with securepy.Session() as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("1 + 1").value == 2
    # Nor does the Landlock wall (no namespaces to fork into) ask for one.
    env = _child_environment()
    assert shared.shared_launcher(probe_interpreter(None), (), env, wall="landlock") is None
    switch.undo()
    assert shared.shared_launcher(probe_interpreter(None), (), env, wall="auto") is not None


def test_a_template_that_fails_to_start_falls_back_to_bubblewrap(
    switch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    # A new configuration (a mount) whose template cannot isolate its sessions.
    switch.setattr(shared, "MAX_TEMPLATES", len(securepy.Session.shared_templates()) + 1)
    real_wall_config = template_module.wall_config
    switch.setattr(template_module, "wall_config", lambda interpreter: dataclasses.replace(
        real_wall_config(interpreter), gid=-2))
    mount = securepy.Mount(str(tmp_path), "data")
    with securepy.Session(mounts=[mount]) as session:
        assert isinstance(session._child.process, BubblewrapChild)  # type: ignore[union-attr]
        assert session.execute("1 + 1").value == 2
    (entry,) = [s for s in securepy.Session.shared_templates() if s.mounts == (mount,)]
    assert entry.pid is None and entry.sessions == 0


# Runs as uid 65534 (a host user who is not root): templates in bubblewrap's user mode.
_NON_ROOT_SCRIPT = r'''
import json, os, securepy

def ancestors(pid):
    found = []
    while pid not in (0, 1, os.getpid()):
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        found.append(pid)
    return found

NS = "__import__('os').readlink('/proc/self/ns/pid')"
with securepy.Session() as a, securepy.Session() as b:
    (status,) = securepy.Session.shared_templates()
    a.execute("x = 1")
    report = {"uid": os.getuid(), "type": type(a._child.process).__name__,
              "template": status.pid, "sessions": status.sessions,
              "forked": [status.pid in ancestors(s._child.process.pid) for s in (a, b)],
              "namespaces": [s.execute(NS).value for s in (a, b)],
              "x": [s.execute("'x' in globals()").value for s in (a, b)],
              "fds": sorted(os.readlink(f"/proc/self/fd/{fd}").split(":")[0]
                            for fd in status.fds)}
with securepy.Session(template=False) as control:
    report["control"] = type(control._child.process).__name__
print(json.dumps(report), flush=True)
'''


def test_as_a_host_user_who_is_not_root_plain_sessions_fork_too() -> None:
    uid = UNPRIVILEGED_UID
    proc = run_as_another_user(_NON_ROOT_SCRIPT, prefix="securepy-shared-nonroot-")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["uid"] == uid
    assert report["type"] == "TemplateChild" and report["forked"] == [True, True]
    assert report["sessions"] == 2 and report["fds"] == ["pipe", "socket"]
    assert report["namespaces"][0] != report["namespaces"][1]  # separate tenants
    assert report["x"] == [True, False]
    assert report["control"] == "BubblewrapChild"  # template=False: the other start path
    assert not os.path.exists(f"/proc/{report['template']}")  # stopped when the script ended
