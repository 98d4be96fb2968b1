"""securepy_langchain's public face: exactly these names, and examples that run as written."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import securepy_langchain

EXPECTED = [
    "RunPythonInput",
    "SecurePyTool",
    "__version__",
    "from_langchain",
    "from_langchain_tool",
    "securepy_tool",
]


def test_all_is_pinned() -> None:
    assert securepy_langchain.__all__ == EXPECTED


def test_every_name_exists_and_reports_the_package() -> None:
    for name in EXPECTED:
        if name in ("__version__", "from_langchain"):  # from_langchain: an alias
            continue
        assert getattr(securepy_langchain, name).__module__ == "securepy_langchain"


@pytest.mark.sandbox
def test_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(securepy_langchain.__file__).parents[2] / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    exec(compile(block, "README.md", "exec"), {})
    expected = [line.removeprefix("#> ") for line in block.splitlines() if line.startswith("#> ")]
    assert capsys.readouterr().out.splitlines() == expected


def test_securepy_tool_docstring_example_runs() -> None:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(securepy_langchain.securepy_tool, "securepy_tool"):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=5)
