"""Where tools run: shipped to the nodes, or back on the driver; audit gathered at the driver."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import securepy
import securepy_ray

from .conftest import LocalCluster

pytestmark = pytest.mark.sandbox

DRIVER_PID = os.getpid()


def where_am_i() -> int:
    """The pid of the process this tool runs in."""
    return os.getpid()


class Ledger:
    """Driver-only state: a lock (does not pickle) and what the tools did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[str] = []

    def record(self, entry: str) -> int:
        """Append an entry to the driver's ledger; returns how many there are."""
        with self.lock:
            self.entries.append(entry)
            return len(self.entries)


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def audit_records() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def pool(
    ray_cluster: LocalCluster, ledger: Ledger, audit_records: list[dict[str, Any]]
) -> Iterator[securepy_ray.RayPool]:
    async def driver_pid_async() -> int:
        """The driver's pid, from an async tool."""
        return os.getpid()

    def refuse(reason: str) -> None:
        """Always fails on the driver."""
        raise PermissionError(f"refused: {reason}")

    def missing(key: str) -> str:
        """Always a KeyError."""
        raise KeyError(key)

    record = securepy.Tool("record", "Append to the driver's ledger.", ledger.record)
    tools = [
        where_am_i,
        securepy_ray.on_driver(record),
        securepy_ray.on_driver(driver_pid_async),
        securepy_ray.on_driver(refuse),
        securepy.Tool("missing_on_node", "A KeyError, on the node.", missing),
        securepy_ray.on_driver(securepy.Tool("missing_on_driver", "A KeyError.", missing)),
    ]
    with securepy_ray.RayPool(
        sessions_per_node=2, tools=tools, audit=audit_records.append, timeout=30
    ) as pool:
        yield pool


def test_node_tools_run_on_the_nodes(pool: securepy_ray.RayPool) -> None:
    pids = {r.value for r in pool.map(["where_am_i()"] * 8)}
    assert DRIVER_PID not in pids
    assert pids  # each is a node actor's process, outside the sandbox


def test_driver_tools_run_in_the_driver_process(pool: securepy_ray.RayPool, ledger: Ledger) -> None:
    before = len(ledger.entries)
    results = pool.map([f"record('entry {i}')" for i in range(10)])
    assert sorted(r.value for r in results) == list(range(before + 1, before + 11))
    assert sorted(ledger.entries[before:]) == sorted(f"entry {i}" for i in range(10))
    assert pool.execute("driver_pid_async()").value == DRIVER_PID


def test_driver_tool_arguments_are_checked_on_the_node(
    pool: securepy_ray.RayPool, ledger: Ledger
) -> None:
    before = len(ledger.entries)
    result = pool.execute(
        "try:\n    record(42)\nexcept Exception as exc:\n    out = type(exc).__name__\nout"
    )
    assert result.value == "ToolError"
    assert len(ledger.entries) == before  # the call never reached the driver


def test_driver_tool_failures_come_back_as_tool_errors(pool: securepy_ray.RayPool) -> None:
    result = pool.execute(
        "try:\n    refuse('no')\nexcept ToolError as exc:\n    out = str(exc)\nout"
    )
    assert "PermissionError" in result.value and "refused: no" in result.value
    # Control: the same failure from a node tool reads the same, name apart.
    texts = pool.map(
        [
            f"try:\n    {name}('kiwi')\nexcept ToolError as exc:\n    out = str(exc)\nout"
            for name in ("missing_on_driver", "missing_on_node")
        ]
    )
    assert texts[0].value.replace("missing_on_driver", "X") == (
        texts[1].value.replace("missing_on_node", "X")
    )
    assert "KeyError: 'kiwi'" in texts[0].value


def test_a_tool_that_cannot_be_shipped_names_on_driver(
    ray_cluster: LocalCluster, ledger: Ledger
) -> None:
    lock_holder = securepy.Tool("locked", "Holds a lock.", lambda: ledger.lock.locked())
    with pytest.raises(
        TypeError,
        match=r"^tool 'locked' cannot be shipped to the nodes \(.*\); "
        r"if it holds something only this process has",
    ):
        securepy_ray.RayPool(tools=[lock_holder])
    with pytest.raises(ValueError, match=r"^two tools are named 'where_am_i'"):
        securepy_ray.RayPool(tools=[where_am_i, securepy_ray.on_driver(where_am_i)])


def test_audit_records_reach_the_driver_tagged_with_their_node(
    pool: securepy_ray.RayPool, audit_records: list[dict[str, Any]]
) -> None:
    from ..conftest import wait_until

    pool.map(["1 + 1"] * 6)
    node_ids = {n.node_id for n in pool.nodes}
    wait_until(
        lambda: (
            {r["node_id"] for r in audit_records if r["event"] == "execute_complete"} == node_ids
        ),
        timeout=30,
    )
    assert all(r["node_ip"] == "127.0.0.1" for r in audit_records)
    assert {"session_start", "execute_start", "execute_complete"} <= {
        r["event"] for r in audit_records
    }
