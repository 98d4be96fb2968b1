"""Walking and removing a directory tree the sandboxed code controls, from the host.

The code can swap any directory for a symlink at any moment, nest directories past
``PATH_MAX``, link one file many times and take its own permissions away. So nothing here uses
a path below the root: every directory is opened by name relative to its parent's descriptor
with ``O_NOFOLLOW`` (a link swapped in is refused, never followed), entries on another file
system are skipped, and the cost is bounded: a walk stops past a number of entries or a depth
(the caller treats that as over the workspace's bound), and open descriptors never exceed the
depth. Removal is iterative too, and moves a subtree deeper than a few levels up to the root
before going on, so neither Python's recursion nor the host's descriptors limit it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat

__all__ = ["MAX_DEPTH", "TreeUsage", "measure_tree", "remove_tree"]

# Deeper than this, a walk stops and reports it (a tmpfs would allow more, but no real
# workspace nests this deep, and each level holds a descriptor while it is walked).
MAX_DEPTH = 128
# Removal moves a subtree up to the root past this depth (a descriptor per level meanwhile).
_REMOVE_DEPTH = 32
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclasses.dataclass(slots=True)
class TreeUsage:
    """What a walk found: bytes allocated (each inode once, directories included), entries
    (each name once: a file linked n times is n entries), the inodes seen, and why the walk
    stopped early ("" when it saw everything)."""

    used_bytes: int = 0
    entries: int = 0
    inodes: set[int] = dataclasses.field(default_factory=set)
    stopped: str = ""


def measure_tree(root: str, *, max_entries: int) -> tuple[TreeUsage, int]:
    """Walk ``root`` (never following a link) and return its usage and its device (-1 when
    ``root`` cannot be opened). Stops once ``max_entries`` are passed or the tree is deeper
    than :data:`MAX_DEPTH`, saying so in ``stopped``."""
    usage = TreeUsage()
    try:
        top = os.open(root, _DIRECTORY)
    except OSError:
        return usage, -1
    device = os.fstat(top).st_dev
    # One frame per open directory: its fd and the subdirectories left to walk in it.
    frames: list[tuple[int, list[str]]] = [(top, _list(top, device, usage))]
    try:
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
            try:
                child = os.open(name, _DIRECTORY, dir_fd=fd)
            except OSError:
                continue  # removed or swapped for a link meanwhile: nothing to follow
            if len(frames) >= MAX_DEPTH:
                os.close(child)
                usage.stopped = f"directories nested deeper than {MAX_DEPTH} levels"
                break
            frames.append((child, _list(child, device, usage)))
    finally:
        for fd, _ in frames:
            os.close(fd)
    return usage, device


def _list(fd: int, device: int, usage: TreeUsage) -> list[str]:
    """Count one directory's entries into ``usage``; return its subdirectories' names."""
    subdirectories: list[str] = []
    try:
        info = os.fstat(fd)
        if info.st_ino not in usage.inodes:
            usage.inodes.add(info.st_ino)
            usage.used_bytes += info.st_blocks * 512  # a huge directory costs disk too
        with os.scandir(fd) as entries:
            for entry in entries:
                usage.entries += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_dev != device:
                    continue  # not the workspace's file system: not walked, not counted
                if stat.S_ISDIR(info.st_mode):
                    subdirectories.append(entry.name)
                elif info.st_ino not in usage.inodes:
                    usage.inodes.add(info.st_ino)
                    usage.used_bytes += info.st_blocks * 512
    except OSError:
        pass  # its permissions were taken away, or it went: what was counted stays
    return subdirectories


def remove_tree(root: str) -> None:
    """Remove ``root`` and everything in it, never following a link, whatever modes the code
    left and however deep it nested. Never raises; what cannot be removed stays."""
    with contextlib.suppress(OSError):
        os.chmod(root, 0o700)  # the code may have taken the root's own permissions away
    try:
        top = os.open(root, _DIRECTORY)
    except OSError:
        return
    # One frame per open directory: its fd, its name in the parent frame, and the
    # subdirectories in it that could be neither entered nor moved (left as they are).
    frames: list[tuple[int, str, set[str]]] = [(top, "", set())]
    try:
        while frames:
            fd, name, stuck = frames[-1]
            subdirectory = _empty_files(fd, stuck)
            if subdirectory is None:  # nothing left to enter: remove it from its parent
                os.close(fd)
                frames.pop()
                if frames:
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=frames[-1][0])
                continue
            if len(frames) >= _REMOVE_DEPTH:
                # Too deep to hold a descriptor per level: move it up to the root, and remove
                # it from there later.
                try:  # a name the code cannot have taken in advance
                    os.rename(subdirectory, f".securepy-deep-{os.urandom(8).hex()}",
                              src_dir_fd=fd, dst_dir_fd=top)
                except OSError:
                    stuck.add(subdirectory)
                continue
            _open_up(fd, subdirectory)
            try:
                child = os.open(subdirectory, _DIRECTORY, dir_fd=fd)
            except OSError:
                stuck.add(subdirectory)
                continue
            frames.append((child, subdirectory, set()))
    finally:
        for fd, _, _ in frames:
            with contextlib.suppress(OSError):
                os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(root)


def _open_up(fd: int, name: str) -> None:
    """Give back this user the rights on subdirectory ``name`` the code took away (an O_PATH
    descriptor opens even a directory of mode 000, and never a link)."""
    try:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=fd)
    except OSError:
        return
    try:
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
    except OSError:
        pass
    finally:
        os.close(handle)


def _empty_files(fd: int, stuck: set[str]) -> str | None:
    """Unlink every non-directory in ``fd``; return one subdirectory's name (not in
    ``stuck``), or None when there is none left to enter."""
    try:
        with os.scandir(fd) as entries:
            names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return None
    for name, is_directory in names:
        if not is_directory:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
    for name, is_directory in names:
        if is_directory and name not in stuck:
            return name
    return None
