"""securepy against its peers and the raw baselines: one table, every row measured in this run.

    uv sync --all-packages --group bench --frozen --inexact   # pydantic-monty, smolagents
    uv run python benchmarks/run.py                           # sandbox=True when available
    uv run python benchmarks/run.py --no-sandbox --quick
    uv run python benchmarks/run.py --only cold_start         # one row (a method's name)

Each row times its cases round-robin (securepy, peer, peer, baseline, securepy, ...), so drift
on a shared machine hits every case alike, and reports the median and min-max of the
repetitions. Peers that are not installed, or that cannot run a row's code, show why instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import securepy
from securepy._worker import protocol

HERE = Path(__file__).resolve().parent
SNIPPET = (HERE / "snippet_200_lines.py").read_text()
SIEVE = """
def sieve(limit):
    flags = bytearray([1]) * (limit + 1)
    flags[0] = flags[1] = 0
    for n in range(2, int(limit ** 0.5) + 1):
        if flags[n]:
            flags[n * n::n] = bytearray(len(range(n * n, limit + 1, n)))
    return sum(flags)
sieve(200_000)
"""
# A plain-loop sieve: what an interpreter does per bytecode, not what bytearray slicing does in C.
SIEVE_LOOP = """
def sieve(limit):
    flags = [True] * (limit + 1)
    flags[0] = flags[1] = False
    n = 2
    while n * n <= limit:
        if flags[n]:
            for m in range(n * n, limit + 1, n):
                flags[m] = False
        n += 1
    count = 0
    for f in flags:
        if f:
            count += 1
    return count
sieve(200_000)
"""
TOOL_LOOP = "total = 0\nfor i in range(1000):\n    total += f(i)\ntotal"
SMALL_WORK = "sum(i * i for i in range(3000))"


@dataclasses.dataclass
class Row:
    """One line of the table: a case's timings in seconds (or a value with a unit)."""

    title: str
    case: str
    samples: list[float] = dataclasses.field(default_factory=list)
    unit: str = "time"  # "time", "rate" (per second) or "MiB"
    note: str = ""


class Seconds(float):
    """A case that timed itself (it excludes its own setup or teardown)."""


class Skip(Exception):
    """This case cannot run here; the message says why."""


Case = Callable[[], Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", dest="sandbox", action="store_true", default=None,
                        help="use bubblewrap (default: when it works here)")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                        help="use sandbox=False sessions")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", metavar="ROWS", default="",
                        help="comma-separated rows to run, by method name (e.g. cold_start)")
    args = parser.parse_args()
    logging.getLogger("securepy").setLevel(logging.ERROR)  # no per-session sandbox=False warning
    sandbox = sandbox_works() if args.sandbox is None else args.sandbox
    scale = 0.2 if args.quick else 1.0
    bench = Bench(sandbox=sandbox, scale=scale)
    rows: list[Row] = []
    only = {name for name in args.only.split(",") if name}
    for measure in (bench.warm_execute, bench.tool_call, bench.snippet, bench.compute,
                    bench.pool_checkout, bench.cold_start, bench.first_session,
                    bench.sustained_checkouts,
                    bench.throughput, bench.idle_rss, bench.first_plot,
                    bench.file_round_trip):
        if only and measure.__name__ not in only:
            continue
        rows.extend(measure())
        bench.close_peers()
    print_table(rows, sandbox=sandbox, quick=args.quick)
    print_targets(rows)


def sandbox_works() -> bool:
    try:
        with securepy.Session(sandbox=True) as session:
            session.execute("1")
    except securepy.SandboxUnavailableError:
        return False
    return True


# -- measuring --------------------------------------------------------------------------------


def round_robin(title: str, cases: dict[str, Case], reps: int, warmup: int = 3) -> list[Row]:
    """Run each case ``reps`` times, interleaved. A case is timed around the call unless it
    returns :class:`Seconds`."""
    rows = {name: Row(title, name) for name in cases}
    live = dict(cases)
    for rep in range(warmup + reps):
        for name, case in list(live.items()):
            try:
                started = time.perf_counter()
                measured = case()
                elapsed = time.perf_counter() - started
                if isinstance(measured, Seconds):
                    elapsed = measured
            except Skip as exc:
                rows[name].note = str(exc)
                del live[name]
                continue
            except Exception as exc:  # a peer that cannot run this code: say so, go on
                rows[name].note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
                del live[name]
                continue
            if rep >= warmup:
                rows[name].samples.append(elapsed)
    return list(rows.values())


