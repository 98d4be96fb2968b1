"""session.files: round trips, every refused path shape, planted links and a racing swap."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import securepy
from securepy import errors

from ..conftest import TwinSession

WALLS = [pytest.param(True, marks=pytest.mark.sandbox, id="sandboxed"),
         pytest.param(False, id="unsandboxed")]


def test_round_trip_bytes_text_and_host_path(twin: Callable[..., TwinSession],
                                             tmp_path: pathlib.Path) -> None:
    session = twin()
    host_file = tmp_path / "sales.csv"
    host_file.write_bytes(b"region,amount\nnorth,10\nsouth,32\n")
    session.files("write", "raw.bin", bytes(range(256)))
    session.files("write", "notes/hello.txt", "héllo\n")
    session.files("write", "data/sales.csv", host_file)
    assert session.files("read", "raw.bin") == bytes(range(256))
    assert session.files("read", "notes/hello.txt") == "héllo\n".encode()
    # The code sees what the host wrote, and the host sees what the code writes.
    code = "import csv\nrows = list(csv.DictReader(open('data/sales.csv')))\n" \
           "open('out.txt', 'w').write(str(sum(int(r['amount']) for r in rows)))"
    session.execute(code)
    assert session.files("read", "out.txt") == b"42"
    listing = session.files("list")
    assert {(e.name, e.kind) for e in listing} >= {("raw.bin", "file"), ("notes", "directory"),
                                                   ("data", "directory"), ("out.txt", "file")}
    assert [tuple(e) for e in session.files("list", "data")] == [("sales.csv", 32, "file")]
    session.files("write", "raw.bin", b"short")  # replaces, not overwrites in place
    assert session.files("read", "raw.bin") == b"short"
    session.files("remove", "notes")
    session.files("remove", "raw.bin")
    names = {e.name for e in session.files("list")}
    assert "notes" not in names and "raw.bin" not in names
    with pytest.raises(FileNotFoundError, match=r"^files.read\('raw.bin'\): no such file"):
        session.files("read", "raw.bin")
    assert session.execute("1 + 1").value == 2  # the session is untouched


@pytest.mark.parametrize("path, message", [
    ("/etc/passwd", r"^path '/etc/passwd' is absolute; files paths are relative to the "
                    r"session's workspace"),
    ("../escape", r"^path '../escape' contains '..'; files paths stay inside"),
    ("data/../../escape", r"^path 'data/../../escape' contains '..'"),
    ("", r"^path '' names the workspace itself"),
    ("./", r"^path './' names the workspace itself"),
    ("a\0b", r"^path contains a NUL character$"),
])
def test_refused_path_shapes_never_reach_the_child(session: securepy.Session, path: str,
                                                   message: str) -> None:
    for op in ("read", "write", "remove"):
        args: tuple[Any, ...] = (path, b"x") if op == "write" else (path,)
        with pytest.raises(ValueError, match=message):
            getattr(session.files, op)(*args)
    with pytest.raises(TypeError, match=r"^path must be a str or a path, not int$"):
        session.files.read(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^data must be bytes, str or a host path"):
        session.files.write("x", 3)  # type: ignore[arg-type]
    assert session.execute("1").value == 1


@pytest.mark.parametrize("sandbox", WALLS)
def test_a_planted_symlink_is_refused_never_followed(sandbox: bool) -> None:
    with securepy.Session(sandbox=sandbox) as session:
        outside = session.execute(
            "import os, tempfile\n"
            "outside = tempfile.mkdtemp(dir='/dev/shm' if os.path.isdir('/dev/shm') else None)\n"
            "if outside.startswith(os.getcwd()):\n"
            "    outside = tempfile.mkdtemp(dir=os.path.dirname(os.getcwd()))\n"
            "open(outside + '/secret', 'w').write('OUTSIDE')\n"
            "os.symlink(outside, 'dirlink')\n"
            "os.symlink(outside + '/secret', 'filelink')\n"
            "outside").value
        # Control: the links work for the code itself, so the targets are really there.
        assert session.execute("open('dirlink/secret').read() + open('filelink').read()"
                               ).value == "OUTSIDEOUTSIDE"
        for path in ("dirlink/secret", "filelink"):
            with pytest.raises(errors.PolicyError, match=r"a symbolic link is on the path; "
                                                         r"session.files never follows links"):
                session.files.read(path)
        with pytest.raises(errors.PolicyError, match="symbolic link"):
            session.files.write("dirlink/planted", b"x")
        with pytest.raises(errors.PolicyError, match="symbolic link"):
            session.files.write("filelink", b"overwritten")
        with pytest.raises(errors.PolicyError, match="symbolic link"):
            session.files.list("dirlink")
        # Removing a link removes the link, not what it points to.
        session.files.remove("dirlink")
        assert session.execute(f"import os\nsorted(os.listdir({outside!r})), "
                               f"open({outside!r} + '/secret').read()"
                               ).value == (["secret"], "OUTSIDE")
        kinds = {e.name: e.kind for e in session.files.list()}
        assert kinds["filelink"] == "symlink" and "dirlink" not in kinds
        if not sandbox:
            session.execute(f"import shutil\nshutil.rmtree({outside!r})")


@pytest.mark.parametrize("sandbox", WALLS)
def test_a_planted_hard_link_is_refused(sandbox: bool) -> None:
    with securepy.Session(sandbox=sandbox) as session:
        session.execute("import os\nopen('original', 'w').write('linked')\n"
                        "os.link('original', 'hard')")
        for op, args in (("read", ("hard",)), ("write", ("hard", b"changed"))):
            with pytest.raises(errors.PolicyError, match=r"the file has other hard links"):
                getattr(session.files, op)(*args)
        assert session.execute("open('original').read()").value == "linked"
        # Control: once the file has one name only, the same path reads.
        session.execute("os.unlink('original')")
        assert session.files.read("hard") == b"linked"


@pytest.mark.sandbox
def test_special_files_and_directories_are_refused(sandboxed_session: securepy.Session
                                                   ) -> None:
    sandboxed_session.execute("import os\nos.mkfifo('fifo')\nos.mkdir('adir')")
    with pytest.raises(errors.PolicyError, match=r"not a regular file"):
        sandboxed_session.files.read("fifo")  # a FIFO would block a naive reader
    with pytest.raises(IsADirectoryError, match=r"^files.read\('adir'\): is a directory$"):
        sandboxed_session.files.read("adir")
    with pytest.raises(NotADirectoryError):
        sandboxed_session.files.write("fifo/x", b"x")


@pytest.mark.parametrize("sandbox", WALLS)
def test_a_directory_swapped_for_a_symlink_while_the_host_reads(sandbox: bool) -> None:
    """The code swaps 'd' between a real directory and a link to a directory outside the
    workspace, as fast as it can, while the host reads d/f: every read is the inside file or a
    refusal, never the outside one."""
    with securepy.Session(sandbox=sandbox, timeout=60) as session:
        session.execute(
            "import os, tempfile, threading, time\n"
            "outside = tempfile.mkdtemp(dir='/dev/shm' if os.path.isdir('/dev/shm') else None)\n"
            "if outside.startswith(os.getcwd()):\n"
            "    outside = tempfile.mkdtemp(dir=os.path.dirname(os.getcwd()))\n"
            "open(outside + '/f', 'w').write('OUTSIDE')\n"
            "os.mkdir('real'); open('real/f', 'w').write('inside')\n"
            "os.symlink(outside, 'link')\n"
            "os.rename('real', 'd')\n"
            "stop = threading.Event()\n"
            "seen = {'OUTSIDE': 0, 'inside': 0}\n"
            "def swap():\n"
            "    while not stop.is_set():\n"
            "        os.rename('d', 'real'); os.rename('link', 'd')\n"
            "        try:\n"
            "            seen[open('d/f').read()] += 1\n"
            "        except OSError:\n"
            "            pass\n"
            "        os.rename('d', 'link'); os.rename('real', 'd')\n"
            "        time.sleep(0.0002)  # d is a real directory for a moment too\n"
            "swapper = threading.Thread(target=swap, daemon=True)\n"
            "swapper.start()\n")
        got: dict[str, int] = {}
        reads = 0
        # 300 reads at least, and on until one read found the inside file (the control: reads
        # work while the code races), however the two threads happen to interleave.
        while reads < 300 or (not got.get("inside") and reads < 20_000):
            reads += 1
            try:
                content = session.files.read("d/f").decode()
            except (errors.PolicyError, FileNotFoundError, NotADirectoryError) as exc:
                content = type(exc).__name__
            got[content] = got.get(content, 0) + 1
        seen = session.execute("stop.set(); swapper.join(); seen").value
        # Control: the swap really happened, and through the link the outside file is there.
        assert seen["OUTSIDE"] > 0, seen
        assert "OUTSIDE" not in got, got
        assert got.get("inside", 0) > 0, got
        if not sandbox:
            session.execute("import shutil\nshutil.rmtree(outside)")


def test_size_limits_hold(tmp_path: pathlib.Path) -> None:
    limits = securepy.Limits(file_size_bytes=1024)
    with securepy.Session(sandbox=False, limits=limits) as session:
        with pytest.raises(errors.ResourceLimitError,
                           match=r"^the file is 2048 bytes, over the session's file size limit "
                                 r"of 1024 bytes \(Limits.file_size_bytes\)$"):
            session.files.write("big", b"x" * 2048)
        big = tmp_path / "big"
        big.write_bytes(b"x" * 4096)
        with pytest.raises(errors.ResourceLimitError, match="file size limit"):
            session.files.write("big", big)
        session.files.write("fits", b"x" * 1024)  # control: at the limit it fits
        assert len(session.files.read("fits")) == 1024


@pytest.mark.sandbox
def test_a_full_workspace_is_a_resource_limit() -> None:
    limits = securepy.Limits(workspace_bytes=1024 * 1024, file_size_bytes=8 * 1024 * 1024)
    with securepy.Session(limits=limits) as session:
        with pytest.raises(errors.ResourceLimitError, match="workspace is full") as info:
            session.files.write("big", b"x" * (2 * 1024 * 1024))
        assert info.value.limit == "workspace"
        session.files.write("small", b"x" * 1000)
        assert session.files.read("small") == b"x" * 1000


def test_a_read_over_the_bound_is_refused(session: securepy.Session,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import securepy._files

    monkeypatch.setattr(securepy._files, "MAX_READ_BYTES", 1000)
    session.files.write("big", b"x" * 1001)
    with pytest.raises(errors.ResourceLimitError, match=r"over the 1000-byte read bound"):
        session.files.read("big")
    session.files.write("fits", b"x" * 1000)
    assert session.files.read("fits") == b"x" * 1000


def test_audit_events_for_files_in_and_out(twin: Callable[..., TwinSession]) -> None:
    events: list[dict[str, Any]] = []
    session = twin(audit=events.append)
    session.files("write", "in.txt", b"12345")
    session.files("read", "in.txt")
    session.files("remove", "in.txt")
    seen = [(e["event"], e.get("path"), e.get("size")) for e in events
            if e["event"].startswith("file_")]
    assert seen == [("file_write", "in.txt", 5), ("file_read", "in.txt", 5),
                    ("file_remove", "in.txt", None)]


def test_pool_sessions_have_files() -> None:
    with securepy.SessionPool(1, sandbox=False) as pool, pool.session() as session:
        session.files.write("x.txt", b"pool")
        assert session.execute("open('x.txt').read()").value == "pool"


def test_a_forged_reply_restarts_the_child_not_the_host(session: securepy.Session) -> None:
    """The code replaces the worker's files handler with one that sends a chunk that is not
    base64: the host stops that child and the session goes on with a fresh one."""
    session.execute(
        "import _securepy_worker.files as f\n"
        "def forged(self, message):\n"
        "    self._send({'kind': 'file_chunk', 'data': '!!not base64!!'})\n"
        "    self._send({'kind': 'file_reply', 'ok': True, 'size': 3})\n"
        "f.Files.handle = forged\n"
        "x = 1")
    with pytest.raises(errors.ProtocolError, match="not valid base64"):
        session.files.read("anything")
    with pytest.raises(errors.ExecutionError, match="NameError"):
        session.execute("x")  # a fresh child: the code's state went with the old one
    session.files.write("ok", b"fine")
    assert session.files.read("ok") == b"fine"


def test_files_on_a_closed_session_say_so() -> None:
    session = securepy.Session(sandbox=False)
    session.close()
    with pytest.raises(errors.SessionClosedError, match=r"^the session is closed"):
        session.files.read("x")
