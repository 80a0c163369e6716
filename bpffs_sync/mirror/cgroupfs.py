"""cgroupfs walk -> the desired mirror tree.

A v2 cgroup's id is its kernfs node id, which is the directory's inode number (d_ino from
getdents, so the walk needs no stat per cgroup). Directories that vanish mid-walk are skipped:
the event for their removal brings the next pass.
"""

from __future__ import annotations

import errno
import os

from bpffs_sync.errors import CgroupGone, EnvironmentProblem, translate_oserror
from bpffs_sync.mirror.tree import Conflict, Desired, DesiredView, Kind
from bpffs_sync.paths import Layout, RelPath

_GONE = (errno.ENOENT, errno.ENOTDIR)


def cgroup_id(path: str) -> int:
    """The v2 cgroup id of the cgroup directory at path."""
    try:
        return os.stat(path).st_ino
    except OSError as err:
        raise translate_oserror(err, "stat", path) from err


def check_root(cgroup_root: str) -> None:
    """A usable cgroup root: an existing directory on a cgroup2 mount."""
    if not os.path.isdir(cgroup_root):
        raise EnvironmentProblem("cgroup root", cgroup_root, errno.ENOENT)
    if not os.path.exists(os.path.join(cgroup_root, "cgroup.procs")):
        raise EnvironmentProblem("cgroup root", cgroup_root, 0, "not a cgroup directory")


def _add_cgroup(view: DesiredView, rel: RelPath, cgid: int, stats: tuple[str, ...]) -> None:
    view.tree[rel] = Desired(Kind.DIR)
    for stat in stats:
        view.tree[(*rel, stat)] = Desired(Kind.PIN, cgid, stat)


def walk(layout: Layout, stats: tuple[str, ...], scope: RelPath = ()) -> DesiredView:
    """Desired entries for the cgroup subtree at `scope`, plus the directories above it.

    `scope` must already be normalised by paths.mirrored_scope(). When the cgroup at `scope` is
    gone, only its existing ancestors are returned (as directories), so a pass removes the rest.
    """
    view = DesiredView()
    stat_set = frozenset(stats)
    for depth in range(len(scope)):
        anc = scope[:depth]
        if not os.path.isdir(layout.cgroup_path(anc)):
            return view
        view.tree[anc] = Desired(Kind.DIR)
    try:
        root_id = cgroup_id(layout.cgroup_path(scope))
    except CgroupGone:
        return view
    _add_cgroup(view, scope, root_id, stats)
    stack: list[RelPath] = [scope]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(layout.cgroup_path(rel)) as it:
                entries = [(e.name, e.inode()) for e in it if e.is_dir(follow_symlinks=False)]
        except OSError as err:
            if err.errno in _GONE:
                continue
            raise translate_oserror(err, "scandir", layout.cgroup_path(rel)) from err
        for name, ino in entries:
            child = (*rel, name)
            if name in stat_set:
                view.conflicts.append(Conflict(child, ino))
                continue
            _add_cgroup(view, child, ino, stats)
            stack.append(child)
    return view
