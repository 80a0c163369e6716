"""Hierarchical totals at depth 30: every ancestor is charged, in v2 and in the v1 cpuacct and memory
trees, and agrees with the kernel's own hierarchical figures (cpu.stat, cpuacct.usage)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.commands.demo import burn_in
from bpffs_sync.histogram import StatFile, parse_stat

DEPTH = 30
CHAIN = [f"d{i:02d}" for i in range(1, DEPTH + 1)]
# The private root is at level 1 below its hierarchy's root, so its child d01 is the level-2 ancestor
# that the old 16-level bound left at 0 (it charged a leaf at level 31 down to level 16 only).
LEVEL2 = CHAIN[0]


def chain_rels() -> list[str]:
    """The private root ('') and every cgroup of the chain below it, top down; the leaf is last."""
    return ["", *("/".join(CHAIN[:i]) for i in range(1, DEPTH + 1))]


def make_chain(root: str) -> str:
    """mkdir the chain under root; returns the leaf's directory."""
    leaf = os.path.join(root, *CHAIN)
    os.makedirs(leaf)
    return leaf


def read_stat(path: str) -> StatFile:
    with open(path, encoding="utf-8") as f:
        return parse_stat(f.read())


def stable_stats(paths: list[str]) -> list[StatFile]:
    """Read every file until two passes agree: a task that just exited may still be switching out."""
    snapshot: list[list[StatFile]] = [[read_stat(p) for p in paths]]

    def settled() -> bool:
        snapshot.append([read_stat(p) for p in paths])
        return snapshot[-1] == snapshot[-2]

    wait_for(settled, 10, "stat files stable")
    return snapshot[-1]


def cpu_stat_usage_ns(cgroup_dir: str) -> int:
    """cpu.stat usage_usec (v2, hierarchical, present without the cpu controller), in ns."""
    with open(os.path.join(cgroup_dir, "cpu.stat"), encoding="ascii") as f:
        usage = dict(line.split() for line in f)["usage_usec"]
    return int(usage) * 1000


def cpuacct_usage_ns(cgroup_dir: str) -> int:
    with open(os.path.join(cgroup_dir, "cpuacct.usage"), encoding="ascii") as f:
        return int(f.read())


def assert_matches_kernel(stats: list[StatFile], kernel_ns: list[int], rels: list[str]) -> None:
    for stat, usage, rel in zip(stats, kernel_ns, rels, strict=True):
        total = stat.summary["total_ns"]
        assert usage > 0, f"/{rel}: the kernel saw no CPU time"
        assert abs(total - usage) / usage < 0.10, f"/{rel}: hist_oncpu {total} ns vs kernel {usage} ns"


@pytest.fixture(params=[(), ("--raw-tp",)], ids=["tp_btf", "raw_tp"])
def deep_v2(request: pytest.FixtureRequest, mirror: Mirror) -> Iterator[tuple[Mirror, str]]:
    """The depth-30 chain under a private v2 root, mirrored by a daemon with either collector."""
    leaf = make_chain(mirror.cgroup_root)
    mirror.start(*request.param)
    wait_for(lambda: os.path.exists(mirror.stat_path(chain_rels()[-1])), 20, "the depth-30 leaf mirrored")
    yield mirror, leaf


def test_v2_every_ancestor_matches_cpu_stat_at_depth_30(deep_v2: tuple[Mirror, str]) -> None:
    """A burner at depth 30: each of the 31 cgroups' total_ns is within 10 % of its cpu.stat usage."""
    mirror, leaf = deep_v2
    burn_in(leaf, 1.0)
    rels = chain_rels()
    stats = stable_stats([mirror.stat_path(rel) for rel in rels])
    assert_matches_kernel(stats, [cpu_stat_usage_ns(mirror.cg(rel)) for rel in rels], rels)
    assert stats[1].summary["total_ns"] > 0, f"level-2 ancestor {LEVEL2} got nothing"


def test_v2_every_ancestor_equals_the_leaf_at_depth_30(deep_v2: tuple[Mirror, str]) -> None:
    """Only the leaf runs tasks: every ancestor's total, slices and histogram equal the leaf's exactly."""
    mirror, leaf = deep_v2
    burn_in(leaf, 0.3)
    rels = chain_rels()
    stats = stable_stats([mirror.stat_path(rel) for rel in rels])
    assert stats[-1].summary["slices"] > 0
    for stat, rel in zip(stats, rels, strict=True):
        assert (stat.summary["total_ns"], stat.summary["slices"], stat.slots) == (
            stats[-1].summary["total_ns"], stats[-1].summary["slices"], stats[-1].slots), f"/{rel}"


def test_v1_cpuacct_every_ancestor_matches_cpuacct_usage_at_depth_30(mirror: Mirror, v1_cpuacct: str) -> None:
    """v1 cpuacct, a burner at depth 30: each of the 31 cgroups within 10 % of its cpuacct.usage."""
    leaf = make_chain(v1_cpuacct)
    mirror.start("--v1", v1_cpuacct)
    rels = chain_rels()
    paths = [os.path.join(mirror.bpffs, "cgroup-v1/cpuacct", rel, "hist_oncpu") for rel in rels]
    wait_for(lambda: os.path.exists(paths[-1]), 20, "the depth-30 v1 leaf mirrored")
    burn_in(leaf, 1.0)
    stats = stable_stats(paths)
    assert_matches_kernel(stats, [cpuacct_usage_ns(os.path.join(v1_cpuacct, rel)) for rel in rels], rels)
    assert stats[1].summary["total_ns"] > 0, f"level-2 ancestor {LEVEL2} got nothing"


def test_v1_memcg_reclaim_reaches_every_ancestor_at_depth_30(mirror: Mirror, v1_memory: str) -> None:
    """Reclaim under a 16 MiB limit at depth 30: every ancestor shows exactly the leaf's reclaims."""
    leaf = make_chain(v1_memory)
    with open(os.path.join(leaf, "memory.limit_in_bytes"), "w", encoding="ascii") as f:
        f.write(str(16 << 20))
    mirror.start("--v1", v1_memory)
    rels = chain_rels()
    paths = [os.path.join(mirror.bpffs, "cgroup-v1/memory", rel, "memcg_histo") for rel in rels]
    wait_for(lambda: os.path.exists(paths[-1]), 20, "the depth-30 v1 memory leaf mirrored")
    read_cold_file_in(leaf, 96)
    stats = stable_stats(paths)
    assert stats[-1].summary["reclaims"] > 0
    for stat, rel in zip(stats, rels, strict=True):
        assert (stat.summary["reclaim_ns"], stat.summary["reclaims"], stat.slots) == (
            stats[-1].summary["reclaim_ns"], stats[-1].summary["reclaims"], stats[-1].slots), f"/{rel}"


def read_cold_file_in(cgroup_dir: str, mib: int) -> None:
    """dd a freshly written, uncached file of `mib` MiB from a process inside cgroup_dir."""
    fd, data = tempfile.mkstemp(prefix="bpffs-sync-depth-", dir="/var/tmp")
    try:
        chunk = b"\xa5" * (1 << 20)
        for _ in range(mib):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # cold: the reader's page cache is charged
        os.close(fd)

        def enter() -> None:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(os.getpid()))

        subprocess.run(["dd", f"if={data}", "of=/dev/null", "bs=1M"], check=True, capture_output=True,
                       preexec_fn=enter)
    finally:
        os.unlink(data)
