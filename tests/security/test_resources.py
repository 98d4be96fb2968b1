"""Resource exhaustion: memory (one process and many), CPU, disk and inode fill, file size,
output flood, deep recursion, file descriptors. Small limits make each limit bite fast; the
control is the same code under the limit; after each case the session (restarted when its
child died) still works.
"""

from __future__ import annotations

from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

MiB = 1024 * 1024


def test_memory_limit_raises_and_the_session_recovers(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(memory_bytes=128 * MiB))
    assert host.value(session, "x = bytearray(16 * 2**20); len(x)") == 16 * MiB  # control
    outcome = host.run(session, "y = bytearray(2**30)")
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "memory"
    assert host.value(session, "len(x)") == 16 * MiB  # state kept


def test_memory_spread_over_processes_is_bounded_by_the_cgroup(sandboxes: Any, host: Any) -> None:
    limits = securepy.Limits(memory_bytes=128 * MiB, workspace_bytes=16 * MiB)
    session = sandboxes(limits=limits)
    code = """
import os
pids = []
for _ in range(CHILDREN):
    pid = os.fork()
    if pid == 0:
        block = bytearray(60 * 2**20)  # touched: bytearray zero-fills
        os._exit(0)
    pids.append(pid)
[os.waitpid(p, 0)[1] for p in pids]
"""
    assert host.value(session, code.replace("CHILDREN", "1")) == [0]  # control
    outcome = host.run(session, code.replace("CHILDREN", "8"), timeout=30)
    # 8 x 60 MiB is far over the 160 MiB cgroup: the OOM killer stops a child or the worker.
    assert (outcome.ok and any(status != 0 for status in outcome.value)) or (
        outcome.error_type == "ResourceLimitError" and outcome.limit == "memory"
    ), outcome
    assert host.value(session, "6 * 7") == 42


def test_cpu_limit_is_named_and_the_session_recovers(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(cpu_seconds=1))
    assert host.value(session, "sum(range(10**5))") == sum(range(10**5))  # control
    outcome = host.run(session, "while True:\n    pass", timeout=30)
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "cpu_seconds"
    assert host.value(session, "6 * 7") == 42


FILL_CODE = """
import os
os.makedirs("fill", exist_ok=True)
for i in range(COUNT):
    with open(f"fill/{i}", "wb") as f:
        f.write(b"x" * 2**20)
"filled"
"""


def test_disk_fill_of_the_workspace_is_bounded(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(workspace_bytes=8 * MiB))
    assert host.value(session, FILL_CODE.replace("COUNT", "2")) == "filled"  # control
    outcome = host.run(session, FILL_CODE.replace("COUNT", "64"))
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "workspace"
    assert host.value(session, "import shutil; shutil.rmtree('fill'); 6 * 7") == 42


