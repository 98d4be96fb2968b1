"""The "securepy" logger: the verbose per-session handler and the unsandboxed warning."""

from __future__ import annotations

import logging

__all__ = ["attach_verbose_handler", "log_tool_call", "logger", "warn_unsandboxed"]

logger = logging.getLogger("securepy")

_warned_unsandboxed = False


def warn_unsandboxed(session_id: str) -> None:
    """WARNING once per process (a pool of unsandboxed sessions would repeat it endlessly),
    INFO after that."""
    global _warned_unsandboxed
    level = logging.INFO if _warned_unsandboxed else logging.WARNING
    _warned_unsandboxed = True
    logger.log(level, "session %s runs WITHOUT a sandbox (sandbox=False): the code can read "
               "what this user can and reach the network", session_id,
               extra={"session_id": session_id})


def log_tool_call(session_id: str, name: str, duration: float, error: BaseException | None,
                  *, dropped: bool = False) -> None:
    """INFO: a tool call that ran on the host, its duration and outcome (``verbose=True``
    shows these). ``dropped``: its answer was not sent (its timeout, or its turn, ran out)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    extra = {"session_id": session_id}
    if dropped:
        logger.info("session %s: tool %s finished after its time was up (%.3f s); its result "
                    "was dropped", session_id, name, duration, extra=extra)
    elif error is None:
        logger.info("session %s: tool %s returned in %.3f s", session_id, name, duration,
                    extra=extra)
    else:
        logger.info("session %s: tool %s failed in %.3f s: %s", session_id, name, duration,
                    type(error).__name__, extra=extra)


def attach_verbose_handler(session_id: str) -> logging.Handler:
    """Log this session's records to stderr (``verbose=True``); remove it at close."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("securepy %(levelname)s %(message)s"))
    handler.addFilter(_SessionFilter(session_id))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


class _SessionFilter(logging.Filter):
    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "session_id", None) == self.session_id
