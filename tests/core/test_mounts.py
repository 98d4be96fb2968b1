"""securepy.Mount: host directories in sessions, read-only unless asked; sensitive ones refused."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest
import securepy

from ..conftest import skip_unless_ci


@pytest.fixture
def shared_dir() -> Iterator[pathlib.Path]:
    """A directory other users can enter (pytest's tmp_path sits in a 0700 directory, which
    a Landlock session's own uid could not pass through)."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="securepy-mounts-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def dataset(shared_dir: pathlib.Path) -> pathlib.Path:
    directory = shared_dir / "dataset"
    directory.mkdir()
    (directory / "sales.csv").write_text("region,amount\nnorth,10\n")
    directory.chmod(0o755)  # the sandbox's user (a uid of its own as root) reads it
    return directory


@pytest.fixture
def scratch(shared_dir: pathlib.Path) -> pathlib.Path:
    directory = shared_dir / "scratch"
    directory.mkdir()
    directory.chmod(0o777)  # and writes here
    return directory


@pytest.mark.parametrize("host_path, reason", [
    ("/", "it is the root of the file system"),
    ("/etc", "it is under /etc"),
    ("/etc/ssl", "it is under /etc"),
    ("/proc", "it is under /proc"),
    ("/sys/kernel", "it is under /sys"),
    ("/dev", "it is under /dev"),
    ("/var", "it holds /var/run"),
])
def test_sensitive_host_paths_are_refused(host_path: str, reason: str) -> None:
    if not os.path.exists(host_path):
        pytest.skip(f"{host_path} does not exist here")
    with pytest.raises(ValueError, match=rf"^Mount host_path '{host_path}' \(.*\) is refused: "
                                         rf"{reason}"):
        securepy.Mount(host_path, "data")


def test_the_home_directory_and_its_hidden_entries_are_refused(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "datasets").mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ValueError, match="it is \\(or holds\\) the home directory"):
        securepy.Mount(home, "data")
    with pytest.raises(ValueError, match="it is \\(or holds\\) the home directory"):
        securepy.Mount(tmp_path, "data")
    with pytest.raises(ValueError, match=r"hidden \.ssh"):
        securepy.Mount(home / ".ssh", "data")
    # Control: a dataset directory in the home directory is fine.
    assert securepy.Mount(home / "datasets", "data").host_path == str(home / "datasets")


def test_a_writable_mount_holding_the_interpreter_is_refused() -> None:
    with pytest.raises(ValueError, match="holds the interpreter or securepy"):
        securepy.Mount(sys.prefix, "py", writable=True)
    # Control: read-only, the interpreter's directory is only what the sandbox binds anyway.
    assert securepy.Mount(sys.prefix, "py").writable is False


