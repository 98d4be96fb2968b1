"""The worker's entry point: argv dispatch only. Stdlib only: runs inside the sandbox.

The bootstrap (``BOOTSTRAP`` in ``__init__.py``) calls :func:`main`. Dispatching here, apart from
the session server, is what lets the template server import the session server one way.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """``<worker dir> <fd>`` serves one session on the socket ``fd``;
    ``<worker dir> <fd> template <seccomp fd>`` serves a template's control socket."""
    if len(sys.argv) > 3 and sys.argv[3] == "template":
        from .template import serve_template

        serve_template(int(sys.argv[2]), int(sys.argv[4]))
    else:
        from .session import serve

        serve(int(sys.argv[2]))
