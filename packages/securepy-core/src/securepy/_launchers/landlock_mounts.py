"""``securepy.Mount`` behind the Landlock wall.

Without a mount namespace a host directory cannot be shown at another path, so the wall
grants it where it is: a Landlock rule gives read and execute beneath the host path (a
read-only mount: writes, new files, removals and renames there are refused by Landlock) or
every right Landlock handles (``writable=True``). Where the code finds it:

- ``path_inside`` relative to the workspace (``"data"``): a symbolic link there, made by the
  host before the code runs, pointing at the host path. The code may remove or replace the
  link (it is in its own workspace); what it can reach stays what the rule grants.
  ``session.files`` walks such a path from the host path itself, never through the link;
- ``path_inside`` absolute: only the host path itself; anything else is refused with the reason.

What Landlock does not govern: a file's metadata (mode, owner, times). As root each session runs
as a uid of its own that owns nothing in the mount, so the kernel refuses those changes; a
non-root host's sessions run as the host user, who may own the mounted files.
"""

from __future__ import annotations

import os

from .._mounts import Mount
from ..errors import SandboxUnavailableError
from .identity import Identity

__all__ = ["place_mounts"]


def place_mounts(
    mounts: tuple[Mount, ...], workspace: str, identity: Identity | None
) -> dict[str, Mount]:
    """Check each mount can be shown here and make the links; returns the linked ones by their
    path relative to the workspace.

    Raises:
        securepy.errors.SandboxUnavailableError: an absolute ``path_inside`` other than the
            host path, or a host path the session's uid cannot enter.
    """
    links: dict[str, Mount] = {}
    for mount in mounts:
        absolute = mount.path_inside.startswith("/")
        if absolute and os.path.normpath(mount.path_inside) != mount.host_path:
            raise SandboxUnavailableError(
                    f"the Landlock wall cannot show {mount.host_path} at "
                    f"{mount.path_inside}: without a mount namespace a host directory stays "
                    "at its own path. Give a path_inside relative to the workspace (a link "
                    f"there, e.g. {os.path.basename(mount.host_path)!r}) or the host path "
                    "itself, or use the namespaces wall (wall='namespaces')"
                )
        if identity is not None:
            _check_reachable(mount)
        if mount.path_inside.startswith("/"):
            continue
        inside = os.path.normpath(mount.path_inside)
        for other in links:
            if inside.startswith(other + "/") or other.startswith(inside + "/"):
                # The inner link would be made through the outer one, in the host directory.
                raise SandboxUnavailableError(
                    f"the Landlock wall cannot show a mount inside another ({other!r} and "
                    f"{inside!r}): each is a link in the workspace; give them paths side by "
                    "side, or use the namespaces wall (wall='namespaces')"
                )
        _make_parents(workspace, inside, identity)
        os.symlink(mount.host_path, os.path.join(workspace, inside))
        if identity is not None:
            os.chown(os.path.join(workspace, inside), identity.uid, identity.gid,
                     follow_symlinks=False)
        links[inside] = mount
    return links


def _check_reachable(mount: Mount) -> None:
    """As root the session runs as a uid of its own: every directory on the way must let
    other users through (bubblewrap binds as root; Landlock cannot help)."""
    path = "/"
    for part in mount.host_path.strip("/").split("/")[:-1]:
        path = os.path.join(path, part)
        if not os.stat(path).st_mode & 0o001:
            raise SandboxUnavailableError(
                f"the Landlock wall runs each session as a uid of its own, which cannot "
                f"enter {path} (on the way to the mount {mount.host_path}); allow other "
                f"users through it (chmod o+x {path}) or mount a directory elsewhere"
            )


def _make_parents(workspace: str, inside: str, identity: Identity | None) -> None:
    path = workspace
    for part in inside.split("/")[:-1]:
        path = os.path.join(path, part)
        if not os.path.isdir(path) or os.path.islink(path):
            os.mkdir(path, 0o755)
            if identity is not None:
                os.chown(path, identity.uid, identity.gid)
