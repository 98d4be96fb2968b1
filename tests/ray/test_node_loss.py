"""Losing a node mid-batch: its calls fail with NodeLostError, the pool goes on with the rest,
and nothing the node ran (its raylet, workers, sandboxes) is left behind."""

from __future__ import annotations

from typing import Any

import pytest
import securepy
import securepy_ray

from ..conftest import wait_until
from .conftest import LocalCluster, descendants

# Starting the shared cluster, one more node and the pool takes a minute on a loaded machine.
pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

# Each snippet calls a tool of each kind: one shipped to the node, one back on the driver.
SLOW = "import time\ntime.sleep(0.5)\non_node(1) + on_driver(1)"


def on_node(x: int) -> int:
    """Echo, on the node."""
    return x


def on_driver(x: int) -> int:
    """Echo, on the driver."""
    return x


def test_losing_a_node_mid_batch(ray_cluster: LocalCluster) -> None:
    victim = ray_cluster.add_node()
    victim_id = victim.node_id
    pool = securepy_ray.RayPool(
        nodes=[ray_cluster.head_id, victim_id],
        sessions_per_node=3,
        tools=[on_node, securepy_ray.on_driver(on_driver)],
    )
    try:
        sessions = [pool.session(), pool.session()]
        pinned = next(s for s in sessions if s.node_id == victim_id)
        pinned.execute("state = 'kept'")
        results: dict[int, Any] = {}
        victim_processes: set[int] = set()
        sandboxes: list[int] = []
        for index, result in pool.imap_unordered([SLOW] * 30, return_exceptions=True):
            results[index] = result
            if len(results) == 4:
                # Calls are running on both nodes now: the victim's sandboxes among them.
                victim_processes = descendants(victim.all_processes["raylet"][0].process.pid)
                sandboxes = [p for p in victim_processes if _is_sandbox(p)]
                ray_cluster.cluster.remove_node(victim, allow_graceful=False)
        assert sorted(results) == list(range(30))
        lost = [r for r in results.values() if isinstance(r, BaseException)]
        assert lost, "no call was in flight on the lost node"
        assert all(
            isinstance(r, securepy_ray.NodeLostError) and r.node_id == victim_id for r in lost
        ), lost
        assert str(lost[0]).startswith(
            f"the Ray node {victim_id[:12]} that held this call was lost"
        )
        assert all(r.value == 2 for r in results.values() if not isinstance(r, BaseException))
        # The pool goes on with the node that is left.
        assert [(n.node_id, n.alive) for n in pool.nodes] == [
            (ray_cluster.head_id, True),
            (victim_id, False),
        ]
        assert [r.value for r in pool.map(["on_node(2) + on_driver(2)"] * 10)] == [4] * 10
        # A session pinned to the lost node says so once, then is closed.
        with pytest.raises(securepy_ray.NodeLostError):
            pinned.execute("state")
        with pytest.raises(securepy.SessionClosedError):
            pinned.execute("state")
        survivor = next(s for s in sessions if s is not pinned)
        assert survivor.execute("on_driver(5)").value == 5
        for session in sessions:
            session.close()
        # Nothing the lost node ran is left: raylet, workers, sandboxes.
        assert sandboxes, "no sandbox was running on the node when it was lost"
        wait_until(lambda: not [p for p in victim_processes if _running(p)], timeout=30)
    finally:
        pool.close()


def _is_sandbox(pid: int) -> bool:
    """bubblewrap, or the sandboxed interpreter (started by it or forked from a template)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
    except OSError:
        return False
    return command.startswith(b"/usr/bin/bwrap") or b"_frozen_importlib" in command


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
