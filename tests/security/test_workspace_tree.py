"""The Landlock wall's workspace, fed to the host's code directly: a tree the sandboxed code
built to mislead the host's measuring and removal (links swapped in mid-walk, nesting past
PATH_MAX, many links to one file, files kept only by a memory mapping, permissions taken away).
Each attack has its control: the same target measured or reached where that is legitimate."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from securepy._launchers import landlock_workspace, workspace_tree
from securepy._launchers.landlock_workspace import measure
from securepy._launchers.workspace_tree import MAX_DEPTH, measure_tree, remove_tree

from ..conftest import run_as_another_user

MiB = 1024 * 1024
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _exchange(a: str, b: str) -> None:
    if _libc.renameat2(-100, a.encode(), -100, b.encode(), _RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_a_link_swapped_in_mid_walk_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for index in range(50):
        _write(outside / "big" / f"f{index}", 256 * 1024)
    whole, _ = measure_tree(str(outside), max_entries=10_000)
    assert whole.used_bytes >= 50 * 256 * 1024  # control: what the link would lead to is big
    workspace = tmp_path / "workspace"
    real = workspace / "a"
    for index in range(200):
        _write(real / "big" / f"small{index}", 10)
    link = workspace / "link"
    os.symlink(outside, link)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            _exchange(str(real), str(link))

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        worst = max(measure_tree(str(workspace), max_entries=10_000)[0].used_bytes
                    for _ in range(200))
    finally:
        stop.set()
        swapper.join()
    assert worst < whole.used_bytes // 4  # never the outside tree's bytes


def test_nesting_past_path_max_is_counted_or_stops_the_walk(tmp_path: Path) -> None:
    deep = tmp_path / "workspace"
    os.mkdir(deep)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(30):  # 30 x 201 bytes: past PATH_MAX as a path
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        file = os.open("payload", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(file, b"x" * (8 * MiB))
        os.close(file)
    finally:
        os.close(fd)
    usage, _ = measure_tree(str(deep), max_entries=10_000)
    assert usage.used_bytes >= 8 * MiB and not usage.stopped
    remove_tree(str(deep))
    assert not deep.exists()


def test_too_deep_a_tree_stops_the_walk(tmp_path: Path) -> None:
    path = tmp_path / "workspace"
    os.makedirs(path / "/".join(["d"] * (MAX_DEPTH + 5)))
    usage, _ = measure_tree(str(path), max_entries=10_000)
    assert "deeper" in usage.stopped
    shallow = tmp_path / "shallow"
    os.makedirs(shallow / "/".join(["d"] * 20))
    assert not measure_tree(str(shallow), max_entries=10_000)[0].stopped  # control


def test_every_link_to_one_file_is_an_entry(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    _write(workspace / "one", 10)
    for index in range(3000):
        os.link(workspace / "one", workspace / f"link{index}")
    usage, _ = measure_tree(str(workspace), max_entries=1024)
    assert usage.entries > 1024 and "entries" in usage.stopped
    assert len(usage.inodes) <= 3  # the control: one file's data, counted once


MAPPED = r"""
import ctypes, mmap, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 8 * 1024 * 1024)
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
address = libc.mmap(None, 8 * 1024 * 1024, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED,
                    fd, 0)