@pytest.mark.parametrize("inside, message", [
    ("/usr/data", "would cover /usr"),
    ("/", "names the root or the workspace itself"),
    (".", "names the root or the workspace itself"),
    ("../up", "contains '..'"),
    ("/workspace", "is the workspace itself"),
    ("/tmp", "would cover /tmp"),
])
def test_bad_places_inside_are_refused(dataset: pathlib.Path, inside: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        securepy.Mount(dataset, inside)


def test_options_are_checked(dataset: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        securepy.Mount(tmp_path / "missing", "data")
    with pytest.raises(TypeError, match=r"^writable must be True or False$"):
        securepy.Mount(dataset, "data", writable="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^two mounts at 'data'"):
        securepy.Session(mounts=[securepy.Mount(dataset, "data"),
                                 securepy.Mount(dataset, "./data/")])
    with pytest.raises(ValueError, match=r"^mounts need the sandbox"):
        securepy.Session(sandbox=False, mounts=[securepy.Mount(dataset, "data")])
    with pytest.raises(TypeError, match=r"^mounts must hold securepy.Mount objects, not str"):
        securepy.Session(mounts=["/data"])  # type: ignore[list-item]


@pytest.fixture(params=["bubblewrap", "template", "landlock"])
def mounted(request: pytest.FixtureRequest, dataset: pathlib.Path, scratch: pathlib.Path
            ) -> Iterator[tuple[securepy.Session, str]]:
    """A session with the dataset read-only at ./data and the scratch directory writable (at
    /scratch; behind the Landlock wall, which cannot put a host directory at another absolute
    path, at ./scratch):
    its own bubblewrap, forked from a pool's template, or behind the Landlock wall. Yields the
    session and where the scratch directory is inside."""
    if request.param == "landlock":
        from securepy._launchers.landlock import landlock_problem

        problem = landlock_problem()
        if problem is not None:
            pytest.fail(f"the Landlock wall cannot stand here: {problem}")
        mounts = [securepy.Mount(dataset, "data"),
                  securepy.Mount(scratch, "scratch", writable=True)]
        # As root each session has a uid of its own, which cannot enter a pyenv under /root.
        python = "/usr/bin/python3" if os.geteuid() == 0 else None
        with securepy.Session(mounts=mounts, wall="landlock", python=python) as session:
            yield session, "scratch"
        return
    mounts = [securepy.Mount(dataset, "data"), securepy.Mount(scratch, "/scratch",
                                                                writable=True)]
    if request.param == "bubblewrap":
        with securepy.Session(mounts=mounts, wall="namespaces") as session:
            yield session, "/scratch"
        return
    from securepy._interpreter import probe_interpreter
    from securepy._launchers.template import template_problem

    problem = template_problem(probe_interpreter(None))
    if problem is not None:
        skip_unless_ci(f"no session template here: {problem}")
    with securepy.SessionPool(1, mounts=mounts) as pool, pool.session() as session:
        assert type(session._child.process).__name__ == "TemplateChild"
        yield session, "/scratch"


@pytest.mark.sandbox
def test_a_read_only_mount_is_really_read_only(mounted: tuple[securepy.Session, str],
                                               dataset: pathlib.Path) -> None:
    mounted, _ = mounted
    assert mounted.execute("open('data/sales.csv').read()").value == "region,amount\nnorth,10\n"
    assert mounted.files.read("data/sales.csv") == b"region,amount\nnorth,10\n"
    attempts = mounted.execute(
        "import os\nrefused = []\n"
        "for name, attempt in [\n"
        "        ('write', lambda: open('data/sales.csv', 'a').write('x')),\n"
        "        ('create', lambda: open('data/new.csv', 'w')),\n"
        "        ('remove', lambda: os.remove('data/sales.csv')),\n"
        "        ('rename', lambda: os.rename('data/sales.csv', 'data/moved.csv')),\n"
        "        ('chmod', lambda: os.chmod('data/sales.csv', 0o777)),\n"
        "        ('mkdir', lambda: os.mkdir('data/sub'))]:\n"
        "    try:\n"
        "        attempt()\n"
        "    except OSError as exc:\n"
        "        refused.append((name, exc.errno))\n"
        "refused").value
    assert [name for name, _ in attempts] == ["write", "create", "remove", "rename", "chmod",
                                              "mkdir"]
    assert {errno for _, errno in attempts} <= {30, 13, 1}  # EROFS (or EACCES/EPERM)
    with pytest.raises(PermissionError, match="read-only"):
        mounted.files.write("data/new.csv", b"x")
    assert sorted(p.name for p in dataset.iterdir()) == ["sales.csv"]
    assert (dataset / "sales.csv").read_text() == "region,amount\nnorth,10\n"


@pytest.mark.sandbox
def test_a_writable_mount_is_writable(mounted: tuple[securepy.Session, str],
                                      scratch: pathlib.Path) -> None:
    mounted, inside = mounted
    mounted.execute(f"open({inside + '/result.txt'!r}, 'w').write('from the sandbox')")
    assert (scratch / "result.txt").read_text() == "from the sandbox"
    # Only that directory: the rest of the host is as read-only as ever.
    assert mounted.execute("import os\nos.access('/usr', os.W_OK)").value is False


def test_the_landlock_wall_refuses_a_mount_inside_another(
    dataset: pathlib.Path, scratch: pathlib.Path
) -> None:
    # Each mount is a link in the workspace: the inner one would be made through the outer
    # link, in the host directory itself.
    python = "/usr/bin/python3" if os.geteuid() == 0 else None
    nested = [securepy.Mount(dataset, "data"), securepy.Mount(scratch, "data/inner")]
    with pytest.raises(securepy.SandboxUnavailableError, match="a mount inside another"):
        securepy.Session(mounts=nested, wall="landlock", python=python)
    assert not (dataset / "inner").exists()
    side_by_side = [securepy.Mount(dataset, "data"), securepy.Mount(scratch, "inner")]
    with securepy.Session(mounts=side_by_side, wall="landlock", python=python) as session:
        assert session.execute("import os\nsorted(os.listdir('.'))").value[-2:] == [
            "data", "inner"]  # the control: both shown
