"""The workspace walked by path, for ``files.py`` where ``os`` has no ``dir_fd`` (Windows).
Stdlib only: runs in the worker.

``files.py`` walks by directory fd so that code racing it cannot swap a directory for a link
halfway. Where this module serves instead, the host runs the worker only unsandboxed, and the
code already has all the host user's powers: the race is no threat, and no ``dir_fd`` is to be
had anyway. What stays is the check against honest mistakes: every component is ``lstat``-ed
before it is used, and a symbolic link or a junction is refused, never followed. The refusals
are the errors the kernel gives an ``openat`` walk with ``O_NOFOLLOW`` (ELOOP, ENOTDIR, EISDIR,
ENXIO), so ``files.py`` explains them into the same replies as there.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["open_file", "plain", "remove", "walk"]

# Windows opens a file in text mode unless told, and would turn b"\n" into b"\r\n".
_BINARY = getattr(os, "O_BINARY", 0)
# IO_REPARSE_TAG_SYMLINK and IO_REPARSE_TAG_MOUNT_POINT (a junction): the reparse points that
# name another path. The stat module has them on Windows only.
_LINK_TAGS = (0xA000000C, 0xA0000003)


def plain(root: str, names: list[str]) -> bool:
    """Whether each of ``names`` is one plain name to this platform's paths, kept as it is.

    The host splits paths on "/" and refuses "..", no more. On Windows a "\\" or a drive
    ("C:") in a name would reach past ``root``, and a name Windows rewrites (it drops trailing
    dots and spaces, and takes "NUL" for a device) is not the file the host named."""
    if any(os.path.basename(name) != name for name in names):
        return False
    root = os.path.abspath(root)
    path = os.path.join(root, *names)
    return os.path.abspath(path) == path


def walk(root: str, parts: list[str], *, create: bool) -> str:
    """The path of the directory ``parts`` names under ``root``, each component checked: a link
    is ELOOP, anything else but a directory ENOTDIR. A missing one is made (mode 0755) when
    ``create``."""
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(path, 0o755)
            continue
        if _is_link(info):
            raise _error(errno.ELOOP, path)
        if not stat.S_ISDIR(info.st_mode):
            raise _error(errno.ENOTDIR, path)
    return path


def open_file(path: str, flags: int) -> int:
    """``os.open`` of the file at ``path`` (made with mode 0644 if ``flags`` say so), unless it
    is a link (ELOOP), a directory (EISDIR) or a device, FIFO or socket (ENXIO): opened, a FIFO
    could hang the worker, and without ``O_NOFOLLOW`` a link would be followed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass  # os.open makes it, or says it is not there
    else:
        if _is_link(info):
            raise _error(errno.ELOOP, path)
        if stat.S_ISDIR(info.st_mode):
            raise _error(errno.EISDIR, path)
        if not stat.S_ISREG(info.st_mode):
            raise _error(errno.ENXIO, path)
    return os.open(path, flags | _BINARY, 0o644)


def remove(path: str) -> None:
    """Remove what is at ``path``: a directory with all it holds, anything else (a link to a
    directory too: the link, never what it names) alone."""
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and not _is_link(info):
        import shutil  # here: the worker's start does without it

        shutil.rmtree(path)  # does not follow the links (or junctions) inside either
    else:
        os.unlink(path)  # on Windows, a link to a directory or a junction too


def _is_link(info: os.stat_result) -> bool:
    # A junction is a directory to S_ISLNK; its reparse tag tells.
    return stat.S_ISLNK(info.st_mode) or getattr(info, "st_reparse_tag", 0) in _LINK_TAGS


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)