ctypes.memset(address, 1, 8 * 1024 * 1024)  # its pages really allocated
os.close(fd)  # kept by the mapping alone
os.unlink(path)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_deleted_file_kept_only_by_a_mapping_is_counted(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", MAPPED, str(workspace / "kept")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert not (workspace / "kept").exists()  # not in the tree any more
        used, _, stopped = measure(str(workspace), holder.pid, max_files=1024, file_cap=1)
        assert used >= 8 * MiB and not stopped
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # Control: once the mapping is gone, so are its bytes.
    used, _, _ = measure(str(workspace), os.getpid(), max_files=1024, file_cap=1)
    assert used < MiB


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file modes and /proc")
def test_removal_survives_what_the_code_did_and_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside / "keep", 10)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:  # past Python's recursion limit, for a recursive walk
        for _ in range(1100):
            os.mkdir("n", dir_fd=fd)
            child = os.open("n", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    locked = workspace / "locked"
    _write(locked / "inner" / "f", 10)
    os.chmod(locked / "inner", 0)
    os.chmod(locked, 0)
    os.symlink(outside, workspace / "link")
    os.symlink(outside / "keep", workspace / "file-link")
    os.chmod(workspace, 0o500)
    remove_tree(str(workspace))
    assert not workspace.exists()
    assert (outside / "keep").read_bytes() == b"x" * 10  # the links' targets are untouched


# -- directories the code made unreadable to a non-root host (its own uid, no CAP_DAC_*) -------

UNREADABLE = r"""
import json, os, stat, tempfile
from securepy._launchers import workspace_tree
from securepy._launchers.workspace_tree import measure_tree, remove_tree
MiB = 1024 * 1024
out = {}
workspace = tempfile.mkdtemp(prefix="securepy-unreadable-", dir="/tmp")
for name in ("hidden", "unsearchable", "open"):
    os.mkdir(f"{workspace}/{name}")
    with open(f"{workspace}/{name}/data", "wb") as f:
        f.write(b"x" * 4 * MiB)
def mode(name):
    return stat.S_IMODE(os.stat(f"{workspace}/{name}").st_mode)
def bytes_and_stop():
    usage, _ = measure_tree(workspace, max_entries=10_000)
    return usage.used_bytes, usage.stopped
out["control"] = bytes_and_stop()           # every directory readable: 12 MiB
os.chmod(f"{workspace}/hidden", 0o300)      # no read: its names cannot be listed
os.chmod(f"{workspace}/unsearchable", 0o600)  # no search: its entries cannot be examined
out["blind"] = (os.access(f"{workspace}/hidden", os.R_OK),
                os.access(f"{workspace}/unsearchable", os.X_OK))
out["restored"] = bytes_and_stop()
out["modes"] = (mode("hidden"), mode("unsearchable"))
# The code takes the rights back as soon as they are given (the race lost every time):
os.chmod(f"{workspace}/hidden", 0o300)
restore = workspace_tree._open_up
workspace_tree._open_up = lambda fd, name: True
out["hidden_stays"] = bytes_and_stop()
workspace_tree._open_up = restore
os.chmod(f"{workspace}/unsearchable", 0o600)
restore_open = workspace_tree._restore_rights
workspace_tree._restore_rights = lambda fd: True
out["unsearchable_stays"] = bytes_and_stop()
workspace_tree._restore_rights = restore_open
os.chmod(f"{workspace}", 0o300)             # the workspace itself
workspace_tree._open_up = lambda fd, name: True
out["root_stays"] = bytes_and_stop()
workspace_tree._open_up = restore
os.chmod(f"{workspace}/hidden", 0)          # removal, as this user, whatever the modes
remove_tree(workspace)
out["removed"] = not os.path.lexists(workspace)
print(json.dumps(out))
"""


def _as_unprivileged_host(script: str) -> dict[str, Any]:
    """Run ``script`` as a host without ``CAP_DAC_*``: as root, as uid 65534 (where that cannot
    be done, skipped); otherwise as this user. Its last line of output, as JSON."""
    if os.geteuid() == 0:
        proc = run_as_another_user(script, prefix="securepy-tree-")
    else:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file modes and /proc")
def test_a_directory_made_unreadable_is_read_or_stops_the_walk() -> None:
    """A non-root host is the code's own uid: a directory of mode 0300 (or 0600) hides what is
    in it from it. The walk gives the owner its rights back and reads it; where it still cannot
    (the code took them back meanwhile), it stops, which stops the session: never skipped."""
    MiB = 1024 * 1024
    out = _as_unprivileged_host(UNREADABLE)
    control_bytes, control_stop = out["control"]
    assert control_bytes >= 12 * MiB and control_stop == ""  # control: all of it readable
    assert out["blind"] == [False, False]  # the modes did hide it from this host user
    assert out["restored"] == [control_bytes, ""]  # counted whole, the rights given back
    assert out["modes"] == [0o700, 0o700]
    for key, name in (("hidden_stays", "hidden"), ("unsearchable_stays", "unsearchable")):
        _, stopped = out[key]
        assert "cannot read" in stopped and repr(name) in stopped, out
    assert "cannot read" in out["root_stays"][1], out
    assert out["removed"] is True


# -- removal: linear in the entries --------------------------------------------------------------


class _CountingScandir:
    """os.scandir, counting every entry it yields."""

    def __init__(self) -> None:
        self.entries = 0
        self._scandir = os.scandir

    def __call__(self, path: Any) -> Any:
        listing = self._scandir(path)
        counter = self

        class Listing:
            def __enter__(self) -> Iterator[os.DirEntry[str]]:
                return self.__iter__()

            def __exit__(self, *exc: object) -> None:
                listing.close()

            def __iter__(self) -> Iterator[os.DirEntry[str]]:
                for entry in listing:
                    counter.entries += 1
                    yield entry

        return Listing()


def test_removing_many_sibling_directories_lists_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each directory is listed once (the old removal listed the parent again for every
    subdirectory it removed: quadratic, 110 s of host CPU for 20,000 empty directories)."""
    count = 3000
    wide = tmp_path / "wide"
    wide.mkdir()
    for index in range(count):
        (wide / f"d{index}").mkdir()
    (wide / "d0" / "f").write_bytes(b"x")
    deep = wide / "deep" / "/".join(["n"] * 80)  # past the depth moved up to the root
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    counting = _CountingScandir()
    monkeypatch.setattr(workspace_tree.os, "scandir", counting)
    remove_tree(str(wide))
    assert not wide.exists()  # control: all of it went, the nested part too
    # each name listed once (+ the moved subtrees' names in the root), never count² / 2
    assert counting.entries <= count + 100, counting.entries


# -- /proc/PID/maps: what one scan reads is bounded --------------------------------------------

CROWDED = r"""
import ctypes, mmap, os, sys, time
path = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 8 * 1024 * 1024)
address = libc.mmap(None, 8 * 1024 * 1024, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED,
                    fd, 0)
