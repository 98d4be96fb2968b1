"""One host uid and gid per live session, when the host is root.

The kernel keeps many budgets per uid: processes and threads (``RLIMIT_NPROC``), inotify
instances and watches, POSIX message-queue bytes, pending signals, pipe buffer pages, keys.
Sessions sharing one uid share them, so one tenant could starve every other (issue 14). As
root, each session therefore runs as a uid (and a gid of the same number) that no other live
session has and no host account uses, the way systemd's ``DynamicUser=`` and container
runtimes' subordinate id ranges work.

- **The range**: ``SECUREPY_UID_RANGE`` (``FIRST-LAST``, read once per process), by default
  ``1879048192-1879113727`` (``0x70000000``, 65,536 ids): systemd documents ``0x70000000`` to
  ``0x7FFFFFFF`` as unused by it and by container id ranges (which sit below), and distributions
  allocate accounts far lower. Ids that ``/etc/passwd`` or ``/etc/group`` name are skipped.
- **Leases across processes**: each id in use is a ``flock`` held on ``/run/securepy/uids/<id>``
  by the process that owns the session, so two host processes (two apps, two workers of one
  app) never hand out the same id. The kernel releases the lock if that process dies.
- **Release**: a session's launcher releases its id only after every process of the session
  is known to be gone (its pid namespace reaped, or its cgroup emptied); an id whose session
  could not be proven dead stays leased until the host process exits.
- Ids are handed out round-robin from a random start, so a released id is the last to come
  back.

Without root there is one uid to run as (the user's own): see docs/threat-model.md for what
sessions then share and how it is bounded.
"""

from __future__ import annotations

import functools
import os
import secrets
import threading

from ..errors import SandboxUnavailableError

__all__ = ["DEFAULT_UID_RANGE", "Identity", "lease_identity", "uid_range"]

DEFAULT_UID_RANGE = (0x70000000, 0x7000FFFF)
_LOCK_DIR = "/run/securepy/uids"


class Identity:
    """A leased uid/gid pair. :meth:`release` gives it back (idempotent)."""

    __slots__ = ("_fd", "gid", "uid")

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self.gid = uid
        self._fd = fd

    def release(self) -> None:
        """Give the id back: call only once no process of the session can be alive."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # drops the flock

    def __repr__(self) -> str:
        return f"<Identity uid={self.uid} {'leased' if self._fd >= 0 else 'released'}>"


def lease_identity() -> Identity:
    """A uid/gid no other live session has (see the module docstring).

    Raises:
        securepy.errors.SandboxUnavailableError: every id of the range is in use, or the
            lock directory cannot be made.
    """
    first, last = uid_range()
    size = last - first + 1
    directory = _lock_dir()
    with _cursor_lock:
        start = _cursor[0]
        _cursor[0] = (start + 1) % size
    import fcntl  # here, not at the top: `import securepy` must work where there is none

    taken = _host_ids()
    for step in range(size):
        uid = first + (start + step) % size
        if uid in taken:
            continue
        fd = os.open(f"{directory}/{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        with _cursor_lock:
            _cursor[0] = (start + step + 1) % size
        return Identity(uid, fd)
    raise SandboxUnavailableError(
        f"every uid of the session range {first}-{last} is in use by a live session; close "
        "sessions, or widen the range with SECUREPY_UID_RANGE=FIRST-LAST (ids no host "
        "account uses)"
    )


_cursor_lock = threading.Lock()
_cursor = [secrets.randbelow(1 << 16)]


@functools.cache
def uid_range() -> tuple[int, int]:
    """The configured range (``SECUREPY_UID_RANGE`` or the default), checked.

    Raises:
        securepy.errors.SandboxUnavailableError: the variable is malformed or unsafe.
    """
    text = os.environ.get("SECUREPY_UID_RANGE", "").strip()
    if not text:
        return DEFAULT_UID_RANGE
    first_text, _, last_text = text.partition("-")
    try:
        first, last = int(first_text), int(last_text)
    except ValueError:
        first, last = -1, -1
    if not (1000 <= first <= last < 0xFFFFFFFF) or 65534 in range(first, last + 1):
        raise SandboxUnavailableError(
            f"SECUREPY_UID_RANGE={text!r} is not a range FIRST-LAST of ids from 1000 to "
            "4294967294 without 65534 (nobody); e.g. SECUREPY_UID_RANGE=1879048192-1879113727"
        )
    return first, last


@functools.cache
def _lock_dir() -> str:
    try:
        os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
        info = os.stat(_LOCK_DIR)
    except OSError as exc:
        raise SandboxUnavailableError(
            f"cannot make {_LOCK_DIR}, where sessions lease their uids ({exc}); as root, "
            "make /run writable"
        ) from exc
    if info.st_uid != 0 or info.st_mode & 0o022:
        raise SandboxUnavailableError(
            f"{_LOCK_DIR} must be owned by root and writable by root only"
        )
    return _LOCK_DIR


@functools.cache
def _host_ids() -> frozenset[int]:
    """Every uid and gid the host's account files name (read once)."""
    ids: set[int] = set()
    for path in ("/etc/passwd", "/etc/group"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split(":")
                    for field in fields[2:4] if path == "/etc/passwd" else fields[2:3]:
                        if field.strip().isdigit():
                            ids.add(int(field))
        except OSError:
            continue
    return frozenset(ids)
