"""The worker's entry point: argv dispatch only. Stdlib only: runs inside the sandbox.

The bootstrap (``BOOTSTRAP`` in ``__init__.py``) calls :func:`main`. Dispatching here, apart from
the session server, is what lets the template server import the session server one way.
"""

from __future__ import annotations

import sys

__all__ = ["CONNECT", "main"]


def main() -> None:
    """``<worker dir> <fd>`` serves one session on the socket ``fd``;
    ``<worker dir> connect`` on a socket it connects to (see connect_back.py);
    ``<worker dir> <fd> template <seccomp fd>`` serves a template's control socket."""
    if len(sys.argv) > 3 and sys.argv[3] == "template":
        from .template import serve_template

        serve_template(int(sys.argv[2]), int(sys.argv[4]))
    elif sys.argv[2] == CONNECT:
        from .connect_back import connect_to_host
        from .session import serve

        serve(connect_to_host())
    else:
        import os

        from .connect_back import WATCH_STDIN, watch_host  # builtins only: no start cost

        if os.environ.pop(WATCH_STDIN, None):
            watch_host()
        from .session import serve

        serve(int(sys.argv[2]))


CONNECT = "connect"
