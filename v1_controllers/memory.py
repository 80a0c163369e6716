"""The v1 memory controller: memcg_histo, and the files it must agree with.

memory.usage_in_bytes is page_counter usage * PAGE_SIZE for every memcg but the root, whose value
is approximated from global vmstat (mm/memcontrol-v1.c: mem_cgroup_usage()); limit_in_bytes is
memory.max * PAGE_SIZE, failcnt the page counter's failcnt (counted on v1 only).
"""

from __future__ import annotations

import os

CONTROLLERS: tuple[str, ...] = ("memory",)
STATS: tuple[str, ...] = ("memcg_histo",)

# stat-file summary key -> the v1 cgroupfs file with the same number
FILES = {
    "usage_bytes": "memory.usage_in_bytes",
    "limit_bytes": "memory.limit_in_bytes",
    "max_usage_bytes": "memory.max_usage_in_bytes",
    "failcnt": "memory.failcnt",
}


def kernel_figures(cgroup_dir: str) -> dict[str, int]:
    out = {}
    for key, name in FILES.items():
        with open(os.path.join(cgroup_dir, name), encoding="ascii") as f:
            out[key] = int(f.read())
    return out
