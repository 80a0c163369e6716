"""`bpffs-sync clean`: remove the mirrors (v2 and v1) and the pinned collectors/maps.

Holds the bpffs's lock while it works (rundir.exclusive), so it is refused while a daemon runs (the
daemon would rebuild the mirror at once) and no daemon can start half-way through.

Refused, too, while the patched kernel's mirror uses this bpffs's collectors: a cgroup stat link
(`run --kernel`, pinned at <bpffs>/bpffs-sync/<stat>/native_link) reads the stats map the collector
pinned beside it fills; unpinning that collector would freeze the kernel mirror's counts without a
word. `clean --kernel` detaches those links first.

Never crosses a mount point: a filesystem mounted below a tree it removes (a tmpfs, another bpffs
bound there) is left alone with the directories holding it (bpffs.remove_tree_at), and clean then
exits 2 naming each, after removing everything else of ours.
"""

from __future__ import annotations

import os

from bpffs_sync import dirfd, rundir
from bpffs_sync.backends import kernel_a1
from bpffs_sync.errors import EnvironmentProblem, MountPoint, Tampered
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import MIRROR_V1, PRIVATE_DIR, Layout


def kernel_users(private_entries: dict[str, list[str]]) -> list[str]:
    """The stats whose private directory holds a kernel link pin ({stat: entry names} -> stats)."""
    return sorted(stat for stat, names in private_entries.items() if kernel_a1.NATIVE_LINK_PIN in names)


def _private_entries(layout: Layout) -> dict[str, list[str]]:
    """{stat: entry names} of <bpffs>/bpffs-sync, read through checked directory fds (a planted
    `bpffs-sync` is Tampered, never followed)."""
    fd = bpffs.open_sub(layout.bpffs, (PRIVATE_DIR,), create=False)
    if fd is None:
        return {}
    out: dict[str, list[str]] = {}
    try:
        with os.scandir(fd) as it:
            stats = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        for stat in stats:
            sub = dirfd.open_dir(fd, stat, os.path.join(layout.private_root, stat))
            try:
                out[stat] = os.listdir(sub)
            finally:
                os.close(sub)
    finally:
        os.close(fd)
    return out


def clean(layout: Layout) -> int:
    with rundir.exclusive(layout.bpffs, rundir.ROLE_CLEAN):
        users = kernel_users(_private_entries(layout))
        if users:
            raise EnvironmentProblem(
                "clean", layout.private_root, 0,
                f"the kernel's mirror uses the collectors of {', '.join(users)} (cgroup stat links pinned as "
                f"{kernel_a1.NATIVE_LINK_PIN}): `bpffs-sync clean --kernel` detaches them first")
        removed = 0
        tops = [layout.mirror_parts, (MIRROR_V1,), (PRIVATE_DIR,)]
        if kernel_a1.mirror_enabled(layout.bpffs):  # <bpffs>/cgroup is the kernel's
            tops.remove(layout.mirror_parts)
        foreign: list[Tampered] = []
        mounts: list[str] = []
        for top in tops:  # what is ours goes; what is not (planted at the sticky root) stays, and is said
            try:
                removed += bpffs.remove_tree(layout.bpffs, top, left=mounts)
            except Tampered as err:
                foreign.append(err)
        if foreign:
            raise Tampered("clean", foreign[0].path, 0, f"removed {removed} entries of ours; left alone: "
                           + "; ".join([f"{e.path}: {e.detail}" for e in foreign]
                                       + [f"{m}: mount point" for m in mounts]))
        if mounts:
            raise MountPoint("clean", layout.bpffs, 0, f"removed {removed} entries of ours; left alone, with the "
                             "directories holding them (another filesystem is mounted there: umount it, then "
                             f"clean again): mount point {', mount point '.join(mounts)}")
        return removed
