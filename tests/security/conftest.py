"""The attack corpus's shared pieces: host secrets to steal, host state to guard, sessions.

Every attack test gets, through the ``host`` fixture:

- secrets the sandboxed code must not reach: a canary file in the host's home, working
  directory and temp directory, a canary environment variable set in this (the host) process
  before any session of the suite starts, and a helper process running as uid 65534 (the
  sandbox's own uid) with the canary in its environment and command line;
- ``host.run(session, code)``: run code and turn the outcome into plain data, remembering
  every text that came back (value, stdout, stderr, error text) so the canary check sees it;
- after the test, the checks the issue asks for: the canary is in nothing that came back, no
  host file changed and no attack file appeared, no process of any sandbox this test closed is
  still alive (found by pid namespace, so other sandboxes on the machine do not matter), and
  the shared sessions still answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy
from securepy._interpreter import probe_interpreter
from securepy._launchers.landlock import landlock_problem, landlock_problem_for
from securepy._launchers.template import TemplateChild, TemplateLauncher, template_problem

from ..conftest import skip_unless_ci, wait_until

SANDBOX_UID = 65534
TOKEN = f"securepy-attack-{uuid.uuid4().hex[:12]}"
CANARY = f"CANARY-{uuid.uuid4().hex}"
CANARY_ENV = "SECUREPY_TEST_SECRET"
WORKER_DIR = str(pathlib.Path(securepy.__file__).parent / "_worker")
SITE_PACKAGES = sysconfig.get_paths()["purelib"]
STDLIB = sysconfig.get_paths()["stdlib"]
# Host directories an attack file could land in; each is scanned for TOKEN after every test.
_SCANNED_DIRS = (
    "/",
    "/usr",
    "/etc",
    "/dev",
    "/dev/shm",
    "/tmp",
    "/var/tmp",
    "/run",
    SITE_PACKAGES,
    STDLIB,
    WORKER_DIR,
    os.path.dirname(sys.executable),
)
# Host files whose content no attack may change. (The worker's own sources are not hashed:
# engineers edit them while the suite runs; the writes suite checks the sandbox cannot.)
_GUARDED_FILES = (
    "/etc/passwd",
    "/etc/hostname",
    "/etc/hosts",
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/modprobe",
    os.__file__,
    os.path.realpath(sys.executable),
)


@dataclasses.dataclass
class Outcome:
    """What one execute gave back, as plain data: ``ok`` and ``value``, or the error."""

    ok: bool
    value: Any = None
    error: BaseException | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def error_type(self) -> str:
        return "" if self.error is None else type(self.error).__name__

    @property
    def limit(self) -> str | None:
        return getattr(self.error, "limit", None)


class Host:
    """The host side of the attack suite: its secrets, its state, its checks."""

    canary = CANARY
    canary_env = CANARY_ENV
    token = TOKEN

    def __init__(self, canary_files: dict[str, str], helper: subprocess.Popen[bytes]) -> None:
        self.canary_files = canary_files
        self.helper = helper
        self.returned: list[str] = []
        self.namespaces: list[str] = []
        self._fingerprint = _host_fingerprint() if canary_files else {}

    # -- running code ------------------------------------------------------------------------

    def run(
        self, session: securepy.Session, code: str, *, record: bool = True, **options: Any
    ) -> Outcome:
        """Execute ``code``; never raises a SecurePyError, returns it in the outcome.

        ``record=False`` is for controls, whose whole point is to get the secret back.
        """
        if not record:
            return Host({}, self.helper).run(session, code, **options)
        try:
            execution = session.execute(code, **options)
        except securepy.SecurePyError as exc:
            texts = [
                str(exc),
                *(
                    str(getattr(exc, name, ""))
                    for name in ("traceback", "stdout", "stderr", "message", "type_name")
                ),
            ]
            self.returned.extend(texts)
            return Outcome(
                False,
                error=exc,
                stdout=getattr(exc, "stdout", ""),
                stderr=getattr(exc, "stderr", ""),
            )
        self.returned.extend(
            [repr(execution.value), execution.stdout, execution.stderr, execution.text]
        )
        return Outcome(True, execution.value, stdout=execution.stdout, stderr=execution.stderr)

    def value(
        self, session: securepy.Session, code: str, *, record: bool = True, **options: Any
    ) -> Any:
        """The value of ``code``, which must not fail."""
        outcome = self.run(session, code, record=record, **options)
        assert outcome.ok, f"{outcome.error_type}: {outcome.error}"
        return outcome.value

    def record_namespace(self, session: securepy.Session) -> str:
        """Remember the sandbox's pid namespace, to prove later nothing of it survived."""
        namespace = namespace_of(session)
        self.namespaces.append(namespace)
        _RECORDED.setdefault(namespace, _boot_ticks())
        return str(namespace)

    # -- checks --------------------------------------------------------------------------------

    def assert_no_canary(self) -> None:
        leaked = [text[:300] for text in self.returned if CANARY in text]
        assert not leaked, f"the canary secret came back from the sandbox: {leaked}"

    def assert_files_unchanged(self) -> None:
        now = _host_fingerprint()
        changed = {k: (v, now.get(k)) for k, v in self._fingerprint.items() if now.get(k) != v}
        assert not changed, f"host files changed: {sorted(changed)}"
        for path, text in self.canary_files.items():
            assert pathlib.Path(path).read_text() == text
        planted = [
            os.path.join(d, name)
            for d in _SCANNED_DIRS
            if os.path.isdir(d)
            for name in _listdir(d)
            if TOKEN in name
        ]
        assert not planted, f"attack files appeared on the host: {planted}"

    def assert_nothing_survived(self, namespaces: list[str] | None = None) -> None:
        """No host process lives in any of these pid namespaces, and none carries TOKEN."""
        wanted = set(self.namespaces if namespaces is None else namespaces)
        wait_until(lambda: not _processes_in(wanted), timeout=10)
        marked = _processes_marked(TOKEN)
        assert not marked, f"processes of an attack survived: {marked}"

    def kill_marked(self, marker: str, *, wait: float = 0.0) -> list[int]:
        """SIGKILL host processes whose command line carries ``marker`` (a control's leftovers),
        waiting up to ``wait`` seconds for one to appear."""
        if wait:
            with contextlib.suppress(AssertionError):
                wait_until(lambda: bool(_processes_marked(marker)), timeout=wait)
        return kill_marked(marker)

    def assert_helper_alive(self) -> None:
        assert self.helper.poll() is None, "the host's uid-65534 helper process was killed"


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _host_fingerprint() -> dict[str, str]:
    found = {}
    for path in _GUARDED_FILES:
        try:
            found[path] = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            found[path] = f"unreadable: {exc.errno}"
    return found


