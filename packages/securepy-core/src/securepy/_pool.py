"""SessionPool and AsyncSessionPool (placeholder until the pool lands)."""

from __future__ import annotations

__all__ = ["AsyncSessionPool", "SessionPool"]


class SessionPool:
    """Pre-started sessions (not yet implemented)."""


class AsyncSessionPool:
    """Async counterpart of SessionPool (not yet implemented)."""
