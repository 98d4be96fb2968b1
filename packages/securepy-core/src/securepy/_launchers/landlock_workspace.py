"""The Landlock wall's workspace: a host directory per session, and what bounds it.

A namespace session's workspace is a tmpfs with a size and an inode count. The Landlock wall
exists for hosts that cannot mount one (a default container has no ``CAP_SYS_ADMIN``, and
neither loop devices, quotas nor a tmpfs of its own are available there), so its workspace is
a directory the host makes (mode 0700, owned by the session's uid) and removes. What bounds it:

- **one file**: the session's ``RLIMIT_FSIZE`` is at most ``Limits.workspace_bytes`` (set by
  the worker's bootstrap), so a single file never outgrows the workspace: the write fails
  inside with ``EFBIG``, synchronously;
- **everything together**: a host thread (:class:`WorkspaceWatch`, one for all sessions)
  measures every live workspace in turn (:mod:`.workspace_tree`: walked by descriptor, never
  following a link the code swaps in, stopping past the file bound or too deep a nesting):
  bytes allocated (``st_blocks``, so sparse files count what they use; each inode once,
  directories included) and entries (each name once: a file linked a thousand times is a
  thousand entries), every :data:`SCAN_INTERVAL` seconds, or ten times as long as its last scan
  took when the tree is large (at most :data:`_MAX_GAP`). Past ``workspace_bytes``,
  :func:`file_bound` entries or the depth, it kills the session's processes; the execute then
  raises ``ResourceLimitError`` with ``limit="workspace"`` and the session restarts with a
  fresh workspace. So many empty files are bounded like bytes. A directory the code made
  unreadable to the host (a non-root host has no ``CAP_DAC_*``) gets its owner's rights back
  and is read again; if it still cannot be read, the session is stopped the same way. Each
  scan reads at most :data:`MAPS_BUDGET` bytes of the session's ``/proc/PID/maps`` in all,
  and stops the session past it, so one session cannot slow the thread every session shares.

What this does not give, and the tmpfs does: the bound is reactive, so between two scans the
code can write past it (at most what it writes in one interval, each file within
``RLIMIT_FSIZE``); the session's state is lost when it is stopped (a full tmpfs answers
``ENOSPC`` and keeps it); and a file the code unlinked while holding it (open, or only mapped
into memory) is counted only where the host may read the session's ``/proc/PID/fd`` and
``/proc/PID/maps`` (the same uid, or ``CAP_SYS_PTRACE``; not root in a default container).
For a hard bound on the host's disk, point ``TMPDIR`` at a size-limited volume (``docker run
--tmpfs /securepy:size=1g`` and ``TMPDIR=/securepy``): every session's workspace lives there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from .._fontcache import font_cache
from .._interpreter import Interpreter
from ..errors import SandboxUnavailableError
from .identity import Identity
from .procfs import child_pids
from .workspace_tree import measure_tree, remove_tree

__all__ = [
    "MAPS_BUDGET",
    "SCAN_INTERVAL",
    "WorkspaceWatch",
    "copy_font_cache",
    "file_bound",
    "make_workspace",
    "remove_workspace",
    "watch",
]

logger = logging.getLogger("securepy")

# Seconds between two scans of one workspace (a small tree). An idle session's scan costs
# about 0.4 ms (0.6 % of a core each at this rate); scanning idle ones less often was tried and
# let a fill that starts after a pause pass an 8 MiB bound by 50 to 110 MiB instead of 2 to 15.
SCAN_INTERVAL = 0.05
_SLOWDOWN = 10  # a large tree is scanned at most a tenth of the time
# However slow a scan was, the next comes within this (a scan itself is bounded by the file
# bound's number of entries, so a slow one cannot stretch the gap without end).
_MAX_GAP = 1.0
# What one scan of one session reads of its processes' /proc/PID/maps, in all: the kernel
# writes those files out on every read (10-25 ms of a core per MiB, measured), and the code can
# make them huge (65530 mappings a process, each line up to a path long: 30 processes of 60,000
# made a scan take 3-4 s). Python with numpy maps about 170 lines (22 KiB). Past this budget the
# session is stopped as over its bound; below it, its scan costs at most ~90 ms (measured), and
# the next comes ten times as long later.
MAPS_BUDGET = 4 * 2**20
_MAPS_CHUNK = 256 * 1024


def file_bound(workspace_bytes: int | None) -> int:
    """How many files a workspace of ``workspace_bytes`` may hold: one per 4 KiB, at least
    1024, as a namespace session's tmpfs (``nr_inodes``)."""
    return 65536 if workspace_bytes is None else max(1024, workspace_bytes // 4096)


def make_workspace(identity: Identity | None) -> str:
    """A fresh directory the session owns: mode 0700, the session's uid, a .tmp inside."""
    base = os.path.join(tempfile.gettempdir(), f"securepy-workspaces-{os.geteuid()}")
    os.makedirs(base, mode=0o711, exist_ok=True)
    info = os.lstat(base)
    if info.st_uid != os.geteuid() or not os.path.isdir(base) or info.st_mode & 0o022:
        raise SandboxUnavailableError(
            f"{base} is not a directory owned by this user and writable by it alone; "
            "remove it, or set TMPDIR to a private directory"
        )
    workspace = tempfile.mkdtemp(prefix="session-", dir=base)
    os.mkdir(f"{workspace}/.tmp", 0o700)
    if identity is not None:
        for path in (workspace, f"{workspace}/.tmp"):
            os.chown(path, identity.uid, identity.gid)
    return workspace


def remove_workspace(workspace: str) -> None:
    """Remove the workspace even where the code took its own permissions away, nested past
    ``PATH_MAX`` or swapped directories for links meanwhile (:func:`.workspace_tree.remove_tree`,
    which never follows a link). Never raises: what cannot go is logged and stays."""
    remove_tree(workspace)
    if os.path.lexists(workspace):
        logger.warning("securepy: the Landlock workspace %s could not be removed whole", workspace)


class WorkspaceWatch:
    """One session's workspace under watch: its bounds, the worker whose tree may hold files
    open, and what to do when a bound is passed (called once, on the watch thread)."""

    def __init__(
        self,
        workspace: str,
        *,
        max_bytes: int | None,
        max_files: int,
        worker_pid: int,
        on_exceeded: Callable[[str], None],
    ) -> None:
        self.workspace = workspace
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.worker_pid = worker_pid
        self._on_exceeded = on_exceeded
        self._next_scan = 0.0
        self._stopped = False

    def stop(self) -> None:
        """Stop watching (the session ended). Idempotent."""
        self._stopped = True
        with _lock, contextlib.suppress(ValueError):
            _watches.remove(self)

    def check_now(self) -> str | None:
        """Measure now; on a bound passed, act on it and return why (else None)."""
        started = time.monotonic()
        used_bytes, files, stopped = measure(self.workspace, self.worker_pid,
                                             max_files=self.max_files,
                                             file_cap=self.max_bytes or 0)
        self._next_scan = time.monotonic() + min(
            _MAX_GAP, max(SCAN_INTERVAL, _SLOWDOWN * (time.monotonic() - started))
        )
        reason = None
        if stopped:
            reason = f"{stopped}: treated as over the workspace's bound"
        elif self.max_bytes is not None and used_bytes > self.max_bytes:
            reason = f"{used_bytes} bytes, over Limits.workspace_bytes={self.max_bytes}"
        elif files > self.max_files:
            reason = f"{files} files, over the workspace's bound of {self.max_files}"
        if reason is not None and not self._stopped:
            self.stop()
            self._on_exceeded(reason)
        return reason


def watch(entry: WorkspaceWatch) -> WorkspaceWatch:
    """Put ``entry`` under the watch thread (started on first use)."""
    global _thread
    with _lock:
        _watches.append(entry)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_watch_forever, name="securepy-workspaces",
                                       daemon=True)
            _thread.start()
        _wake.set()
    return entry


