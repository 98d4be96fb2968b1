"""A memory and pids cgroup per sandboxed child, where the host lets us make one.

rlimits fall short in two ways a cgroup fixes: RLIMIT_AS bounds one process, not a tree of
them, nor the tmpfs pages the code writes; RLIMIT_NPROC is not enforced for real uid 0 and is
shared by every process of one uid. So each child gets its own cgroup:

- cgroup v2, when this process's cgroup is delegated to us (we can create a child in it and
  its ``cgroup.subtree_control`` has, or accepts, ``memory`` and ``pids``);
- cgroup v1 as root, with the ``memory`` and ``pids`` controllers mounted (this is what Debian
  containers and many CI machines offer);
- otherwise none: the worker's rlimits and the tmpfs sizes are all there is (``securepy
  doctor`` says so).

Each cgroup is created below this process's own cgroup, so it nests inside whatever limits the
host already runs under. The launcher starts the child through a tiny ``/bin/sh`` step that
writes ``0`` (itself) into each ``cgroup.procs`` and then execs bubblewrap, so every process of
the sandbox is born inside the cgroup; nothing runs before the move.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import time
import uuid

__all__ = ["CgroupSupport", "ChildCgroup", "create_child_cgroup", "detect_cgroup_support"]

_ROOT = "/sys/fs/cgroup"
_CONTROLLERS = ("memory", "pids")


@dataclasses.dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Which cgroup enforcement this host offers.

    Attributes:
        version: 2, 1, or 0 for none usable.
        parents: controller name -> directory under which child cgroups are made
            (one directory for v2, one per controller for v1).
        detail: a sentence saying what was found, for ``securepy doctor``.
    """

    version: int
    parents: dict[str, str]
    detail: str


