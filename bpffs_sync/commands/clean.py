"""`bpffs-sync clean`: remove the mirrors (v2 and v1) and the pinned collectors/maps. Refuses while a daemon
holds the bpffs (it would rebuild the mirror at once)."""

from __future__ import annotations

import os

from bpffs_sync.backends import kernel_a1
from bpffs_sync.commands.status import daemon_status
from bpffs_sync.errors import EnvironmentProblem
from bpffs_sync.mirror import bpffs, forest
from bpffs_sync.paths import Layout


def clean(layout: Layout) -> int:
    daemon = daemon_status(layout)
    if daemon.get("running"):
        raise EnvironmentProblem("clean", layout.bpffs, 0, f"bpffs-sync run is active (pid {daemon['pid']})")
    removed = 0
    tops = [layout.mirror_root, forest.v1_root(layout.bpffs), layout.private_root]
    if kernel_a1.mirror_enabled(layout.bpffs):  # <bpffs>/cgroup is the kernel's: `clean --kernel` detaches its links
        tops.remove(layout.mirror_root)
    for top in tops:
        if os.path.lexists(top):
            removed += bpffs.remove_tree(top)
    return removed
