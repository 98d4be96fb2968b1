"""Sandboxed sessions across a Ray cluster: a batch with a node tool and a driver tool.

    uv run python examples/ray_pool.py

It starts a local, one-node Ray (no dashboard); on a real cluster, connect first with
``ray.init(address="auto")`` and the same pool spreads over every node. ``tax`` is a pure
function, shipped to the nodes; ``price`` reads a table only this process holds (think
credentials or a database connection), so it runs back here, on the driver.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # after the environment above: Ray reads it when imported
import securepy_ray

PRICES = {"apple": 0.5, "pear": 0.75, "fig": 1.25}  # only the driver has this


def price(item: str) -> float:
    """Unit price of an item, in euros."""
    return PRICES[item]


def tax(amount: float) -> float:
    """VAT on an amount, in euros."""
    return round(amount * 0.2, 2)


BASKETS = [{"apple": 2}, {"pear": 1, "fig": 2}, {"kiwi": 1}]
CODE = "net = sum(price(item) * n for item, n in {basket!r}.items())\nround(net + tax(net), 2)"

ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
try:
    audit: list[dict[str, object]] = []
    tools = [tax, securepy_ray.on_driver(price)]
    with securepy_ray.RayPool(sessions_per_node=2, tools=tools, audit=audit.append) as pool:
        print(f"nodes: {len(pool.nodes)} ({pool.nodes[0].node_ip})")
        codes = [CODE.format(basket=basket) for basket in BASKETS]
        for basket, result in zip(BASKETS, pool.map(codes, return_exceptions=True), strict=True):
            if isinstance(result, Exception):
                print(f"basket {basket}: error: {result}")
            else:
                print(f"basket {basket} total: {result.value}")
        with pool.session() as session:  # a persistent session, pinned to one node
            session.execute("seen = []")
            session.execute("seen.append(price('fig'))")
            print(f"session on node {session.node_id[:8]}: {session.execute('seen').value}")
    nodes = {record["node_id"] for record in audit}
    print(f"audit records gathered here: {len(audit)} from {len(nodes)} node(s)")
finally:
    ray.shutdown()
