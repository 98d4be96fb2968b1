"""Writes outside the workspace: the root, /usr, /etc, /dev, site-packages, the interpreter's
library and the worker's own code, sysctls and /proc/sysrq-trigger, device nodes, /dev/shm's
size.

Control: the host (root in CI) may write each target directory, so only the wall stops the
write; and the same write code succeeds in the sandbox's workspace. After each case the
host-side fixture checks that no file named with the attack token appeared and that the
guarded host files (passwd, sysctls, os.py, the worker, the interpreter) are unchanged.
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
import tempfile
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
WRITE_CODE = """
def attempt(path, mode, data):
    try:
        with open(path, mode) as f:
            f.write(data)
        return "written"
    except OSError as e:
        return type(e).__name__
attempt({path!r}, {mode!r}, {data!r})
"""
WORKER_DIR = os.path.join(os.path.dirname(securepy.__file__), "_worker")
SITE = sysconfig.get_paths()["purelib"]
STDLIB = sysconfig.get_paths()["stdlib"]


def _targets(token: str) -> dict[str, tuple[str, str, str]]:
    return {
        "root-dir": (f"/{token}", "x", "attack"),
        "usr": (f"/usr/{token}", "x", "attack"),
        "usr-bin": (f"/usr/bin/{token}", "x", "#!/bin/sh\n"),
        "etc": (f"/etc/{token}", "x", "attack"),
        "etc-passwd-append": ("/etc/passwd", "a", "evil:x:0:0::/:/bin/sh\n"),
        "dev": (f"/dev/{token}", "x", "attack"),
        "site-packages-pth": (os.path.join(SITE, f"{token}.pth"), "x", "import os\n"),
        "stdlib-dir": (os.path.join(STDLIB, f"{token}.py"), "x", "attack"),
        "stdlib-os-py-append": (os.__file__, "a", "\nimport evil\n"),
        "worker-code-append": (os.path.join(WORKER_DIR, "main.py"), "a", "\nimport evil\n"),
        "interpreter-bin-dir": (os.path.join(os.path.dirname(sys.executable), token), "x", "x"),
        "sysctl-core-pattern": ("/proc/sys/kernel/core_pattern", "w", "|/tmp/evil %p"),
        "sysctl-hostname": ("/proc/sys/kernel/hostname", "w", "pwned"),
        "sysctl-modprobe": ("/proc/sys/kernel/modprobe", "w", "/tmp/evil"),
        # "h" only prints help to the kernel log: harmless even if the wall failed.
        "proc-sysrq-trigger": ("/proc/sysrq-trigger", "w", "h"),
    }


TARGET_IDS = list(_targets("t"))


@pytest.mark.parametrize("target", TARGET_IDS, ids=TARGET_IDS)
def test_writes_outside_the_workspace_are_refused(
    target: str, shared: securepy.Session, host: Any
) -> None:
    path, mode, data = _targets(host.token)[target]
    host_dir = os.path.dirname(path)
    probe = path if mode != "x" else host_dir
    if ROOT and os.path.exists(probe):  # control: the host may write it; only the wall refuses
        assert os.access(probe, os.W_OK), path
    workspace = WRITE_CODE.format(path=f"/workspace/{host.token}-{target}", mode="x", data=data)
    assert host.value(shared, workspace) == "written"
    result = host.value(shared, WRITE_CODE.format(path=path, mode=mode, data=data))
    assert result in ("PermissionError", "OSError", "FileNotFoundError"), result


def test_tmp_is_private_to_the_sandbox(shared: securepy.Session, host: Any) -> None:
    """/tmp inside is the workspace's: a file written there is not in the host's /tmp."""
    path = f"/tmp/{host.token}-tmp"
    assert host.value(shared, WRITE_CODE.format(path=path, mode="x", data="x")) == "written"
    assert host.value(shared, f"open({path!r}).read()") == "x"
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), f"{host.token}-tmp"))


def test_file_modes_and_owners_of_bound_files_cannot_change(
    shared: securepy.Session, host: Any
) -> None:
    before = os.stat(os.__file__)
    code = f"""
import os
def attempt(f):
    try:
        f()
        return "changed"
    except OSError as e:
        return type(e).__name__
[attempt(lambda: os.chmod({os.__file__!r}, 0o777)),
 attempt(lambda: os.chown({os.__file__!r}, 65534, 65534)),
 attempt(lambda: os.utime({os.__file__!r}, (0, 0))),
 attempt(lambda: (open("own", "w").close(), os.chmod("own", 0o700)))]
"""
    result = host.value(shared, code)
    assert result[:3] == ["PermissionError"] * 3 or set(result[:3]) <= {
        "OSError",
        "PermissionError",
    }
    assert result[3] == "changed"  # control: the workspace is the sandbox's own
    after = os.stat(os.__file__)
    assert (after.st_mode, after.st_uid, after.st_mtime) == (
        before.st_mode,
        before.st_uid,
        before.st_mtime,
    )


def test_device_nodes_cannot_be_made(shared: securepy.Session, host: Any) -> None:
    code = """
import os, stat
try:
    os.mknod(PATH, stat.S_IFCHR | 0o666, os.makedev(1, 1))  # /dev/mem
    r = "made"
except OSError as e:
    r = type(e).__name__
r
"""
    if ROOT:  # control: root on the host can make the node (in a private temp dir)
        with tempfile.TemporaryDirectory() as scratch:
            node = os.path.join(scratch, "mem")
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 1))
            assert stat.S_ISCHR(os.stat(node).st_mode)
    assert host.value(shared, code.replace("PATH", "'/workspace/mem'")) == "PermissionError"
    assert host.value(shared, code.replace("PATH", "'/dev/mem'")) in ("PermissionError", "OSError")


def test_dev_shm_has_its_own_size_limit(sandboxes: Any, host: Any) -> None:
    session = sandboxes(limits=securepy.Limits(workspace_bytes=8 * 1024 * 1024))
    code = """
import errno
written = 0
try:
    with open("/dev/shm/fill", "wb") as f:
        for _ in range(SIZE):
            f.write(b"x" * 1024 * 1024)
            f.flush()
            written += 1
    r = ("written", written)
except OSError as e:
    r = (errno.errorcode[e.errno], written)
import os
os.unlink("/dev/shm/fill")
r
"""
    assert host.value(session, code.replace("SIZE", "2")) == ("written", 2)  # control
    result = host.value(session, code.replace("SIZE", "64"))
    assert result[0] == "ENOSPC" and result[1] <= 8, result
    assert host.value(session, "1 + 1") == 2
