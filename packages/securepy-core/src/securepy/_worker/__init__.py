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

BOOTSTRAP = (
    "import sys,importlib.util as u\n"
    "d=sys.argv[1]\n"
    "s=u.spec_from_file_location('_securepy_worker',d+'/__init__.py',"
    "submodule_search_locations=[d])\n"
    "m=u.module_from_spec(s);sys.modules['_securepy_worker']=m;s.loader.exec_module(m)\n"
    "del d,s,m,u\n"
    "import _securepy_worker.main\n"
    "_securepy_worker.main.main()\n"
)
