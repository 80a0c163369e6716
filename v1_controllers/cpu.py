"""The v1 cpu and cpuacct controllers: hist_oncpu, charged to the task's cgroup in the hierarchy
each is bound to (task->cgroups->subsys[ssid]->cgroup), keyed by (hierarchy id, cgroup id).

Its total_ns agrees with cpuacct.usage (hierarchical, ns), which only a hierarchy carrying cpuacct
has; a cpu-only hierarchy has no usage file of its own on v1.
"""

from __future__ import annotations

import os

CONTROLLERS: tuple[str, ...] = ("cpu", "cpuacct")
STATS: tuple[str, ...] = ("hist_oncpu",)


def kernel_figures(cgroup_dir: str) -> dict[str, int]:
    path = os.path.join(cgroup_dir, "cpuacct.usage")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="ascii") as f:
        return {"total_ns": int(f.read())}
