"""securepy_ray.RayPool against a local securepy.SessionPool, on a Ray cluster on this machine.

    uv run python benchmarks/ray_pool.py                      # 1,000 snippets, sandbox=True
    uv run python benchmarks/ray_pool.py --snippets 200 --no-sandbox

Rows:
  throughput of ``map`` over N short snippets: a local SessionPool (driven by as many threads
  as it has sessions), a RayPool on 1 node, a RayPool on 2 nodes (each node the same pool
  size), each snippet on a fresh session (the pools' default);
  latency of one ``execute`` on a warm (reused) session, median of sequential calls, locally
  and through Ray; the same with one tool call, for a tool on the node and one on_driver.

The cluster is real (a head and one more node, 127.0.0.1, started here and stopped at the
end), but its nodes share this machine's cores: two nodes cannot beat one node on CPU-bound
work here. What the figures show is Ray's cost per call and that spreading does not lose
throughput; on a real cluster each node brings its own cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

# Ray reads these when it is imported: loopback addresses, no usage stats, a private temp dir.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Ray starts its workers at niceness 15 and the sandboxes inherit it; the local pool runs at
# 0. On a shared machine that alone would decide the race, so both run at the same priority
# here (set RAY_worker_niceness=15 in the environment to see Ray's default).
NICENESS = "RAY_worker_niceness"  # Ray's own spelling
os.environ.setdefault(NICENESS, "0")
TEMP_DIR = tempfile.mkdtemp(prefix="ray-bench-")
os.environ["RAY_TMPDIR"] = TEMP_DIR

import ray  # noqa: E402 - after the environment above
import securepy  # noqa: E402
import securepy_ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

SNIPPET = "sum(i * i for i in range({i} % 50 + 10))"
NODE = {"num_cpus": 2, "object_store_memory": 100 * 2**20, "node_ip_address": "127.0.0.1"}


def lookup(key: str) -> str:
    """Echo a key (the tool-call rows)."""
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snippets", type=int, default=1000)
    parser.add_argument("--sessions-per-node", type=int, default=4)
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args()
    options: dict[str, Any] = {"sandbox": not args.no_sandbox, "timeout": 60}
    codes = [SNIPPET.format(i=i) for i in range(args.snippets)]
    size = args.sessions_per_node
    print(
        f"{args.snippets} snippets, {size} sessions per node, sandbox={options['sandbox']}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"{NICENESS}={os.environ[NICENESS]}"
    )

    with securepy.SessionPool(size, **options) as pool:
        pool.execute("1")
        local_rate = _rate(len(codes), lambda: _map_local(pool, codes, size))
    # Latency on warm sessions (reused), so the rows show the cost of the hop, not a start.
    warm = {**options, "reset_between_uses": False}
    with securepy.SessionPool(size, tools=[lookup], **warm) as pool:
        pool.execute("1")
        local_latency = _latency(lambda: pool.execute("1"), args.latency_calls)
        local_tool = _latency(lambda: pool.execute("lookup('k')"), args.latency_calls)
    rows = [("map, local SessionPool", f"{local_rate:8.0f} snippets/s", "1.00x")]

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        second = cluster.add_node(**NODE)
        ray.init(
            address=cluster.address,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
            log_to_driver=False,
        )
        head = ray.get_runtime_context().get_node_id()
        for label, nodes in (("1 node", [head]), ("2 nodes", [head, second.node_id])):
            with securepy_ray.RayPool(nodes=nodes, sessions_per_node=size, **options) as pool:
                pool.map(["1"] * len(nodes) * size)  # warm: actors and sessions up
                rate = _rate(len(codes), lambda pool=pool: pool.map(codes))
            rows.append(
                (f"map, RayPool on {label}", f"{rate:8.0f} snippets/s", f"{rate / local_rate:.2f}x")
            )
        tools = [lookup, securepy_ray.on_driver(securepy.Tool("remote_lookup", "Echo.", lookup))]
        with securepy_ray.RayPool(
            nodes=[head], sessions_per_node=size, tools=tools, **warm
        ) as pool:
            pool.execute("1")
            ray_latency = _latency(lambda: pool.execute("1"), args.latency_calls)
            node_tool = _latency(lambda: pool.execute("lookup('k')"), args.latency_calls)
            driver_tool = _latency(lambda: pool.execute("remote_lookup('k')"), args.latency_calls)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(TEMP_DIR, ignore_errors=True)
    rows += [
        ("execute('1'), local SessionPool", f"{local_latency * 1e3:8.2f} ms", ""),
        (
            "execute('1'), RayPool",
            f"{ray_latency * 1e3:8.2f} ms",
            f"+{(ray_latency - local_latency) * 1e3:.2f} ms",
        ),
        ("execute + tool call, local SessionPool", f"{local_tool * 1e3:8.2f} ms", ""),
        (
            "execute + node tool call, RayPool",
            f"{node_tool * 1e3:8.2f} ms",
            f"+{(node_tool - local_tool) * 1e3:.2f} ms",
        ),
        (
            "execute + on_driver tool call, RayPool",
            f"{driver_tool * 1e3:8.2f} ms",
            f"+{(driver_tool - node_tool) * 1e3:.2f} ms over a node tool",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, figure, relative in rows:
        print(f"{name:<{width}}  {figure}  {relative}")


def _map_local(pool: securepy.SessionPool, codes: list[str], threads: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(threads) as executor:
        list(executor.map(pool.execute, codes))


def _rate(count: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def _latency(call: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
