"""Fixtures of the kernel series' tests. They run inside the patched 7.3 guest (make kernel-test):
a bpffs instance with the cgroup mirror, private cgroup subtrees, and a loaded hist_oncpu built
as SEC("cgroup/stat"). Finalizers detach every link and remove every mount and cgroup made."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))  # series_fixtures
from series_fixtures import LoadedStats

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

CGROUP2 = "/sys/fs/cgroup"


@pytest.fixture(scope="session", autouse=True)
def patched_kernel() -> None:
    if not kernel_a1.supported():
        pytest.skip("not the kernel-approach1 kernel (run these with `make kernel-test`, inside its guest)")


@pytest.fixture
def mirror_fs() -> Iterator[str]:
    """A bpffs mounted with cgroup_mirror; its cgroup/ directory is the kernel's mirror."""
    path = mount_bpffs("cgroup_mirror")
    try:
        yield path
    finally:
        kernel_a1.detach_all()
        umount_bpffs(path)


@pytest.fixture
def plain_fs() -> Iterator[str]:
    """A bpffs without cgroup_mirror (for pins, or for a test that turns the mirror on); every
    cgroup stat link is detached at the end."""
    path = mount_bpffs()
    try:
        yield path
    finally:
        kernel_a1.detach_all()
        umount_bpffs(path)


@pytest.fixture
def cg() -> Iterator[str]:
    """A private cgroup v2 subtree."""
    path = make_cgroup_root("cgstat")
    try:
        yield path
    finally:
        remove_cgroup_tree(path)


@pytest.fixture(scope="session")
def loaded_stats() -> Iterator[LoadedStats]:
    """hist_oncpu loaded once for the session (minutes under the debug kernel)."""
    with LoadedStats() as stats:
        yield stats


@pytest.fixture
def stat(mirror_fs: str, loaded_stats: LoadedStats) -> kernel_a1.KernelMirror:
    """hist_oncpu loaded as BPF_PROG_TYPE_CGROUP_STAT (once per session), its map and collector
    pinned in mirror_fs (they go with its umount)."""
    return loaded_stats.get(kernel_a1.KernelMirror, Layout(mirror_fs, CGROUP2), lookup("hist_oncpu"))


@pytest.fixture
def link_fds() -> Iterator[list[int]]:
    """Link fds a test opens; closed at the end (the files keep the links until detached)."""
    fds: list[int] = []
    try:
        yield fds
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def link_desc(fd: int) -> libbpf.CgroupStatLinkDesc:
    desc = libbpf.cgroup_stat_link_info(fd)
    assert desc is not None
    return desc
