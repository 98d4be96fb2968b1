"""Two checkouts of securepy, side by side in one run: is the new one slower anywhere?

    uv run python benchmarks/compare.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 15]

Each checkout gets a long-lived measuring process that imports securepy from that checkout's
``packages/securepy-core/src`` (its worker too: the worker is loaded by path from the package).
The parent asks the two in turn (old, new, old, new, ...) to measure one batch of each row, so
drift on a shared machine hits both alike. Each cell is the median over rounds of the batch
medians, with the min-max; the last column is new/old of the medians.

Rows: warm ``execute("1+1")``, one host tool call (1,000 in one execution, per call), a fresh
session from a warm ``SessionPool(4)`` then 1+1, and a session forked from a running template
then 1+1 (root hosts; skipped where templates cannot run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROWS = ("warm execute", "tool call", "pool checkout", "template start")

# The measuring side, run with ``python -c`` in each checkout's interpreter path. It answers one
# JSON line per request on stdout: {row: median seconds of the batch} or {row: null}.
MEASURER = r'''
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import securepy

TOOL_LOOP = "for i in range(1000):\n    f(i)\n"

def f(i: int) -> int:
    """Echo."""
    return i

session = securepy.Session()
tool_session = securepy.Session(tools=[f])
pool = securepy.SessionPool(4)
try:
    from securepy._launchers.template import TemplateLauncher
    template = TemplateLauncher()
    securepy.Session(launcher=template).close()
except Exception as exc:  # templates need a root host; report the row as skipped
    print("template unavailable:", exc, file=sys.stderr)
    template = None

def quiet(pool):
    """Warm means every slot idle and the background threads done, as in run.py."""
    while pool.status().idle < pool.status().total:
        time.sleep(0.002)
    time.sleep(0.02)

def timed(action, n):
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)

def warm():
    return timed(lambda: session.execute("1+1"), 300)

def tool():
    base = timed(lambda: tool_session.execute("pass"), 5)
    return (timed(lambda: tool_session.execute(TOOL_LOOP), 5) - base) / 1000

def checkout():
    samples = []
    for _ in range(8):
        quiet(pool)
        started = time.perf_counter()
        pool.execute("1+1")
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)

def forked():
    if template is None:
        return None
    def once():
        s = securepy.Session(launcher=template)
        s.execute("1+1")
        s.close()
    return timed(once, 8)

for line in sys.stdin:
    print(json.dumps({"warm execute": warm(), "tool call": tool(),
                      "pool checkout": checkout(), "template start": forked()}), flush=True)
for closeable in (session, tool_session, pool, template):
    if closeable is not None:
        closeable.close()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sides = {"old": args.old, "new": args.new}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", MEASURER, str(root / "packages/securepy-core/src")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for name, root in sides.items()}
    results: dict[str, dict[str, list[float]]] = {n: {r: [] for r in ROWS} for n in sides}
    try:
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            for name, proc in procs.items():
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                answer: dict[str, Any] = json.loads(proc.stdout.readline())
                for row, value in answer.items():
                    if value is not None:
                        results[name][row].append(value)
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    print_table(results, args.rounds)


def print_table(results: dict[str, dict[str, list[float]]], rounds: int) -> None:
    print(f"| row ({rounds} rounds, median [min-max]) | old | new | new/old |")
    print("|---|---:|---:|---:|")
    for row in ROWS:
        old, new = results["old"][row][1:], results["new"][row][1:]
        if not old or not new:
            print(f"| {row} | skipped | skipped | |")
            continue
        ratio = statistics.median(new) / statistics.median(old)
        print(f"| {row} | {_cell(old)} | {_cell(new)} | {ratio:.3f} |")


def _cell(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1e6:,.1f} µs "
            f"[{min(values) * 1e6:,.1f}-{max(values) * 1e6:,.1f}]")


if __name__ == "__main__":
    main()
