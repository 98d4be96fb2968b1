"""The worker: the only securepy code that runs inside the sandbox.

Its modules import only the standard library and each other. The host starts it with
``python -I -S -c BOOTSTRAP <worker dir> <socket fd>``; BOOTSTRAP loads this directory as a
private package, so the sandboxed interpreter needs no securepy installed and never runs the
host package's ``__init__``.
"""

from __future__ import annotations

import os

__all__ = ["BOOTSTRAP", "WORKER_DIR"]

WORKER_DIR = os.path.dirname(os.path.abspath(__file__))

# importlib's frozen core, already loaded at start: importlib.util would import contextlib and
# more, which costs milliseconds at every start.
BOOTSTRAP = (
    "import sys,_frozen_importlib as b,_frozen_importlib_external as e\n"
    "d=sys.argv[1]\n"
    "s=e.spec_from_file_location('_securepy_worker',d+'/__init__.py',"
    "submodule_search_locations=[d])\n"
    "m=b.module_from_spec(s);sys.modules['_securepy_worker']=m;s.loader.exec_module(m)\n"
    "del b,e,d,s,m\n"
    "import _securepy_worker.entry\n"
    "_securepy_worker.entry.main()\n"
)
