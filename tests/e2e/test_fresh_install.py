"""A user's first install: a fresh virtual environment holding only an adapter's wheel and
core's (no extra named) runs that adapter's README example sandboxed, as root and as an
unprivileged host user. It tests what the wheels declare, not what this checkout's environment
happens to hold."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, UNPRIVILEGED

ADAPTERS = ["securepy-langchain", "securepy-openai", "securepy-anthropic", "securepy-llamaindex"]
FIRST_BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.S)
# Appended to each example: which wall its sessions got (the example itself cannot say).
WALL_CHECK = (
    "\nimport securepy\nwith securepy.Session() as _session:\n    print('wall:', _session.wall)\n"
)


def _example(adapter: str) -> str:
    readme = (ROOT / "packages" / adapter / "README.md").read_text()
    match = FIRST_BLOCK.search(readme)
    assert match is not None, f"{adapter}'s README has no python example"
    return match.group("code")


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root")
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_wheel_alone_runs_its_readme_example(
    adapter: str, fresh_venv: Callable[[str, list[str]], Path], workdir: Path
) -> None:
    python = fresh_venv(adapter, ["securepy-core", adapter])
    code = _example(adapter)
    script = workdir / f"{adapter}.py"
    script.write_text(code + WALL_CHECK)
    script.chmod(0o644)
    expected = [line[3:] for line in code.splitlines() if line.startswith("#> ")]
    expected.append("wall: namespaces")
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    for prefix in ([], UNPRIVILEGED):
        run = subprocess.run(
            [*prefix, str(python), str(script)],
            capture_output=True, text=True, timeout=180, cwd=workdir, env=environment,
            check=False,
        )
        who = "an unprivileged user" if prefix else "root"
        assert run.returncode == 0, f"as {who}:\n{run.stderr[-3000:]}"
        assert run.stdout.splitlines()[-len(expected):] == expected, f"as {who}:\n{run.stdout}"
