"""Fixtures of the Approach 2 tests. They run inside the guest booted on the kernel that carries both
series (kernel-approach2/scripts/test.sh): private cgroup subtrees, a private bpffs for the stats'
map/collector/link pins, and hist_oncpu loaded as SEC("cgroup/stat"). Finalizers detach every
Approach 2 link and remove every mount and cgroup made."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))  # series_fixtures
from series_fixtures import LoadedStats

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a2
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

CGROUP2 = "/sys/fs/cgroup"
NAME = "hist_oncpu"
FILE = kernel_a2.file_name(NAME)


@pytest.fixture(scope="session", autouse=True)
def patched_kernel() -> None:
    if not kernel_a2.supported():
        pytest.skip("not the kernel-approach2 kernel (run these with kernel-approach2/scripts/test.sh)")


@pytest.fixture
def pins_fs() -> Iterator[str]:
    """A private bpffs for the stats' pins; every Approach 2 link is detached at the end."""
    path = mount_bpffs()
    try:
        yield path
    finally:
        kernel_a2.detach_all()
        umount_bpffs(path)


@pytest.fixture
def cg() -> Iterator[str]:
    """A private cgroup v2 subtree."""
    path = make_cgroup_root("cgstat2")
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
def stat(pins_fs: str, loaded_stats: LoadedStats) -> kernel_a2.CgroupfsStat:
    """hist_oncpu loaded as BPF_PROG_TYPE_CGROUP_STAT (once per session), its map and collector
    pinned in pins_fs (they go with its umount)."""
    return loaded_stats.get(kernel_a2.CgroupfsStat, Layout(pins_fs, CGROUP2), lookup(NAME))


@pytest.fixture
def link_fds() -> Iterator[list[int]]:
    """fds a test opens; closed at the end (the files keep the links until detached)."""
    fds: list[int] = []
    try:
        yield fds
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def link_desc(fd: int) -> libbpf.CgroupfsStatLinkDesc:
    desc = libbpf.cgroupfs_stat_link_info(fd)
    assert desc is not None
    return desc


def link_by_id(link_id: int) -> libbpf.CgroupfsStatLinkDesc | None:
    """The link's description, None once it is freed."""
    for desc in libbpf.cgroupfs_stat_links():
        if desc.link_id == link_id:
            return desc
    return None


def files_under(root: str, name: str = FILE) -> set[str]:
    """Every cgroup under root (root included, as '.') holding a file called name."""
    return {os.path.relpath(d, root) for d, _dirs, files in os.walk(root) if name in files}


def cgroups_under(root: str) -> set[str]:
    return {os.path.relpath(d, root) for d, _dirs, _files in os.walk(root)}


def make_tree(root: str, *rels: str) -> None:
    for rel in rels:
        os.makedirs(os.path.join(root, rel))


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
