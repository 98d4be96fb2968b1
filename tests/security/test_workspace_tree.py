"""The Landlock wall's workspace, fed to the host's code directly: a tree the sandboxed code
built to mislead the host's measuring and removal (links swapped in mid-walk, nesting past
PATH_MAX, many links to one file, files kept only by a memory mapping, permissions taken away).
Each attack has its control: the same target measured or reached where that is legitimate."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from securepy._launchers.landlock_workspace import measure
from securepy._launchers.workspace_tree import MAX_DEPTH, measure_tree, remove_tree

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