def _host_pids() -> list[int]:
    return [int(p) for p in _listdir("/proc") if p.isdigit()]


# When each namespace was recorded, in clock ticks since boot (as /proc/PID/stat counts).
_RECORDED: dict[str, int] = {}


def _boot_ticks() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def namespace_of(session: securepy.Session) -> str:
    """What holds a session's processes: its pid namespace, or (Landlock wall, no pid namespace
    and no /proc inside) its uid as "uid:N", checked from the host."""
    if session.wall == "landlock":
        uid = session.execute("__import__('os').getuid()").value
        return f"uid:{uid}"
    namespace = session.execute("__import__('os').readlink('/proc/self/ns/pid')").value
    assert isinstance(namespace, str) and namespace.startswith("pid:[")
    return namespace


def landlock_python() -> str | None:
    """The interpreter the Landlock wall runs here: this one, or where a session uid cannot
    reach it (pyenv under /root), the system's."""
    if landlock_problem_for(probe_interpreter(None)) is None:
        return None
    return "/usr/bin/python3"


def _processes_in(namespaces: set[str]) -> list[int]:
    """Host processes in these pid namespaces. The kernel reuses a freed namespace's number:
    the pid 1 of a namespace made after one was recorded (a template's next session's reaper,
    made ahead of time) is a newcomer, not a survivor. Anything else is: only pid 1 is
    exempt, and only if it started after the namespace was recorded."""
    found = []
    uids = {int(n[4:]) for n in namespaces if n.startswith("uid:")}
    templates = _shared_template_processes()
    for pid in _host_pids():
        if pid in templates:
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if uids and os.stat(f"/proc/{pid}").st_uid in uids and os.geteuid() == 0:
                found.append(pid)
                continue
            namespace = os.readlink(f"/proc/{pid}/ns/pid")
            if namespace not in namespaces:
                continue
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
            started = int(
                pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
            )
            if nspid.split()[-1] == "1" and started > _RECORDED.get(namespace, 1 << 62):
                continue
            found.append(pid)
    return found


def _shared_template_processes() -> set[int]:
    """The shared session templates' own processes, as ``Session.shared_templates()`` accounts
    for them: each template's bubblewrap and what runs in the template's pid namespace. A
    template started after a namespace was recorded may get its recycled number; the sessions
    it forks run in namespaces of their own and stay checked."""
    own: set[int] = set()
    for status in securepy.Session.shared_templates():
        if status.pid is None:
            continue
        own.add(status.pid)
        with contextlib.suppress(OSError):
            inner = {os.readlink(f"/proc/{child}/ns/pid") for child in _children(status.pid)}
            own |= {pid for pid in _descendants(status.pid)
                    if _pid_namespace(pid) in inner}
    return own


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in _listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found |= {int(p) for p in
                      pathlib.Path(f"/proc/{pid}/task/{task}/children").read_text().split()}
    return found


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        kids = _children(todo.pop()) - found
        found |= kids
        todo.extend(kids)
    return found


