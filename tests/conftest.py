"""Fixtures: each test that touches the kernel gets its own bpffs mount and cgroup subtree,
removed by finalizers whatever the test's outcome."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Mirror, mirror_on

from bpffs_sync.loader import LoadedStat
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root


def _capabilities() -> str:
    """Why kernel tests cannot run here, or '' when they can (a feature probe, not a version check)."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF"
    if not (Path(__file__).resolve().parent.parent / "build" / "bpf" / "hist_oncpu.bpf.o").exists():
        return "BPF objects not built (make bpf)"
    return ""


@pytest.fixture
def kernel() -> None:
    reason = _capabilities()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def bpffs_mount(kernel: None) -> Iterator[str]:
    with private_bpffs() as path:
        yield path


@pytest.fixture
def cgroup_root(kernel: None) -> Iterator[str]:
    with private_cgroup_root() as path:
        yield path


@pytest.fixture
def mirror(bpffs_mount: str, cgroup_root: str) -> Iterator[Mirror]:
    with mirror_on(bpffs_mount, cgroup_root) as m:
        yield m


@pytest.fixture
def rec(mirror: Mirror) -> Iterator[Reconciler]:
    """A Reconciler of `mirror` with hist_oncpu loaded, both closed after."""
    loaded = LoadedStat(mirror.layout, lookup("hist_oncpu"))
    r = Reconciler(mirror.layout, {"hist_oncpu": loaded})
    try:
        yield r
    finally:
        r.close()
        loaded.close()


# --- cgroup v1: private subtrees of the host's hierarchies (tasks moved out, then removed) -------


def _v1_subtree(hierarchy: str) -> Iterator[str]:
    from v1_scratch import private_v1_cgroup

    root = os.path.join("/sys/fs/cgroup", hierarchy)
    if not os.path.exists(os.path.join(root, "cgroup.procs")):
        pytest.skip(f"no cgroup v1 {hierarchy} hierarchy at {root}")
    with private_v1_cgroup(root) as path:
        yield path


@pytest.fixture
def v1_memory(kernel: None) -> Iterator[str]:
    yield from _v1_subtree("memory")


@pytest.fixture
def v1_cpu(kernel: None) -> Iterator[str]:
    yield from _v1_subtree("cpu")


@pytest.fixture
def v1_cpuacct(kernel: None) -> Iterator[str]:
    yield from _v1_subtree("cpuacct")