@dataclasses.dataclass(slots=True)
class ChildCgroup:
    """One child's cgroup (one directory on v2, one per controller on v1)."""

    version: int
    dirs: dict[str, str]

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files listing this cgroup's processes."""
        return tuple(os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.dirs.values()))

    @property
    def thread_join_files(self) -> tuple[str, ...]:
        """The files a single-threaded process writes ``0`` into to move itself here: v1's
        ``tasks`` (a thread moving itself skips the global lock a process move takes, which
        costs an RCU grace period), v2's ``cgroup.procs``."""
        name = "tasks" if self.version == 1 else "cgroup.procs"
        return tuple(os.path.join(d, name) for d in dict.fromkeys(self.dirs.values()))

    def oom_killed(self) -> bool:
        """True when the kernel's out-of-memory killer struck inside this cgroup."""
        memory = self.dirs.get("memory")
        if memory is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in _read(os.path.join(memory, name)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def pids_exhausted(self) -> bool:
        """True when a fork or thread was refused because the pids limit was reached."""
        pids = self.dirs.get("pids")
        if pids is None:
            return False
        for line in _read(os.path.join(pids, "pids.events")).splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def memory_peak(self) -> int | None:
        """Peak memory charged to the cgroup in bytes (v1 always; v2 on kernels with
        ``memory.peak``)."""
        memory = self.dirs.get("memory")
        if memory is None:
            return None
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = _read(os.path.join(memory, name)).strip()
        return int(text) if text.isdigit() else None

    def kill_and_remove(self, *, timeout: float = 2.0) -> None:
        """SIGKILL whatever is still inside, then remove the directories. Idempotent."""
        deadline = time.monotonic() + timeout
        for path in dict.fromkeys(self.dirs.values()):
            _kill_members(path, deadline)
            _rmdir_when_empty(path, deadline)
        self.dirs.clear()


def detect_cgroup_support() -> CgroupSupport:
    """Find the cgroup enforcement available to this process (cheap; no cgroup is made)."""
    own = _own_cgroups()
    if "" in own and os.path.exists(os.path.join(_ROOT, "cgroup.controllers")):
        return _detect_v2(os.path.join(_ROOT, own[""].lstrip("/")))
    if all(c in own for c in _CONTROLLERS):
        return _detect_v1(own)
    return CgroupSupport(
        0, {}, "no memory and pids cgroup controllers are available; rlimits are used"
    )


def create_child_cgroup(
    support: CgroupSupport, *, memory_bytes: int | None, processes: int | None
) -> ChildCgroup | None:
    """Make a cgroup for one child with these limits, or None when the host offers none.

    A limit of None leaves that controller unbounded (the cgroup still tracks and can kill).
    """
    if support.version == 0:
        return None
    name = f"securepy-{uuid.uuid4().hex[:16]}"
    cgroup = ChildCgroup(support.version, {})
    try:
        for controller, parent in support.parents.items():
            path = os.path.join(parent, name)
            if path not in cgroup.dirs.values():
                os.mkdir(path, 0o755)
            cgroup.dirs[controller] = path
        _write_limits(cgroup, memory_bytes=memory_bytes, processes=processes)
    except OSError:
        cgroup.kill_and_remove()
        return None
    return cgroup


def _write_limits(cgroup: ChildCgroup, *, memory_bytes: int | None, processes: int | None) -> None:
    memory, pids = cgroup.dirs["memory"], cgroup.dirs["pids"]
    if cgroup.version == 2:
        if memory_bytes is not None:
            _write(os.path.join(memory, "memory.max"), str(memory_bytes))
            _write(os.path.join(memory, "memory.swap.max"), "0", optional=True)
        if processes is not None:
            _write(os.path.join(pids, "pids.max"), str(processes))
        return
    if memory_bytes is not None:
        _write(os.path.join(memory, "memory.limit_in_bytes"), str(memory_bytes))
        # No swap either: memsw counts memory plus swap, so equal limits forbid swapping.
        _write(
            os.path.join(memory, "memory.memsw.limit_in_bytes"), str(memory_bytes), optional=True
        )
    if processes is not None:
        _write(os.path.join(pids, "pids.max"), str(processes))


def _detect_v2(own_dir: str) -> CgroupSupport:
    controllers = _read(os.path.join(own_dir, "cgroup.subtree_control")).split()
    missing = [c for c in _CONTROLLERS if c not in controllers]
    if missing and not _enable_v2_controllers(own_dir, missing):
        return CgroupSupport(
            0,
            {},
            f"cgroup v2 is mounted but {own_dir} does not delegate the "
            f"{' and '.join(missing)} controllers to this process; rlimits are used",
        )
    if not os.access(own_dir, os.W_OK):
        return CgroupSupport(
            0, {}, f"cgroup v2 is mounted but {own_dir} is not writable; rlimits are used"
        )
    return CgroupSupport(
        2, dict.fromkeys(_CONTROLLERS, own_dir), f"cgroup v2 delegated at {own_dir}"
    )


def _enable_v2_controllers(own_dir: str, missing: list[str]) -> bool:
    try:
        _write(os.path.join(own_dir, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))
    except OSError:
        return False
    return True


def _detect_v1(own: dict[str, str]) -> CgroupSupport:
    parents: dict[str, str] = {}
    for controller in _CONTROLLERS:
        parent = os.path.join(_ROOT, controller, own[controller].lstrip("/"))
        if not os.access(parent, os.W_OK) or not os.path.exists(
            os.path.join(parent, "cgroup.procs")
        ):
            return CgroupSupport(
                0,
                {},
                f"cgroup v1 {controller} controller at {parent} is not writable (needs root); "
                "rlimits are used",
            )
        parents[controller] = parent
    return CgroupSupport(
        1,
        parents,
        "cgroup v1 memory and pids controllers (as root): " + ", ".join(parents.values()),
    )


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per controller ("" for the v2 unified hierarchy), limited to
    the hierarchies that are mounted where we look for them."""
    found: dict[str, str] = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            if os.path.exists(os.path.join(_ROOT, "cgroup.controllers")):
                found[""] = path
            continue
        for controller in controllers.split(","):
            if controller in _CONTROLLERS and os.path.isdir(os.path.join(_ROOT, controller)):
                found[controller] = path
    return found


def _kill_members(path: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        pids = [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def _rmdir_when_empty(path: str, deadline: float) -> None:
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # EBUSY while killed members finish exiting.
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return
        time.sleep(0.001)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _write(path: str, value: str, *, optional: bool = False) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except FileNotFoundError:
        if not optional:
            raise
