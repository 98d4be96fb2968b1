"""The declared lower bounds hold: `.ci/lowest-direct` passes.

It installs each adapter with the lowest version of every direct dependency (uv's
lowest-direct resolution, one throwaway venv per framework) and runs that adapter's tests
there, so a lower bound in a pyproject can never again name a version the adapter fails with.
It installs packages (from uv's cache where it can), so off CI it runs only when asked:
``SECUREPY_LOWEST_DIRECT=1 uv run pytest tests/e2e/test_lowest_direct.py``. Under CI=true it
always runs.
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ..conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "lowest-direct"
TIMEOUT = 900

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not IN_CI and os.environ.get("SECUREPY_LOWEST_DIRECT") != "1",
        reason="installs packages: runs under CI=true, or with SECUREPY_LOWEST_DIRECT=1",
    ),
]


@pytest.mark.timeout(TIMEOUT + 60)
def test_the_adapter_tests_pass_at_the_lowest_direct_versions() -> None:
    # The run takes minutes: the suite's faulthandler_timeout would dump every thread's
    # stack midway through a healthy run.
    faulthandler.cancel_dump_traceback_later()
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to install the lowest direct versions (pip install uv)"
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f".ci/lowest-direct took over {TIMEOUT} s:\n{output}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, f".ci/lowest-direct failed:\n{output}"
    # Each env ran its tests, and under CI none was skipped (as in the suite itself, a missing
    # framework, tool or sandbox there is a broken setup).
    lines = output.splitlines()
    envs = [line for line in lines if line.startswith("== ")]
    summaries = [line for line in lines if re.fullmatch(r"\d+ passed.* in [\d.]+s( \(.*\))?", line)]
    assert len(envs) == len(summaries) >= 6, output
    if IN_CI:
        assert not [line for line in summaries if "skipped" in line], output