_lock = threading.Lock()
_watches: list[WorkspaceWatch] = []
_wake = threading.Event()
_thread: threading.Thread | None = None


def _watch_forever() -> None:
    while True:
        with _lock:
            due = list(_watches)
        if not due:
            _wake.wait()
            _wake.clear()
            continue
        now = time.monotonic()
        for entry in due:
            if entry._next_scan <= now:
                try:
                    entry.check_now()
                except Exception:  # a bug here must not end the watch of every session
                    logger.exception("securepy: scanning workspace %s failed", entry.workspace)
        next_due = min((e._next_scan for e in due), default=now + SCAN_INTERVAL)
        time.sleep(min(max(next_due - time.monotonic(), 0.001), SCAN_INTERVAL))


def measure(workspace: str, worker_pid: int, *, max_files: int,
            file_cap: int) -> tuple[int, int, str]:
    """Bytes allocated and entries in ``workspace`` (walked by :func:`.workspace_tree.measure_tree`,
    never following a link, stopping past ``max_files`` entries, too deep, or at a directory it
    cannot read: the third value says so), plus the files on its file system the session's
    processes still hold although they are no longer in it: open (unlinked, ``O_TMPFILE``) or
    only mapped into memory. A mapped file whose size the host cannot read counts as
    ``file_cap`` bytes, the largest file the session may write. Past :data:`MAPS_BUDGET` bytes
    of ``/proc/PID/maps`` the scan stops too (the third value says so)."""
    usage, device = measure_tree(workspace, max_entries=max_files)
    if usage.stopped:
        return usage.used_bytes, usage.entries, f"the workspace holds {usage.stopped}"
    if device < 0:
        return usage.used_bytes, usage.entries, ""  # gone: the session is closing
    held = 0
    budget = [MAPS_BUDGET]
    for pid in _tree(worker_pid):
        used, count = _held_open(pid, device, usage.inodes)
        mapped, mapped_count = _mapped_deleted(pid, device, usage.inodes, file_cap, budget)
        usage.used_bytes += used + mapped
        held += count + mapped_count
        if budget[0] < 0:
            return usage.used_bytes, usage.entries + held, (
                f"its processes' memory maps (/proc/PID/maps) pass the {MAPS_BUDGET} bytes "
                "one scan reads of them")
    return usage.used_bytes, usage.entries + held, ""


