"""Runs the worker as a plain child process: ``sandbox=False``, the caller's explicit choice.

Limits still apply (the worker's bootstrap sets the rlimits), but there are no namespaces and
no mounts: the code can read whatever the host user can, and reach the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile

from .._worker.connect_back import WATCH_STDIN
from ..errors import SandboxUnavailableError
from .base import LaunchSpec, PopenChild, close_pipes, describe_signal_exit
from .procfs import read_process_usage

__all__ = ["UnsandboxedLauncher"]


class UnsandboxedLauncher:
    """Starts the worker directly, in its own session and a private temporary directory."""

    sandboxed = False

    def launch(self, spec: LaunchSpec) -> UnsandboxedChild:
        """Start the worker as a direct child process."""
        if spec.mounts:
            raise SandboxUnavailableError("mounts need the sandbox; this launcher has none")
        workdir = tempfile.mkdtemp(prefix="securepy-")
        try:
            popen = subprocess.Popen(
                spec.argv,
                pass_fds=(spec.child_fd,),
                # The worker watches its stdin, which ends when this process does (even
                # killed): nothing else would end a child whose code still runs then.
                env={**spec.env, "HOME": workdir, "TMPDIR": workdir, WATCH_STDIN: "1"},
                cwd=workdir,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return UnsandboxedChild(popen, workdir)


class UnsandboxedChild(PopenChild):
    """The worker process, its process group and its temporary directory."""

    sandboxed = False
    wall = "none"

    def __init__(self, popen: subprocess.Popen[bytes], workdir: str) -> None:
        super().__init__(popen)
        self._workdir: str | None = workdir

    def interrupt(self) -> None:
        if self._popen.poll() is None:
            os.kill(self._popen.pid, signal.SIGINT)

    def kill(self) -> None:
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
        close_pipes(self._popen)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def describe_exit(self, status: int) -> str | None:
        return describe_signal_exit(-status if status < 0 else 0)

    def resource_usage(self) -> dict[str, float] | None:
        return read_process_usage(self._popen.pid)