class Bench:
    """The rows, with the peers' warm objects kept between cases of one row."""

    def __init__(self, *, sandbox: bool, scale: float) -> None:
        self.sandbox = sandbox
        self.scale = scale
        self._closers: list[Callable[[], Any]] = []

    def reps(self, n: int) -> int:
        return max(5, int(n * self.scale))

    def close_peers(self) -> None:
        while self._closers:
            self._closers.pop()()

    def session(self, **options: Any) -> securepy.Session:
        session = securepy.Session(sandbox=self.sandbox, timeout=600, **options)
        self._closers.append(session.close)
        return session

    def monty(self, processes: int = 1) -> Any:
        try:
            import pydantic_monty
        except ImportError:
            raise Skip("pydantic-monty not installed (uv sync --group bench)") from None
        pool = pydantic_monty.Monty(min_processes=processes, max_processes=processes)
        pool.__enter__()
        self._closers.append(lambda: pool.__exit__(None, None, None))
        return pool

    def monty_session(self) -> Any:
        # The default allows 1,000 host calls per checkout; the tool row makes 1,000 per run.
        checkout = self.monty().checkout(limits={"max_suspensions": 10_000_000})
        session = checkout.__enter__()
        self._closers.append(lambda: checkout.__exit__(None, None, None))
        return session

    def smolagents(self, functions: dict[str, Callable[..., Any]] | None = None) -> Any:
        try:
            from smolagents.local_python_executor import LocalPythonExecutor
        except ImportError:
            raise Skip("smolagents not installed (uv sync --group bench)") from None
        executor = LocalPythonExecutor(additional_authorized_imports=["math"],
                                       additional_functions=functions or {})
        executor.send_tools({})
        return executor

    def echo(self) -> RawEcho:
        echo = RawEcho()
        self._closers.append(echo.close)
        return echo

    # -- rows -----------------------------------------------------------------------------

    def warm_execute(self) -> list[Row]:
        session = self.session()
        cases: dict[str, Case] = {
            "securepy Session.execute": lambda: session.execute("1+1")}
        cases.update(self._peer_cases("1+1"))
        echo = self.echo()
        frame = protocol.encode_frame({"kind": "execute", "code": "1+1", "filename": "<c-1>"})
        cases["raw socketpair echo (same bytes)"] = lambda: echo.round_trip(frame)
        return round_robin("warm execute(\"1+1\")", cases, self.reps(2000), warmup=50)

    def _peer_cases(self, code: str, *, inputs: dict[str, Any] | None = None,
                    ) -> dict[str, Case]:
        cases: dict[str, Case] = {}
        functions = inputs or {}
        try:
            monty = self.monty_session()
            cases["pydantic-monty feed_run"] = (
                lambda: monty.feed_run(code, external_lookup=functions))
        except Skip as exc:
            cases["pydantic-monty feed_run"] = _skipped(exc)
        try:
            smol = self.smolagents(functions)
            cases["smolagents LocalPythonExecutor (no OS sandbox)"] = lambda: smol(code)
        except Skip as exc:
            cases["smolagents LocalPythonExecutor (no OS sandbox)"] = _skipped(exc)
        return cases

    def tool_call(self) -> list[Row]:
        def f(i: int) -> int:
            """Echo."""
            return i

        session = self.session(tools=[f])
        per_call: dict[str, Case] = {
            "securepy host tool call": _per(1000, lambda: session.execute(TOOL_LOOP))}
        for name, case in self._peer_cases(TOOL_LOOP, inputs={"f": f}).items():
            per_call[name] = _per(1000, case)
        echo = self.echo()
        frame = protocol.encode_frame({"kind": "tool_call", "call_id": 1, "name": "f",
                                       "args": {"i": 1}})
        per_call["raw socketpair echo (same bytes)"] = _per(
            1000, lambda: [echo.round_trip(frame) for _ in range(1000)] and None)
        return round_robin("one host tool call (1,000 in one execution, per call)", per_call,
                           self.reps(30))

    def snippet(self) -> list[Row]:
        session = self.session()
        code = compile(SNIPPET, "<snippet>", "exec")
        cases: dict[str, Case] = {
            "securepy Session.execute": lambda: session.execute(SNIPPET),
            "in-process exec (no isolation)": lambda: exec(code, {}),
        }
        cases.update(self._peer_cases(SNIPPET))
        return round_robin("~200-line realistic snippet", cases, self.reps(200), warmup=5)

    def compute(self) -> list[Row]:
        rows = []
        for title, source in (("prime sieve to 200,000 (bytearray slices)", SIEVE),
                              ("prime sieve to 200,000 (plain loops)", SIEVE_LOOP)):
            session = self.session()
            code = compile(source, "<sieve>", "exec")
            cases: dict[str, Case] = {
                "securepy Session.execute": lambda s=session, c=source: s.execute(c),
                "in-process exec (CPython, no isolation)": lambda c=code: exec(c, {}),
            }
            peers = self._peer_cases(source)
            cases["pydantic-monty feed_run"] = peers["pydantic-monty feed_run"]
            smol = peers["smolagents LocalPythonExecutor (no OS sandbox)"]
            cases["smolagents LocalPythonExecutor (no OS sandbox)"] = _at_most(3, smol)
            rows += round_robin(title, cases, self.reps(20), warmup=1)
            self.close_peers()
        return rows

    def first_plot(self) -> list[Row]:
        """A chart from a fresh session: pyplot imported, one line plotted, the PNG back."""
        code = ("import matplotlib.pyplot as plt\n"
                "plt.plot([1, 3, 2]); plt.title('first plot')\n")
        try:
            import matplotlib  # noqa: F401  (the sandbox uses the host's environment)
        except ImportError as exc:
            return round_robin("first plot in a fresh session", {"securepy": _skipped(exc)}, 1)
        preloaded = securepy.SessionPool(2, sandbox=self.sandbox,
                                         preload=["numpy", "pandas", "matplotlib.pyplot"])
        self._closers.append(preloaded.close)
        preloaded.execute("1")

        def from_pool() -> None:
            with preloaded.session() as session:
                assert session.execute(code).outputs

        def cold() -> None:
            with securepy.Session(sandbox=self.sandbox) as session:
                assert session.execute(code).outputs

        cases: dict[str, Case] = {
            "securepy fresh pool session (preload numpy, pandas, pyplot)": from_pool,
            "securepy cold Session(), importing pyplot": _at_most(5, cold),
        }
        return round_robin("first plot (PNG back) in a fresh session", cases, self.reps(20),
                           warmup=2)

    def file_round_trip(self) -> list[Row]:
        session = self.session()
        rows = []
        for size in (1, 50):
            data = os.urandom(size * 1024 * 1024)

            def trip(data: bytes = data) -> None:
                session.files.write("payload.bin", data)
                assert len(session.files.read("payload.bin")) == len(data)

            rows += round_robin(f"session.files write + read of {size} MiB",
                                {"securepy Session.files": trip}, self.reps(10 if size == 1
                                                                            else 3), warmup=1)
        return rows

    def pool_checkout(self) -> list[Row]:
        size = 4
        pool = securepy.SessionPool(size, sandbox=self.sandbox)
        self._closers.append(pool.close)
        reuse = securepy.SessionPool(size, sandbox=self.sandbox, reset_between_uses=False)
        self._closers.append(reuse.close)

        def from_pool(p: securepy.SessionPool) -> float:
            _wait_until_quiet(p)
            started = time.perf_counter()
            p.execute("1+1")
            return Seconds(time.perf_counter() - started)

        cases: dict[str, Case] = {
            "securepy SessionPool, fresh session per checkout": lambda: from_pool(pool),
            "securepy SessionPool, reset_between_uses=False": lambda: from_pool(reuse),
        }
        try:
            monty = self.monty(processes=size)

            def monty_checkout() -> None:
                with monty.checkout() as session:
                    session.feed_run("1+1")

            cases["pydantic-monty checkout + feed_run"] = monty_checkout
        except Skip as exc:
            cases["pydantic-monty checkout + feed_run"] = _skipped(exc)
        return round_robin("new session from a warm pool, then 1+1", cases, self.reps(40))

    def cold_start(self) -> list[Row]:
        def cold(**options: Any) -> Case:
            def case() -> float:
                started = time.perf_counter()
                session = securepy.Session(sandbox=self.sandbox, **options)
                session.execute("1+1")
                elapsed = time.perf_counter() - started
                session.close()
                return Seconds(elapsed)
            return case

        def monty_cold() -> float:
            try:
                import pydantic_monty
            except ImportError:
                raise Skip("pydantic-monty not installed") from None
            started = time.perf_counter()
            pool = pydantic_monty.Monty(min_processes=1)
            with pool, pool.checkout() as session:
                session.feed_run("1+1")
                elapsed = time.perf_counter() - started
            return Seconds(elapsed)

        bare = [sys.executable, "-I", "-S", "-c", "pass"]
        if not self.sandbox:
            cases: dict[str, Case] = {"securepy Session(sandbox=False) + 1+1": cold()}
        elif self.shared_template_runs():
            cases = {
                "securepy Session() forked from a running template (the shared one) + 1+1":
                    cold(),
                "securepy Session(sandboxed, template=False): its own bubblewrap + 1+1":
                    cold(template=False),
            }
        else:
            cases = {"securepy Session(sandboxed), its own bubblewrap (no template here) + 1+1":
                     cold()}
        cases["pydantic-monty new pool + checkout + 1+1"] = monty_cold
        cases["bare `python -I -S -c pass`"] = lambda: subprocess.run(bare, check=True)
        return round_robin("cold session start, then 1+1", cases, self.reps(40), warmup=2)

    def first_session(self) -> list[Row]:
        """The first session of a fresh process (a one-shot script): with the shared template
        it starts the template too; timed inside the process, from after ``import securepy``
        to the first result."""
        script = ("import time, securepy\nstarted = time.perf_counter()\n"
                  f"with securepy.Session(sandbox={self.sandbox}) as s:\n    s.execute('1+1')\n"
                  "print(time.perf_counter() - started)")

        def first(switch: str) -> Case:
            env = {**os.environ, "SECUREPY_SHARED_TEMPLATE": switch}

            def case() -> float:
                out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                     capture_output=True, text=True).stdout
                return Seconds(float(out.split()[-1]))
            return case

        cases = {"securepy first Session() of a process, shared template on (the default)":
                 first("1"),
                 "securepy first Session() of a process, SECUREPY_SHARED_TEMPLATE=0": first("0")}
        return round_robin("first session of a fresh process, then 1+1 (import excluded)",
                           cases, self.reps(10), warmup=1)

    def shared_template_runs(self) -> bool:
        """Start the process's shared template (sessions outside pools fork from it) and say
        whether one runs here (root-drop hosts only, today)."""
        securepy.Session(sandbox=self.sandbox).close()
        return any(t.pid is not None for t in securepy.Session.shared_templates())

    def sustained_checkouts(self) -> list[Row]:
        """Fresh sessions handed out back to back from a pool of 4: the rate is bounded by how
        fast retired sessions are replaced."""
        seconds = max(0.5, 2.0 * self.scale)
        cases: dict[str, Case] = {}
        for label, template in (("forked from the pool's template", True),
                                ("each started by bubblewrap (template=False)", False)):
            if not self.sandbox and template:
                continue
            pool = securepy.SessionPool(4, sandbox=self.sandbox, template=template)
            self._closers.append(pool.close)
            cases[f"securepy SessionPool(4), sessions {label}"] = _rate(
                1, seconds, lambda n, p=pool: p.execute("1+1"))
        rows = round_robin("fresh-session checkouts/s, sustained, 1 thread", cases,
                           max(3, int(5 * self.scale)), warmup=1)
        for row in rows:
            row.unit = "rate"
        return rows

    def throughput(self) -> list[Row]:
        rows: list[Row] = []
        seconds = max(0.3, 1.0 * self.scale)
        for code, label in (("1+1", "1+1"), (SMALL_WORK, "sum of 3,000 squares")):
            for workers in (1, 2, 4):
                sessions = [self.session() for _ in range(workers)]
                cases: dict[str, Case] = {
                    "securepy Session per thread": _rate(
                        workers, seconds, lambda n, c=code, s=sessions: s[n].execute(c))}
                try:
                    monty = self.monty(processes=workers)
                    checkouts = [monty.checkout() for _ in range(workers)]
                    msessions = [c.__enter__() for c in checkouts]
                    for checkout in checkouts:
                        self._closers.append(
                            lambda c=checkout: c.__exit__(None, None, None))
                    cases["pydantic-monty session per thread"] = _rate(
                        workers, seconds, lambda n, c=code, s=msessions: s[n].feed_run(c))
                except Skip as exc:
                    cases["pydantic-monty session per thread"] = _skipped(exc)
                title = f"executions/s, {label}, {workers} concurrent session(s)"
                found = round_robin(title, cases, max(3, int(5 * self.scale)), warmup=1)
                for row in found:
                    row.unit = "rate"
                rows += found
                self.close_peers()
        return rows

    def idle_rss(self) -> list[Row]:
        rows: list[Row] = []
        forked = self.sandbox and self.shared_template_runs()
        for label, options in (("Session(template=False)", {"template": False}),
                               ("Session forked from a template", {})):
            if label != "Session(template=False)" and not forked:
                continue
            sessions = [self.session(**options) for _ in range(4)]
            for session in sessions:
                session.execute("1+1")
            time.sleep(0.5)
            row = Row("idle RSS per session", f"securepy {label} (whole process tree)",
                      unit="MiB")
            pss = Row("idle RSS per session", f"securepy {label} (PSS, shared pages split)",
                      unit="MiB")
            for session in sessions:
                pid = session._child.process.pid  # type: ignore[union-attr]
                row.samples.append(tree_memory(pid, "Rss") / 2**20)
                pss.samples.append(tree_memory(pid, "Pss") / 2**20)
            rows += [row, pss]
        try:
            monty = self.monty(processes=4)
            checkouts = [monty.checkout() for _ in range(4)]
            msessions = [c.__enter__() for c in checkouts]
            for m in msessions:
                m.feed_run("1+1")
            peer = Row("idle RSS per session", "pydantic-monty worker", unit="MiB")
            for m in msessions:
                peer.samples.append(tree_memory(m.worker_pid, "Rss") / 2**20)
            for checkout in checkouts:
                checkout.__exit__(None, None, None)
            rows.append(peer)
        except Skip as exc:
            rows.append(Row("idle RSS per session", "pydantic-monty worker", note=str(exc)))
        return rows


