"""A forked session's own mounts, made in its new mount namespace before it drops its
privileges (see ``template.py``): a fresh ``/proc`` hardened like bubblewrap's, its workspace,
``/tmp`` and ``/dev/shm`` tmpfs, and the pool's mounts. Stdlib only: this runs inside the
sandbox."""

from __future__ import annotations

import os

from .syscalls import mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MS_PRIVATE", "MS_REC", "isolate_mounts", "prepare_proc_masks"]

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_MOVE = 8192
MS_REC = _MS_REC = 16384
MS_PRIVATE = 1 << 18


def isolate_mounts(message: dict[str, Any], plan: dict[str, Any]) -> int:
    """The session's own mounts, as root, in its new namespaces. Returns, in user mode, an fd
    of the fresh /proc's writable ``sys/user`` directory (see :func:`_fresh_proc`), else -1."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    limits_dir = _fresh_proc(plan)  # before the workspace tmpfs hides the read-only null file
    workspace = plan["workspace"]
    workspace_bytes = message.get("workspace_bytes")
    _tmpfs(workspace, 0o777, workspace_bytes, _inodes(workspace_bytes))
    os.mkdir(f"{workspace}/.tmp")
    os.chmod(f"{workspace}/.tmp", 0o1777)
    if plan["own_tmp"]:
        _fresh_tmp(workspace, plan["tmp_binds"])
    for staged, target, writable in plan.get("mounts") or ():
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount(staged, target, None, _MS_BIND | _MS_REC)
        if not writable:
            mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    _tmpfs("/dev/shm", 0o1777, message.get("shm_bytes"), _inodes(message.get("shm_bytes")))
    _own_ptys()
    os.chdir(workspace)
    return limits_dir


# Pseudo-terminals one session may hold. Every devpts instance but the host's first draws on one
# kernel pool (kernel.pty.max minus kernel.pty.reserve: 3,072 by default), shared with the
# template's other sessions and with the host's containers (`docker exec -t`).
MAX_PTYS = 16


def _own_ptys() -> None:
    """A devpts instance of the session's own, of at most MAX_PTYS terminals (the template's
    would be shared by all its sessions, which could then also see each other's)."""
    mount("devpts", "/dev/pts", "devpts", _MS_NOSUID | _MS_NOEXEC,
          f"newinstance,ptmxmode=0666,mode=0620,max={MAX_PTYS}")
    if not os.path.islink("/dev/ptmx"):
        mount("/dev/pts/ptmx", "/dev/ptmx", None, _MS_BIND)


def _inodes(size: int | None) -> int:
    """How many files a tmpfs of ``size`` bytes may hold: one per 4 KiB, at least 1024. A
    tmpfs ``size`` bounds pages, not inodes: empty files would otherwise cost kernel memory
    (about 1 KiB each) without end."""
    return 65536 if size is None else max(1024, size // 4096)


def _tmpfs(path: str, mode: int, size: int | None, inodes: int) -> None:
    """A new tmpfs over ``path``. The template's mount below it stays hidden: nothing inside
    can unmount (no capability, and seccomp refuses umount2)."""
    options = f"mode={mode:o},nr_inodes={inodes}" + (f",size={size}" if size is not None else "")
    mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, options)


def _fresh_tmp(workspace: str, binds: list[str]) -> None:
    """A new, empty /tmp that still holds the read-only binds living under it (the
    interpreter, when it is installed under /tmp)."""
    stage = f"{workspace}/.securepy-tmp"
    os.mkdir(stage)
    mount("tmpfs", stage, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=1777,nr_inodes={_inodes(None)}")
    for source in binds:
        target = stage + source[len("/tmp") :]
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount(source, target, None, _MS_BIND | _MS_REC)
        mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    mount(stage, "/tmp", None, _MS_MOVE)
    os.rmdir(stage)


def prepare_proc_masks(plan: dict[str, Any]) -> None:
    """Once, in the template: keep only the /proc entries this kernel has (the same in every
    session's /proc), and make a read-only, nodev /dev/null to mask files with in one mount
    each (a bind inherits its source's flags). It lives in the template's workspace, which each
    session's own workspace hides."""
    plan["proc_read_only"] = [n for n in plan["proc_read_only"] if os.path.isdir(f"/proc/{n}")]
    plan["proc_masked_files"] = [
        n for n in plan["proc_masked_files"] if os.path.exists(f"/proc/{n}")
    ]
    plan["proc_masked_dirs"] = [n for n in plan["proc_masked_dirs"] if os.path.isdir(f"/proc/{n}")]
    null = plan["read_only_null"] = f"{plan['workspace']}/.securepy-null"
    os.close(os.open(null, os.O_CREAT | os.O_WRONLY, 0o444))
    mount("/dev/null", null, None, _MS_BIND)
    # nodev as well: a device node cannot be opened at all there (EACCES), as in bubblewrap's
    # masks, rather than read as empty.
    mount(
        None, null, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NODEV | _MS_NOSUID | _MS_NOEXEC
    )


def _fresh_proc(plan: dict[str, Any]) -> int:
    """A /proc of this pid namespace, hardened like bubblewrap's (see _launchers.bubblewrap).

    In user mode, returns an fd of its ``sys/user`` directory, opened before ``/proc/sys`` turns
    read-only: the session's own user namespace, made last, sets its limit through it (-1 in
    root-drop mode)."""
    mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    limits_dir = -1
    if plan.get("mode") == "user":
        limits_dir = os.open("/proc/sys/user", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in plan["proc_read_only"]:
        path = f"/proc/{name}"
        mount(path, path, None, _MS_BIND | _MS_REC)
        mount(
            None,
            path,
            None,
            _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
        )
    for name in plan["proc_masked_files"]:
        mount(plan["read_only_null"], f"/proc/{name}", None, _MS_BIND)
    for name in plan["proc_masked_dirs"]:
        mount("tmpfs", f"/proc/{name}", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=555,size=4096")
    return limits_dir
