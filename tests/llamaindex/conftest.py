"""Scripted LlamaIndex models, host tools and sessions for the adapter's tests."""

# No `from __future__ import annotations`: LlamaIndex renders the live annotations of
# lookup_order into CodeActAgent's prompt, where strings would show as 'str'.
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import securepy
from llama_index.core.tools import FunctionTool

ORDERS = {
    "A1": {"id": "A1", "total": 30.0, "status": "shipped"},
    "B2": {"id": "B2", "total": 12.5, "status": "pending"},
}


def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up an order by id."""
    return ORDERS[order_id]


@pytest.fixture
def order_tool() -> FunctionTool:
    """``lookup_order`` as a LlamaIndex FunctionTool."""
    return FunctionTool.from_defaults(lookup_order)


@pytest.fixture(params=["sync", "async"])
async def make_session(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., securepy.Session | securepy.AsyncSession]]:
    """Factory for an unsandboxed Session or AsyncSession (both twins); closed after."""
    made: list[securepy.Session | securepy.AsyncSession] = []

    def make(tools: Sequence[Any] = (), **options: Any) -> Any:
        kind = securepy.Session if request.param == "sync" else securepy.AsyncSession
        session = kind(list(tools), sandbox=False, **options)
        made.append(session)
        return session

    yield make
    for session in made:
        if isinstance(session, securepy.AsyncSession):
            await session.close()
        else:
            session.close()