def _skipped(exc: Exception) -> Case:
    def case() -> float | None:
        raise Skip(str(exc))
    return case


def _per(calls: int, case: Callable[[], Any]) -> Case:
    def timed() -> Seconds:
        started = time.perf_counter()
        measured = case()
        elapsed = measured if isinstance(measured, Seconds) else time.perf_counter() - started
        return Seconds(elapsed / calls)
    return timed


def _at_most(times: int, case: Case) -> Case:
    """A very slow peer: run it only a few times, so the row stays affordable."""
    left = [times]

    def limited() -> float | None:
        if left[0] <= 0:
            raise Skip(f"(only {times} runs: slow)")
        left[0] -= 1
        return case()
    return limited


def _rate(workers: int, seconds: float, run: Callable[[int], Any]) -> Case:
    """Executions per second with ``workers`` threads, each on its own session."""
    def measure() -> float:
        stop = time.perf_counter() + seconds
        counts = [0] * workers

        def loop(n: int) -> None:
            while time.perf_counter() < stop:
                run(n)
                counts[n] += 1

        threads = [threading.Thread(target=loop, args=(n,)) for n in range(workers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return Seconds(sum(counts) / (time.perf_counter() - started))  # a rate, not seconds
    return measure


def _wait_until_quiet(pool: securepy.SessionPool) -> None:
    """Warm means every slot idle and the background threads done (retires included)."""
    while pool.status().idle < pool.status().total:
        time.sleep(0.002)
    time.sleep(0.02)


class RawEcho:
    """The floor: a second Python process echoing bytes over an inherited socketpair."""

    SERVER = ("import socket,sys\ns=socket.socket(fileno=int(sys.argv[1]))\n"
              "while True:\n d=s.recv(1<<20)\n if not d: break\n s.sendall(d)\n")

    def __init__(self) -> None:
        self.sock, child = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", self.SERVER, str(child.fileno())],
            pass_fds=(child.fileno(),))
        child.close()

    def round_trip(self, frame: bytes) -> None:
        self.sock.sendall(frame)
        got = 0
        while got < len(frame):
            got += len(self.sock.recv(1 << 20))

    def close(self) -> None:
        self.sock.close()
        self.process.wait(5)


def tree_memory(pid: int, field: str) -> int:
    """Sum of a smaps_rollup field (kB) over ``pid`` and all its descendants, in bytes."""
    total = 0
    for member in _descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1]) * 1024
    return total


