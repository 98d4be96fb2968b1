"""Walking and removing a directory tree the sandboxed code controls, from the host.

The code can swap any directory for a symlink at any moment, nest directories past
``PATH_MAX``, link one file many times and take its own permissions away. So nothing here uses
a path below the root: every directory is opened by name relative to its parent's descriptor
with ``O_NOFOLLOW`` (a link swapped in is refused, never followed), entries on another file
system are skipped, and the cost is bounded: a walk stops past a number of entries or a depth
(the caller treats that as over the workspace's bound), and open descriptors never exceed the
depth.

A directory the code made unreadable (a non-root host is the code's own uid, without
``CAP_DAC_*``: mode 0300 hides what is in it, 0600 what its entries are) is never skipped: the
walk gives its owner back ``rwx`` (the host user owns it there; as root nothing is unreadable
to the host) and tries once more; if it still cannot read it (the code took the rights back
meanwhile, or the host may not change them), the walk stops and says so, which the caller
treats as over the bound. A directory that went or became a link meanwhile is skipped.

Removal is iterative and linear: each directory is listed once, its files unlinked and its
subdirectories kept on an explicit stack; a subtree deeper than a few levels is moved up to the
root (and added to the root's list), so neither Python's recursion nor the host's descriptors
limit it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat

__all__ = ["MAX_DEPTH", "TreeUsage", "measure_tree", "remove_tree"]

# Deeper than this, a walk stops and reports it (a tmpfs would allow more, but no real
# workspace nests this deep, and each level holds a descriptor while it is walked).
MAX_DEPTH = 128
# Removal moves a subtree up to the root past this depth (a descriptor per level meanwhile).
_REMOVE_DEPTH = 32
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Errors that mean the entry went, or is no longer a directory (a link, a file): nothing to
# walk there. Any other error opening or listing a directory is "cannot read it".
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


@dataclasses.dataclass(slots=True)
class TreeUsage:
    """What a walk found: bytes allocated (each inode once, directories included), entries
    (each name once: a file linked n times is n entries), the inodes seen, and why the walk
    stopped early ("" when it saw everything)."""

    used_bytes: int = 0
    entries: int = 0
    inodes: set[int] = dataclasses.field(default_factory=set)
    stopped: str = ""


class _Unreadable(Exception):
    """A directory of the tree the walk could not open or list, even after restoring its
    owner's rights."""


def measure_tree(root: str, *, max_entries: int) -> tuple[TreeUsage, int]:
    """Walk ``root`` (never following a link) and return its usage and its device (-1 when
    ``root`` is gone or not a directory). Stops once ``max_entries`` are passed, the tree is
    deeper than :data:`MAX_DEPTH`, or a directory in it cannot be read even after giving its
    owner back its rights, saying so in ``stopped``."""
    usage = TreeUsage()
    device = -1
    frames: list[tuple[int, list[str]]] = []
    try:
        top = _open_directory(None, root)
        if top is None:
            return usage, device
        device = os.fstat(top).st_dev
        # One frame per open directory: its fd and the subdirectories left to walk in it.
        frames.append((top, []))  # closed below even if listing it fails
        frames[-1][1].extend(_list(top, device, usage, root))
        while frames:
            if usage.entries > max_entries:
                usage.stopped = f"more than {max_entries} entries"
                break
            fd, pending = frames[-1]
            if not pending:
                os.close(fd)
                frames.pop()
                continue
            name = pending.pop()
            child = _open_directory(fd, name)
            if child is None:
                continue  # removed or swapped for a link meanwhile: nothing to follow
            if len(frames) >= MAX_DEPTH:
                os.close(child)
                usage.stopped = f"directories nested deeper than {MAX_DEPTH} levels"
                break
            frames.append((child, []))
            frames[-1][1].extend(_list(child, device, usage, name))
    except _Unreadable as problem:
        usage.stopped = f"a directory the host cannot read ({problem})"
    finally:
        for fd, _ in frames:
            os.close(fd)
    return usage, device


def _open_directory(parent: int | None, name: str) -> int | None:
    """Open directory ``name`` (in ``parent``, else a path): its fd, None when it went or is no
    longer a directory; raise :class:`_Unreadable` when it cannot be opened even after its
    owner's rights were restored."""
    for attempt in (1, 2):
        try:
            return os.open(name, _DIRECTORY, dir_fd=parent)
        except OSError as error:
            if error.errno in _GONE:
                return None
            if attempt == 2 or not _open_up(parent, name):
                raise _Unreadable(f"{name!r}: {error.strerror}") from None
    raise AssertionError("unreachable")