def _pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _processes_marked(marker: str) -> list[int]:
    found = []
    for pid in _host_pids():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL the host processes whose command line carries ``marker`` (a control's leftovers)."""
    pids = _processes_marked(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.fixture(scope="session")
def host_secrets() -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes]]]:
    """Plant the canaries on the host for the whole suite; remove them after."""
    files: dict[str, str] = {}
    for where in (pathlib.Path.home(), pathlib.Path.cwd(), pathlib.Path(tempfile.gettempdir())):
        path = where / f".securepy-canary-{CANARY[-12:]}.txt"
        text = f"secret in {where}: {CANARY}\n"
        path.write_text(text)
        path.chmod(0o644)  # readable by anyone who can reach it: only the wall stops a read
        files[str(path)] = text
    os.environ[CANARY_ENV] = CANARY
    helper = subprocess.Popen(
        ["/bin/sh", "-c", f"sleep 600; : {CANARY}"],
        env={CANARY_ENV: CANARY, "PATH": "/usr/bin:/bin"},
        user=SANDBOX_UID,
        group=SANDBOX_UID,
        extra_groups=[],
        cwd="/",
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield files, helper
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(helper.pid, signal.SIGKILL)
        helper.wait()
        os.environ.pop(CANARY_ENV, None)
        for path in files:
            pathlib.Path(path).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def shared_namespaces() -> list[str]:
    """Pid namespaces of the suite's shared sandboxes, checked when the suite ends."""
    return []


@pytest.fixture
def host(
    host_secrets: tuple[dict[str, str], subprocess.Popen[bytes]], shared_namespaces: list[str]
) -> Iterator[Host]:
    """The host, checked after the test: no canary returned, no file changed, nothing left."""
    files, helper = host_secrets
    guard = Host(files, helper)
    yield guard
    guard.assert_no_canary()
    guard.assert_files_unchanged()
    guard.assert_helper_alive()


# Every attack runs against both ways a sandboxed session starts: its own bubblewrap, and a
# fork of a pool's template (which builds the same wall itself; see _launchers/template.py).
WALLS = ["bubblewrap", "template", "landlock"]


@pytest.fixture(scope="session", autouse=True)
def template_launcher(host_secrets: Any) -> Iterator[TemplateLauncher | None]:
    """One template for the suite, started after the host's secrets exist (so its environment
    is proven not to carry them) and before any test's leak guard looks. None where templates
    cannot run (not root), or where no sandbox starts (the tests' sandbox marker then fails or
    skips them before they get here)."""
    if _template_problem() is not None:
        yield None
        return
    launcher = TemplateLauncher()
    with securepy.Session(launcher=launcher) as session:
        session.execute("1")
    yield launcher
    launcher.close()


def forked_from_template(session: securepy.Session) -> bool:
    """True for a session forked from a template: its worker is the template's child, pid 2
    of its own namespace under a reaper (in a bubblewrap session, under bubblewrap)."""
    return session._child is not None and isinstance(session._child.process, TemplateChild)


def _wall_options(wall: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if wall == "landlock":
        problem = landlock_problem()
        if problem is not None:
            pytest.fail(f"the Landlock wall cannot stand here: {problem}")
        return {"wall": "landlock", "python": landlock_python()}
    if wall == "bubblewrap":
        return {"template": False}  # its own bubblewrap, not a fork of the shared template
    launcher = request.getfixturevalue("template_launcher")
    if launcher is None:
        skip_unless_ci(f"no session template here: {_template_problem()}")
    return {"launcher": launcher}


def _template_problem() -> str | None:
    try:
        return template_problem(probe_interpreter(None))
    except securepy.SandboxUnavailableError as exc:
        return str(exc)


@pytest.fixture(params=WALLS)
def sandboxes(
    host: Host, request: pytest.FixtureRequest
) -> Iterator[Callable[..., securepy.Session]]:
    """Factory of fresh sandboxed sessions (for destructive attacks); each is closed after the
    test, and then nothing of its sandbox may still run on the host."""
    made: list[securepy.Session] = []
    wall = _wall_options(request.param, request)

    def make(**options: Any) -> securepy.Session:
        options.setdefault("timeout", 30)
        session = securepy.Session(**{**wall, **options})
        made.append(session)
        host.record_namespace(session)
        return session

    yield make
    for session in made:
        session.close()
    host.assert_nothing_survived()


@pytest.fixture(scope="module", params=WALLS)
def shared_sandbox(
    host_secrets: Any, shared_namespaces: list[str], request: pytest.FixtureRequest
) -> Iterator[securepy.Session]:
    """One sandboxed session per module and wall, for attacks that leave it intact (reads,
    refused calls). A test that kills it fails the leak guard, as its restarted child is new."""
    with securepy.Session(timeout=30, **_wall_options(request.param, request)) as session:
        namespace = namespace_of(session)
        shared_namespaces.append(namespace)
        _RECORDED.setdefault(namespace, _boot_ticks())
        yield session
    wait_until(lambda: not _processes_in({namespace}), timeout=10)


@pytest.fixture(scope="module")
def control(host_secrets: Any) -> Iterator[securepy.Session]:
    """One unsandboxed session per module: the control where the resource is available."""
    with securepy.Session(sandbox=False, timeout=30) as session:
        yield session


@pytest.fixture(scope="session", autouse=True)
def _nothing_of_shared_sandboxes_survives(shared_namespaces: list[str]) -> Iterator[None]:
    yield
    wait_until(lambda: not _processes_in(set(shared_namespaces)), timeout=10)


@pytest.fixture
def shared(shared_sandbox: securepy.Session, host: Host) -> Iterator[securepy.Session]:
    """The module's shared sandbox for one test; after it, the same child must still answer."""
    before = shared_sandbox._child.process.pid if shared_sandbox._child else None
    yield shared_sandbox
    assert host.value(shared_sandbox, "6 * 7") == 42
    after = shared_sandbox._child.process.pid if shared_sandbox._child else None
    assert after == before, "the attack killed the shared sandbox (use a fresh one)"


# The attack suite runs against the Landlock wall too. These tests assert what the namespace
# wall does in its own way (a path that is not mounted is FileNotFoundError, /proc is the
# sandbox's own, pid 1 is bubblewrap, /workspace and /tmp are tmpfs paths): against the
# Landlock wall the same attacks fail differently (PermissionError, no /proc at all), and
# tests/security/test_landlock_wall.py asserts how, attack by attack. The last group are the
# documented differences of docs/threat-model.md (the Landlock wall's table).
_LANDLOCK_ASSERTS_DIFFERENTLY = (
    "test_fds_sent_with_scm_rights_never_reach_the_host",  # writes to /workspace by path
    "test_docker_dbus_and_other_system_sockets_are_absent",  # /run exists (unreadable)
    "test_signals_to_host_pids_are_impossible",  # EPERM (scoped), not ESRCH (no pid)
    "test_pid_namespace_cannot_be_left",  # there is none; unshare is EPERM all the same
    "test_no_privilege_can_be_gained",  # reads /proc/self/status: no /proc
    "test_frame_walking_and_gc_find_no_host_secret",  # reads /proc
    "test_canary_files_are_unreadable",  # PermissionError, not FileNotFoundError
    "test_etc_shadow_and_root_home_are_absent",  # present but unreadable
    "test_host_environment_is_not_readable_through_proc",  # no /proc at all
    "test_other_processes_are_invisible_in_proc",  # no /proc at all
    "test_inherited_host_file_descriptors_do_not_reach_the_sandbox",  # lists /proc/self/fd
    "test_writes_outside_the_workspace_are_refused",  # PermissionError, not EROFS
    "test_tmp_is_private_to_the_sandbox",  # /tmp is refused, not private
    "test_device_nodes_cannot_be_made",  # refused by Landlock, not by nodev
    "test_orphans_are_reaped_and_own_children_are_kept",  # looks for zombies in /proc
)
_LANDLOCK_DIFFERENCES = (
    # A host directory, stopped from the host (no ENOSPC inside, state lost), and after the
    # fact: a fill that returns before the next scan is stopped at the next execute.
    # test_landlock_wall.py asserts the bound (bytes, files, one file, unlinked files).
    "test_disk_fill_of_the_workspace_is_bounded",
    "test_empty_files_cannot_exhaust_kernel_memory",
    "test_dev_shm_has_its_own_size_limit",  # /dev/shm is refused, there is no own one
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "landlock" not in callspec.id.split("-"):
            continue
        name = item.name.split("[")[0]
        if name in _LANDLOCK_ASSERTS_DIFFERENTLY:
            item.add_marker(
                pytest.mark.xfail(
                    reason="asserts the namespace wall's way of refusing; the Landlock wall's is "
                    "tested in test_landlock_wall.py",
                    strict=False,
                )
            )
        elif name in _LANDLOCK_DIFFERENCES:
            item.add_marker(
                pytest.mark.xfail(
                    reason="a documented difference of the Landlock wall (docs/threat-model.md)",
                    run=False,
                )
            )
