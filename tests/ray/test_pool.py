"""RayPool and AsyncRayPool on a real two-node cluster: calls, batches, sessions, walls."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import ray
import securepy
import securepy_ray
from ray.util.placement_group import placement_group, remove_placement_group

from .conftest import LocalCluster

pytestmark = pytest.mark.sandbox

LIMITS = securepy.Limits(open_files=100, file_size_bytes=1024 * 1024)


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


@pytest.fixture(scope="module")
def pool(ray_cluster: LocalCluster) -> Iterator[securepy_ray.RayPool]:
    with securepy_ray.RayPool(
        sessions_per_node=2, tools=[double], limits=LIMITS, timeout=30
    ) as pool:
        yield pool


def test_one_actor_per_live_node(pool: securepy_ray.RayPool, ray_cluster: LocalCluster) -> None:
    live = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {n.node_id for n in pool.nodes} == live
    assert len(pool.nodes) == 2
    assert all(n.alive and n.node_ip == "127.0.0.1" for n in pool.nodes)
    assert repr(pool) == "<securepy_ray.RayPool 2/2 nodes x 2 sessions>"


def test_actors_per_bundle_or_spread_by_ray(ray_cluster: LocalCluster) -> None:
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    try:
        with securepy_ray.RayPool(nodes=group, sessions_per_node=1, template=False) as pool:
            assert len({n.node_id for n in pool.nodes}) == 2
            assert [r.value for r in pool.map(["1", "2", "3"])] == [1, 2, 3]
    finally:
        remove_placement_group(group)
    with securepy_ray.RayPool(nodes=3, sessions_per_node=1, template=False) as pool:
        assert len(pool.nodes) == 3
        assert pool.execute("6 * 7").value == 42


def test_execute_returns_the_execution(pool: securepy_ray.RayPool) -> None:
    result = pool.execute("print('hi')\ndouble(21)")
    assert (result.value, result.stdout) == (42, "hi\n")
    assert [call.name for call in result.tool_calls] == ["double"]


def test_errors_come_back_as_securepy_errors(pool: securepy_ray.RayPool) -> None:
    with pytest.raises(
        securepy.ExecutionError, match=r"^ZeroDivisionError: division by zero$"
    ) as caught:
        pool.execute("print('before')\n1 / 0")
    assert (caught.value.type_name, caught.value.stdout) == ("ZeroDivisionError", "before\n")
    with pytest.raises(securepy.ExecutionTimeout) as timed_out:
        pool.execute("while True: pass", timeout=1)
    assert timed_out.value.timeout == 1
    with pytest.raises(securepy.CodeValidationError):
        pool.execute("def (")


def test_bad_execute_options_fail_on_the_driver(pool: securepy_ray.RayPool) -> None:
    with pytest.raises(
        ValueError,
        match=r"^timeout must be a positive number of seconds or "
        r"None, got -1$",
    ):
        pool.execute("1", timeout=-1)
    with pytest.raises(
        ValueError,
        match=r"^max_tool_calls must be a non-negative integer or "
        r"None, got 'x'$",
    ):
        pool.execute("1", max_tool_calls="x")  # type: ignore[arg-type]


def test_map_keeps_input_order_and_spreads_over_every_node(pool: securepy_ray.RayPool) -> None:
    codes = [f"double({i})" for i in range(60)]
    assert [r.value for r in pool.map(codes)] == [2 * i for i in range(60)]
    statuses = pool.status()
    assert set(statuses) == {n.node_id for n in pool.nodes}
    assert all(s.total == 2 for s in statuses.values())


def test_map_raises_the_first_failure_or_returns_it_in_place(pool: securepy_ray.RayPool) -> None:
    codes = ["1", "raise KeyError('k')", "3"]
    with pytest.raises(securepy.ExecutionError, match=r"^KeyError: 'k'$"):
        pool.map(codes)
    results = pool.map(codes, return_exceptions=True)
    assert results[0].value == 1 and results[2].value == 3
    assert isinstance(results[1], securepy.ExecutionError)


def test_imap_unordered_yields_each_index_once_from_a_generator(pool: securepy_ray.RayPool) -> None:
    codes = (f"{i} * {i}" for i in range(30))
    seen = dict(pool.imap_unordered(codes))
    assert {i: r.value for i, r in seen.items()} == {i: i * i for i in range(30)}


def test_leaving_a_batch_early_frees_the_pool(pool: securepy_ray.RayPool) -> None:
    for _ in pool.imap_unordered(["import time; time.sleep(0.2)"] * 20):
        break
    assert pool.execute("1").value == 1


def test_session_keeps_state_and_is_pinned_to_one_node(pool: securepy_ray.RayPool) -> None:
    with pool.session() as session:
        session.execute("total = 40")
        assert session.execute("total + 2").value == 42
        assert session.node_id in {n.node_id for n in pool.nodes}
        assert repr(session).endswith("(open)>")
    with pytest.raises(securepy.SessionClosedError, match=r"^this RaySession is closed"):
        session.execute("total")


def test_session_travels_to_a_ray_task(pool: securepy_ray.RayPool) -> None:
    @ray.remote(num_cpus=0)
    def continue_there(session: securepy_ray.RaySession) -> Any:
        return session.execute("total * 2").value

    with pool.session() as session:
        session.execute("total = 21")
        assert ray.get(continue_there.remote(session)) == 42


def test_every_node_applies_the_same_limits_and_wall(pool: securepy_ray.RayPool) -> None:
    sessions = [pool.session() for _ in pool.nodes]
    try:
        assert {s.node_id for s in sessions} == {n.node_id for n in pool.nodes}
        for session in sessions:
            limits = session.execute(
                "import resource\n"
                "(resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
                " resource.getrlimit(resource.RLIMIT_FSIZE)[0])"
            ).value
            assert limits == (100, 1024 * 1024)
            # Control: a write under the limit works; one over it fails, on every node.
            session.execute("open('small', 'wb').write(b'x' * 1000)")
            with pytest.raises(securepy.SecurePyError):
                session.execute("open('big', 'wb').write(b'x' * 2 * 1024 * 1024)")
    finally:
        for session in sessions:
            session.close()
    walls = {n.wall for n in pool.nodes}
    assert len(walls) == 1


def test_sandboxed_code_cannot_reach_the_ray_cluster(
    pool: securepy_ray.RayPool, ray_cluster: LocalCluster
) -> None:
    host, port = ray_cluster.cluster.address.rsplit(":", 1)
    # Control: the cluster's GCS answers on this address from the host.
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    code = (
        f"import socket\ntry:\n    socket.create_connection(({host!r}, {port}), timeout=2)\n"
        f"    'connected'\nexcept OSError as exc:\n    type(exc).__name__\n"
    )
    outcomes = {r.value for r in pool.map([code] * 6)}
    assert "connected" not in outcomes
    environment = pool.execute("import os\nsorted(k for k in os.environ if 'RAY' in k)").value
    assert environment == []


def test_bad_pool_options_fail_at_construction(ray_cluster: LocalCluster) -> None:
    with pytest.raises(
        ValueError,
        match=r"^sessions_per_node must be a positive integer, "
        r"got 0$",
    ):
        securepy_ray.RayPool(sessions_per_node=0)
    with pytest.raises(
        ValueError,
        match=r"^nodes: 'nope' is not a live node of this Ray "
        r"cluster \(see ray.nodes\(\)\)$",
    ):
        securepy_ray.RayPool(nodes=["nope"])
    with pytest.raises(TypeError, match=r"^on_output is not supported across Ray"):
        securepy_ray.RayPool(on_output=print)
    with pytest.raises(ValueError, match=r"num_cpuz"):
        securepy_ray.RayPool(actor_options={"num_cpuz": 1}, audit=print)
    # Nothing made before the bad option was found is left running: the driver's relay thread.
    assert not [t for t in threading.enumerate() if t.name == "securepy-ray-driver"]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'limts'"):
        securepy_ray.RayPool(nodes=1, sessions_per_node=1, limts=LIMITS)


def test_closed_pool_refuses_calls(ray_cluster: LocalCluster) -> None:
    pool = securepy_ray.RayPool(nodes=1, sessions_per_node=1)
    assert pool.execute("6 * 7").value == 42
    pool.close()
    pool.close()
    with pytest.raises(securepy.SessionClosedError, match=r"^this RayPool is closed$"):
        pool.execute("1")


async def test_async_twin_runs_calls_batches_and_sessions(ray_cluster: LocalCluster) -> None:
    async with securepy_ray.AsyncRayPool(sessions_per_node=2, tools=[double]) as pool:
        assert (await pool.execute("double(4)")).value == 8
        results = await pool.map([f"double({i})" for i in range(12)])
        assert [r.value for r in results] == [2 * i for i in range(12)]
        seen = {i: r async for i, r in pool.imap_unordered(["1", "1 / 0"], return_exceptions=True)}
        assert seen[0].value == 1 and isinstance(seen[1], securepy.ExecutionError)
        async with pool.session() as session:
            await session.execute("x = 1")
            assert (await session.execute("x + 1")).value == 2
        opened = await pool.session()
        assert (await opened.execute("2 + 2")).value == 4
        await opened.close()
        with pytest.raises(securepy.ExecutionError, match=r"^ValueError: no$"):
            await pool.execute("raise ValueError('no')")
    with pytest.raises(securepy.SessionClosedError, match=r"^this RayPool is closed$"):
        await pool.execute("1")
