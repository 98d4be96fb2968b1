"""securepy: run LLM-written Python in a real CPython sandbox that can call your host functions.

    import securepy

    @securepy.tool
    def query_db(table: str, limit: int = 5) -> list[dict]:
        "Rows of a table."
        ...

    with securepy.Session(tools=[query_db]) as session:
        result = session.execute("rows = query_db('orders', 3)\\nlen(rows)")
        print(result.value, result.stdout)
"""

from __future__ import annotations

from . import errors as errors
from ._api import execute_python as execute_python
from ._execution import Execution as Execution
from ._limits import Limits as Limits
from ._mounts import Mount as Mount
from ._outputs import Output as Output
from ._pool import AsyncSessionPool as AsyncSessionPool
from ._pool import SessionPool as SessionPool
from ._session import AsyncSession as AsyncSession
from ._session import Session as Session
from ._tools import Tool as Tool
from ._tools import tool as tool
from ._validate import validate_code as validate_code
from .errors import CodeValidationError as CodeValidationError
from .errors import ExecutionError as ExecutionError
from .errors import ExecutionTimeout as ExecutionTimeout
from .errors import PolicyError as PolicyError
from .errors import PoolTimeout as PoolTimeout
from .errors import ProtocolError as ProtocolError
from .errors import ResourceLimitError as ResourceLimitError
from .errors import SandboxUnavailableError as SandboxUnavailableError
from .errors import SecurePyError as SecurePyError
from .errors import SessionBusyError as SessionBusyError
from .errors import SessionClosedError as SessionClosedError
from .errors import ToolError as ToolError

__version__ = "0.1.0"

__all__ = [
    "AsyncSession",
    "AsyncSessionPool",
    "CodeValidationError",
    "Execution",
    "ExecutionError",
    "ExecutionTimeout",
    "Limits",
    "Mount",
    "Output",
    "PolicyError",
    "PoolTimeout",
    "ProtocolError",
    "ResourceLimitError",
    "SandboxUnavailableError",
    "SecurePyError",
    "Session",
    "SessionBusyError",
    "SessionClosedError",
    "SessionPool",
    "Tool",
    "ToolError",
    "__version__",
    "errors",
    "execute_python",
    "tool",
    "validate_code",
]

for _name in ("AsyncSession", "AsyncSessionPool", "Execution", "Limits", "Mount", "Output",
              "Session",
              "SessionPool", "Tool", "tool", "execute_python", "validate_code"):
    globals()[_name].__module__ = "securepy"
del _name
