"""The one error securepy-ray adds to :mod:`securepy.errors`."""

from __future__ import annotations

import typing

from securepy.errors import SecurePyError

__all__ = ["NodeLostError"]


@typing.final
class NodeLostError(SecurePyError):
    """The Ray actor that held a call died, most often because its node was lost.

    Raised for each call that actor was running or had queued, and for every later call on a
    :class:`securepy_ray.RaySession` pinned to it (its state is gone). The pool itself stays
    usable: it stops sending work to the lost actor and goes on with the others. Nothing is
    retried for you, because code that called tools may have had effects before the node
    died; resubmit it when it is safe to run twice.

    Attributes:
        node_id: the hex id of the Ray node the actor ran on.
        reason: Ray's account of the death, one line.
    """

    def __init__(self, node_id: str, reason: str = "") -> None:
        self.node_id = node_id
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"the Ray node {node_id[:12]} that held this call was lost{detail}: the call's "
            "result and any session state on that node are gone; the pool goes on with its "
            "other nodes, so resubmit the code if it is safe to run again"
        )

    def __reduce__(self) -> tuple[type[NodeLostError], tuple[str, str]]:
        return (NodeLostError, (self.node_id, self.reason))
