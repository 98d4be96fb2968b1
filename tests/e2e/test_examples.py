"""Every example runs as written, offline, and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# The start of one line each example must print (others must still exit 0 with output).
KEY_LINES = {
    "quickstart.py": "value: Fiat 128",
    "data_analysis.py": "top region: north 345.92 EUR",
    "pool.py": "basket total: 1.25",
    "governance.py": "refused: refunds over 50 need a human approver",
    "llamaindex_agent.py": "answer: Ann's orders total 27.5 euros.",
    "anthropic_loop.py": "answer: The three orders total 345.5",
    "openai_loop.py": "chat answer: The three orders total 345.5",
    "mcp_code_mode.py": "low stock: SKU-07=3, SKU-10=1, SKU-17=4, SKU-20=2",
    "langchain_agent.py": "answer: Refunded A1 (12.5 €). A2 (30 €) was refused",
    "ray_pool.py": "basket {'pear': 1, 'fig': 2} total: 3.9",
}


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY")}  # offline: never the real APIs
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=180, env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()
    key = KEY_LINES.get(path.name)
    if key is not None:
        assert any(line.startswith(key) for line in proc.stdout.splitlines()), proc.stdout[-3000:]
