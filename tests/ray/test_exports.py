"""securepy_ray's public face: exactly these names, each presented as securepy_ray's."""

from __future__ import annotations

import pickle

import pytest
import securepy
import securepy_ray

CONTRACT = {
    "RayPool",
    "AsyncRayPool",
    "RaySession",
    "AsyncRaySession",
    "RayNode",
    "NodeLostError",
    "on_driver",
    "__version__",
}


def test_all_is_exactly_the_contract() -> None:
    assert set(securepy_ray.__all__) == CONTRACT


def test_public_objects_present_as_securepy_ray() -> None:
    for name in CONTRACT - {"__version__"}:
        assert getattr(securepy_ray, name).__module__ == "securepy_ray", name


def test_node_lost_error_is_a_securepy_error_and_pickles() -> None:
    error = securepy_ray.NodeLostError("ab" * 28, "The actor died unexpectedly")
    assert isinstance(error, securepy.SecurePyError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.node_id, again.reason, str(again)) == (error.node_id, error.reason, str(error))
    assert str(error).startswith(
        "the Ray node abababababab that held this call was lost (The actor died unexpectedly)"
    )


def test_on_driver_accepts_tools_and_functions_and_refuses_the_rest() -> None:
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    marked = securepy_ray.on_driver(lookup)
    assert marked.tool.name == "lookup"
    assert securepy_ray.on_driver(marked) is marked
    assert securepy_ray.on_driver(securepy.tool(lookup)).tool.name == "lookup"
    with pytest.raises(
        TypeError,
        match=r"^on_driver\(\) takes a securepy.Tool or a function, "
        r"not int$",
    ):
        securepy_ray.on_driver(42)  # type: ignore[arg-type]
