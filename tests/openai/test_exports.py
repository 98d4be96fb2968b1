"""The public face of securepy_openai: __all__, __module__, finality, the lazy agents extra."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import securepy_openai
import securepy_openai.agents

EXPECTED = {
    "SecurePyTool",
    "__version__",
    "arun_response_tools",
    "arun_tools",
    "from_openai_function",
    "from_openai_tool",
    "from_pydantic",
    "run_response_tools",
    "run_tools",
    "securepy_tool",
}


def test_all_is_the_contract() -> None:
    assert set(securepy_openai.__all__) == EXPECTED
    assert securepy_openai.__all__ == sorted(securepy_openai.__all__)
    assert set(securepy_openai.agents.__all__) == {"from_agents_tool", "securepy_function_tool"}


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__"}))
def test_public_names_live_in_the_package(name: str) -> None:
    assert getattr(securepy_openai, name).__module__ == "securepy_openai"


def test_the_tool_class_is_final() -> None:
    assert getattr(securepy_openai.SecurePyTool, "__final__", False) is True


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_does_not_import_the_agents_sdk() -> None:
    done = _python("import sys, securepy_openai; print('agents' in sys.modules)")
    assert (done.returncode, done.stdout) == (0, "False\n")


def test_a_missing_agents_sdk_names_the_extra() -> None:
    # sys.modules[name] = None makes that import fail, as if the package were not installed.
    done = _python(
        "import sys; sys.modules['agents'] = None\n"
        "try:\n    import securepy_openai.agents\n"
        "except ImportError as e:\n    print(e)"
    )
    assert done.stdout == (
        "securepy_openai.agents needs the OpenAI Agents SDK: "
        'pip install "securepy-openai[agents]"\n'
    )


@pytest.mark.sandbox
def test_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(securepy_openai.__file__).parents[2] / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    exec(compile(block, "README.md", "exec"), {})
    expected = [line.removeprefix("#> ") for line in block.splitlines() if line.startswith("#> ")]
    assert capsys.readouterr().out.splitlines() == expected