def _tree(root: int) -> list[int]:
    found = [root]
    stack = [root]
    while stack:
        for pid in child_pids(stack.pop()):
            found.append(pid)
            stack.append(pid)
    return found


def _held_open(pid: int, device: int, seen: set[int]) -> tuple[int, int]:
    """Bytes and number of regular files on ``device`` that ``pid`` holds open and ``seen``
    lacks."""
    used = count = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0, 0  # gone, or not ours to read (root without CAP_SYS_PTRACE)
    for fd in fds:
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if info.st_dev == device and stat.S_ISREG(info.st_mode) and info.st_ino not in seen:
            seen.add(info.st_ino)
            used += info.st_blocks * 512
            count += 1
    return used, count


def _mapped_deleted(pid: int, device: int, seen: set[int], file_cap: int,
                    budget: list[int]) -> tuple[int, int]:
    """Bytes and number of deleted files on ``device`` that ``pid`` keeps only by a memory
    mapping (its fd closed): listed in ``/proc/PID/maps``, sized through ``map_files`` where
    the host may follow it, else counted as ``file_cap``. Reads at most ``budget[0]`` bytes of
    it, and takes what it read off ``budget[0]`` (below 0: there was more)."""
    used = count = 0
    for line in _maps_lines(pid, budget):
        if not line.endswith(b" (deleted)"):
            continue
        fields = line.split(None, 5)
        try:
            major, minor = (int(part, 16) for part in fields[3].split(b":"))
            inode = int(fields[4])
        except (IndexError, ValueError):
            continue
        if inode == 0 or inode in seen or os.makedev(major, minor) != device:
            continue
        seen.add(inode)
        count += 1
        try:
            used += os.stat(f"/proc/{pid}/map_files/{fields[0].decode()}").st_blocks * 512
        except OSError:
            used += file_cap
    return used, count


def _maps_lines(pid: int, budget: list[int]) -> Iterator[bytes]:
    """The lines of ``/proc/PID/maps`` (none if it is gone or not ours to read), read in chunks
    up to ``budget[0]`` bytes in all: the kernel writes that file out on every read, so its
    cost is what is read, and one session's processes can make it hundreds of MiB."""
    try:
        fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # gone, or not ours to read
    try:
        rest = b""
        while True:
            try:
                chunk = os.read(fd, min(_MAPS_CHUNK, max(budget[0], 0) + 1))
            except OSError:
                return
            budget[0] -= len(chunk)
            if not chunk or budget[0] < 0:
                if rest and not chunk:
                    yield rest
                return
            *lines, rest = (rest + chunk).split(b"\n")
            yield from lines
    finally:
        os.close(fd)


def copy_font_cache(interpreter: Interpreter, workspace: str, identity: Identity | None) -> None:
    """Put matplotlib's prepared font cache (``_fontcache``) in the session's matplotlib
    directory, where the worker looks (``$TMPDIR/.matplotlib``), so the first plot does not
    rebuild it. A copy, not a Landlock rule: the cache sits under the host user's home, which a
    session's own uid cannot enter; it is a few tens of KiB."""
    cache = font_cache(interpreter)
    if cache is None:
        return
    target = os.path.join(workspace, ".tmp", ".matplotlib")
    os.mkdir(target, 0o700)
    made = [target]
    for name in os.listdir(cache):
        if name.startswith("fontlist-") and name.endswith(".json"):
            shutil.copyfile(os.path.join(cache, name), os.path.join(target, name))
            made.append(os.path.join(target, name))
    if identity is not None:
        for path in made:
            os.chown(path, identity.uid, identity.gid)