def _list(fd: int, device: int, usage: TreeUsage, name: str) -> list[str]:
    """Count one directory's entries into ``usage``; return its subdirectories' names. An
    entry that cannot be examined (the directory lost its search right) restores the owner's
    rights once; past that the directory is unreadable (:class:`_Unreadable`)."""
    info = os.fstat(fd)
    if info.st_ino not in usage.inodes:
        usage.inodes.add(info.st_ino)
        usage.used_bytes += info.st_blocks * 512  # a huge directory costs disk too
    for attempt in (1, 2):
        try:
            return _count_entries(fd, device, usage)
        except OSError as error:
            if attempt == 2 or not _restore_rights(fd):
                raise _Unreadable(f"{name!r}: {error.strerror}") from None
    raise AssertionError("unreachable")


def _count_entries(fd: int, device: int, usage: TreeUsage) -> list[str]:
    """One listing of ``fd``, added to ``usage`` only once it is whole (a retry counts
    nothing twice). An entry gone meanwhile is skipped; any other error is raised."""
    subdirectories: list[str] = []
    entries = used = 0
    inodes: set[int] = set()
    with os.scandir(fd) as listing:
        for entry in listing:
            entries += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since it was listed
            if info.st_dev != device:
                continue  # not the workspace's file system: not walked, not counted
            if stat.S_ISDIR(info.st_mode):
                subdirectories.append(entry.name)
            elif info.st_ino not in usage.inodes and info.st_ino not in inodes:
                inodes.add(info.st_ino)
                used += info.st_blocks * 512
    usage.entries += entries
    usage.used_bytes += used
    usage.inodes |= inodes
    return subdirectories


def _restore_rights(fd: int) -> bool:
    """Give the directory ``fd`` its owner's ``rwx`` back; whether it could be done."""
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRWXU)
    except OSError:
        return False
    return True


def remove_tree(root: str) -> None:
    """Remove ``root`` and everything in it, never following a link, whatever modes the code
    left and however deep it nested. Never raises; what cannot be removed stays. Each
    directory is listed once: the cost is linear in the entries."""
    with contextlib.suppress(OSError):
        os.chmod(root, 0o700)  # the code may have taken the root's own permissions away
    try:
        top = os.open(root, _DIRECTORY)
    except OSError:
        return
    # One frame per open directory: its fd, its name in the parent frame, and the
    # subdirectories in it left to remove (its files are unlinked when it is listed).
    frames: list[tuple[int, str, list[str]]] = [(top, "", _empty_files(top))]
    try:
        while frames:
            fd, name, pending = frames[-1]
            if not pending:  # nothing left to enter: remove it from its parent
                os.close(fd)
                frames.pop()
                if frames:
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=frames[-1][0])
                continue
            subdirectory = pending.pop()
            if len(frames) >= _REMOVE_DEPTH:
                # Too deep to hold a descriptor per level: move it up to the root, and remove
                # it from there later.
                moved = f".securepy-deep-{os.urandom(8).hex()}"  # not the code's to take
                with contextlib.suppress(OSError):
                    os.rename(subdirectory, moved, src_dir_fd=fd, dst_dir_fd=top)
                    frames[0][2].append(moved)
                continue
            child = _enter(fd, subdirectory)
            if child is not None:
                frames.append((child, subdirectory, _empty_files(child)))
    finally:
        for fd, _, _ in frames:
            with contextlib.suppress(OSError):
                os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(root)


def _enter(fd: int, name: str) -> int | None:
    """Open subdirectory ``name`` for removal with its owner's ``rwx`` (restored where the code
    took them away); None when it cannot be (it stays)."""
    try:
        child = os.open(name, _DIRECTORY, dir_fd=fd)
    except OSError as error:
        if error.errno in _GONE or not _open_up(fd, name):
            return None
        try:
            child = os.open(name, _DIRECTORY, dir_fd=fd)
        except OSError:
            return None
    with contextlib.suppress(OSError):
        if os.fstat(child).st_mode & stat.S_IRWXU != stat.S_IRWXU:
            _restore_rights(child)  # writing and searching it is what unlinks its entries
    return child


def _open_up(fd: int | None, name: str) -> bool:
    """Give back this user the rights on directory ``name`` (in ``fd``, else a path) the code
    took away (an O_PATH descriptor opens even a directory of mode 000, and never a link);
    whether that could be done."""
    try:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=fd)
    except OSError:
        return False
    try:
        mode = stat.S_IMODE(os.fstat(handle).st_mode)
        os.chmod(f"/proc/self/fd/{handle}", mode | stat.S_IRWXU)
    except OSError:
        return False
    finally:
        os.close(handle)
    return True


def _empty_files(fd: int) -> list[str]:
    """Unlink every non-directory in ``fd`` (one listing); return its subdirectories' names."""
    try:
        with os.scandir(fd) as entries:
            names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return []
    subdirectories = []
    for name, is_directory in names:
        if is_directory:
            subdirectories.append(name)
        else:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
    return subdirectories
