"""Results and exceptions carried across Ray, between the driver and the node actors.

A call returns an :data:`Outcome`: ``(True, value)`` or ``(False, Raised)``. Exceptions travel
as data rather than as raised errors because Ray would wrap a raised error in its own
``RayTaskError`` (with the actor's traceback in the message), and because securepy's errors
take keyword arguments, which the default exception pickling (``cls(*args)``) cannot rebuild.
"""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

__all__ = ["Outcome", "Raised", "capture", "exception_named", "unwrap"]

# Attribute values worth carrying: securepy's errors hold plain data only, and anything else
# (an object a foreign exception holds) may not pickle or mean anything on the other side.
_PLAIN = (str, int, float, bool, type(None))


@dataclasses.dataclass(frozen=True, slots=True)
class Raised:
    """An exception as data: its class (pickled by reference), ``args`` and plain attributes."""

    cls: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]

    def rebuild(self) -> BaseException:
        """The exception again, with the same class, message and attributes."""
        exc = self.cls.__new__(self.cls)
        exc.args = self.args
        if hasattr(exc, "__dict__"):
            exc.__dict__.update(self.state)
        return exc


Outcome = tuple[bool, Any]


def capture(exc: BaseException) -> Raised:
    """Turn ``exc`` into data that pickles whatever its class's ``__init__`` takes."""
    state = {
        key: value
        for key, value in getattr(exc, "__dict__", {}).items()
        if isinstance(value, _PLAIN)
    }
    args = tuple(a if isinstance(a, _PLAIN) else repr(a) for a in exc.args)
    return Raised(type(exc), args, state)


def unwrap(outcome: Outcome) -> Any:
    """The value of a successful outcome; raise the carried exception otherwise."""
    ok, payload = outcome
    if ok:
        return payload
    raise payload.rebuild()


def exception_named(type_name: str, args: tuple[Any, ...]) -> Exception:
    """An exception whose type has this name: the builtin one, or a fresh class named so.

    Used for a driver tool's failure on the node: the sandbox sees the same type name and
    message as if the tool had run there, without the node importing the driver's classes.
    """
    builtin = getattr(builtins, type_name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            return builtin(*args)
        except TypeError:  # a builtin whose constructor wants other arguments
            pass
    made: type[Exception] = type(type_name, (Exception,), {})
    return made(*args)
