"""`bpffs-sync bench export`: the CPU one scrape costs, against reading the same cgroups' own stat files.

A private bpffs and 2 000 cgroups (20 parents x 100) under a private v2 root, mirrored with hist_oncpu;
when the host has a cgroup-v1 memory hierarchy, the same tree under a private memory cgroup, mirrored
with memcg_histo (this host's v2 tree has no memory controller, so memory.stat is v1's).

    scrape    Exporter.scrape(): walk the mirror by dir fd, read + parse every stat file, render the text
              (health families included; verify off). CPU = process time, median of `rounds`.
    baseline  open + read + parse (key value lines -> dict) of the same cgroups' cpu.stat (v2) and, with
              v1 memory, memory.stat: what a cAdvisor-style agent reads per scrape, before rendering.

Goal (issue 11): a scrape of 2 000 cgroups <= 150 ms of CPU. Everything made here is removed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import v1_controllers
from bpffs_sync.export.files import Filter, walk
from bpffs_sync.export.render import render
from bpffs_sync.export.server import Exporter, ExportOptions
from bpffs_sync.loader import LoadedStat
from bpffs_sync.mirror import forest
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root

FANOUT = 100
GOAL_MS = 150.0


def _tree(root: str, count: int) -> list[str]:
    """count leaf cgroups under count/FANOUT parents; every directory made, root first."""
    made = [root]
    for i in range(count):
        parent = os.path.join(root, f"p{i // FANOUT}")
        if i % FANOUT == 0:
            os.mkdir(parent)
            made.append(parent)
        leaf = os.path.join(parent, f"c{i}")
        os.mkdir(leaf)
        made.append(leaf)
    return made


def _parse_kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = int(value)
    return out


def _read_parse(paths: list[str]) -> None:
    for path in paths:
        with open(path, encoding="ascii") as f:
            _parse_kv(f.read())


def _cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median process CPU time of fn, in ms."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        samples.append((time.process_time() - started) * 1e3)
    return round(statistics.median(samples), 1)


def _v1_memory() -> v1_controllers.Hierarchy | None:
    for h in forest.hierarchies():
        if "memory" in h.controllers:
            return h
    return None


def _measure(mnt: str, dirs: list[str], mem_dirs: list[str], rounds: int) -> dict[str, Any]:
    exporter = Exporter(ExportOptions(bpffs=mnt, cgroup_root=None, verify_interval=0))
    body = exporter.scrape()
    stats = frozenset({"hist_oncpu", "memcg_histo"})
    walked = walk(mnt, stats, Filter())
    baseline = [os.path.join(d, "cpu.stat") for d in dirs] + [os.path.join(d, "memory.stat") for d in mem_dirs]
    scrape_ms = _cpu_ms(exporter.scrape, rounds)
    base_ms = _cpu_ms(lambda: _read_parse(baseline), rounds)
    return {
        "cgroups": len(dirs), "stat_files": len(walked.readings), "baseline_files": len(baseline),
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "body_bytes": len(body),
        "scrape_cpu_ms": scrape_ms,
        "walk_read_cpu_ms": _cpu_ms(lambda: walk(mnt, stats, Filter()), rounds),
        "parse_render_cpu_ms": _cpu_ms(lambda: render(walked.readings).text(), rounds),
        "baseline_read_parse_cpu_ms": base_ms,
        "ratio": round(scrape_ms / base_ms, 2) if base_ms else None,
        "goal_ms": GOAL_MS, "within_goal": scrape_ms <= GOAL_MS,
    }


def bench_export(count: int = 2000, rounds: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mem = _v1_memory()
    with private_bpffs() as mnt, private_cgroup_root("bpffs-sync-bench") as root:
        layout = Layout(mnt, root)
        dirs = _tree(root, count)
        oncpu = LoadedStat(layout, lookup("hist_oncpu"))
        memcg: LoadedStat | None = None
        mem_root = os.path.join(mem.mount_point, f"bpffs-sync-bench-{uuid.uuid4().hex[:8]}") if mem else ""
        mem_dirs: list[str] = []
        try:
            Reconciler(layout, {"hist_oncpu": oncpu}).reconcile(())
            out["v2"] = _measure(mnt, dirs, [], rounds)
            if mem is not None:
                os.mkdir(mem_root)
                mem_dirs = _tree(mem_root, count)
                memcg = LoadedStat(layout, lookup("memcg_histo"))
                v1 = Layout.for_v1(layout, mem_root, mem.name, mem.hierarchy_id)
                Reconciler(v1, {"memcg_histo": memcg}).reconcile(())
                out["v2_and_v1_memory"] = _measure(mnt, dirs, mem_dirs, rounds)
            else:
                out["v2_and_v1_memory"] = "no cgroup-v1 memory hierarchy"
        finally:
            subprocess.run(["rm", "-rf", os.path.join(mnt, "cgroup"), os.path.join(mnt, "cgroup-v1")], check=False)
            for d in reversed(mem_dirs):
                os.rmdir(d)
            oncpu.close()
            if memcg is not None:
                memcg.close()
    return out


def render_export(doc: dict[str, Any]) -> str:
    lines = []
    for name, what in (("v2", "cpu.stat"), ("v2_and_v1_memory", "cpu.stat + memory.stat")):
        r = doc.get(name)
        if not isinstance(r, dict):
            lines.append(f"export {name}: skipped ({r})")
            continue
        lines.append(f"export {name}: scrape of {r['cgroups']} cgroups ({r['stat_files']} stat files, "
                     f"{r['series']} series, {r['body_bytes']} B): {r['scrape_cpu_ms']} ms CPU "
                     f"(walk+read {r['walk_read_cpu_ms']}, parse+render {r['parse_render_cpu_ms']}); "
                     f"read+parse {what} of the same cgroups {r['baseline_read_parse_cpu_ms']} ms -> {r['ratio']}x; "
                     f"goal <= {r['goal_ms']:g} ms: {'met' if r['within_goal'] else 'MISSED'}")
    return "\n".join(lines)
