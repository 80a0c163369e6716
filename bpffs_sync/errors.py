"""One exception tree. OSError is translated at the filesystem boundary with `raise ... from err`.

SyncError
 +-- CgroupGone          the cgroup vanished mid-pass (ENOENT): not a failure, the next pass settles it
 +-- PermissionDenied    EACCES/EPERM where we needed to act
 +-- KernelUnsupported   the kernel lacks what we need (no BTF, no cgroup iterator, no bpffs...)
 +-- EnvironmentProblem  the host is not set up for us (not root, cgroup root missing, lock held...)
 |    +-- Tampered       something we would adopt is not ours: a symlink, another user's directory...
 |    +-- Remounted      the bpffs at our path is no longer the instance we hold the lock of
 +-- MountPoint          another filesystem is mounted on an entry below a root of ours: never crossed
 +-- LibbpfError         a libbpf call failed: operation, path, errno, strerror, libbpf's last words
 +-- UsageError          the command line asked for something that does not exist
"""

from __future__ import annotations

import errno as errno_mod
import os


class SyncError(Exception):
    """Base of every error bpffs-sync raises on purpose. str() is one line."""

    def __init__(self, op: str, path: str, err: int = 0, detail: str = "") -> None:
        self.op = op
        self.path = path
        self.errno = err
        self.detail = detail
        super().__init__(self.render())

    def render(self) -> str:
        msg = f"{self.op} {self.path}"
        if self.errno:
            msg += f": {os.strerror(self.errno)} (errno {self.errno})"
        if self.detail:
            msg += f": {self.detail}"
        return msg


class CgroupGone(SyncError):
    """The cgroup (or mirror entry) disappeared while we were working on it."""


class PermissionDenied(SyncError):
    pass


class KernelUnsupported(SyncError):
    pass


class EnvironmentProblem(SyncError):
    pass


class Tampered(EnvironmentProblem):
    """An entry where we keep state is not what we made (type, owner, mode): refuse, never follow."""


class Remounted(EnvironmentProblem):
    """The bpffs at our path is another instance than the one whose lock we hold: stand down (a
    restart takes the new instance's lock and adopts or fills it)."""


class MountPoint(SyncError):
    """An entry below one of our roots is on another filesystem (something is mounted on it): it is
    never entered, chmodded or removed; the pass leaves it alone and reports it."""


class LibbpfError(SyncError):
    pass


class UsageError(SyncError):
    """The command line asked for something that does not exist."""


def translate_oserror(err: OSError, op: str, path: str) -> SyncError:
    """Map an OSError to the tree: ENOENT -> CgroupGone, EACCES/EPERM -> PermissionDenied."""
    code = err.errno or 0
    if code == errno_mod.ENOENT:
        return CgroupGone(op, path, code)
    if code in (errno_mod.EACCES, errno_mod.EPERM):
        return PermissionDenied(op, path, code)
    return SyncError(op, path, code)
