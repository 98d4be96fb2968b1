"""Code blocks in the READMEs and docs run as written and print what their #> lines say.

A block preceded by ``<!-- skip: reason -->`` is not run (it needs a key or the network).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md")),
             *sorted(ROOT.glob("docs/*.md"))]
BLOCK = re.compile(r"(?:<!-- skip: (?P<skip>[^>]*) -->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def _blocks() -> list[pytest.ParameterSet]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for number, match in enumerate(BLOCK.finditer(text), 1):
            name = f"{document.relative_to(ROOT)}#{number}"
            marks = [pytest.mark.sandbox]
            if match.group("skip"):
                marks.append(pytest.mark.skip(reason=match.group("skip")))
            found.append(pytest.param(match.group("code"), id=name, marks=marks))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("code", _blocks())
def test_code_block_runs_as_written(code: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = [line[3:] for line in code.splitlines() if line.startswith("#> ")]
    if expected:
        assert proc.stdout.splitlines()[-len(expected):] == expected, proc.stdout[-3000:]
