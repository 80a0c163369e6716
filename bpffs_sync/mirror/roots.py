"""The directories a pass of one tree starts from -- the cgroup root, and the mirror root in the
bpffs -- opened and checked once per pass (dirfd.owned_dir for the mirror) and shared by its
steps (normalise, both walks, apply) instead of each re-opening and re-checking them. The pass
closes them at its end: an fd held across passes would make an administrator's umount of the
bpffs or of a v1 hierarchy EBUSY (and the next pass checks afresh what the paths name then).
"""

from __future__ import annotations

import os

from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.paths import Layout


class Roots:
    """The held root fds of one pass; close() at the pass's end."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._cgroup = -1
        self._mirror = -1

    def cgroup(self) -> int:
        """The cgroup root's fd (EnvironmentProblem when it is gone)."""
        if self._cgroup < 0:
            self._cgroup = cgroupfs.open_root(self.layout.cgroup_root)
        return self._cgroup

    def mirror(self, create: bool) -> int | None:
        """The mirror root's fd, checked to be ours; None when absent and not create."""
        if self._mirror < 0:
            fd = bpffs.open_mirror(self.layout, create)
            if fd is None:
                return None
            self._mirror = fd
        return self._mirror

    def close(self) -> None:
        for name in ("_cgroup", "_mirror"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