def test_file_size_limit_is_named(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(file_size_bytes=MiB))
    code = "open('big', 'wb').write(b'x' * SIZE)"
    assert host.value(session, code.replace("SIZE", str(MiB // 2))) == MiB // 2  # control
    outcome = host.run(session, code.replace("SIZE", str(4 * MiB)))
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "file_size"
    assert host.value(session, "6 * 7") == 42


def test_inode_fill_is_bounded(sandboxes: Any, host: Any) -> None:
    """tmpfs --size does not bound inodes; the memory cgroup (inodes are charged to it) or,
    without one, the timeout does."""
    limits = securepy.Limits(memory_bytes=64 * MiB, workspace_bytes=8 * MiB)
    session = sandboxes(limits=limits)
    code = """
import os
os.makedirs("inodes", exist_ok=True)
for n in range(COUNT):
    open(f"inodes/{n}", "w").close()
n + 1
"""
    assert host.value(session, code.replace("COUNT", "100")) == 100  # control
    outcome = host.run(session, code.replace("COUNT", "10**8"), timeout=20)
    assert outcome.error_type in ("ResourceLimitError", "ExecutionTimeout"), outcome
    assert host.value(session, "6 * 7") == 42


@pytest.mark.parametrize(
    "how",
    ["print", "sys.stdout.write", "os.write(1)", "os.write(2)", "subprocess"],
    ids=["flood-print", "flood-stdout-write", "flood-fd-1", "flood-fd-2", "flood-subprocess"],
)
def test_output_flood_is_truncated_and_bounded(how: str, sandboxes: Any, host: Any) -> None:
    cap = 64 * 1024
    session = sandboxes(limits=securepy.Limits(output_bytes=cap))
    chunk = "y" * 1023 + "\n"
    code = {
        "print": f"for _ in range(COUNT): print({chunk[:-1]!r})",
        "sys.stdout.write": f"import sys\nfor _ in range(COUNT): sys.stdout.write({chunk!r})",
        "os.write(1)": f"import os\nfor _ in range(COUNT): os.write(1, {chunk.encode()!r})",
        "os.write(2)": f"import os\nfor _ in range(COUNT): os.write(2, {chunk.encode()!r})",
        "subprocess": "import subprocess\nsubprocess.run(['head', '-c', str(COUNT * 1024), "
        "'/dev/zero'])",
    }[how]
    small = session.execute(code.replace("COUNT", "4"))  # control: small output is whole
    assert len(small.stdout) + len(small.stderr) == 4 * 1024 and not small.truncated
    flood = session.execute(code.replace("COUNT", "20000"), timeout=60)  # 20 MiB
    assert flood.truncated
    kept = len(flood.stdout.encode()) + len(flood.stderr.encode())
    assert kept <= cap + 200  # the cap plus the truncation marker
    assert host.value(session, "6 * 7") == 42


def test_deep_recursion_does_not_break_the_host(sandboxes: Any, host: Any) -> None:
    # A small memory limit: the frames fill it sooner (the default's address space, with its
    # allowance for thread stacks, took over 30 s to fill on a loaded machine).
    session = sandboxes(limits=securepy.Limits(memory_bytes=128 * MiB))
    code = "import sys\nsys.setrecursionlimit(LIMIT)\ndef f(n): return f(n + 1) + 1\nf(0)"
    control = host.run(session, code.replace("LIMIT", "1000"))
    assert control.error_type == "ExecutionError" and "RecursionError" in str(control.error)
    outcome = host.run(session, code.replace("LIMIT", "10**7"), timeout=30)
    # The C stack overflows: the child dies of SIGSEGV or hits the memory limit; either way
    # the host gets an error, not a crash.
    assert outcome.error_type in ("ProtocolError", "ResourceLimitError", "ExecutionError")
    assert host.value(session, "6 * 7") == 42


def test_fd_exhaustion_is_named_and_recoverable(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(open_files=64))
    code = "files = []\nfor _ in range(COUNT):\n    files.append(open('/dev/null'))\nlen(files)"
    assert host.value(session, code.replace("COUNT", "10")) == 10  # control
    outcome = host.run(session, code.replace("COUNT", "10000"))
    assert outcome.error_type == "ResourceLimitError" and outcome.limit == "open_files"
    # The code still holds every fd; the worker must still answer (it needs none).
    assert host.value(session, "len(files) < 64") is True
    assert host.value(session, "[f.close() for f in files] and 6 * 7") == 42


CRASH_WITH_CORE = """
import os, resource, signal
try:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    raised = "raised"
except (ValueError, OSError):
    raised = "refused"
child = os.fork()
if child == 0:
    os.kill(os.getpid(), signal.SIGSEGV)
_, status = os.waitpid(child, 0)
(raised, resource.getrlimit(resource.RLIMIT_CORE), os.WCOREDUMP(status))
"""


def test_the_code_cannot_turn_core_dumps_back_on(sandboxes: Any, host: Any,
                                                 tmp_path: Any) -> None:
    # Control, on the host: a process whose hard limit allows it raises its limit (and its
    # crash dumps, wherever core_pattern sends the dump).
    import resource
    import subprocess
    import sys

    if resource.getrlimit(resource.RLIMIT_CORE)[1] != 0:
        done = subprocess.run([sys.executable, "-c", CRASH_WITH_CORE + "\nprint(raised)"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert done.stdout == "raised\n", done
    session = sandboxes()
    assert host.value(session, CRASH_WITH_CORE) == ("refused", (0, 0), False)
