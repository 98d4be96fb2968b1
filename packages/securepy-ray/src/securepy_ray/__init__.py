"""securepy across a Ray cluster: sandboxed sessions on every node, tools where they belong.

    import ray
    import securepy_ray

    ray.init(address="auto")                     # or a local cluster: ray.init()
    with securepy_ray.RayPool(sessions_per_node=4, tools=[score]) as pool:
        results = pool.map(snippets, return_exceptions=True)

Each node actor holds a :class:`securepy.SessionPool`; tools run on the nodes (pickled by Ray)
or back on the driver (:func:`on_driver`); a lost node fails only the calls it held
(:class:`NodeLostError`) and the pool goes on with the others.
"""

from __future__ import annotations

from ._dispatch import RayNode as RayNode
from ._errors import NodeLostError as NodeLostError
from ._pool import AsyncRayPool as AsyncRayPool
from ._pool import RayPool as RayPool
from ._session import AsyncRaySession as AsyncRaySession
from ._session import RaySession as RaySession
from ._tools import on_driver as on_driver

__version__ = "0.1.0"

__all__ = [
    "AsyncRayPool",
    "AsyncRaySession",
    "NodeLostError",
    "RayNode",
    "RayPool",
    "RaySession",
    "__version__",
    "on_driver",
]

for _name in (
    "AsyncRayPool",
    "AsyncRaySession",
    "NodeLostError",
    "RayNode",
    "RayPool",
    "RaySession",
    "on_driver",
):
    globals()[_name].__module__ = "securepy_ray"
del _name