ctypes.memset(address, 1, 8 * 1024 * 1024)
os.close(fd)
os.unlink(path)
other = os.open(sys.argv[2], os.O_RDONLY)
for index in range(int(sys.argv[3])):  # lines listed before the deleted file's
    libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, other, 0)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_scan_reads_a_bounded_part_of_the_maps_and_stops_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code can make /proc/PID/maps huge (and the kernel writes it out on every read): a
    scan reads at most MAPS_BUDGET bytes of them per session, and past it stops the session,
    never missing what lies past the budget (here a deleted file, listed last)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    filler = tmp_path / "filler"
    filler.write_bytes(b"y" * 4096)
    holder = subprocess.Popen(
        [sys.executable, "-c", CROWDED, str(workspace / "kept"), str(filler), "5000"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with open(f"/proc/{holder.pid}/maps", "rb") as f:
            size = len(f.read())
        assert size > 5000 * 40
        # control: within the budget, the deleted file (its lines last) is counted
        used, _, stopped = measure(str(workspace), holder.pid, max_files=1024, file_cap=1)
        assert used >= 8 * MiB and stopped == ""
        monkeypatch.setattr(landlock_workspace, "MAPS_BUDGET", size // 2)
        read: list[int] = []
        real_read = os.read

        def counting_read(fd: int, n: int) -> bytes:
            data = real_read(fd, n)
            read.append(len(data))
            return data

        monkeypatch.setattr(landlock_workspace.os, "read", counting_read)
        used, _, stopped = measure(str(workspace), holder.pid, max_files=1024, file_cap=1)
        assert "maps" in stopped and str(size // 2) in stopped
        assert sum(read) <= size // 2 + 1  # never more than the budget (and one byte)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
