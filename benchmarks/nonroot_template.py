"""New-session time for a host user who is not root: forked from a pool's template against a
bubblewrap start, side by side in one run.

    uv run python benchmarks/nonroot_template.py [--quick] [--uid 65534] [--as-root]

As root, the script runs itself again as ``--uid`` (default 65534) through setpriv, with the
system Python (``/usr/bin/python3``) and a copy of securepy and its dependencies that the user
can read, as tests/core/test_template_unprivileged.py does; as any other user it measures
directly; ``--as-root`` measures root's pools the same way, for comparison. Cases run
round-robin, so drift on a shared machine hits each alike; each cell is
the median and the min-max of the repetitions.

Rows:
- cold session start, then ``1+1``: ``Session(launcher=...)`` + ``execute("1+1")`` with the
  launcher a non-root pool uses (``TemplateLauncher``, its template already running) against
  ``BubblewrapLauncher`` (user mode), plus a bare ``python -I -S -c pass`` for scale;
- fresh-session checkouts/s, sustained: ``SessionPool(4).execute("1+1")`` in a loop (each
  checkout a fresh session, replaced in the background), ``template=True`` against
  ``template=False``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

_SYSTEM_PYTHON = "/usr/bin/python3"
_PACKAGES = ("securepy", "pydantic", "pydantic_core", "pyseccomp", "typing_extensions",
             "annotated_types", "typing_inspection", "jsonschema", "jsonschema_specifications",
             "referencing", "rpds", "attr", "attrs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--uid", type=int, default=65534, help="the user to run as, when root")
    parser.add_argument("--as-root", action="store_true",
                        help="measure root's pools instead (root-drop mode), for comparison")
    args = parser.parse_args()
    if os.geteuid() == 0 and not args.as_root:
        sys.exit(_run_as(args.uid, sys.argv[1:]))
    _measure(quick=args.quick)


def _run_as(uid: int, argv: list[str]) -> int:
    """Run this script as ``uid`` with a copy of the packages it imports."""
    packages = tempfile.mkdtemp(prefix="securepy-bench-", dir="/tmp")
    try:
        for name in _PACKAGES:
            source = __import__(name).__file__ or ""
            if os.path.basename(source) == "__init__.py":
                source = os.path.dirname(source)
            target = os.path.join(packages, os.path.basename(source))
            if os.path.isdir(source):
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)
        script = os.path.join(packages, "nonroot_template.py")
        shutil.copy(__file__, script)
        # Bytecode for the system Python, written now: the user cannot write it there, and
        # every bubblewrap start would otherwise compile the worker from source.
        subprocess.run([_SYSTEM_PYTHON, "-m", "compileall", "-q", packages], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["chmod", "-R", "a+rX", packages], check=True)
        return subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", _SYSTEM_PYTHON,
             script, *argv],
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": packages},
            cwd="/tmp", check=False).returncode
    finally:
        shutil.rmtree(packages)


def _measure(*, quick: bool) -> None:
    import securepy
    from securepy._interpreter import probe_interpreter
    from securepy._launchers.bubblewrap import BubblewrapLauncher, wall_config
    from securepy._launchers.template import TemplateLauncher, template_problem

    interpreter = probe_interpreter(None)
    config = wall_config(interpreter)
    problem = template_problem(interpreter)
    print(f"uid {os.getuid()}, bubblewrap {config.mode} mode, Python "
          f"{sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs; template: "
          f"{problem or 'available'}\n")
    if problem is not None:
        sys.exit(1)
    reps = 10 if quick else 40
    template = TemplateLauncher()
    bubblewrap = BubblewrapLauncher()
    securepy.Session(launcher=template).close()  # the template starts here, once

    def start(launcher: object) -> Callable[[], float]:
        def case() -> float:
            started = time.perf_counter()
            session = securepy.Session(launcher=launcher)
            session.execute("1+1")
            elapsed = time.perf_counter() - started
            session.close()
            return elapsed

        return case

    def bare() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        return time.perf_counter() - started

    rows = _round_robin({"forked from the pool's template (TemplateLauncher)": start(template),
                         f"started by bubblewrap ({config.mode} mode)": start(bubblewrap),
                         "bare `python -I -S -c pass`": bare}, reps)
    _print_table("cold session start, then 1+1", rows, "ms", 1000.0, "started by bubblewrap")
    template.close()

    seconds = 1.0 if quick else 2.0
    pools = {"SessionPool(4), forked from its template": securepy.SessionPool(4),
             # The launcher named: a plain Session may fork from a shared template some day.
             "SessionPool(4, template=False), each started by bubblewrap":
                 securepy.SessionPool(4, template=False, launcher=bubblewrap)}
    try:
        for pool in pools.values():
            pool.execute("1+1")  # started, and its template warm

        def rate(pool: securepy.SessionPool) -> Callable[[], float]:
            def case() -> float:
                done, deadline = 0, time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    pool.execute("1+1")
                    done += 1
                return done / seconds

            return case

        rows = _round_robin({name: rate(pool) for name, pool in pools.items()},
                            3 if quick else 5)
        _print_table("fresh-session checkouts/s, sustained, 1 thread", rows, "/s", 1.0,
                     "template=False")
    finally:
        for pool in pools.values():
            pool.close()


def _round_robin(cases: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    for case in cases.values():  # warm-up
        case()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            samples[name].append(case())
    return samples


def _print_table(title: str, rows: dict[str, list[float]], unit: str, scale: float,
                 reference: str) -> None:
    base = next(statistics.median(v) for k, v in rows.items() if reference in k)
    print(f"| {title} | median | min-max | n | vs {reference} |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"| {name} | {median * scale:.2f} {unit} | {min(values) * scale:.2f}-"
              f"{max(values) * scale:.2f} {unit} | {len(values)} | {median / base:.2f}x |")
    print()


if __name__ == "__main__":
    main()
