"""What OpenTelemetry tracing costs: warm ``execute("1+1")`` and one host tool call, with no
tracer provider (securepy builds no span) and with the SDK's provider exporting every span to
memory (a real backend's exporter runs off the hot path, in a batch processor).

    uv run python benchmarks/tracing.py [--rounds 7]

The two settings alternate round by round on one session, so drift on a shared machine hits
both alike. Each cell is the median over rounds of the batch medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import securepy
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TOOL_LOOP = "for i in range(500):\n    f(i)\n"


def f(i: int) -> int:
    """Echo."""
    return i


def _warm_execute(session: securepy.Session, n: int = 200) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        session.execute("1+1")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _tool_call(session: securepy.Session) -> float:
    started = time.perf_counter()
    session.execute(TOOL_LOOP)
    return (time.perf_counter() - started) / 500


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    results: dict[tuple[str, str], list[float]] = {}
    with securepy.Session([f], sandbox=False) as session:
        for _ in range(rounds):
            for setting in ("off", "on"):
                # The module global, swapped: the API lets a process set its provider once.
                trace._TRACER_PROVIDER = provider if setting == "on" else None  # type: ignore[attr-defined]
                results.setdefault(("warm execute", setting), []).append(_warm_execute(session))
                results.setdefault(("tool call", setting), []).append(_tool_call(session))
                exporter.clear()
    print(f"{'row':<14}{'no provider':>14}{'SDK provider':>14}{'on/off':>8}")
    for row in ("warm execute", "tool call"):
        off = statistics.median(results[(row, "off")]) * 1e6
        on = statistics.median(results[(row, "on")]) * 1e6
        print(f"{row:<14}{off:>11.1f} µs{on:>11.1f} µs{on / off:>8.2f}")


if __name__ == "__main__":
    main()
