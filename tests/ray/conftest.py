"""A real Ray cluster on this machine (a head and one more node, 127.0.0.1 only), shared.

Ray's temp dir goes to a fresh directory under /tmp (removed after), usage stats and the
dashboard are off. The cluster starts with the first test that needs it and stops after the
last test of tests/ray, and the fixture checks that every process it started (raylets,
workers, sandboxes under them) is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import _child_pids, shared_template_holdings, wait_until

# Ray turns 127.0.0.1 into the host's outward address unless told this is a local-only
# cluster; it reads the switch when it is imported, so it is set before any test imports ray.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

_NODE = {"num_cpus": 2, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
# Node loss is noticed by the GCS health check; Ray's defaults take tens of seconds.
_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}


class LocalCluster:
    """The running cluster: ``cluster`` (ray.cluster_utils.Cluster), node ids, start/stop."""

    def __init__(self) -> None:
        self._saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
        self.temp_dir = tempfile.mkdtemp(prefix="ray-")
        os.environ["RAY_TMPDIR"] = self.temp_dir
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        import ray
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=False)
        self._stopped = False
        try:
            self.cluster.add_node(**_NODE, include_dashboard=False, _system_config=_SYSTEM_CONFIG)
            self.worker = self.cluster.add_node(**_NODE)
            ray.init(
                address=self.cluster.address,
                _node_ip_address="127.0.0.1",
                logging_level="WARNING",
                log_to_driver=False,
            )
        except BaseException:
            self.stop()
            raise
        self.head_id = ray.get_runtime_context().get_node_id()

    def add_node(self) -> Any:
        """One more node (the caller removes it)."""
        return self.cluster.add_node(**_NODE)

    def stop(self) -> None:
        """Shut Ray down; every process it started must be gone. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        import ray

        # Ray's processes, not this process's shared session templates (started by earlier
        # tests, kept for the process's life) nor the sessions forked from them.
        templates = shared_template_holdings()[0]
        started = descendants(os.getpid()) - templates
        for template in templates:
            started -= descendants(template)
        try:
            ray.shutdown()
            self.cluster.shutdown()
            wait_until(lambda: not [p for p in started if _alive(p)], timeout=30)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (children, their children, ...)."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{tid}/children") as f:
                    for child in map(int, f.read().split()):
                        if child not in found:
                            found.add(child)
                            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


_CLUSTER: list[LocalCluster] = []


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    """The root leak guard, less its socket check: Ray's driver opens connections to nodes and
    workers lazily and keeps them, and its C++ core keeps a few descriptors (event loops, log
    files, a socket) for the life of the process even after ``ray.shutdown()``; nothing
    securepy_ray can close. What must not outlive a test is a process (the shared session
    templates excepted, by their pids): that is checked here, and ``LocalCluster.stop``
    checks that every process under the cluster is gone."""
    pids_before = _child_pids()
    yield
    wait_until(lambda: not (_child_pids() - pids_before - shared_template_holdings()[0]),
               timeout=10)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """The shared cluster, started on first use."""
    if not _CLUSTER:
        _CLUSTER.append(LocalCluster())
    yield _CLUSTER[0]
    _CLUSTER[0].stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the cluster after the last test of tests/ray (once its module fixtures, pools
    among them, are torn down), not at the end of the whole run."""
    yield
    here = os.path.dirname(__file__)
    if _CLUSTER and (nextitem is None or not str(nextitem.path).startswith(here)):
        _CLUSTER[0].stop()
