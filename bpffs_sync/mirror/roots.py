"""The directories every pass of one tree starts from -- the cgroup root, and the mirror root in
the bpffs -- opened and checked once (dirfd.owned_dir for the mirror), then re-checked each pass
with one stat per root: while the path still names the very directory we hold (same device and
inode), the held fd is used; when it names another (an unmount, a mirror removed and planted
again), the held fd is dropped and the path opened and checked anew. A pass thus costs two or
three stats instead of re-walking and re-checking both roots (an event-driven pass is mostly this).
"""

from __future__ import annotations

import os

from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.paths import Layout

_Held = tuple[int, int, int]  # fd, st_dev, st_ino


def _same(held: _Held | None, st: os.stat_result) -> bool:
    return held is not None and (held[1], held[2]) == (st.st_dev, st.st_ino)


def _hold(fd: int) -> _Held:
    st = os.fstat(fd)
    return fd, st.st_dev, st.st_ino


class Roots:
    """Held root fds of one tree; close() them when the tree goes (a held fd on a v1 hierarchy
    would keep that hierarchy alive after its unmount)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._cgroup: _Held | None = None
        self._mirror: _Held | None = None

    def cgroup(self) -> int:
        """The cgroup root's fd (EnvironmentProblem when it is gone)."""
        try:
            st = os.stat(self.layout.cgroup_root)
        except OSError:
            st = None
        if st is None or not _same(self._cgroup, st):
            self._drop("_cgroup")
            self._cgroup = _hold(cgroupfs.open_root(self.layout.cgroup_root))
        assert self._cgroup is not None
        return self._cgroup[0]

    def mirror(self, create: bool) -> int | None:
        """The mirror root's fd, checked to be ours; None when absent and not create."""
        try:
            st = os.stat(self.layout.mirror_root, follow_symlinks=False)
        except OSError:
            st = None
        if st is None or not _same(self._mirror, st):
            self._drop("_mirror")
            fd = bpffs.open_mirror(self.layout, create)
            if fd is None:
                return None
            self._mirror = _hold(fd)
            return fd
        return self._mirror[0] if self._mirror is not None else None

    def _drop(self, name: str) -> None:
        held: _Held | None = getattr(self, name)
        if held is not None:
            os.close(held[0])
            setattr(self, name, None)

    def close(self) -> None:
        self._drop("_cgroup")
        self._drop("_mirror")
