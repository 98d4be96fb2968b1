"""The "securepy" logger: the verbose per-session handler and the unsandboxed warning."""

from __future__ import annotations

import logging

__all__ = ["attach_verbose_handler", "logger", "warn_unsandboxed"]

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
