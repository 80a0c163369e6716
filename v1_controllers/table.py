"""Controllers whose v1 hierarchies bpffs-sync mirrors as plain directories: no stat program of
ours reads their state yet, so they get none by default (their trees still appear and verify)."""

from __future__ import annotations

CONTROLLERS: tuple[str, ...] = (
    "cpuset", "blkio", "devices", "freezer", "net_cls", "perf_event", "net_prio", "hugetlb", "pids",
    "rdma", "misc",
)
STATS: tuple[str, ...] = ()


def kernel_figures(cgroup_dir: str) -> dict[str, int]:
    return {}
