"""The worker's files service on what macOS and Windows offer, simulated on Linux.

Each test imports a fresh ``_worker/files.py`` while ``os`` lacks what the platform lacks (the
import itself is the first thing that used to fail there), then drives its ``Files`` in-process
as ``session.py`` does: requests in, ``file_chunk`` frames and one ``file_reply`` out. "linux"
is the control: the real module on the real ``os``. "macos" has no ``O_PATH``. "windows" has no
``dir_fd`` at all, none of ``O_PATH``, ``O_DIRECTORY``, ``O_NOFOLLOW``, ``O_CLOEXEC``,
``O_NONBLOCK``, ``pwrite``, ``errno.EDQUOT`` or ``resource``, and its ``os`` calls refuse an fd
where a path belongs, as Windows' do.
"""

from __future__ import annotations

import base64
import errno
import importlib
import json
import ntpath
import os
import pathlib
import stat
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import securepy._worker
import securepy._worker.files
import securepy._worker.files_by_path
from securepy._worker import protocol

PLATFORMS = ["linux", "macos", "windows"]

_WINDOWS_LACKS = {
    os: ["O_PATH", "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_NONBLOCK", "pwrite"],
    errno: ["EDQUOT"],
}


class Served:
    """A worker ``Files`` on ``workspace``, called as the session loop calls it."""

    def __init__(self, module: types.ModuleType, workspace: pathlib.Path,
                 max_frame_bytes: int = protocol.MAX_FRAME_BYTES) -> None:
        self.replies: list[dict[str, Any]] = []
        self.chunks: list[bytes] = []
        self.files = module.Files(self.replies.append, self._frame, str(workspace),
                                  max_frame_bytes)

    def _frame(self, frame: bytes) -> None:
        message = json.loads(frame[protocol.HEADER.size:])
        assert message["kind"] == "file_chunk"
        self.chunks.append(base64.b64decode(message["data"]))

    def __call__(self, op: str, path: str = "", **fields: Any) -> dict[str, Any]:
        """The one reply to a request; its ``file_chunk`` data is left in ``chunks``."""
        self.chunks.clear()
        self.files.handle({"kind": "files", "op": op, "path": path, **fields})
        [reply] = self.replies
        self.replies.clear()
        assert reply.pop("kind") == "file_reply"
        return reply

    def read(self, path: str, limit: int = 1 << 20) -> bytes:
        reply = self("read", path, max=limit)
        data = b"".join(self.chunks)
        assert reply == {"ok": True, "size": len(data)}, reply
        return data

    def write(self, path: str, data: bytes, offset: int = 0) -> dict[str, Any]:
        return self("write", path, data=base64.b64encode(data).decode(), offset=offset)

    def error(self, op: str, path: str, *args: Any) -> str:
        """The error code a request that must fail gets (and no data with it)."""
        if op == "write":
            reply = self.write(path, *(args or (b"x",)))
        else:
            reply = self(op, path, **({"max": 1 << 20} if op == "read" else {}))
        assert reply["ok"] is False and not self.chunks, reply
        return str(reply["error"])


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def files_module(platform: str, tmp_path: pathlib.Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """``_worker/files.py`` imported afresh on ``platform``'s ``os`` (the originals are put
    back after the test)."""
    if platform == "macos":
        monkeypatch.delattr(os, "O_PATH")
    elif platform == "windows":
        monkeypatch.setattr(os, "supports_dir_fd", set())
        monkeypatch.setattr(os, "supports_fd", set())
        for module, names in _WINDOWS_LACKS.items():
            for name in names:
                monkeypatch.delattr(module, name)
        monkeypatch.setitem(sys.modules, "resource", None)  # import resource: ImportError
        _refuse_fds(monkeypatch)
    for name in ("files", "files_by_path"):
        monkeypatch.delitem(sys.modules, f"securepy._worker.{name}")
        monkeypatch.delattr(securepy._worker, name)
    yield importlib.import_module("securepy._worker.files")


def _refuse_fds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the os calls of the worker's files modules refuse a ``dir_fd``, and ``scandir`` an
    fd, as on Windows. Others (pytest, shutil) go on as before."""
    for name in ("open", "stat", "lstat", "unlink", "mkdir", "rmdir", "scandir"):
        real = getattr(os, name)

        def call(*args: Any, _real: Callable[..., Any] = real, _name: str = name,
                 **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("securepy._worker.files") and (
                    kwargs.get("dir_fd") is not None or (args and isinstance(args[0], int))):
                raise NotImplementedError(f"{_name}: dir_fd unavailable on this platform")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, call)


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A workspace with a file, a directory and a file outside it to aim links at."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("OUTSIDE")
    workspace = tmp_path / "ws"
    (workspace / "adir").mkdir(parents=True)
    (workspace / "afile").write_text("inside")
    return workspace


@pytest.fixture
def served(files_module: types.ModuleType, tree: pathlib.Path) -> Served:
    return Served(files_module, tree)


def test_the_walk_is_picked_by_what_os_offers(platform: str,
                                              files_module: types.ModuleType) -> None:
    by_fd = platform != "windows"
    assert files_module.Files is (files_module._FilesByFd if by_fd
                                  else files_module._FilesByPath)
    if platform == "linux":
        assert files_module._DIR_FLAGS & os.O_PATH
    if platform == "macos":  # a directory opened for reading stands in for O_PATH
        assert files_module._DIR_FLAGS == (os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                           | os.O_CLOEXEC)


def test_read_write_list_remove_round_trip(files_module: types.ModuleType,
                                           tree: pathlib.Path) -> None:
    # A small frame cap: a read comes in several chunks (576 bytes each).
    served = Served(files_module, tree, max_frame_bytes=1024)
    payload = bytes(range(256)) * 8 + b"\r\n\n"  # no newline translation on the way
    assert served.write("raw.bin", payload) == {"ok": True, "size": len(payload)}
    assert served.read("raw.bin") == payload
    assert len(served.chunks) == 4
    # Made with its directories; then written on at an offset, as the host sends big files.
    assert served.write("notes/deep/hello.txt", b"hello ") == {"ok": True, "size": 6}
    assert served.write("notes/deep/hello.txt", b"world", offset=6) == {"ok": True, "size": 11}
    assert served.read("notes/deep/hello.txt") == b"hello world"
    assert (tree / "notes" / "deep" / "hello.txt").read_bytes() == b"hello world"
    # A write from offset 0 replaces, not overwrites in place.
    served.write("raw.bin", b"short")
    assert served.read("raw.bin") == b"short"
    assert served("list") == {"ok": True, "entries": [
        ["adir", (tree / "adir").stat().st_size, "directory"], ["afile", 6, "file"],
        ["notes", (tree / "notes").stat().st_size, "directory"], ["raw.bin", 5, "file"]]}
    assert served("list", "notes/deep") == {"ok": True, "entries": [["hello.txt", 11, "file"]]}
    assert served("remove", "notes") == {"ok": True}
    assert served("remove", "raw.bin") == {"ok": True}
    assert sorted(p.name for p in tree.iterdir()) == ["adir", "afile"]
    assert served.error("read", "raw.bin") == "not_found"
    assert served.error("remove", "raw.bin") == "not_found"
    assert served.error("list", "notes") == "not_found"


def test_links_are_refused_never_followed(served: Served, tree: pathlib.Path) -> None:
    outside = tree.parent / "outside"
    (tree / "dirlink").symlink_to(outside)
    (tree / "filelink").symlink_to(outside / "secret")
    (tree / "adir" / "inner").symlink_to(outside)
    # Control: the links lead outside.
    assert (tree / "dirlink" / "secret").read_text() == "OUTSIDE"
    for path in ("dirlink/secret", "filelink", "adir/inner/secret"):
        assert served.error("read", path) == "symlink"
    for path in ("dirlink/planted", "filelink", "adir/inner/new/planted"):
        assert served.error("write", path) == "symlink"
    for path in ("dirlink", "adir/inner"):
        assert served.error("list", path) == "symlink"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "OUTSIDE"
    # A listing shows a link as one; removing it removes the link, not what it names.
    kinds = {name: kind for name, _, kind in served("list")["entries"]}
    assert kinds["dirlink"] == kinds["filelink"] == "symlink"
    assert served("remove", "dirlink") == {"ok": True}
    assert served("remove", "filelink") == {"ok": True}
    assert not (tree / "dirlink").is_symlink() and not (tree / "filelink").is_symlink()
    assert (outside / "secret").read_text() == "OUTSIDE"


def test_hard_links_special_files_and_wrong_kinds_are_refused(served: Served,
                                                              tree: pathlib.Path) -> None:
    os.link(tree / "afile", tree / "hard")
    for op in ("read", "write"):
        assert served.error(op, "hard") == "hard_link"
    assert (tree / "afile").read_text() == "inside"
    os.mkfifo(tree / "fifo")  # opened blocking, a FIFO would hang the worker
    for op in ("read", "write"):
        assert served.error(op, "fifo") == "special"
    for op in ("read", "write"):
        assert served.error(op, "adir") == "is_directory"
        assert served.error(op, "afile/x") == "not_directory"
        assert served.error(op, "fifo/x") == "not_directory"
    assert served.error("list", "afile") == "not_directory"
    assert served.error("read", "") == "is_directory"
    assert served.error("remove", "") == "invalid"
    assert served.error("read", "../outside/secret") == "invalid"
    assert served.error("read", "/etc/passwd") == "invalid"
    assert served.error("nonsense", "afile") == "invalid"
    # Control: with one name again, the file reads; over the host's bound, nothing is sent.
    os.unlink(tree / "hard")
    assert served.read("afile") == b"inside"
    reply = served("read", "afile", max=5)
    assert reply == {"ok": False, "error": "too_large", "detail": "6"} and not served.chunks


def test_a_failed_write_leaves_no_half_written_file(platform: str, served: Served,
                                                    tree: pathlib.Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write" if platform == "windows" else "pwrite", full)
    reply = served.write("big", b"x" * 1000)
    assert reply["error"] == "no_space"
    assert not (tree / "big").exists()


@pytest.mark.parametrize("platform", ["windows"], indirect=True)
def test_a_name_windows_reads_as_a_path_is_refused(served: Served, tree: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The host splits on "/" only: on Windows, "..\\x" or "C:x" would name a path outside."""
    for path in ("..\\outside\\secret", "adir\\..\\..\\outside", "C:x", "adir/D:secret"):
        with monkeypatch.context() as windows:
            windows.setattr(os, "path", ntpath)
            assert served.error("read", path) == "invalid"
            assert served.error("write", path) == "invalid"
            assert served.error("remove", path) == "invalid"
    assert sorted(p.name for p in tree.iterdir()) == ["adir", "afile"]


@pytest.mark.parametrize("platform", ["windows"], indirect=True)
def test_a_junction_is_refused_as_a_link(served: Served, tree: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A junction is a directory to ``S_ISLNK``; its reparse tag marks it (faked here)."""
    real_lstat = os.lstat

    def lstat(path: Any, **kwargs: Any) -> Any:
        info = real_lstat(path, **kwargs)
        if os.path.basename(path) != "adir":
            return info
        return types.SimpleNamespace(st_mode=info.st_mode, st_reparse_tag=0xA0000003)

    monkeypatch.setattr(os, "lstat", lstat)
    (tree / "adir" / "f").write_text("behind the junction")
    assert stat.S_ISDIR(os.lstat(tree / "adir").st_mode)  # control: not a link to S_ISLNK
    assert served.error("read", "adir/f") == "symlink"
    assert served.error("write", "adir/g") == "symlink"
    assert served.error("list", "adir") == "symlink"
    assert served.read("afile") == b"inside"


def test_windows_host_paths_are_read_as_windows_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    from securepy._files import normalize_path

    assert normalize_path("data\\in.csv") == "data\\in.csv"  # control: a plain name on POSIX
    monkeypatch.setattr(sys, "platform", "win32")
    assert normalize_path("data\\in.csv") == "data/in.csv"
    with pytest.raises(ValueError, match=r"contains '\.\.'"):
        normalize_path("..\\..\\secrets.txt")
    with pytest.raises(ValueError, match="is absolute"):
        normalize_path("\\\\server\\share\\x")
    for path in ("C:x", "C:\\Windows\\win.ini", "notes.txt:stream"):
        with pytest.raises(ValueError, match="names a drive or a stream"):
            normalize_path(path)
