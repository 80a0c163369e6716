"""A removed cgroup is not kept dying by the mirror: an open stat file or an open mirror directory
holds only the cgroup's id, so after rmdir the parent's nr_dying_descendants returns to its
baseline while they are still open, and the open file reads ENODEV."""

from __future__ import annotations

import errno
import os
import time

import pytest
from test_cgroup_stat import NAME, mirror_of

from bpffs_sync.backends import kernel_a1

RELEASE_WAIT_S = 60.0  # dying cgroups are freed after an RCU grace period and a work item (TCG is slow)


def nr_dying(cgroup_dir: str) -> int:
    with open(os.path.join(cgroup_dir, "cgroup.stat"), encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == "nr_dying_descendants":
                return int(value)
    raise AssertionError(f"no nr_dying_descendants in {cgroup_dir}/cgroup.stat")


def settled_dying(cgroup_dir: str, want: int) -> int:
    """nr_dying_descendants once it reaches want, or its last value after RELEASE_WAIT_S."""
    deadline = time.monotonic() + RELEASE_WAIT_S
    while (now := nr_dying(cgroup_dir)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


@pytest.mark.parametrize("hold", ["file", "directory"])
def test_open_entry_does_not_keep_a_removed_cgroup(
    stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int], hold: str
) -> None:
    """rmdir with the cgroup's stat file (or mirror directory) open: nr_dying_descendants returns to baseline."""
    target = os.path.join(cg, "gone")
    os.mkdir(target)
    link_fds.append(stat.attach(cg))
    baseline = settled_dying(cg, 0)
    mdir = mirror_of(mirror_fs, target)
    fd = os.open(os.path.join(mdir, NAME) if hold == "file" else mdir, os.O_RDONLY)
    try:
        os.rmdir(target)
        assert settled_dying(cg, baseline) == baseline
        if hold == "file":
            with pytest.raises(OSError) as exc:
                os.read(fd, 4096)
            assert exc.value.errno == errno.ENODEV
    finally:
        os.close(fd)
