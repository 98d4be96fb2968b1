"""Shared fixtures: sessions, the sandbox marker, a leak guard, a fake model server."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import hypothesis
import pytest
import securepy

# Property tests judge behaviour, not speed: on a loaded 2-core CI machine a single example can
# take longer than hypothesis's default deadline, and its too-slow health check then fails a
# test whose property holds.
hypothesis.settings.register_profile(
    "securepy",
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("securepy")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip a test whose host lacks what it needs; under CI=true fail instead.

    CI runs as root on a kernel with pidfds, cgroups and every dev dependency installed, so
    there a missing session template or library is a broken setup, never a reason to skip.
    """
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# Every user can run it: a host process run as an unprivileged user starts from it (this
# checkout's interpreter may live under /root, which only root may enter).
SYSTEM_PYTHON = "/usr/bin/python3"
# What ``import securepy`` loads besides securepy, copied with it for such a process.
_SECUREPY_IMPORTS = ("pyseccomp", "pydantic", "pydantic_core", "typing_extensions",
                     "annotated_types", "typing_inspection", "jsonschema",
                     "jsonschema_specifications", "referencing", "rpds", "attr", "attrs")


def system_python_problem() -> str | None:
    """Why :data:`SYSTEM_PYTHON` cannot host securepy for another user here, or None."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                          capture_output=True, text=True, check=False)
    return None if done.stdout.strip() == "True" else f"{SYSTEM_PYTHON} is older than 3.11"


def copy_packages_for_another_user(prefix: str = "securepy-packages-") -> str:
    """A new directory under /tmp holding securepy and what it imports (with their bytecode:
    the other user could not write it), readable by every user: the PYTHONPATH of a host
    process run as an unprivileged user. The caller removes it."""
    target = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        for module in (securepy, *(__import__(name) for name in _SECUREPY_IMPORTS)):
            source = module.__file__ or ""
            if os.path.basename(source) == "__init__.py":
                source = os.path.dirname(source)
            destination = os.path.join(target, os.path.basename(source))
            if os.path.isdir(source):
                shutil.copytree(source, destination)
            else:
                shutil.copy(source, destination)
        subprocess.run(["chmod", "-R", "a+rX", target], check=True)
        os.chmod(target, 0o755)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


UNPRIVILEGED_UID = 65534


def run_as_another_user(script: str, *, prefix: str = "securepy-user-",
                        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (Python source) as a host process of uid :data:`UNPRIVILEGED_UID`, with
    :data:`SYSTEM_PYTHON` and a copy of securepy and what it imports; skipped (failed under
    CI=true) where that cannot be done here: not root, or no usable system Python."""
    if os.geteuid() != 0:
        skip_unless_ci("becoming an unprivileged host user needs root")
    problem = system_python_problem()
    if problem is not None:
        skip_unless_ci(f"{problem}: nothing to run as uid {UNPRIVILEGED_UID}")
    packages = copy_packages_for_another_user(prefix)
    try:
        return subprocess.run(
            ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}",
             "--clear-groups", SYSTEM_PYTHON, "-c", script],
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": packages},
            capture_output=True, text=True, timeout=timeout, cwd="/tmp", check=False)
    finally:
        shutil.rmtree(packages, ignore_errors=True)


def sandbox_problem() -> str | None:
    """Why a bubblewrap session cannot start here, or None if it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        with securepy.Session(timeout=30) as session:
            session.execute("1")
    except securepy.SandboxUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture
def needs_template() -> None:
    """Skip (fail under CI=true) where sessions cannot be forked from a template here (no
    pidfds, no seccomp binding). A missing sandbox is left to the ``sandbox`` marker."""
    if not _TEMPLATE_PROBLEM:
        from securepy._interpreter import probe_interpreter
        from securepy._launchers.template import template_problem

        _TEMPLATE_PROBLEM.append(
            None if sandbox_problem() else template_problem(probe_interpreter(None)))
    if _TEMPLATE_PROBLEM[0] is not None:
        skip_unless_ci(f"no session template here: {_TEMPLATE_PROBLEM[0]}")


_TEMPLATE_PROBLEM: list[str | None] = []
_SANDBOX_PROBLEM: list[str | None] = []


def _sandbox_problem_cached() -> str | None:
    if not _SANDBOX_PROBLEM:
        _SANDBOX_PROBLEM.append(sandbox_problem())
    return _SANDBOX_PROBLEM[0]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything collection made (the frameworks' modules: half a million objects) out
    of the collector's reach, so the leak guard's gc.collect() after each test walks only what
    tests made: a full collection cost ~1 s per test on a loaded CI machine."""
    gc.collect()
    gc.freeze()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("sandbox") is None:
        return
    problem = _sandbox_problem_cached()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the sandbox cannot start: {problem}")
    pytest.skip(f"sandbox unavailable: {problem}")


@pytest.fixture
def session() -> Iterator[securepy.Session]:
    """An unsandboxed session (engine behaviour), always closed."""
    with securepy.Session(sandbox=False, timeout=30) as s:
        yield s


