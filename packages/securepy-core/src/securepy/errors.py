"""The securepy exception hierarchy.

    SecurePyError
      ExecutionError           the sandboxed code raised; carries the remote type name, the
                               user-only traceback text and the output printed before it
      ExecutionTimeout         (also a TimeoutError) the code ran past its deadline; says whether it
                               was interrupted (state kept) or killed (state lost)
      CodeValidationError      the syntax pre-check failed; carries line and column
      ToolError                a host tool failed (raised as ToolError inside the sandbox)
      PolicyError              a policy refused something (inside: a tool call; on the host: an
                               execute refused by a session guard)
      ResourceLimitError       the code hit a resource limit (memory, cpu time, file size, ...)
      SessionClosedError       the session (or pool) is closed
        SessionBusyError       the session is running another execute (it is healthy)
        PoolTimeout            no session of the pool became free in time (all are healthy)
      SandboxUnavailableError  the sandbox cannot start here; names the cause and the fix
      ProtocolError            the child broke the wire protocol; it was killed and restarted

Every attribute is plain data (str, int, bool): nothing on an error is an object rebuilt from
bytes the child sent.
"""

from __future__ import annotations

__all__ = [
    "CodeValidationError",
    "ExecutionError",
    "ExecutionTimeout",
    "PolicyError",
    "PoolTimeout",
    "ProtocolError",
    "ResourceLimitError",
    "SandboxUnavailableError",
    "SecurePyError",
    "SessionBusyError",
    "SessionClosedError",
    "ToolError",
]


class SecurePyError(Exception):
    """Base class of every error securepy raises on purpose."""


class ExecutionError(SecurePyError):
    """The sandboxed code raised an exception. The session is still usable and keeps its state.

    Attributes:
        type_name: the remote exception's type name, e.g. ``"ValueError"``.
        message: the remote exception's message.
        traceback: the remote traceback, with the user's frames only.
        stdout: what the code printed to stdout before it failed.
        stderr: what the code printed to stderr before it failed.
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        *,
        traceback: str = "",
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{type_name}: {message}" if message else type_name)

    @property
    def remote_type(self) -> str:
        """The remote exception's type name (same as ``type_name``)."""
        return self.type_name


class ExecutionTimeout(SecurePyError, TimeoutError):
    """The code ran past its timeout.

    Attributes:
        timeout: the timeout in seconds that expired.
        state_kept: True when the code was interrupted and the session kept its state; False when
            the child had to be killed and a fresh one started (all state lost).
        stdout: output printed before the timeout.
        stderr: error output printed before the timeout.
    """

    def __init__(
        self, timeout: float, *, state_kept: bool, stdout: str = "", stderr: str = ""
    ) -> None:
        self.timeout = timeout
        self.state_kept = state_kept
        self.stdout = stdout
        self.stderr = stderr
        how = (
            "the code was interrupted; the session kept its state"
            if state_kept
            else "the code did not stop when interrupted, so the session was killed and "
            "restarted; its state is lost"
        )
        super().__init__(f"execution timed out after {timeout:g} s: {how}")

    @property
    def interrupted(self) -> bool:
        """True when the code stopped on the interrupt (the session kept its state)."""
        return self.state_kept

    @property
    def killed(self) -> bool:
        """True when the child had to be killed (the session restarted, state lost)."""
        return not self.state_kept


class CodeValidationError(SecurePyError):
    """The code failed the syntax pre-check; nothing was sent to the child.

    Attributes:
        message: the compiler's message.
        lineno: 1-based line of the error (0 when unknown).
        offset: 1-based column of the error (0 when unknown).
    """

    def __init__(self, message: str, *, lineno: int = 0, offset: int = 0) -> None:
        self.message = message
        self.lineno = lineno
        self.offset = offset
        super().__init__(f"{message} (line {lineno}, column {offset})")

    @property
    def line(self) -> int:
        """Same as ``lineno``."""
        return self.lineno

    @property
    def column(self) -> int:
        """Same as ``offset``."""
        return self.offset


class ToolError(SecurePyError):
    """A host tool failed. Inside the sandbox the same failure is raised as ``ToolError``.

    Attributes:
        tool: the tool's name.
        type_name: the type name of the exception the tool raised (or "ValidationError" for bad
            arguments, "TimeoutError" for a tool past its own timeout).
    """

    def __init__(self, message: str, *, tool: str = "", type_name: str = "") -> None:
        self.tool = tool
        self.type_name = type_name
        super().__init__(message)


class PolicyError(SecurePyError):
    """A policy refused an action: a tool call denied by its approve hook or by a call limit
    (raised inside the sandbox, catchable there), or an execute refused by a session guard
    (``max_executions``, ``max_code_length``, ``pre_execute_hook``; nothing ran, the session
    is unchanged)."""


class ResourceLimitError(SecurePyError):
    """The code hit a resource limit. The session is restarted when the child died.

    Attributes:
        limit: which limit: "memory", "cpu_seconds", "file_size", "processes", "open_files",
            "output", "workspace" or "tool_calls".
        state_kept: whether the session kept its state.
        stdout: output printed before the limit was hit.
        stderr: error output printed before the limit was hit.
    """

    def __init__(self, message: str, *, limit: str, state_kept: bool = False, stdout: str = "",
                 stderr: str = "") -> None:
        self.limit = limit
        self.state_kept = state_kept
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message)


class SessionClosedError(SecurePyError):
    """The session (or pool) is closed: make a new one; ``restart()`` does not reopen it.

    It is also the base of :class:`SessionBusyError` and :class:`PoolTimeout`, which older
    releases raised as this class; code that rebuilds a session on this error should catch
    those two first, since their session or pool is healthy.
    """


class SessionBusyError(SessionClosedError):
    """The session is running another execute (one at a time per session; use a pool to run
    code concurrently). Nothing is wrong with the session: retry once that execute returns."""


class PoolTimeout(SessionClosedError):
    """No session of the pool became free within the wait allowed. The pool and its sessions
    are healthy; retry, or give the pool more sessions."""


class SandboxUnavailableError(SecurePyError):
    """The sandbox cannot start on this host. The message names the cause and the fix; run
    ``securepy doctor`` for a full report. securepy never falls back to running unsandboxed."""


class ProtocolError(SecurePyError):
    """The child broke the wire protocol (malformed, oversized or unexpected frame, or it died).
    The child was killed and the session restarted with a fresh, empty namespace.

    Attributes:
        stdout: output the code printed in this execute before it happened.
        stderr: error output printed likewise.
    """

    def __init__(self, message: str, *, stdout: str = "", stderr: str = "") -> None:
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message)
