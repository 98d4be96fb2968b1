"""A Windows job object around a ``sandbox=False`` worker: the limits Windows can enforce.

Windows has no rlimits, but a job object bounds every process in it together: committed
memory (``Limits.memory_bytes``, for the whole tree, as a memory cgroup does on Linux), user
CPU time per process (``cpu_seconds``) and the number of live processes (``processes``). Its
``KILL_ON_JOB_CLOSE`` flag ends every process of the job when its last handle closes, so the
worker's tree ends with the session, or with the host if the host dies first.
``file_size_bytes`` and ``open_files`` have no equivalent there and are not enforced.

The structures are laid out with fixed-width fields, so their size can be checked anywhere
(tests do, on Linux); only :func:`open_job` calls Windows.
"""

from __future__ import annotations

import ctypes
import logging
import subprocess

from .._limits import Limits

__all__ = ["JobLimits", "WindowsJob", "job_limits", "open_job"]

logger = logging.getLogger("securepy")

_LIMIT_PROCESS_TIME = 0x0002
_LIMIT_ACTIVE_PROCESS = 0x0008
_LIMIT_JOB_MEMORY = 0x0200
_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_EXTENDED_LIMIT_INFORMATION = 9  # JobObjectExtendedLimitInformation
_TICKS_PER_SECOND = 10_000_000  # job times are in 100 ns units


class _BasicLimits(ctypes.Structure):
    """JOBOBJECT_BASIC_LIMIT_INFORMATION (64 bytes on 64-bit Windows)."""

    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    """IO_COUNTERS (48 bytes)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JobLimits(ctypes.Structure):
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION (144 bytes on 64-bit Windows)."""

    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def job_limits(limits: Limits) -> JobLimits:
    """The job object limits for ``limits`` (always: kill the whole job when it closes)."""
    info = JobLimits()
    basic = info.BasicLimitInformation
    flags = _LIMIT_KILL_ON_JOB_CLOSE
    if limits.memory_bytes is not None:
        flags |= _LIMIT_JOB_MEMORY
        info.JobMemoryLimit = limits.memory_bytes
    if limits.cpu_seconds is not None:
        flags |= _LIMIT_PROCESS_TIME
        basic.PerProcessUserTimeLimit = int(limits.cpu_seconds * _TICKS_PER_SECOND)
    if limits.processes is not None:
        flags |= _LIMIT_ACTIVE_PROCESS
        basic.ActiveProcessLimit = limits.processes + 1  # the worker is one of them
    basic.LimitFlags = flags
    return info


class WindowsJob:
    """An open job object holding one worker's tree."""

    def __init__(self, handle: int, kernel32: object) -> None:
        self._handle: int | None = handle
        self._kernel32 = kernel32

    def terminate(self) -> None:
        """End every process in the job and close it. Idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._kernel32.TerminateJobObject(handle, 1)  # type: ignore[attr-defined]
            self._kernel32.CloseHandle(handle)  # type: ignore[attr-defined]


def open_job(limits: Limits, popen: subprocess.Popen[bytes]) -> WindowsJob | None:
    """Put the just-started worker in a job object with ``limits``; None (and a warning in
    the log) when Windows refuses, in which case only the host's limits hold."""
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined, unused-ignore]
        kernel32.CreateJobObjectW.restype = ctypes.c_void_p
        kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
        kernel32.SetInformationJobObject.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
        kernel32.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        kernel32.TerminateJobObject.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
        handle = kernel32.CreateJobObjectW(None, None)
        if not handle:
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined, unused-ignore]
        info = job_limits(limits)
        process = int(popen._handle)  # type: ignore[attr-defined]
        if not (kernel32.SetInformationJobObject(handle, _EXTENDED_LIMIT_INFORMATION,
                                                 ctypes.byref(info), ctypes.sizeof(info))
                and kernel32.AssignProcessToJobObject(handle, process)):
            error = ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined, unused-ignore]
            kernel32.CloseHandle(handle)
            raise error
    except (OSError, AttributeError, ValueError) as exc:
        logger.warning("the worker's job object could not be set up (%s): its memory, CPU "
                       "and process limits are not enforced", exc)
        return None
    return WindowsJob(handle, kernel32)