@pytest.fixture
def sandboxed_session() -> Iterator[securepy.Session]:
    """A bubblewrap session, always closed. Tests using it must be marked ``sandbox``."""
    with securepy.Session(timeout=30) as s:
        yield s


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition that has no event to wait on; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _child_pids() -> set[int]:
    me = os.getpid()
    found = set()
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                found.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def shared_template_holdings() -> tuple[set[int], set[str], int]:
    """What the process's shared templates hold, from their public accessor: their pids, their
    fds, and how many sessions forked from them still run. The leak guard allows exactly
    these, so a template started by a test is accounted for, never hidden."""
    statuses = securepy.Session.shared_templates()
    pids = {status.pid for status in statuses if status.pid is not None}
    fds = {str(fd) for status in statuses for fd in status.fds}
    return pids, fds, sum(status.sessions for status in statuses)


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """No child process, no file descriptor and no session forked from a shared template
    outlives a test; the shared templates themselves (started on first use, kept for the
    process's life) are allowed by their pids and fds."""
    pids_before = _child_pids()
    fds_before = _open_fds()
    sessions_before = shared_template_holdings()[2]
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    gc.collect()
    wait_until(lambda: not (_child_pids() - pids_before - shared_template_holdings()[0]),
               timeout=10)
    wait_until(lambda: shared_template_holdings()[2] <= sessions_before, timeout=10)
    template_fds = shared_template_holdings()[1]
    # Threads pools and event loops may lazily keep an fd; sockets and pipes must not leak.
    # (Host threads open and close fds meanwhile, e.g. the Landlock wall's workspace watch: an
    # fd gone by the time it is read was not leaked.)
    targets = {fd: _fd_target(fd) for fd in _open_fds() - fds_before - template_fds}
    leaked = [target for target in targets.values()
              if "anon_inode" not in target and ("socket:" in target or "pipe:" in target)]
    assert not leaked, f"leaked fds: {leaked}"


def _fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class FakeModelServer:
    """A local HTTP server on 127.0.0.1 that plays a model API with canned replies.

    ``responses`` maps a path to a list of JSON bodies (or callables taking the request body
    and returning one); each request pops the next. Requests are recorded in ``requests``.
    A body ``{"__sse__": [events]}`` is sent as a server-sent-event stream.
    """

    def __init__(self, responses: dict[str, list[Any]]) -> None:
        self.responses = {path: list(items) for path, items in responses.items()}
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                server.requests.append((path, dict(self.headers), body))
                queue = server.responses.get(path)
                if not queue:
                    self.send_response(404)
                    self.end_headers()
                    return
                item = queue.pop(0)
                if callable(item):
                    item = item(body)
                if isinstance(item, dict) and "__sse__" in item:
                    data = ("".join(f"data: {json.dumps(e)}\n\n" for e in item["__sse__"])
                            + "data: [DONE]\n\n").encode()
                    kind = "text/event-stream"
                else:
                    data, kind = json.dumps(item).encode(), "application/json"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.fixture
def fake_model_server() -> Iterator[Callable[[dict[str, list[Any]]], FakeModelServer]]:
    """Factory: ``fake_model_server({"/v1/chat/completions": [body, ...]})``; closed after."""
    servers: list[FakeModelServer] = []

    def start(responses: dict[str, list[Any]]) -> FakeModelServer:
        server = FakeModelServer(responses)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class TwinSession:
    """Drives a Session or an AsyncSession through one blocking surface, so a scenario is
    written once and run through both twins."""

    def __init__(self, kind: str, **options: Any) -> None:
        import asyncio

        self.kind = kind
        self._runner = asyncio.Runner() if kind == "async" else None
        if self._runner is not None:
            self.inner: Any = securepy.AsyncSession(**options)
            self._runner.run(self.inner.start())
        else:
            self.inner = securepy.Session(**options)

    def execute(self, code: str, **kwargs: Any) -> securepy.Execution:
        if self._runner is not None:
            return self._runner.run(self.inner.execute(code, **kwargs))  # type: ignore[no-any-return]
        return self.inner.execute(code, **kwargs)  # type: ignore[no-any-return]

    def files(self, op: str, *args: Any) -> Any:
        """``session.files.<op>(*args)``, awaited for the async twin."""
        method = getattr(self.inner.files, op)
        if self._runner is not None:
            return self._runner.run(method(*args))
        return method(*args)

    def restart(self) -> None:
        if self._runner is not None:
            self._runner.run(self.inner.restart())
        else:
            self.inner.restart()

    def is_alive(self) -> bool:
        return bool(self.inner.is_alive())

    def close(self) -> None:
        if self._runner is None:
            self.inner.close()
        else:
            self._runner.run(self.inner.close())

    def dispose(self) -> None:
        """Close the session and, for the async twin, its event loop."""
        self.close()
        if self._runner is not None:
            self._runner.close()


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Iterator[Callable[..., TwinSession]]:
    """Factory for a session of either twin (sandbox=False unless given); closed after."""
    made: list[TwinSession] = []

    def make(**options: Any) -> TwinSession:
        options.setdefault("sandbox", False)
        session = TwinSession(request.param, **options)
        made.append(session)
        return session

    yield make
    for session in made:
        session.dispose()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An OpenTelemetry SDK tracer provider installed as the global one for this test only,
    exporting to memory: ``spans.get_finished_spans()``. (The API lets a process set its
    provider once; the test swaps the module global and monkeypatch puts it back.)"""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()