def _descendants(pid: int) -> Iterator[int]:
    yield pid
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in children:
                yield from _descendants(int(child))


# -- the table --------------------------------------------------------------------------------


def print_table(rows: list[Row], *, sandbox: bool, quick: bool) -> None:
    mode = "bubblewrap" if sandbox else "off"
    print(f"securepy {securepy.__version__} benchmarks; sandbox={mode}; "
          f"Python {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"{'quick' if quick else 'full'} run; `{' '.join(['python', *sys.argv])}`")
    print()
    print("| what | case | median | min-max | n | vs first case |")
    print("|---|---|---:|---:|---:|---:|")
    title = None
    first: float | None = None
    for row in rows:
        if row.title != title:
            title, first = row.title, None
        if not row.samples:
            print(f"| {row.title} | {row.case} | - | - | 0 | {row.note or 'n/a'} |")
            continue
        median = statistics.median(row.samples)
        ratio = "1.00x" if first is None else f"{median / first:.2f}x"
        if first is None:
            first = median
        note = f" {row.note}" if row.note else ""
        print(f"| {row.title} | {row.case} | {_fmt(median, row.unit)} | "
              f"{_fmt(min(row.samples), row.unit)}-{_fmt(max(row.samples), row.unit)} | "
              f"{len(row.samples)} | {ratio}{note} |")


TARGETS = [
    # (what, case, reference case or None for an absolute bound, bound, "<=" or ">=")
    ("warm execute", "securepy", "pydantic-monty", 0.5, "<="),
    ("warm execute", "securepy", "raw socketpair", 2.0, "<="),
    ("one host tool call", "securepy", "pydantic-monty", 0.3, "<="),
    ("one host tool call", "securepy", "raw socketpair", 1.5, "<="),
    ("new session from a warm pool", "fresh session per checkout", None, 1e-3, "<="),
    ("cold session start", "its own bubblewrap", "bare", 1.5, "<="),
    ("cold session start", "forked from a running template", "bare", 1.5, "<="),
    ("cold session start", "forked from a running template", "bare", 0.5, "<="),
    ("prime sieve to 200,000 (bytearray", "securepy", "in-process", 1.1, "<="),
    ("prime sieve to 200,000 (plain", "securepy", "in-process", 1.1, "<="),
    ("idle RSS per session", "Session(template=False) (whole process tree)", None, 15.0, "<="),
    ("idle RSS per session", "template (whole process tree)", None, 15.0, "<="),
]


def print_targets(rows: list[Row]) -> None:
    """The issue's targets, as ratios of medians from this run."""
    def median(what: str, case: str) -> float | None:
        for row in rows:
            if row.title.startswith(what) and case in row.case and row.samples:
                return statistics.median(row.samples)
        return None

    print()
    print("| target | measured | met |")
    print("|---|---:|:---:|")
    for what, case, reference, bound, sense in TARGETS:
        mine = median(what, case)
        other = median(what, reference) if reference is not None else 1.0
        label = (f"{what}: {case} {sense} {bound:g}x {reference}" if reference is not None
                 else f"{what}: {case} {sense} {bound:g}")
        if mine is None or other is None:
            print(f"| {label} | n/a | - |")
            continue
        value = mine / other
        met = value <= bound if sense == "<=" else value >= bound
        print(f"| {label} | {value:.3g} | {'yes' if met else 'no'} |")
    for label in ("1+1", "sum of 3,000 squares"):
        one = median(f"executions/s, {label}, 1 ", "securepy")
        two = median(f"executions/s, {label}, 2 ", "securepy")
        if one and two:
            print(f"| throughput {label}: 2 sessions >= 1.7x 1 session | {two / one:.2f}x | "
                  f"{'yes' if two / one >= 1.7 else 'no'} |")


def _fmt(value: float, unit: str) -> str:
    if unit == "rate":
        return f"{value:,.0f}/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


if __name__ == "__main__":
    main()
